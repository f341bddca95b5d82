//! `--bwlimit` over a real sshd: every transfer path takes at least the time
//! the limit implies — small files sent inline by the brain (to the remote
//! agent) and by the remote agent (back to the brain), a large one by rsync.
//! The bounds are derived from the limit, never from a sleep in the test.

use std::time::{Duration, Instant};

use crate::harness::{bin, eventually_within, Pair, Replica};
use crate::sshd::Sshd;

/// The limit under test: 400 KiB/s.
const RATE: f64 = 400.0 * 1024.0;
/// What the pacer may send before its first wait (one slice).
const SLICE: f64 = 16.0 * 1024.0;

fn limited_remote_pair(sshd: &Sshd) -> Pair {
    let mut p = Pair::new();
    p.remote_right(sshd);
    let cfg = sshd.ssh_config.display().to_string();
    p.start(&[
        "--ssh-config",
        &cfg,
        "--remote-path",
        bin(),
        "--bwlimit",
        "400",
    ]);
    p
}

/// Write `count` files of `size` bytes under `dir/` on `from`; the time
/// until all have arrived on `to`.
fn send(from: &Replica, to: &Replica, dir: &str, count: usize, size: usize) -> Duration {
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    for i in 0..count {
        from.write(format!("{dir}/f{i:03}"), &data);
    }
    eventually_within(Duration::from_secs(120), "all files arrive", || {
        (0..count).all(|i| {
            to.read(format!("{dir}/f{i:03}"))
                .is_some_and(|d| d.len() == size)
        })
    });
    t.elapsed()
}

#[test]
fn bwlimit_paces_inline_contents_both_ways_over_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let p = limited_remote_pair(&sshd);
    // 2 MB of small files each way: inline frames, paced by the brain's
    // writer (left to right) and by the remote agent's (right to left).
    let (count, size) = (200, 10_000);
    #[allow(clippy::cast_precision_loss)]
    let bytes = (count * size) as f64;
    let floor = (bytes - SLICE) / RATE;
    for (from, to, dir) in [
        (&p.left, &p.right, "to-right"),
        (&p.right, &p.left, "to-left"),
    ] {
        let took = send(from, to, dir, count, size).as_secs_f64();
        assert!(
            took >= floor,
            "{dir}: 2 MB at 400 KiB/s took {took:.2} s, less than the {floor:.2} s the limit \
             implies\n{}",
            p.log_tail()
        );
    }
    p.eventually_equal();
}

#[test]
fn bwlimit_is_passed_to_rsync_for_large_files_over_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let p = limited_remote_pair(&sshd);
    // Larger than what the limit sends in two seconds: rsync carries it.
    let size = 2_000_000;
    let took = send(&p.left, &p.right, "big", 1, size).as_secs_f64();
    // rsync's own pacing sleeps after it writes, in steps: most of the time
    // the limit implies.
    #[allow(clippy::cast_precision_loss)]
    let floor = 0.8 * size as f64 / RATE;
    assert!(
        took >= floor,
        "2 MB by rsync at 400 KiB/s took {took:.2} s, less than {floor:.2} s\n{}",
        p.log_tail()
    );
    let log = p.log_text();
    assert!(!log.contains("rsync failed"), "{log}");
}

#[test]
fn bwlimit_paces_copies_between_local_roots() {
    let mut p = Pair::new();
    p.start(&["--bwlimit", "400"]);
    // The destination's helper copies a request at a time, each request
    // sent once the ones before have had their time; a request carries what
    // the limit sends in two seconds.
    let (count, size) = (200, 10_000);
    #[allow(clippy::cast_precision_loss)]
    let bytes = (count * size) as f64;
    let floor = (bytes - 2.0 * RATE) / RATE;
    let took = send(&p.left, &p.right, "local", count, size).as_secs_f64();
    assert!(
        took >= floor,
        "2 MB at 400 KiB/s took {took:.2} s, less than {floor:.2} s\n{}",
        p.log_tail()
    );
}
