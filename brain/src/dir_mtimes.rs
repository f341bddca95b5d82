//! Directory mtimes after a batch: a directory the batch wrote into (an
//! entry made, replaced, moved or removed in it) or made gets the mtime its
//! counterpart has on the other side, once its content is in place, so that
//! the replicas' directories agree as `rsync -a` would leave them.
//!
//! A directory's mtime is not part of its state (see
//! [`Sig::same_content`](twinsync_proto::Sig::same_content)): it changes
//! with every entry made or removed in it, and chasing it would be churn.
//! It is set here, by the same helper operation as any attribute, and the
//! answer's stamp makes the filter's report of it an echo. A directory the
//! batch wrote into on both sides gets the later of the two mtimes on both.
//! What the batch did not touch is left alone (a `touch` of a directory
//! alone does not travel), and so is the replica root (its `.twinsync/`
//! changes under it).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use tracing::debug;
use twinsync_proto::{Expect, Kind, Op, RelPath};

use crate::engine::{Applied, Report};
use crate::link::Link;
use crate::side::Side;

/// The directories a batch touched on each side.
#[derive(Debug, Default)]
pub struct Touched([BTreeSet<RelPath>; 2]);

impl Touched {
    /// `op` ran on `side`: its parents, and a directory it made, are touched.
    pub fn op(&mut self, side: Side, op: &Op) {
        if let Op::Move { from, .. } = op {
            self.entry(side, from);
        }
        if let Op::Mkdir { path, .. } = op {
            self.0[side].insert(path.clone());
        }
        self.entry(side, op.target());
    }

    /// An entry at `path` was made, replaced or removed on `side`.
    pub fn entry(&mut self, side: Side, path: &RelPath) {
        if let Some(p) = path.parent() {
            self.0[side].insert(p);
        }
    }
}

/// Give the directories the batch touched their counterpart's mtime (see
/// the module's documentation); the answers go into `report` like any
/// operation's. A directory gone or replaced meanwhile is skipped, and a
/// failure is only logged: the next batch there sets it again.
///
/// # Errors
/// When an agent fails or goes away.
pub async fn align(links: &[Arc<Link>; 2], touched: Touched, report: &mut Report) -> Result<()> {
    let paths: Vec<RelPath> = touched.0[0]
        .union(&touched.0[1])
        .filter(|p| !p.is_root())
        .cloned()
        .collect();
    if paths.is_empty() {
        return Ok(());
    }
    let (l, r) = tokio::join!(links[0].stat(paths.clone()), links[1].stat(paths.clone()));
    let mut ops: [Vec<Op>; 2] = Default::default();
    for ((path, l), r) in paths.into_iter().zip(l?).zip(r?) {
        let (Some(l), Some(r)) = (l, r) else { continue };
        if l.kind != Kind::Dir || r.kind != Kind::Dir || l.mtime_ns == r.mtime_ns {
            continue;
        }
        let want = match (touched.0[0].contains(&path), touched.0[1].contains(&path)) {
            (true, false) => r.mtime_ns,
            (false, true) => l.mtime_ns,
            _ => l.mtime_ns.max(r.mtime_ns),
        };
        for (side, now) in [(Side::Left, l.mtime_ns), (Side::Right, r.mtime_ns)] {
            if now != want {
                ops[side].push(Op::SetAttr {
                    path: path.clone(),
                    expect: Expect::Kind(Kind::Dir),
                    mode: None,
                    mtime_ns: Some(want),
                    owner: None,
                    xattrs: None,
                });
            }
        }
    }
    let [ops_l, ops_r] = ops;
    let (rl, rr) = tokio::join!(links[0].apply(ops_l.clone()), links[1].apply(ops_r.clone()));
    for (side, res, sent) in [(Side::Left, rl?, ops_l), (Side::Right, rr?, ops_r)] {
        for (r, op) in res.into_iter().zip(sent) {
            match r {
                Ok(sig) => report.applied[side].push(Applied::Done(op.target().clone(), sig)),
                Err(e) => debug!(%side, path = %op.target(), "directory mtime not set: {e}"),
            }
        }
    }
    Ok(())
}
