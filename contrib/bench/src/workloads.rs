//! The workload scenarios of issue 16, each with its peer beside it in the
//! same run and a table section of its own:
//!
//! * **delta-ssh** ([`delta`]) — a big file of real (pseudo-random) data
//!   synced over ssh, then 1 MiB in its middle rewritten: the time until
//!   the right has the update and about how many bytes crossed the
//!   loopback, beside `rsync -a` over the same sshd doing the same update;
//! * **mixed** ([`mixed`]) — a build tree: many small files rewritten the
//!   way a compiler writes them (a temp file, then a rename over the old
//!   one) and a few large files appended to; the time until the right has
//!   it all, twinsync beside lsyncd.

pub mod delta;
pub mod mixed;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::error::{io_ctx, Failure, Res};

/// Length of the chunks data is generated and compared in.
const CHUNK: usize = 4 << 20;

/// `len` bytes of pseudo-random data for `path` starting at `at`, chunk by
/// chunk (`seed` and the chunk's offset seed each chunk): real data, no
/// holes, nothing a tool could compress away.
pub fn write_random(f: &File, path: &Path, seed: u64, at: u64, len: u64) -> Res<()> {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u64);
        let data = crate::fsops::pseudo_random(seed ^ (at + done), n as usize);
        io_ctx(f.write_all_at(&data, at + done), path.display())?;
        done += n;
    }
    Ok(())
}

/// Whether `a` and `b` hold the same bytes (read chunk by chunk).
pub fn same_bytes(a: &Path, b: &Path) -> Res<bool> {
    let (fa, fb) = (
        io_ctx(File::open(a), a.display())?,
        io_ctx(File::open(b), b.display())?,
    );
    let len = io_ctx(fa.metadata(), a.display())?.len();
    if io_ctx(fb.metadata(), b.display())?.len() != len {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut at = 0;
    while at < len {
        let n = (len - at).min(CHUNK as u64) as usize;
        io_ctx(fa.read_exact_at(&mut ba[..n], at), a.display())?;
        io_ctx(fb.read_exact_at(&mut bb[..n], at), b.display())?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Whether `to` has the length and mtime of `from` (a copy arrived).
pub fn arrived(from: &Path, to: &Path) -> bool {
    let (Ok(a), Ok(b)) = (std::fs::metadata(from), std::fs::metadata(to)) else {
        return false;
    };
    a.len() == b.len() && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()
}

/// A copy that arrived with other bytes than the left's.
pub fn check_same(from: &Path, to: &Path) -> Res<()> {
    if same_bytes(from, to)? {
        Ok(())
    } else {
        Err(Failure::Other(format!(
            "{} arrived with other bytes than {}",
            to.display(),
            from.display()
        )))
    }
}

/// Keep a result, except an interruption, which ends the scenario.
pub fn keep<T>(r: Res<T>) -> Res<Res<T>> {
    match r {
        Err(Failure::Interrupted) => Err(Failure::Interrupted),
        r => Ok(r),
    }
}
