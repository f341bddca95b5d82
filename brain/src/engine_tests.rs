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

/// An attribute-only change of an entry whose signature says it has no
/// extended attributes plans the empty list (nothing to read on the source
/// side: one round trip less); one that has some leaves them to be read.
#[test]
fn extended_attributes_are_read_only_where_the_source_has_some() {
    let mut e = synced(&[("f", file(1, 10)), ("g", file(1, 10))]);
    let none = Sig {
        mode: 0o600,
        ..file(1, 10)
    };
    let some = Sig {
        xattrs: twinsync_proto::XattrDigest { owner: 7, root: 7 },
        ..none
    };
    changed(&mut e, Side::Left, "f", none);
    changed(&mut e, Side::Left, "g", some);
    let b = e.plan(0);
    let xattrs: Vec<_> = b.ops[1]
        .iter()
        .map(|o| match o {
            Op::SetAttr { path, xattrs, .. } => (path.to_string(), xattrs.clone()),
            o => panic!("{o:?}"),
        })
        .collect();
    let empty = twinsync_proto::Xattrs {
        scope: twinsync_proto::XattrScope::current(),
        list: Vec::new(),
    };
    assert_eq!(
        xattrs,
        vec![("f".to_string(), Some(empty)), ("g".to_string(), None)]
    );
}

#[test]
fn first_run_is_a_union() {
    let mut e = engine();
    e.load_scan(Side::Left, entries(&[("a", file(1, 10)), ("d", dir())]));
    e.load_scan(Side::Right, entries(&[("b", file(2, 10))]));
    let b = e.plan(0);
    assert_eq!(pairs(&b.copies[1]), vec![("a".into(), file(1, 10))]);
    assert_eq!(pairs(&b.copies[0]), vec![("b".into(), file(2, 10))]);
    assert_eq!(
        strip(&b.ops[1]),
        vec![Op::Mkdir {
            path: "d".into(),
            mode: 0o755,
            owner: None,
            xattrs: None,
        }]
    );
    assert!(strip(&b.ops[0]).is_empty());
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
    assert_eq!(pairs(&b.copies[1]).len(), 1);
    let ours = Sig {
        ino: 99,
        ..file(3, 100)
    };
    // While the batch runs, the report of its write is held: only the
    // helper's answer (the stamp of what it installed) tells it from a
    // user's write of the same size and mtime.
    let t = changed(&mut e, Side::Right, "a", ours);
    assert!(t.verdict == Verdict::Held, "{t:?}");
    let mut r = Report::default();
    r.applied[1].push(Applied::Done("a".into(), Some(ours)));
    let traces = e.complete(r);
    assert!(traces.iter().all(Trace::is_echo), "{traces:?}");
    assert!(!e.has_work());
    // Reported again later: still an echo.
    let t = changed(&mut e, Side::Right, "a", ours);
    assert!(t.is_echo(), "{t:?}");
}

#[test]
fn a_same_size_same_mtime_write_during_our_copy_is_not_an_echo() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "a".into(),
            sig: file(3, 100),
        },
    );
    let b = e.plan(0);
    assert_eq!(pairs(&b.copies[1]).len(), 1);
    let ours = Sig {
        ino: 99,
        ctime_ns: 5,
        ..file(3, 100)
    };
    let users = Sig {
        ino: 77,
        ctime_ns: 6,
        ..file(3, 100)
    };
    // Our install, then the user's same-size, same-mtime write over it.
    for sig in [ours, users] {
        e.on_event(
            Side::Right,
            Event::Changed {
                path: "a".into(),
                sig,
            },
        );
    }
    let mut r = Report::default();
    r.applied[1].push(Applied::Done("a".into(), Some(ours)));
    e.complete(r);
    assert!(e.has_work());
    assert_eq!(e.to_compare(), vec![RelPath::from("a")]);
    // Its bytes differ from the left's: a change, copied back.
    e.compared(vec![("a".into(), Some([1; 32]), Some([2; 32]))]);
    let b = e.plan(1);
    assert_eq!(pairs(&b.copies[0]), vec![("a".into(), users)]);
}

/// On a kernel whose ctime is coarse (before Linux 6.13), a user's
/// same-size, same-mtime write right after our install, in place and in the
/// same tick, shows the very stamp the helper answered. Once the side's mark
/// says every report of our write is in, such a report is the user's: its
/// bytes are compared, not dropped as an echo.
#[test]
fn a_report_after_the_mark_with_our_stamp_is_compared_not_dropped() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.set_ordered(true);
    changed(&mut e, Side::Left, "a", file(3, 100));
    let b = e.plan(0);
    assert_eq!(pairs(&b.copies[1]).len(), 1);
    let ours = Sig {
        ino: 99,
        ctime_ns: 5,
        ..file(3, 100)
    };
    let mut r = Report::default();
    r.applied[1].push(Applied::Done("a".into(), Some(ours)));
    e.complete(r);
    // The echo of the install, before the mark: dropped.
    assert!(changed(&mut e, Side::Right, "a", ours).is_echo());
    assert!(e.wants_mark(Side::Right));
    assert!(!e.wants_mark(Side::Left));
    e.marked(Side::Right, Some(1));
    e.on_event(Side::Right, Event::Mark { n: 1 });
    // The user's write in the same tick: the same stamp, after the mark.
    let t = changed(&mut e, Side::Right, "a", ours);
    assert!(!t.is_echo(), "{t:?}");
    assert!(e.has_work());
    let _ = e.plan(1);
    assert_eq!(e.to_compare(), vec![RelPath::from("a")]);
    e.compared(vec![("a".into(), Some([1; 32]), Some([2; 32]))]);
    let b = e.plan(2);
    assert_eq!(pairs(&b.copies[0]), vec![("a".into(), ours)]);
}

