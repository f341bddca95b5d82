use std::fs;
use std::time::Instant;

use crate::harness::{eventually, Pair};

#[test]
fn file_rename_is_replayed_in_place() {
    let mut p = Pair::new();
    p.left.write("a", b"content");
    p.start(&[]);
    p.right.eventually_has("a", b"content");
    let ino = p.right.ino("a");
    fs::rename(p.left.path("a"), p.left.path("b")).unwrap();
    p.right.eventually_has("b", b"content");
    p.right.eventually_gone("a");
    assert_eq!(
        p.right.ino("b"),
        ino,
        "the right file was re-copied, not renamed"
    );
    p.eventually_equal();
}

#[test]
fn directory_moves_any_depth_both_ways_keep_inodes() {
    let mut p = Pair::new();
    for i in 0..30 {
        p.left
            .write(format!("d/sub{}/f{i}", i % 3), format!("{i}").as_bytes());
    }
    p.start(&[]);
    p.eventually_equal();
    let ino = p.right.ino("d/sub1/f1");
    fs::create_dir_all(p.left.path("x/y")).unwrap();
    fs::rename(p.left.path("d"), p.left.path("x/y/d2")).unwrap();
    p.right.eventually_has("x/y/d2/sub1/f1", b"1");
    p.right.eventually_gone("d");
    assert_eq!(p.right.ino("x/y/d2/sub1/f1"), ino);
    // and back from the right, renaming an inner directory
    let ino = p.left.ino("x/y/d2/sub2/f2");
    fs::rename(p.right.path("x/y/d2/sub2"), p.right.path("top")).unwrap();
    p.left.eventually_has("top/f2", b"2");
    p.left.eventually_gone("x/y/d2/sub2");
    assert_eq!(p.left.ino("top/f2"), ino);
    p.eventually_equal();
}

#[test]
fn a_file_changed_then_renamed_arrives_renamed_with_its_content() {
    let mut p = Pair::new();
    p.left.write("a", b"v1");
    p.start(&[]);
    p.right.eventually_has("a", b"v1");
    p.left.write("a", b"v2, changed");
    fs::rename(p.left.path("a"), p.left.path("b")).unwrap();
    p.right.eventually_has("b", b"v2, changed");
    p.right.eventually_gone("a");
    p.eventually_equal();
}

#[test]
fn save_by_rename_replaces_the_file() {
    let mut p = Pair::new();
    p.left.write("doc.txt", b"old");
    p.start(&[]);
    p.right.eventually_has("doc.txt", b"old");
    p.right.write(".doc.txt.swp", b"new version");
    fs::rename(p.right.path(".doc.txt.swp"), p.right.path("doc.txt")).unwrap();
    p.left.eventually_has("doc.txt", b"new version");
    p.left.eventually_gone(".doc.txt.swp");
    p.eventually_equal();
}

#[test]
fn moves_out_of_and_into_the_tree_are_deletes_and_creates() {
    let mut p = Pair::new();
    p.left.write("out/f", b"leaving");
    // Not all the replica: emptying one stops the sync (basic.rs).
    p.left.write("stay", b"s");
    p.start(&[]);
    p.right.eventually_has("out/f", b"leaving");
    let outside = p.dir.path().join("outside");
    fs::rename(p.left.path("out"), &outside).unwrap();
    p.right.eventually_gone("out");
    fs::write(outside.join("g"), b"arriving").unwrap();
    fs::rename(&outside, p.right.path("in")).unwrap();
    p.left.eventually_has("in/g", b"arriving");
    p.left.eventually_has("in/f", b"leaving");
    p.eventually_equal();
}

#[test]
fn renaming_a_100_mib_directory_copies_nothing() {
    let mut p = Pair::new();
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for i in 0..100 {
        p.left.write(format!("big/f{i:03}"), &chunk);
    }
    p.start(&[]);
    eventually("100 MiB on the right", || {
        (0..100).all(|i| {
            fs::metadata(p.right.path(format!("big/f{i:03}"))).is_ok_and(|m| m.len() == 1 << 20)
        })
    });
    let inos: Vec<u64> = (0..100)
        .map(|i| p.right.ino(format!("big/f{i:03}")))
        .collect();
    let t = Instant::now();
    fs::rename(p.left.path("big"), p.left.path("big2")).unwrap();
    eventually("renamed on the right", || {
        p.right.exists("big2") && !p.right.exists("big")
    });
    eprintln!("100 MiB directory rename reflected in {:?}", t.elapsed());
    let after: Vec<u64> = (0..100)
        .map(|i| p.right.ino(format!("big2/f{i:03}")))
        .collect();
    assert_eq!(inos, after, "files were re-copied instead of renamed");
    assert!(!p.log_text().contains("copy L→R: changed on left path=big2"));
}

#[test]
fn a_big_directory_rename_is_in_the_saved_index_when_killed_after_it() {
    let mut p = Pair::new();
    // More entries than a move journals one by one (BIG_MOVE): saved by a
    // snapshot instead.
    for d in 0..30 {
        for f in 0..50 {
            p.left.write(format!("big/d{d:02}/f{f:02}"), b"x");
        }
    }
    p.start(&[]);
    p.eventually_equal();
    let ino = p.right.ino("big/d00/f00");
    fs::rename(p.left.path("big"), p.left.path("moved")).unwrap();
    eventually("renamed on the right", || {
        p.right.exists("moved/d29/f49") && !p.right.exists("big")
    });
    assert_eq!(p.right.ino("moved/d00/f00"), ino, "re-copied");
    // Killed once the batch is done: only what it saved counts.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut c = p.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A deletion made while stopped is told from the index: had it kept the
    // old names, the file would come back from the right instead.
    fs::remove_file(p.left.path("moved/d00/f00")).unwrap();
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert!(!p.left.exists("moved/d00/f00"), "deletion undone:\n{err}");
    assert!(
        !p.right.exists("moved/d00/f00"),
        "deletion not followed:\n{err}"
    );
    assert!(p.right.exists("moved/d00/f01"));
    assert!(err.contains("copied_to_left=0 copied_to_right=0"), "{err}");
}
