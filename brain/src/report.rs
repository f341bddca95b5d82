//! What the brain tells the person watching, at the default log level
//! (`-d 1`): one line per applied batch (direction, files, bytes), and,
//! once a merge is done and nothing waits, the line that says the pair is
//! live (`live: 28,143 entries in sync in 4.2 s; watching 1,203
//! directories`).

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::info;
use twinsync_proto::{Kind, RelPath};

use crate::execute::BatchStats;
use crate::human;
use crate::index::Known;

/// The line of one applied batch; `None` when it changed nothing.
#[must_use]
pub fn batch_line(stats: &BatchStats) -> Option<String> {
    let mut parts = Vec::new();
    // Index 1 is what arrived on the right.
    for (dst, arrow) in [(1, "L→R"), (0, "R→L")] {
        let (files, bytes, ops) = (stats.copied[dst], stats.bytes[dst], stats.ops[dst]);
        if files == 0 && ops == 0 {
            continue;
        }
        let mut p = format!("{arrow} ");
        if files > 0 {
            let s = if files == 1 { "" } else { "s" };
            p.push_str(&format!(
                "{} file{s} ({})",
                human::count(files),
                human::bytes(bytes)
            ));
        }
        if ops > 0 {
            if files > 0 {
                p.push_str(", ");
            }
            let s = if ops == 1 { "" } else { "s" };
            p.push_str(&format!("{} change{s}", human::count(ops)));
        }
        parts.push(p);
    }
    if stats.errors > 0 {
        let s = if stats.errors == 1 { "" } else { "s" };
        parts.push(format!("{} error{s}", stats.errors));
    }
    (!parts.is_empty()).then(|| format!("synced {}", parts.join("; ")))
}

/// Log the line of one applied batch.
pub fn batch(stats: &BatchStats) {
    if let Some(line) = batch_line(stats) {
        info!("{line}");
    }
}

/// The line that says the pair is live: the entries in sync, how long the
/// merge took, and the directories watched on each side (the root and
/// every directory synced).
#[must_use]
pub fn live_line(known: &BTreeMap<RelPath, Known>, took: Duration) -> String {
    let dirs = known.values().filter(|k| k.sig.kind == Kind::Dir).count() + 1;
    let (entries, es) = (known.len(), if known.len() == 1 { "y" } else { "ies" });
    let ds = if dirs == 1 { "y" } else { "ies" };
    format!(
        "live: {} entr{es} in sync in {}; watching {} director{ds}",
        human::count(entries as u64),
        human::duration(took.as_secs_f64()),
        human::count(dirs as u64)
    )
}

/// Log the line that says the pair is live.
pub fn live(known: &BTreeMap<RelPath, Known>, took: Duration) {
    info!("{}", live_line(known, took));
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinsync_proto::Sig;

    #[test]
    fn a_batch_reads_as_directions_files_and_bytes() {
        let stats = BatchStats {
            copied: [1, 3],
            bytes: [12, 3 << 20],
            ops: [0, 2],
            errors: 1,
            ..BatchStats::default()
        };
        assert_eq!(
            batch_line(&stats).unwrap(),
            "synced L→R 3 files (3.0 MiB), 2 changes; R→L 1 file (12 B); 1 error"
        );
        assert_eq!(batch_line(&BatchStats::default()), None);
        let moved = BatchStats {
            ops: [1, 0],
            ..BatchStats::default()
        };
        assert_eq!(batch_line(&moved).unwrap(), "synced R→L 1 change");
    }

    #[test]
    fn the_live_line_counts_entries_and_watched_directories() {
        let sig = |kind| Sig {
            kind,
            size: 0,
            mtime_ns: 5,
            mode: 0o755,
            ino: 2,
            ctime_ns: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            nlink: 1,
            allocated: 0,
            xattrs: Default::default(),
        };
        let mut known = BTreeMap::new();
        assert_eq!(
            live_line(&known, Duration::from_millis(4_200)),
            "live: 0 entries in sync in 4.2 s; watching 1 directory"
        );
        known.insert(RelPath::from("d"), Known::new(sig(Kind::Dir)));
        for i in 0..1_500 {
            known.insert(
                RelPath::from(format!("d/f{i}").as_str()),
                Known::new(sig(Kind::File)),
            );
        }
        assert_eq!(
            live_line(&known, Duration::from_secs(75)),
            "live: 1,501 entries in sync in 1 min; watching 2 directories"
        );
    }
}