/// Campaign seed 81000010: a mark asked after a batch that wrote `a` is
/// reported while the next batch writes `a` again (and that copy is not
/// answered as planned: the source changed). The report of the second
/// write, held during it, is an echo: it is not after that write's mark.
#[test]
fn a_mark_of_an_earlier_write_does_not_settle_the_next_one() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.set_ordered(true);
    changed(&mut e, Side::Left, "a", file(3, 100));
    let _ = e.plan(0);
    let first = Sig {
        ino: 99,
        ctime_ns: 5,
        ..file(3, 100)
    };
    let mut r = Report::default();
    r.applied[1].push(Applied::Done("a".into(), Some(first)));
    e.complete(r);
    assert!(changed(&mut e, Side::Right, "a", first).is_echo());
    e.marked(Side::Right, Some(1));
    // The left changes `a` again; the next batch copies it.
    changed(&mut e, Side::Left, "a", file(4, 200));
    let b = e.plan(1);
    assert_eq!(pairs(&b.copies[1]).len(), 1);
    // Mark 1 is reported while that batch runs, then its write's echo:
    // the left changed `a` again meanwhile, and its newer version arrived.
    e.on_event(Side::Right, Event::Mark { n: 1 });
    let newer = file(5, 300);
    changed(&mut e, Side::Left, "a", newer);
    let second = Sig {
        ino: 98,
        ctime_ns: 7,
        ..newer
    };
    let t = changed(&mut e, Side::Right, "a", second);
    assert!(t.verdict == Verdict::Held, "{t:?}");
    let mut r = Report::default();
    r.missed[1].push(Copied {
        path: "a".into(),
        src: Some(newer),
        dst: Some(second),
        installed: true,
    });
    let traces = e.complete(r);
    assert!(traces.iter().all(Trace::is_echo), "{traces:?}");
    assert!(!e.pending_paths().contains(&(Side::Right, "a".into())));
}

/// Without a mark (a helper that makes none), the same report is taken for
/// an echo, as the stamp says.
#[test]
fn without_a_mark_a_report_with_our_stamp_is_an_echo() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.set_ordered(true);
    changed(&mut e, Side::Left, "a", file(3, 100));
    let _ = e.plan(0);
    let ours = Sig {
        ino: 99,
        ctime_ns: 5,
        ..file(3, 100)
    };
    let mut r = Report::default();
    r.applied[1].push(Applied::Done("a".into(), Some(ours)));
    e.complete(r);
    assert!(changed(&mut e, Side::Right, "a", ours).is_echo());
    e.marked(Side::Right, None);
    e.on_event(Side::Right, Event::Mark { n: 1 });
    assert!(changed(&mut e, Side::Right, "a", ours).is_echo());
    assert!(!e.has_work());
}

#[test]
fn a_refused_install_becomes_a_conflict() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "a".into(),
            sig: file(3, 100),
        },
    );
    let b = e.plan(0);
    assert_eq!(b.copies[1][0].expect, Expect::Version(file(1, 10).stamp()));
    let users = Sig {
        ino: 77,
        ..file(4, 50)
    };
    let mut r = Report::default();
    r.applied[1].push(Applied::Refused("a".into(), Some(users)));
    e.complete(r);
    let b = e.plan(1);
    assert_eq!(b.conflicts.len(), 1, "{b:?}");
    assert_eq!(b.conflicts[0].winner, Side::Left);
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
    assert!(t.is_echo() && t.reason.contains("in-flight"), "{t:?}");
}

/// `d` moved to `e` on the left: the batch is that move on the right, no copy.
fn assert_move_d_to_e_replayed(e: &mut Engine) {
    moved(e, Side::Left, "d", "e", dir());
    let b = e.plan(0);
    assert_eq!(
        strip(&b.ops[1]),
        vec![Op::Move {
            from: "d".into(),
            to: "e".into(),
            expect: Expect::Any,
        }]
    );
    assert!(b.copies.iter().all(Vec::is_empty));
}

#[test]
fn move_is_replayed_without_copy() {
    let mut e = synced(&[("d", dir()), ("d/x", file(1, 10))]);
    assert_move_d_to_e_replayed(&mut e);
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
        strip(&b.ops[1]),
        vec![Op::Move {
            from: "f".into(),
            to: c.kept_as.clone(),
            expect: Expect::Any,
        }]
    );
    assert_eq!(pairs(&b.copies[1]), vec![("f".into(), file(2, 30))]);
    assert_eq!(pairs(&b.copies[0]), vec![(c.kept_as.clone(), file(3, 20))]);
}

#[test]
fn deletion_on_one_side_trashes_on_the_other() {
    let mut e = synced(&[("f", file(1, 10))]);
    e.on_event(Side::Right, Event::Removed { path: "f".into() });
    let b = e.plan(0);
    assert_eq!(strip(&b.ops[0]), vec![trash("f".into())]);
    assert!(e.known().is_empty());
    // The filter's report of our own trash move never comes (dance); had it,
    // it would be dropped (once the batch is done: a report at a path it
    // trashes waits for the time the entry left).
    let t = e.on_event(Side::Left, Event::Removed { path: "f".into() });
    assert!(t.verdict == Verdict::Held);
    let mut r = Report::default();
    r.applied[0].push(Applied::Removed("f".into(), Some(file(1, 10))));
    let t = e.complete(r);
    assert!(
        matches!(t[0].verdict, Verdict::Dropped | Verdict::Echo),
        "{t:?}"
    );
    assert!(!e.has_work());
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
    assert!(strip(&b.ops[1]).contains(&trash("d/a".into())));
    assert!(!b.ops[1].contains(&trash("d".into())));
    assert!(strip(&b.ops[0]).contains(&Op::Mkdir {
        path: "d".into(),
        mode: 0o755,
        owner: None,
        xattrs: None,
    }));
    assert_eq!(pairs(&b.copies[0]), vec![("d/b".into(), file(5, 50))]);
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
    assert_eq!(pairs(&b.copies[0]), vec![("f".into(), file(2, 20))]);
    assert!(strip(&b.ops[1]).is_empty());
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
    assert_eq!(strip(&b.ops[1]), vec![trash("a".into())]);
    assert_eq!(pairs(&b.copies[1]), vec![("c".into(), file(1, 10))]);
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
        strip(&b.ops[1]),
        vec![Op::SetAttr {
            path: "f".into(),
            mode: Some(0o600),
            mtime_ns: None,
            owner: None,
            xattrs: None,
        }]
    );
    assert!(pairs(&b.copies[1]).is_empty());
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
    assert_eq!(pairs(&b.copies[1]), vec![("f".into(), file(2, 20))]);
    assert!(strip(&b.ops[1]).is_empty());
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

fn origin(e: &Engine, side: Side, path: &str) -> Option<String> {
    let p = RelPath::from(path);
    e.pending[side].origin(&p).map(|o| o.as_ref().to_string())
}

