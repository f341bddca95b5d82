//! Engine tests: the safety nets after a crash or a lost link: what a
//! batch did before it is recognised, not taken for a change.

use super::*;

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
