use super::*;
use twinsync_proto::Kind;

fn file(size: u64, mtime: i64) -> Sig {
    Sig {
        kind: Kind::File,
        size,
        mtime_ns: mtime,
        mode: 0o644,
        ino: 1,
    }
}
fn dir() -> Sig {
    Sig {
        kind: Kind::Dir,
        size: 0,
        mtime_ns: 5,
        mode: 0o755,
        ino: 2,
    }
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
fn synced(v: &[(&str, Sig)]) -> Engine {
    let mut e = engine();
    e.load_scan(Side::Left, entries(v));
    e.load_scan(Side::Right, entries(v));
    let b = e.plan(0);
    assert!(b.is_empty(), "{b:?}");
    e
}

#[test]
fn first_run_is_a_union() {
    let mut e = engine();
    e.load_scan(Side::Left, entries(&[("a", file(1, 10)), ("d", dir())]));
    e.load_scan(Side::Right, entries(&[("b", file(2, 10))]));
    let b = e.plan(0);
    assert_eq!(b.copies[1], vec![("a".into(), file(1, 10))]);
    assert_eq!(b.copies[0], vec![("b".into(), file(2, 10))]);
    assert_eq!(
        b.ops[1],
        vec![Op::Mkdir {
            path: "d".into(),
            mode: 0o755
        }]
    );
    assert!(b.ops[0].is_empty());
}

#[test]
fn echo_of_our_own_write_is_dropped() {
    let mut e = synced(&[]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "a".into(),
            sig: file(3, 100),
        },
    );
    let b = e.plan(0);
    assert_eq!(b.copies[1].len(), 1);
    let t = e.on_event(
        Side::Right,
        Event::Changed {
            path: "a".into(),
            sig: Sig {
                ino: 99,
                ..file(3, 100)
            },
        },
    );
    assert!(t.decision.starts_with("dropped: echo"), "{t:?}");
    assert!(!e.has_work());
}

#[test]
fn a_real_edit_after_an_echo_is_not_swallowed() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.on_event(
        Side::Right,
        Event::Changed {
            path: "a".into(),
            sig: file(1, 11),
        },
    );
    assert!(e.has_work());
}

#[test]
fn old_state_reported_during_an_inflight_write_is_an_echo() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "a".into(),
            sig: file(2, 20),
        },
    );
    let _b = e.plan(0);
    let t = e.on_event(
        Side::Right,
        Event::Changed {
            path: "a".into(),
            sig: file(1, 10),
        },
    );
    assert!(t.decision.contains("in-flight"), "{t:?}");
}

#[test]
fn move_is_replayed_without_copy() {
    let mut e = synced(&[("d", dir()), ("d/x", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Moved {
            from: "d".into(),
            to: "e".into(),
            sig: dir(),
        },
    );
    let b = e.plan(0);
    assert_eq!(
        b.ops[1],
        vec![Op::Move {
            from: "d".into(),
            to: "e".into()
        }]
    );
    assert!(b.copies.iter().all(Vec::is_empty));
    assert!(e.known().contains_key(&RelPath::from("e/x")));
    assert!(!e.known().contains_key(&RelPath::from("d/x")));
}

#[test]
fn concurrent_writes_keep_the_loser_as_a_conflict_copy() {
    let mut e = synced(&[("f", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "f".into(),
            sig: file(2, 30),
        },
    );
    e.on_event(
        Side::Right,
        Event::Changed {
            path: "f".into(),
            sig: file(3, 20),
        },
    );
    let b = e.plan(0);
    assert_eq!(b.conflicts.len(), 1);
    let c = &b.conflicts[0];
    assert_eq!(c.winner, Side::Left);
    assert_eq!(
        b.ops[1],
        vec![Op::Move {
            from: "f".into(),
            to: c.kept_as.clone()
        }]
    );
    assert_eq!(b.copies[1], vec![("f".into(), file(2, 30))]);
    assert_eq!(b.copies[0], vec![(c.kept_as.clone(), file(3, 20))]);
}

#[test]
fn deletion_on_one_side_trashes_on_the_other() {
    let mut e = synced(&[("f", file(1, 10))]);
    e.on_event(Side::Right, Event::Removed { path: "f".into() });
    let b = e.plan(0);
    assert_eq!(b.ops[0], vec![Op::Trash { path: "f".into() }]);
    assert!(e.known().is_empty());
    // The filter's report of our own trash move never comes (dance); had it,
    // it would be dropped.
    let t = e.on_event(Side::Left, Event::Removed { path: "f".into() });
    assert!(t.decision.starts_with("dropped"));
}

#[test]
fn deleted_dir_keeps_what_the_other_side_changed_inside() {
    let mut e = synced(&[("d", dir()), ("d/a", file(1, 10)), ("d/b", file(1, 10))]);
    e.on_event(Side::Left, Event::Removed { path: "d".into() });
    e.on_event(
        Side::Right,
        Event::Changed {
            path: "d/b".into(),
            sig: file(5, 50),
        },
    );
    let b = e.plan(0);
    assert!(b.ops[1].contains(&Op::Trash { path: "d/a".into() }));
    assert!(!b.ops[1].contains(&Op::Trash { path: "d".into() }));
    assert!(b.ops[0].contains(&Op::Mkdir {
        path: "d".into(),
        mode: 0o755
    }));
    assert_eq!(b.copies[0], vec![("d/b".into(), file(5, 50))]);
}

#[test]
fn modification_wins_over_deletion() {
    let mut e = synced(&[("f", file(1, 10))]);
    e.on_event(Side::Left, Event::Removed { path: "f".into() });
    e.on_event(
        Side::Right,
        Event::Changed {
            path: "f".into(),
            sig: file(2, 20),
        },
    );
    let b = e.plan(0);
    assert_eq!(b.copies[0], vec![("f".into(), file(2, 20))]);
    assert!(b.ops[1].is_empty());
}

#[test]
fn rescan_reconciles_deletions_without_resurrecting() {
    let mut e = synced(&[("a", file(1, 10)), ("b", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::RescanNeeded {
            reason: "overflow".into(),
        },
    );
    assert!(e.plan(0).rescan);
    e.load_scan(
        Side::Left,
        entries(&[("b", file(1, 10)), ("c", file(1, 10))]),
    );
    e.load_scan(
        Side::Right,
        entries(&[("a", file(1, 10)), ("b", file(1, 10))]),
    );
    let b = e.plan(0);
    assert_eq!(b.ops[1], vec![Op::Trash { path: "a".into() }]);
    assert_eq!(b.copies[1], vec![("c".into(), file(1, 10))]);
}

#[test]
fn chmod_only_sends_no_data() {
    let mut e = synced(&[("f", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "f".into(),
            sig: Sig {
                mode: 0o600,
                ..file(1, 10)
            },
        },
    );
    let b = e.plan(0);
    assert_eq!(
        b.ops[1],
        vec![Op::SetAttr {
            path: "f".into(),
            mode: Some(0o600),
            mtime_ns: None
        }]
    );
    assert!(b.copies[1].is_empty());
}

#[test]
fn save_by_rename_over_an_existing_file_copies_the_new_content() {
    // editor: write .f.swp, rename over f
    let mut e = synced(&[("f", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: ".f.tmp".into(),
            sig: file(2, 20),
        },
    );
    e.on_event(
        Side::Left,
        Event::Moved {
            from: ".f.tmp".into(),
            to: "f".into(),
            sig: file(2, 20),
        },
    );
    let b = e.plan(0);
    assert_eq!(b.copies[1], vec![("f".into(), file(2, 20))]);
    assert!(b.ops[1].is_empty());
}
