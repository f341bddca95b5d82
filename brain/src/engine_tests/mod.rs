//! The engine's unit tests, one file per topic, and the signatures and
//! helpers they share.

use super::*;
use twinsync_proto::Kind;

fn file(size: u64, mtime: i64) -> Sig {
    Sig {
        kind: Kind::File,
        size,
        mtime_ns: mtime,
        mode: 0o644,
        ino: 1,
        ctime_ns: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: Default::default(),
    }
}

fn dir() -> Sig {
    Sig {
        kind: Kind::Dir,
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
    }
}

/// A trash op, whatever it expects to find.
fn trash(path: RelPath) -> Op {
    Op::Trash {
        path,
        expect: Expect::Any,
    }
}

/// The ops with their expectations and planned extended attributes left
/// out (compared by `trash`; see
/// `extended_attributes_are_read_only_where_the_source_has_some`).
fn strip(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .map(|o| match o {
            Op::Trash { path, .. } => trash(path.clone()),
            Op::Move { from, to, .. } => Op::Move {
                from: from.clone(),
                source: Expect::Any,
                to: to.clone(),
                expect: Expect::Any,
            },
            Op::SetAttr {
                path,
                mode,
                mtime_ns,
                owner,
                ..
            } => Op::SetAttr {
                path: path.clone(),
                expect: Expect::Any,
                mode: *mode,
                mtime_ns: *mtime_ns,
                owner: *owner,
                xattrs: None,
            },
            Op::Mkdir {
                path, mode, owner, ..
            } => Op::Mkdir {
                path: path.clone(),
                mode: *mode,
                owner: *owner,
                xattrs: None,
            },
            o => o.clone(),
        })
        .collect()
}

/// The copies as (path, version) pairs.
fn pairs(c: &[Copy]) -> Vec<(RelPath, Sig)> {
    c.iter().map(|c| (c.path.clone(), c.sig)).collect()
}

fn engine() -> Engine {
    Engine::new(Excludes::default(), Policy::default())
}

fn entries(v: &[(&str, Sig)]) -> Vec<Entry> {
    v.iter()
        .map(|(p, s)| Entry {
            path: (*p).into(),
            sig: *s,
        })
        .collect()
}

/// Side `side` reports `path` changed to `sig`.
fn changed(e: &mut Engine, side: Side, path: &str, sig: Sig) -> Trace {
    e.on_event(
        side,
        Event::Changed {
            path: path.into(),
            sig,
        },
    )
}

fn synced(v: &[(&str, Sig)]) -> Engine {
    let mut e = engine();
    e.load_scan(Side::Left, entries(v));
    e.load_scan(Side::Right, entries(v));
    let b = e.plan(0);
    assert!(b.is_empty(), "{b:?}");
    e
}

/// `d` moved to `e` on the left: the batch is that move on the right, no copy.
fn assert_move_d_to_e_replayed(e: &mut Engine) {
    moved(e, Side::Left, "d", "e", dir());
    let b = e.plan(0);
    assert_eq!(
        strip(&b.ops[1]),
        vec![Op::Move {
            from: "d".into(),
            source: Expect::Any,
            to: "e".into(),
            expect: Expect::Any,
        }]
    );
    assert!(b.copies.iter().all(Vec::is_empty));
}

fn moved(e: &mut Engine, side: Side, from: &str, to: &str, sig: Sig) -> Trace {
    e.on_event(
        side,
        Event::Moved {
            from: from.into(),
            to: to.into(),
            sig,
        },
    )
}

// The tests, by topic.
mod basics;
mod conflicts;
mod crash;
mod echoes;
mod listing;
mod moves;
