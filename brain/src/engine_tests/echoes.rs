//! Engine tests: telling the reports of our own writes and moves (echoes)
//! from a user's changes.

use super::*;

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
