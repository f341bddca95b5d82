//! The conflict log: one JSON line per conflict kept, in the left replica's
//! `.twinsync/conflicts.log`.

use std::io::Write as _;

use tracing::warn;

use super::now;

/// The conflict log's mode when it is created, as a log's: its writer
/// writes, everyone reads.
const LOG_MODE: u32 = 0o644;

/// Append one JSON line per conflict to the left replica's
/// `.twinsync/conflicts.log`.
pub(super) fn record_conflicts(left_root: &std::path::Path, conflicts: &[crate::engine::Conflict]) {
    let path = left_root.join(".twinsync").join("conflicts.log");
    // Through `.twinsync/`'s descriptor, never a symlink (see the index).
    let opened = twinsync_helpers::ops::open_state_dir(left_root, b"").and_then(|dir| {
        rustix::fs::openat(
            &dir,
            c"conflicts.log",
            rustix::fs::OFlags::WRONLY
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::APPEND
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(LOG_MODE),
        )
        .map(std::fs::File::from)
        .map_err(std::io::Error::from)
    });
    let mut f = match opened {
        Ok(f) => f,
        Err(e) => {
            warn!("cannot write {}: {e}", path.display());
            return;
        }
    };
    for c in conflicts {
        let mut line = serde_json::json!({
            "time": now(),
            "path": c.path.to_string(),
            "winner": c.winner.to_string(),
            "kept_as": c.kept_as.to_string(),
            "reason": c.reason,
        })
        .to_string();
        line.push('\n');
        let _ = f.write_all(line.as_bytes());
        warn!(path = %c.path, kept_as = %c.kept_as, winner = %c.winner, "conflict: {}", c.reason);
    }
}