#[test]
fn the_view_undoes_pending_moves_last_first() {
    let mut e = synced(&[
        ("a", dir()),
        ("a/x", file(1, 10)),
        ("b", file(2, 10)),
        ("c", file(3, 10)),
    ]);
    moved(&mut e, Side::Left, "a", "d", dir());
    moved(&mut e, Side::Left, "c", "a", file(3, 10));
    // d is the old a, a is the old c; what a had is not at a any more.
    assert_eq!(origin(&e, Side::Left, "d").as_deref(), Some("a"));
    assert_eq!(origin(&e, Side::Left, "d/x").as_deref(), Some("a/x"));
    assert_eq!(origin(&e, Side::Left, "a").as_deref(), Some("c"));
    assert_eq!(origin(&e, Side::Left, "a/x").as_deref(), Some("c/x"));
    assert_eq!(origin(&e, Side::Left, "c"), None);
    assert_eq!(origin(&e, Side::Left, "b").as_deref(), Some("b"));
    // The other side's view is the index.
    assert_eq!(origin(&e, Side::Right, "a/x").as_deref(), Some("a/x"));
    let l = Side::Left.idx();
    assert_eq!(
        e.view_get(l, &"d/x".into()).map(|k| k.sig),
        Some(file(1, 10))
    );
    assert_eq!(e.view_get(l, &"a".into()).map(|k| k.sig), Some(file(3, 10)));
    assert_eq!(e.view_get(l, &"a/x".into()).map(|k| k.sig), None);
    assert_eq!(e.view_get(l, &"c".into()).map(|k| k.sig), None);
    assert!(e.view_any_within(l, &"d".into()));
    assert!(!e.view_any_within(l, &"c".into()));
    assert_eq!(
        e.view_keys_within(l, &"d".into()),
        vec![RelPath::from("d"), RelPath::from("d/x")]
    );
    assert_eq!(e.view_keys_within(l, &"a".into()), vec![RelPath::from("a")]);
    assert!(e.view_keys_within(l, &"c".into()).is_empty());
    // Nothing of this is in the index yet.
    assert!(e.known().contains_key(&RelPath::from("a/x")));
}

#[test]
fn the_view_counts_what_was_moved_into_a_directory() {
    let mut e = synced(&[("d", dir()), ("f", file(1, 10))]);
    moved(&mut e, Side::Left, "f", "d/g", file(1, 10));
    let l = Side::Left.idx();
    assert!(e.view_any_within(l, &"d".into()));
    assert!(e.view_any_within(l, &"d/g".into()));
    assert!(!e.view_any_within(l, &"f".into()));
    assert_eq!(
        e.view_get(l, &"d/g".into()).map(|k| k.sig),
        Some(file(1, 10))
    );
}

#[test]
fn a_change_of_a_moved_entry_is_judged_against_the_view() {
    let mut e = synced(&[("a", file(1, 10)), ("b", file(2, 20))]);
    moved(&mut e, Side::Left, "a", "c", file(1, 10));
    // What a had, reported at its new place: nothing new.
    let t = e.on_event(
        Side::Left,
        Event::Changed {
            path: "c".into(),
            sig: file(1, 10),
        },
    );
    assert!(t.is_echo(), "{t:?}");
    // A new a is new, even with the content the index has for a.
    let t = e.on_event(
        Side::Left,
        Event::Changed {
            path: "a".into(),
            sig: file(1, 10),
        },
    );
    assert!(
        !matches!(t.verdict, Verdict::Dropped | Verdict::Echo),
        "{t:?}"
    );
}

#[test]
fn a_move_then_a_delete_of_the_moved_entry_trashes_it_on_the_other_side() {
    let mut e = synced(&[("a", file(1, 10))]);
    moved(&mut e, Side::Left, "a", "b", file(1, 10));
    let t = e.on_event(Side::Left, Event::Removed { path: "b".into() });
    assert_eq!(t.verdict, Verdict::Queued);
    let b = e.plan(0);
    // The move is not replayed (its destination is gone): its source is
    // trashed.
    assert_eq!(strip(&b.ops[1]), vec![trash("a".into())]);
    assert!(e.known().is_empty());
}

#[test]
fn a_deletion_inside_a_moved_directory_follows_the_move() {
    let mut e = synced(&[("a", dir()), ("a/x", file(1, 10)), ("a/y", file(2, 10))]);
    moved(&mut e, Side::Left, "a", "c", dir());
    e.on_event(Side::Left, Event::Removed { path: "c/x".into() });
    let b = e.plan(0);
    assert_eq!(
        strip(&b.ops[1]),
        vec![
            Op::Move {
                from: "a".into(),
                to: "c".into(),
                expect: Expect::Any,
            },
            trash("c/x".into())
        ]
    );
    let keys: Vec<String> = e.known().keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["c", "c/y"]);
}

#[test]
fn a_chain_of_moves_is_replayed_as_one() {
    let mut e = synced(&[("a", file(1, 10)), ("b", file(2, 10))]);
    // a replaces b, then moves on to c: the other side's b goes too.
    moved(&mut e, Side::Left, "a", "b", file(1, 10));
    moved(&mut e, Side::Left, "b", "c", file(1, 10));
    let b = e.plan(0);
    assert_eq!(
        strip(&b.ops[1]),
        vec![
            Op::Move {
                from: "a".into(),
                to: "c".into(),
                expect: Expect::Any,
            },
            trash("b".into())
        ]
    );
    assert!(!b.rescan);
    let keys: Vec<String> = e.known().keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["c"]);
}

#[test]
fn a_move_into_a_directory_that_moves_later_is_retargeted() {
    let mut e = synced(&[("a", dir()), ("c", file(1, 10))]);
    changed(&mut e, Side::Left, "a/n", dir());
    moved(&mut e, Side::Left, "c", "a/n/c", file(1, 10));
    moved(&mut e, Side::Left, "a", "b", dir());
    let b = e.plan(0);
    assert!(!b.rescan);
    // The directory moves first, then the file goes where it is now, into
    // the new directory made first (not by the move).
    assert_eq!(
        strip(&b.ops[1]),
        vec![
            Op::Move {
                from: "a".into(),
                to: "b".into(),
                expect: Expect::Any,
            },
            Op::Mkdir {
                path: "b/n".into(),
                mode: 0o755,
                owner: None,
                xattrs: None,
            },
            Op::Move {
                from: "c".into(),
                to: "b/n/c".into(),
                expect: Expect::Any,
            },
        ]
    );
}

