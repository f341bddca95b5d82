use std::fs;
use std::time::Duration;

use crate::harness::{eventually, Pair, Replica};

/// Every file in the tree (outside `.twinsync/`) whose name starts with `stem`.
fn versions(r: &Replica, stem: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in fs::read_dir(&r.root).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(stem) {
            out.push(fs::read(e.path()).unwrap());
        }
    }
    out
}

#[test]
fn both_sides_changed_before_start_newer_wins_loser_kept() {
    let mut p = Pair::new();
    p.left.write("doc.txt", b"left version");
    p.right.write("doc.txt", b"right version");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    p.left.set_mtime("doc.txt", old);
    p.start(&[]);
    p.eventually_equal();
    assert_eq!(p.left.read("doc.txt").unwrap(), b"right version");
    let kept = versions(&p.left, "doc.conflict-");
    assert_eq!(kept, vec![b"left version".to_vec()]);
    let log = fs::read_to_string(p.left.path(".twinsync/conflicts.log")).unwrap();
    assert!(
        log.contains("\"path\":\"doc.txt\"") && log.contains("\"winner\":\"right\""),
        "{log}"
    );
    assert!(log.contains("newer-right"), "{log}");
}

#[test]
fn concurrent_writers_on_both_sides_converge_and_lose_no_version() {
    let mut p = Pair::new();
    p.start(&[]);
    let n = 30;
    let (l, r) = (p.left.clone(), p.right.clone());
    let tl = std::thread::spawn(move || {
        for i in 0..n {
            l.write(format!("f{i:02}"), format!("left {i}").as_bytes());
        }
    });
    let tr = std::thread::spawn(move || {
        for i in 0..n {
            r.write(format!("f{i:02}"), format!("right {i}").as_bytes());
        }
    });
    tl.join().unwrap();
    tr.join().unwrap();
    p.eventually_equal();
    let trash: Vec<Vec<u8>> = p
        .left
        .trash_contents()
        .into_iter()
        .chain(p.right.trash_contents())
        .collect();
    for i in 0..n {
        let present = versions(&p.left, &format!("f{i:02}"));
        for v in [format!("left {i}"), format!("right {i}")] {
            assert!(
                present.contains(&v.clone().into_bytes())
                    || trash.contains(&v.clone().into_bytes()),
                "version {v:?} of f{i:02} lost; present: {present:?}\n{}",
                p.log_tail()
            );
        }
    }
}

#[test]
fn deleted_and_overwritten_files_are_kept_in_the_trash() {
    let mut p = Pair::new();
    p.left.write("gone", b"precious");
    p.left.write("over", b"first");
    p.start(&[]);
    p.right.eventually_has("gone", b"precious");
    p.right.eventually_has("over", b"first");
    fs::remove_file(p.left.path("gone")).unwrap();
    p.right.eventually_gone("gone");
    p.left.write("over", b"second");
    p.right.eventually_has("over", b"second");
    eventually("trash on the right holds both", || {
        let t = p.right.trash_contents();
        t.contains(&b"precious".to_vec()) && t.contains(&b"first".to_vec())
    });
}

#[test]
fn conflict_losers_can_be_kept_in_the_state_dir_instead_of_beside() {
    let mut p = Pair::new();
    p.left.write("doc.txt", b"left version");
    p.right.write("doc.txt", b"right version, newer");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    p.left.set_mtime("doc.txt", old);
    p.start(&["--conflict-copies", "state-dir"]);
    p.eventually_equal();
    assert_eq!(p.left.read("doc.txt").unwrap(), b"right version, newer");
    assert!(versions(&p.left, "doc.conflict-").is_empty(), "kept beside");
    let kept = p.left.root.join(".twinsync/conflicts");
    let found = fs::read_dir(&kept)
        .unwrap()
        .flatten()
        .any(|day| fs::read(day.path().join("doc.txt")).is_ok_and(|d| d == b"left version"));
    assert!(found, "the loser is not in {}", kept.display());
}
