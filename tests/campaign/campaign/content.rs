//! Random contents, modes and mtimes of the schedule's writes.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rand::RngExt;
use rand_xorshift::XorShiftRng;

/// The fixed mtime of "same length, same mtime" overwrites.
pub(super) fn fixed_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

pub(super) fn random_bytes(rng: &mut XorShiftRng, len: usize, tag: &str) -> Vec<u8> {
    // Printable, tagged (side and a counter) so a diff says whose it is.
    let mut v = tag.as_bytes().to_vec();
    while v.len() < len {
        v.push(b'a' + rng.random_range(0..26u8));
    }
    v.truncate(len.max(1));
    v
}

pub(super) fn content_len(rng: &mut XorShiftRng) -> usize {
    match rng.random_range(0..100) {
        0 => rng.random_range(1_100_000..1_300_000), // beyond the inline limit: rsync
        1..=9 => 0,
        10..=20 => rng.random_range(4096..70_000),
        _ => rng.random_range(1..3000),
    }
}

pub(super) fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(p)
        .map(|m| m.mode() & 0o7777)
        .unwrap_or(0)
}