#[test]
fn moves_onto_the_same_name_on_both_sides_rescan_without_acting() {
    let mut e = synced(&[("a", file(1, 10)), ("b", file(2, 10)), ("c", file(3, 10))]);
    moved(&mut e, Side::Left, "b", "a", file(2, 10));
    moved(&mut e, Side::Right, "c", "a", file(3, 10));
    let before = e.known().clone();
    let b = e.plan(0);
    assert!(b.rescan);
    assert!(b.ops.iter().all(Vec::is_empty), "{b:?}");
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    // The index is as it was: the rescan merges from there.
    assert_eq!(*e.known(), before);
}

#[test]
fn a_move_into_what_the_other_side_made_a_file_rescans() {
    let mut e = synced(&[("a", file(1, 10))]);
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "c".into(),
            sig: file(2, 20),
        },
    );
    changed(&mut e, Side::Right, "c", dir());
    moved(&mut e, Side::Right, "a", "c/a", file(1, 10));
    let b = e.plan(0);
    assert!(b.rescan);
    assert!(b.ops.iter().all(Vec::is_empty), "{b:?}");
}

#[test]
fn a_directory_replaced_by_a_file_keeps_what_the_other_side_put_inside() {
    let mut e = synced(&[("a", dir())]);
    e.on_event(Side::Left, Event::Removed { path: "a".into() });
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "a".into(),
            sig: file(1, 10),
        },
    );
    e.on_event(
        Side::Right,
        Event::Changed {
            path: "a/b".into(),
            sig: file(2, 20),
        },
    );
    let b = e.plan(100);
    // A conflict: the directory is kept aside, not trashed.
    assert_eq!(b.conflicts.len(), 1, "{b:?}");
    assert!(!b.ops[1].contains(&trash("a".into())), "{b:?}");
    assert!(
        pairs(&b.copies[0])
            .iter()
            .all(|(p, _)| !p.is_within(&"a".into())),
        "{b:?}"
    );
}

#[test]
fn a_source_made_and_removed_again_still_conflicts_with_a_move_out_of_it() {
    let mut e = synced(&[("a", dir()), ("b", dir()), ("b/a", file(1, 10))]);
    // Left moves the file out of b; right moves b, then makes and removes
    // a new b.
    moved(&mut e, Side::Left, "b/a", "a/b", file(1, 10));
    moved(&mut e, Side::Right, "b", "a/a", dir());
    e.on_event(
        Side::Right,
        Event::Changed {
            path: "b".into(),
            sig: file(2, 20),
        },
    );
    e.on_event(Side::Right, Event::Removed { path: "b".into() });
    let b = e.plan(0);
    assert!(b.rescan, "{b:?}");
    assert!(b.ops.iter().all(Vec::is_empty), "{b:?}");
}

#[test]
fn a_reported_move_of_our_own_replay_is_an_echo() {
    // The filter finds a directory the batch moved in by its watch, when it
    // scans a new directory above it, and reports that as a move.
    let mut e = synced(&[("d", dir()), ("d/s", dir()), ("d/s/f", file(1, 10))]);
    moved(&mut e, Side::Left, "d", "x/d2", dir());
    changed(&mut e, Side::Left, "x", dir());
    let b = e.plan(0);
    assert!(!b.rescan);
    let t = moved(&mut e, Side::Right, "d", "x/d2", dir());
    assert!(t.verdict == Verdict::Held, "{t:?}");
    let mut r = Report::default();
    r.applied[1].push(Applied::Done("x/d2".into(), Some(dir())));
    let traces = e.complete(r);
    assert!(traces.iter().all(Trace::is_echo), "{traces:?}");
    assert!(!e.has_work());
}

#[test]
fn a_new_directory_renamed_over_an_emptied_one_removes_what_was_in_it() {
    let mut e = synced(&[("b", dir()), ("b/c", dir())]);
    e.on_event(Side::Left, Event::Removed { path: "b/c".into() });
    changed(&mut e, Side::Left, "a", dir());
    moved(&mut e, Side::Left, "a", "b", dir());
    let b = e.plan(0);
    assert_eq!(strip(&b.ops[1]), vec![trash("b/c".into())]);
}

#[test]
fn a_move_into_a_directory_the_other_side_moved_away_rescans_even_if_remade() {
    let mut e = synced(&[("a", dir()), ("b", dir())]);
    moved(&mut e, Side::Left, "b", "c", dir());
    // A new b comes and goes again (moved away, then removed).
    e.on_event(
        Side::Left,
        Event::Changed {
            path: "b".into(),
            sig: file(3, 30),
        },
    );
    moved(&mut e, Side::Left, "b", "a/a", file(3, 30));
    e.on_event(Side::Left, Event::Removed { path: "a/a".into() });
    moved(&mut e, Side::Right, "a", "b/a", dir());
    let b = e.plan(0);
    assert!(b.rescan, "{b:?}");
    assert!(b.ops.iter().all(Vec::is_empty), "{b:?}");
}

#[test]
fn a_directory_losing_a_conflict_kept_in_the_state_dir_takes_its_contents_along() {
    let mut e = Engine::new(
        Excludes::default(),
        Policy {
            conflicts_beside: false,
            ..Policy::default()
        },
    );
    e.load_scan(
        Side::Left,
        entries(&[(
            "b",
            Sig {
                kind: Kind::Symlink,
                size: 1,
                mtime_ns: 30,
                mode: 0o777,
                ino: 3,
                ctime_ns: 3,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 1,
                allocated: 0,
                xattrs: Default::default(),
            },
        )]),
    );
    e.load_scan(Side::Right, entries(&[("b", dir()), ("b/a", file(1, 10))]));
    let b = e.plan(0);
    assert_eq!(
        strip(&b.ops[1]),
        vec![Op::KeepConflict { path: "b".into() }],
        "{b:?}"
    );
    // What was in the losing directory went with it: nothing of it is copied.
    assert!(pairs(&b.copies[0]).is_empty(), "{b:?}");
    assert!(!e.known().contains_key(&RelPath::from("b/a")));
}

#[test]
fn listing_streams_in_chunks_and_tells_deletions_between_entries() {
    let mut e = synced(&[
        ("a", file(1, 10)),
        ("b", file(1, 10)),
        ("c", dir()),
        ("c/x", file(1, 10)),
        ("d", file(1, 10)),
    ]);
    // Left lost "b" and "c/x" (told by what comes after them) and "d"
    // (after the last entry); the right is unchanged.
    e.begin_scan(Side::Left);
    e.scan_chunk(Side::Left, entries(&[("a", file(1, 10))]), vec![])
        .unwrap();
    e.scan_chunk(Side::Left, entries(&[("c", dir())]), vec![])
        .unwrap();
    assert_eq!(e.end_scan(Side::Left), 2);
    let v = [
        ("a", file(1, 10)),
        ("b", file(1, 10)),
        ("c", dir()),
        ("c/x", file(1, 10)),
        ("d", file(1, 10)),
    ];
    e.load_scan(Side::Right, entries(&v));
    assert_eq!(e.pending_deletions(), [0, 3]);
    let b = e.plan(0);
    assert_eq!(
        strip(&b.ops[1]),
        vec![trash("b".into()), trash("c/x".into()), trash("d".into()),]
    );
}

