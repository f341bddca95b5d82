//! What an agent sends is data: the checks of its paths and of its read
//! answers, and the short form of a message for the trace log.

use twinsync_proto::{Event, FromAgent, RelPath, XattrScope};

use crate::side::Side;

/// True for a path an agent may report: relative, no `.` or `..`, not the
/// root, not in `.twinsync/`.
pub(super) fn valid_path(p: &RelPath) -> bool {
    p.is_safe() && !p.is_root() && !twinsync_helpers::ops::in_state_dir(p)
}

/// What an agent says is data: every path in a listing or an event must be
/// one it may report (the root only where "this could not be read" is meant).
pub(super) fn check_paths(m: &FromAgent) -> std::result::Result<(), String> {
    let bad = |p: &RelPath| format!("the agent reported an unsafe path {p}: link dropped");
    let root_ok = |p: &RelPath| p.is_root() || valid_path(p);
    match m {
        FromAgent::ScanChunk {
            entries,
            unreadable,
            ..
        } => {
            if let Some(e) = entries.iter().find(|e| !valid_path(&e.path)) {
                return Err(bad(&e.path));
            }
            if let Some(p) = unreadable.iter().find(|p| !root_ok(p)) {
                return Err(bad(p));
            }
        }
        FromAgent::Events(evs) => {
            for ev in evs {
                match ev {
                    Event::Changed { path, .. } | Event::Removed { path } => {
                        if !valid_path(path) {
                            return Err(bad(path));
                        }
                    }
                    Event::Moved { from, to, .. } => {
                        if let Some(p) = [from, to].into_iter().find(|p| !valid_path(p)) {
                            return Err(bad(p));
                        }
                    }
                    Event::Error { path, .. } => {
                        if !root_ok(path) {
                            return Err(bad(path));
                        }
                    }
                    Event::RescanNeeded { .. } | Event::RootGone | Event::Mark { .. } => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A message's `Debug` form cut to a line, for the trace log (`-d 3`).
pub(super) fn brief(x: &impl std::fmt::Debug) -> String {
    let mut s = format!("{x:?}");
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A read answer, checked against what was asked: a file for another path,
/// with data segments out of order or beyond the size its own signature
/// says, or not a regular file, is taken for an unreadable one (never
/// written anywhere).
pub(super) fn check_read(
    side: Side,
    asked: &[RelPath],
    got: Vec<Result<twinsync_proto::FileData, String>>,
) -> Vec<Result<twinsync_proto::FileData, String>> {
    got.into_iter()
        .zip(asked)
        .map(|(r, p)| {
            let f = r?;
            if &f.path != p
                || f.sig.kind != twinsync_proto::Kind::File
                || !f.extents_valid()
                || f.xattrs.scope != XattrScope::current()
                || !f.xattrs.is_valid()
            {
                return Err(format!(
                    "the {side} agent answered a read of {p} with {} ({} bytes of data, {:?}): ignored",
                    f.path,
                    f.data_len(),
                    f.sig.kind
                ));
            }
            Ok(f)
        })
        .collect()
}
