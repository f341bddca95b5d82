//! Engine tests: the streaming merge of two listings, its batches, and
//! the bulk index operations of big moves.

use super::*;

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