#[test]
fn an_unreadable_directory_is_not_taken_for_deleted() {
    let v = [
        ("a", file(1, 10)),
        ("p", dir()),
        ("p/x", file(1, 10)),
        ("p/y", file(1, 10)),
        ("q", file(1, 10)),
    ];
    let mut e = synced(&v);
    e.begin_scan(Side::Left);
    e.scan_chunk(
        Side::Left,
        entries(&[("a", file(1, 10)), ("p", dir())]),
        vec!["p".into()],
    )
    .unwrap();
    e.scan_chunk(Side::Left, entries(&[("q", file(1, 10))]), vec![])
        .unwrap();
    e.end_scan(Side::Left);
    e.load_scan(Side::Right, entries(&v));
    assert_eq!(e.pending_deletions(), [0, 0]);
    assert!(e.plan(0).is_empty());
}

#[test]
fn a_listing_out_of_order_is_refused() {
    let mut e = engine();
    e.begin_scan(Side::Left);
    e.scan_chunk(Side::Left, entries(&[("b", file(1, 10))]), vec![])
        .unwrap();
    let err = e
        .scan_chunk(Side::Left, entries(&[("a", file(1, 10))]), vec![])
        .unwrap_err();
    assert!(err.contains("out of order"), "{err}");
}

#[test]
fn what_both_listings_show_the_same_goes_to_the_index_at_once() {
    let mut e = engine();
    let v = [("a", file(1, 10)), ("d", dir()), ("d/b", file(2, 10))];
    e.begin_scan(Side::Left);
    e.begin_scan(Side::Right);
    // Interleaved, as the two agents' chunks arrive.
    e.scan_chunk(Side::Left, entries(&v[..2]), vec![]).unwrap();
    e.scan_chunk(Side::Right, entries(&v), vec![]).unwrap();
    e.scan_chunk(Side::Left, entries(&v[2..]), vec![]).unwrap();
    e.end_scan(Side::Left);
    e.end_scan(Side::Right);
    // The directory is in sync; files of the same size and mtime may still
    // hold other bytes: their content is compared first.
    assert_eq!(e.known().len(), 1);
    assert_eq!(e.to_compare(), vec![RelPath::from("a"), "d/b".into()]);
    e.compared(vec![
        ("a".into(), Some([1; 32]), Some([1; 32])),
        ("d/b".into(), Some([2; 32]), Some([2; 32])),
    ]);
    assert_eq!(e.known().len(), 3);
    assert!(!e.has_work());
}

#[test]
fn a_big_merge_runs_in_batches_that_together_do_it_all() {
    let mut e = engine();
    let n = MIN_BATCH * 2 + 10;
    let names: Vec<String> = (0..n).map(|i| format!("f{i:06}")).collect();
    let v: Vec<(&str, Sig)> = names.iter().map(|s| (s.as_str(), file(1, 10))).collect();
    e.load_scan(Side::Left, entries(&v));
    e.load_scan(Side::Right, vec![]);
    let mut copied = Vec::new();
    let mut batches = 0;
    while e.has_work() {
        let b = e.plan(0);
        assert!(pairs(&b.copies[1]).len() <= MIN_BATCH);
        batches += 1;
        copied.extend(pairs(&b.copies[1]).iter().map(|(p, _)| p.clone()));
        e.complete(Report::default());
    }
    assert_eq!(batches, 3);
    assert_eq!(copied.len(), n);
    assert!(copied.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(e.known().len(), n);
    e.compact_known();
    assert_eq!(e.known().len(), n);
    let mut e2 = engine();
    e2.min_batch = usize::MAX;
    e2.load_scan(Side::Left, entries(&v));
    e2.load_scan(Side::Right, vec![]);
    let b = e2.plan(0);
    assert_eq!(pairs(&b.copies[1]).len(), n);
    assert!(!b.more);
}

#[test]
fn a_big_directory_move_is_one_undo_record_and_a_snapshot() {
    let names: Vec<String> = (0..BIG_MOVE + 5).map(|i| format!("d/f{i:05}")).collect();
    let mut v: Vec<(&str, Sig)> = vec![("d", dir()), ("e0", file(1, 10))];
    v.extend(names.iter().map(|s| (s.as_str(), file(1, 10))));
    let mut e = synced(&v);
    e.clear_delta();
    let before = e.snapshot();
    assert_move_d_to_e_replayed(&mut e);
    assert!(e.snapshot_due(), "a journal delta would list every entry");
    assert!(e.known().contains_key(&RelPath::from("e/f00000")));
    assert!(!e.known().contains_key(&RelPath::from("d")));
    // A lost link: the index goes back to what it was.
    e.abort();
    assert_eq!(e.snapshot(), before);
    e.clear_delta();
    assert!(!e.snapshot_due());
}

#[test]
fn a_bulk_rekey_moves_exactly_the_subtree() {
    let keys = [
        "a", "d", "d-x", "d.x", "d/a", "d/b/c", "d0", "e", "e/old", "f", "f/g",
    ];
    let mut m: BTreeMap<RelPath, u32> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (RelPath::from(*k), i as u32))
        .collect();
    let mut n = m.clone();
    rekey(&mut m, &"d".into(), &"e".into());
    rekey_bulk(&mut n, &"d".into(), &"e".into());
    assert_eq!(m, n);
    let got: Vec<String> = n.keys().map(ToString::to_string).collect();
    assert_eq!(
        got,
        ["a", "d-x", "d.x", "d0", "e", "e/a", "e/b/c", "f", "f/g"]
    );
    rekey_bulk(&mut n, &"f".into(), &"d/z".into());
    rekey(&mut m, &"f".into(), &"d/z".into());
    assert_eq!(m, n);
}

