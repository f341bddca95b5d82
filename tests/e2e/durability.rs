//! Durability of the index: the journal's group commit (synced once a burst
//! settles), and what a power loss that takes the unsynced tail leaves (an
//! older index) merges safely: nothing lost, both sides equal.

use std::fs;
use std::path::PathBuf;

use crate::harness::{eventually, Pair};

/// The index journal of the pair (one instance: one journal).
fn journal(p: &Pair) -> PathBuf {
    let dir = p.left.path(".twinsync/index");
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|x| x == "journal"))
        .unwrap_or_else(|| panic!("no journal in {}", dir.display()))
}

#[test]
fn a_burst_is_synced_once_settled_and_an_index_without_its_tail_merges_safely() {
    let mut p = Pair::new();
    p.start(&[]);
    let journal = journal(&p);
    let before = fs::metadata(&journal).unwrap().len();
    for i in 0..300 {
        p.left
            .write(format!("d{}/f{i}", i % 10), format!("v{i}").as_bytes());
    }
    p.right.eventually_has("d9/f299", b"v299");
    p.eventually_equal();
    eventually("the burst's journal records synced", || {
        p.log_text().contains("index journal synced")
    });
    assert!(fs::metadata(&journal).unwrap().len() > before);
    // A power loss that took the burst's records: kill -9, then the
    // journal as it was before the burst.
    let child = p.child.as_mut().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    eventually("the agents release their locks", || {
        !p.left.path(".twinsync/lock").exists() && !p.right.path(".twinsync/lock").exists()
    });
    fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(before)
        .unwrap();
    // Meanwhile, a file the lost records knew is deleted on the right.
    fs::remove_file(p.right.path("d0/f0")).unwrap();
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert_eq!(p.left.tree(), p.right.tree());
    // The older index does not know it was synced: a union brings it
    // back (the cost of the lost tail; nothing is lost).
    assert_eq!(p.right.read("d0/f0").as_deref(), Some(&b"v0"[..]));
    for i in 0..300 {
        let want = format!("v{i}");
        let rel = format!("d{}/f{i}", i % 10);
        assert_eq!(
            p.right.read(&rel).as_deref(),
            Some(want.as_bytes()),
            "{rel}"
        );
    }
    // No conflict copies: 10 directories and the 300 files.
    assert_eq!(p.left.tree().len(), 310);
}
