//! Engine tests: conflicts: concurrent writes, refused installs, a type
//! replaced on one side, moves that collide with the other side's changes.

use super::*;

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
            source: Expect::Any,
            to: c.kept_as.clone(),
            expect: Expect::Any,
        }]
    );
    assert_eq!(pairs(&b.copies[1]), vec![("f".into(), file(2, 30))]);
    assert_eq!(pairs(&b.copies[0]), vec![(c.kept_as.clone(), file(3, 20))]);
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
