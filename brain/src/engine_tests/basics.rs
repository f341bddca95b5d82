//! Engine tests: the first merge, deletions, attribute-only changes and
//! saves by rename.

use super::*;

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
            expect: Expect::Any,
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