#[test]
fn a_copy_installed_before_a_crash_is_not_a_change_of_its_destination() {
    // Index: a = v1 on both. The crashed batch copied v2 from the left to
    // the right, and nothing changed since.
    let v1 = file(1, 10);
    let v2 = Sig {
        ino: 5,
        ctime_ns: 50,
        ..file(2, 20)
    };
    let installed = Sig {
        ino: 9,
        ctime_ns: 55,
        ..v2
    };
    let intent = || {
        vec![crate::index::Intent {
            path: "a".into(),
            side: 1,
            sig: v2,
            moved_from: None,
        }]
    };
    let mut e = synced(&[("a", v1)]);
    e.set_intents(intent());
    e.load_scan(Side::Left, entries(&[("a", v2)]));
    e.load_scan(Side::Right, entries(&[("a", installed)]));
    // The right's bytes are compared with the left's: equal, in sync.
    assert_eq!(e.to_compare(), vec![RelPath::from("a")]);
    e.compared(vec![("a".into(), Some([2; 32]), Some([2; 32]))]);
    let b = e.plan(0);
    assert!(b.is_empty(), "{b:?}");

    // The same crash, then a same-size, same-mtime write on the right: not
    // taken for the copy, it reaches the left.
    let mut e = synced(&[("a", v1)]);
    e.set_intents(intent());
    let tie = Sig {
        ino: 9,
        ctime_ns: 70,
        ..v2
    };
    e.load_scan(Side::Left, entries(&[("a", v2)]));
    e.load_scan(Side::Right, entries(&[("a", tie)]));
    assert_eq!(e.to_compare(), vec![RelPath::from("a")]);
    e.compared(vec![("a".into(), Some([2; 32]), Some([7; 32]))]);
    let b = e.plan(0);
    assert_eq!(pairs(&b.copies[0]), vec![("a".into(), tie)], "{b:?}");
}

#[test]
fn a_copy_installed_before_a_crash_follows_the_source_s_deletion() {
    // Index: nothing. The crashed batch copied `a` from the right to the
    // left; the right removed it since.
    let v = Sig {
        ino: 5,
        ctime_ns: 50,
        ..file(2, 20)
    };
    let mut e = synced(&[("keep", file(1, 10))]);
    e.set_intents(vec![crate::index::Intent {
        path: "a".into(),
        side: 0,
        sig: v,
        moved_from: None,
    }]);
    let installed = Sig {
        ino: 9,
        ctime_ns: 55,
        ..v
    };
    let intents = vec![crate::index::Intent {
        path: "a".into(),
        side: 0,
        sig: v,
        moved_from: None,
    }];
    e.load_scan(
        Side::Left,
        entries(&[("a", installed), ("keep", file(1, 10))]),
    );
    e.load_scan(Side::Right, entries(&[("keep", file(1, 10))]));
    assert!(e.to_compare().is_empty());
    let b = e.plan(0);
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    assert_eq!(strip(&b.ops[0]), vec![trash("a".into())]);

    // The same with the source's listing taken in first (it passed `a` by
    // when `a` was not known yet).
    let mut e = synced(&[("keep", file(1, 10))]);
    e.set_intents(intents.clone());
    e.load_scan(Side::Right, entries(&[("keep", file(1, 10))]));
    e.load_scan(
        Side::Left,
        entries(&[("a", installed), ("keep", file(1, 10))]),
    );
    assert!(e.to_compare().is_empty());
    let b = e.plan(0);
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    assert_eq!(strip(&b.ops[0]), vec![trash("a".into())]);

    // And with both listings in at once, chunk by chunk.
    let mut e = synced(&[("keep", file(1, 10))]);
    e.set_intents(intents);
    e.begin_scan(Side::Left);
    e.begin_scan(Side::Right);
    e.scan_chunk(Side::Right, entries(&[("keep", file(1, 10))]), vec![])
        .unwrap();
    e.scan_chunk(Side::Left, entries(&[("a", installed)]), vec![])
        .unwrap();
    e.scan_chunk(Side::Left, entries(&[("keep", file(1, 10))]), vec![])
        .unwrap();
    e.end_scan(Side::Left);
    e.end_scan(Side::Right);
    let b = e.plan(0);
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    assert_eq!(strip(&b.ops[0]), vec![trash("a".into())]);
}

#[test]
fn a_copy_the_helper_recorded_installing_before_a_crash_is_no_change_of_its_destination() {
    // The crashed batch copied v2 from the left to the right, and the
    // right's helper recorded installing it; the left changed it since.
    let v2 = Sig {
        ino: 5,
        ctime_ns: 50,
        ..file(2, 20)
    };
    let installed = Sig {
        ino: 9,
        ctime_ns: 55,
        ..v2
    };
    let v3 = Sig {
        ino: 5,
        ctime_ns: 60,
        ..file(3, 30)
    };
    let mut e = synced(&[("a", file(1, 10))]);
    e.set_intents(vec![crate::index::Intent {
        path: "a".into(),
        side: 1,
        sig: v2,
        moved_from: None,
    }]);
    e.set_installed(Side::Right, vec![("a".into(), installed.stamp())]);
    e.load_scan(Side::Left, entries(&[("a", v3)]));
    e.load_scan(Side::Right, entries(&[("a", installed)]));
    assert!(e.to_compare().is_empty());
    let b = e.plan(0);
    assert!(b.conflicts.is_empty(), "{b:?}");
    assert_eq!(pairs(&b.copies[1]), vec![("a".into(), v3)]);
}

#[test]
fn an_attribute_set_before_a_crash_does_not_undo_a_deletion_since() {
    // Index: a = v (0644) on both. The crashed batch set 0444 on the right
    // (the left's chmod); the left deleted `a` since.
    let v = file(2, 20);
    let ro = Sig { mode: 0o444, ..v };
    let mut e = synced(&[("a", v), ("keep", file(1, 10))]);
    e.set_intents(vec![crate::index::Intent {
        path: "a".into(),
        side: 1,
        sig: ro,
        moved_from: None,
    }]);
    let on_right = Sig {
        ino: 9,
        ctime_ns: 99,
        ..ro
    };
    e.load_scan(Side::Left, entries(&[("keep", file(1, 10))]));
    e.load_scan(
        Side::Right,
        entries(&[("a", on_right), ("keep", file(1, 10))]),
    );
    let b = e.plan(0);
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    assert_eq!(strip(&b.ops[1]), vec![trash("a".into())], "{b:?}");
}

