//! The `attr-latency` scenario: how long an attribute-only change of a
//! synced file (chmod, chown, setfattr) takes to show on the other side of
//! a live pair, beside a small file's content latency in the same run.
//! The target: no slower than the content (an attribute change travels as
//! one helper operation, no content transfer).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{get_xattr, is_root, set_xattr};
use crate::error::{io_ctx, Res};
use crate::fsops::{self, TempRoot, Wait};
use crate::procs::Tool;
use crate::scenarios::{self, Latency};

/// Longest one sample may take.
const SAMPLE_LIMIT: Duration = Duration::from_secs(10);

/// The figures of one run, all left to right.
#[derive(Debug)]
pub struct AttrLatency {
    /// A new 16-byte file (the `latency` scenario's measurement).
    pub content: Latency,
    pub chmod: Latency,
    /// `None` when not run as root (a chown to another user needs it).
    pub chown: Option<Latency>,
    /// `setfattr -n user.bench`.
    pub setfattr: Latency,
    pub notes: Vec<String>,
}

/// `n` samples: `change(i)` on the left file, timed until `arrived(i)` on
/// the right one; 30 ms apart, as the content latency's.
fn series(
    n: usize,
    what: &str,
    mut change: impl FnMut(usize) -> Res<()>,
    mut arrived: impl FnMut(usize) -> bool,
) -> Res<Latency> {
    let mut samples_ms = Vec::with_capacity(n);
    for i in 0..n {
        let since = Instant::now();
        change(i)?;
        let took = fsops::poll_until(
            Wait {
                since,
                limit: SAMPLE_LIMIT,
                every: Duration::from_micros(200),
            },
            || Ok(arrived(i)),
            || format!("{what} {i} did not show on the right within {SAMPLE_LIMIT:?}"),
        )?;
        samples_ms.push(took.as_secs_f64() * 1e3);
        sleep(Duration::from_millis(30));
    }
    Ok(Latency { samples_ms })
}

/// A mode for sample `i`, never the previous one's.
fn mode(i: usize) -> u32 {
    if i.is_multiple_of(2) {
        0o640
    } else {
        0o604
    }
}

/// Start twinsync on a fresh pair, measure, stop it.
pub fn run(root: &TempRoot, tool: &Tool, n: usize) -> Res<AttrLatency> {
    let pair = root.pair("twinsync-attr-latency")?;
    let mut running = tool.start(&pair)?;
    let r = measure(&pair, n).map_err(|f| running.explain(f));
    let log = running.log_path().to_path_buf();
    drop(running);
    let mut out = r?;
    let (lines, total) = scenarios::log_trouble(&log, 5);
    if total > 0 {
        out.notes.push(format!(
            "{total} warning/error line(s) in {}: {}",
            log.display(),
            lines.join(" | ")
        ));
    }
    Ok(out)
}

fn measure(pair: &fsops::Pair, n: usize) -> Res<AttrLatency> {
    scenarios::wait_ready(pair, true, None)?;
    let content = scenarios::latency(&pair.left, &pair.right, n, "lr")?;
    let (l, r) = (
        pair.left.join("attr-target"),
        pair.right.join("attr-target"),
    );
    fsops::write(&l, b"a synced file\n")?;
    fsops::poll_until(
        Wait {
            since: Instant::now(),
            limit: SAMPLE_LIMIT,
            every: Duration::from_millis(1),
        },
        || fsops::has_content(&r, b"a synced file\n"),
        || "attr-target never arrived".into(),
    )?;
    let meta = |p: &Path| fs::symlink_metadata(p).ok();
    let chmod = series(
        n,
        "chmod",
        |i| {
            io_ctx(
                fs::set_permissions(&l, fs::Permissions::from_mode(mode(i))),
                l.display(),
            )
        },
        |i| meta(&r).is_some_and(|m| m.mode() & 0o7777 == mode(i)),
    )?;
    let mut notes = Vec::new();
    let chown = if is_root() {
        let uid = |i: usize| 20_000 + i as u32;
        Some(series(
            n,
            "chown",
            |i| {
                io_ctx(
                    std::os::unix::fs::lchown(&l, Some(uid(i)), Some(uid(i))),
                    l.display(),
                )
            },
            |i| meta(&r).is_some_and(|m| m.uid() == uid(i) && m.gid() == uid(i)),
        )?)
    } else {
        notes.push("not root: no chown figure".into());
        None
    };
    let value = |i: usize| format!("v{i}").into_bytes();
    let setfattr = series(
        n,
        "setfattr",
        |i| set_xattr(&l, "user.bench", &value(i)),
        |i| get_xattr(&r, "user.bench").is_some_and(|v| v == value(i)),
    )?;
    Ok(AttrLatency {
        content,
        chmod,
        chown,
        setfattr,
        notes,
    })
}