#[test]
fn a_move_replayed_before_a_crash_does_not_bring_back_a_removal_since() {
    // Index: d/ and d/f on both. The crashed batch replayed the left's
    // rename d → e on the right; the left removed e since. One record
    // stands for the move and all below it; only the moved directory's
    // ctime changed (e/f keeps its stamp: no content to compare).
    let f = file(3, 30);
    let mut e = synced(&[("d", dir()), ("d/f", f), ("keep", file(1, 10))]);
    e.set_intents(vec![crate::index::Intent {
        path: "e".into(),
        side: 1,
        sig: dir(),
        moved_from: Some("d".into()),
    }]);
    let moved = Sig {
        ctime_ns: 77,
        ..dir()
    };
    e.load_scan(Side::Left, entries(&[("keep", file(1, 10))]));
    e.load_scan(
        Side::Right,
        entries(&[("e", moved), ("e/f", f), ("keep", file(1, 10))]),
    );
    assert!(e.to_compare().is_empty());
    let b = e.plan(0);
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    assert!(b.ops[0].is_empty(), "{b:?}");
    assert_eq!(strip(&b.ops[1]), vec![trash("e".into())], "{b:?}");

    // Two moves in one batch, the second out of the first's destination:
    // d → e, then e/g → h. The left removed h since.
    let mut e = synced(&[("d", dir()), ("d/g", dir()), ("d/g/f", f)]);
    let intent = |path: &str, from: &str| crate::index::Intent {
        path: path.into(),
        side: 1,
        sig: dir(),
        moved_from: Some(from.into()),
    };
    e.set_intents(vec![intent("e", "d"), intent("h", "e/g")]);
    e.load_scan(Side::Left, entries(&[("e", moved)]));
    e.load_scan(
        Side::Right,
        entries(&[("e", moved), ("h", moved), ("h/f", f)]),
    );
    assert!(e.to_compare().is_empty());
    let b = e.plan(0);
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    assert!(b.ops[0].is_empty(), "{b:?}");
    assert_eq!(strip(&b.ops[1]), vec![trash("h".into())], "{b:?}");
}

#[test]
fn a_copy_the_helper_recorded_is_recognised_even_when_not_the_version_planned() {
    // The crashed batch planned to copy v (0644) from the right to the
    // left; the copy read the right's file after a chmod 600, and the left's
    // helper recorded installing that. The right removed `a` since.
    let v = Sig {
        ino: 5,
        ctime_ns: 50,
        ..file(2, 20)
    };
    let installed = Sig {
        ino: 9,
        ctime_ns: 55,
        mode: 0o600,
        ..v
    };
    let setup = || {
        let mut e = synced(&[("keep", file(1, 10))]);
        e.set_intents(vec![crate::index::Intent {
            path: "a".into(),
            side: 0,
            sig: v,
            moved_from: None,
        }]);
        e.set_installed(Side::Left, vec![("a".into(), installed.stamp())]);
        e
    };
    let mut e = setup();
    e.load_scan(
        Side::Left,
        entries(&[("a", installed), ("keep", file(1, 10))]),
    );
    e.load_scan(Side::Right, entries(&[("keep", file(1, 10))]));
    let b = e.plan(0);
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    assert_eq!(strip(&b.ops[0]), vec![trash("a".into())], "{b:?}");

    // The right still has that version: nothing to do once compared.
    let mut e = setup();
    let now_right = Sig { mode: 0o600, ..v };
    e.load_scan(
        Side::Left,
        entries(&[("a", installed), ("keep", file(1, 10))]),
    );
    e.load_scan(
        Side::Right,
        entries(&[("a", now_right), ("keep", file(1, 10))]),
    );
    // (The right's stamp of that version is not known: the bytes tell.)
    assert_eq!(e.to_compare(), vec![RelPath::from("a")]);
    e.compared(vec![("a".into(), Some([4; 32]), Some([4; 32]))]);
    let b = e.plan(0);
    assert!(b.is_empty(), "{b:?}");
}

/// Campaign seed 71000012: the right renames a directory into another
/// (`d14` -> `d19/D35`), renames a file out of it, then removes the
/// directory it went to (`rm -r d19`). Replayed on the left, nothing of
/// `d19` may come back, on either side.
#[test]
fn a_directory_moved_into_one_then_removed_with_it_stays_removed() {
    let f = |ino| Sig {
        ino,
        ctime_ns: ino as i64,
        ..file(1, 10)
    };
    let d = |ino| Sig {
        ino,
        ctime_ns: ino as i64,
        ..dir()
    };
    let mut e = synced(&[
        ("D13", d(10)),
        ("D13/d12", d(11)),
        ("D13/d19", d(12)),
        ("d14", d(13)),
        ("d14/d20", d(14)),
        ("d14/d20/d21", d(15)),
        ("d14/d20/f23", f(16)),
        ("d14/d20/f29", f(17)),
        ("d14/f30", f(18)),
    ]);
    let r = Side::Right;
    e.on_event(
        r,
        Event::Moved {
            from: "d14".into(),
            to: "D13/d19/D35".into(),
            sig: d(13),
        },
    );
    e.on_event(
        r,
        Event::Moved {
            from: "D13/d19/D35/d20/f23".into(),
            to: "D13/d12/r36".into(),
            sig: Sig {
                ctime_ns: 100,
                ..f(16)
            },
        },
    );
    for p in [
        "D13/d19/D35/f30",
        "D13/d19/D35/d20/f29",
        "D13/d19/D35/d20/d21",
        "D13/d19/D35/d20",
        "D13/d19/D35",
        "D13/d19",
    ] {
        e.on_event(r, Event::Removed { path: p.into() });
    }
    let b = e.plan(0);
    let mut rep = Report::default();
    for op in &b.ops[0] {
        match op {
            Op::Trash { path, .. } => rep.applied[0].push(Applied::Removed(
                path.clone(),
                Some(Sig {
                    ctime_ns: 300,
                    ..d(12)
                }),
            )),
            Op::Move { from, to, .. } => {
                let ino = if to.to_string().ends_with("r36") {
                    16
                } else {
                    13
                };
                let s = if ino == 16 { f(16) } else { d(13) };
                let _ = from;
                rep.applied[0].push(Applied::Done(
                    to.clone(),
                    Some(Sig {
                        ctime_ns: 200 + ino as i64,
                        ..s
                    }),
                ));
            }
            o => panic!("unexpected {o:?}"),
        }
    }
    assert!(b.copies.iter().all(Vec::is_empty), "{b:?}");
    // The left after the batch: the file moved out, nothing of d19.
    e.complete(rep);
    let b2 = e.plan(1);
    assert!(b2.is_empty(), "{b2:?}\nfirst: {:?}", b.ops);
    let left: Vec<_> = e.known().keys().map(ToString::to_string).collect();
    assert!(
        left.iter()
            .all(|k| !k.starts_with("D13/d19") && !k.starts_with("d14")),
        "{left:?}"
    );
}

/// Campaign seed 73000020: the left's report of a replayed directory move,
/// its two halves not paired (a removal of the old name, held while the
/// batch ran), was taken through the move's fence for a removal of the new
/// name, and the user's directory was trashed on the right.
#[test]
fn the_unpaired_report_of_our_own_move_removes_nothing() {
    let d = |ino| Sig {
        ino,
        ctime_ns: ino as i64,
        ..dir()
    };
    let mut e = synced(&[("a", d(10)), ("a/d38", d(11)), ("a/d38/f", file(1, 10))]);
    e.on_event(
        Side::Right,
        Event::Moved {
            from: "a/d38".into(),
            to: "D54".into(),
            sig: Sig {
                ctime_ns: 50,
                ..d(11)
            },
        },
    );
    let b = e.plan(0);
    assert_eq!(b.ops[0].len(), 1, "{b:?}");
    let t = e.on_event(
        Side::Left,
        Event::Removed {
            path: "a/d38".into(),
        },
    );
    assert!(t.verdict == Verdict::Held, "{t:?}");
    let mut rep = Report::default();
    rep.applied[0].push(Applied::Done(
        "D54".into(),
        Some(Sig {
            ctime_ns: 100,
            ..d(11)
        }),
    ));
    e.complete(rep);
    let b = e.plan(1);
    assert!(b.is_empty(), "{b:?}");
    assert!(e.known().contains_key(&RelPath::from("D54/f")));
}

/// Campaign seed 73000041: a conflict's batch cut by a lost link after the
/// loser was renamed aside. The reconnection's merge took the renamed
/// loser for a replayed move (both sides had it) and trashed it as removed
/// on the other side: it is the loser's only copy, still to copy there.
#[test]
fn a_conflict_copy_made_before_a_lost_link_is_copied_not_trashed() {
    let base = Sig {
        ino: 5,
        ctime_ns: 5,
        ..file(4, 10)
    };
    let mut e = synced(&[("x", base)]);
    // The left's is newer: the right's loses (renamed aside on the right,
    // whose intents come last).
    let lv = Sig {
        ino: 6,
        ctime_ns: 20,
        ..file(5, 30)
    };
    let rv = Sig {
        ino: 7,
        ctime_ns: 30,
        ..file(6, 20)
    };
    changed(&mut e, Side::Left, "x", lv);
    changed(&mut e, Side::Right, "x", rv);
    let b = e.plan(0);
    assert_eq!(b.conflicts.len(), 1, "{b:?}");
    let kept = b.conflicts[0].kept_as.clone();
    let intents = e.intents(&b);
    e.abort();
    e.set_intents(intents);
    // The loser was renamed aside on its side; nothing else was done.
    let (loser_side, winner) = if b.conflicts[0].winner == Side::Left {
        (Side::Right, lv)
    } else {
        (Side::Left, rv)
    };
    let loser = if loser_side == Side::Right { rv } else { lv };
    // (The winner's side listed first: the loser's copy is then found
    // where the other listing passed it by.)
    e.load_scan(loser_side.other(), entries(&[("x", winner)]));
    e.load_scan(loser_side, entries(&[(&kept.to_string(), loser)]));
    let b = e.plan(1);
    assert!(
        b.ops[loser_side]
            .iter()
            .all(|o| !matches!(o, Op::Trash { path, .. } if *path == kept)),
        "the conflict copy was trashed: {b:?}"
    );
    assert!(
        b.copies[loser_side.other()].iter().any(|c| c.path == kept),
        "the conflict copy is not copied to the winner's side: {b:?}"
    );
}

/// The shape of campaign seed 76000035 (whose failure, a chmod that only
/// the verification carried, did not recur on replay): a chmod of a file
/// whose bytes could not be compared (its directory was renamed meanwhile:
/// taken for another version), then a copy that found no source, the
/// rename queued before: the change must still arrive, at the new name.
#[test]
fn a_copy_whose_directory_was_renamed_meanwhile_arrives_at_the_new_name() {
    let d = Sig {
        ino: 40,
        ctime_ns: 40,
        ..dir()
    };
    let f0 = Sig {
        ino: 31,
        ctime_ns: 31,
        ..file(4, 10)
    };
    let mut e = synced(&[("D44", d), ("D44/r31", f0)]);
    let f1 = Sig {
        ctime_ns: 50,
        mode: 0o640,
        ..f0
    };
    changed(&mut e, Side::Right, "D44/r31", f1);
    assert_eq!(e.to_compare(), vec![RelPath::from("D44/r31")]);
    // The right's file was gone by then.
    e.compared(vec![("D44/r31".into(), Some([1; 32]), None)]);
    let b = e.plan(0);
    assert_eq!(pairs(&b.copies[0]), vec![("D44/r31".into(), f1)]);
    e.on_event(
        Side::Right,
        Event::Moved {
            from: "D44".into(),
            to: "D49".into(),
            sig: Sig { ctime_ns: 60, ..d },
        },
    );
    let mut rep = Report::default();
    rep.missed[0].push(Copied {
        path: "D44/r31".into(),
        src: None,
        dst: None,
        installed: false,
    });
    e.complete(rep);
    let mut arrived = false;
    for round in 0..4 {
        let c = e.to_compare();
        e.compared(
            c.into_iter()
                .map(|p| (p, Some([1; 32]), Some([1; 32])))
                .collect(),
        );
        let b = e.plan(round + 1);
        arrived |= b.copies[0]
            .iter()
            .any(|c| c.path == RelPath::from("D49/r31"))
            || b.ops[0].iter().any(
                |o| matches!(o, Op::SetAttr { path, .. } if *path == RelPath::from("D49/r31")),
            );
        let mut rep = Report::default();
        for op in &b.ops[0] {
            if let Op::Move { to, .. } = op {
                let s = e.known().get(to).map(|k| Sig {
                    ctime_ns: 70,
                    ..k.sig
                });
                rep.applied[0].push(Applied::Done(to.clone(), s));
            }
        }
        e.complete(rep);
    }
    assert!(
        arrived,
        "the chmod of D49/r31 never reached the left: {:?}",
        e.known()
    );
}
