//! The stateful merge: --sync-only, start-up, deletions while stopped,
//! conflicts, safety nets, dry runs.

use std::fs;

use crate::harness::Pair;

#[test]
fn sync_only_merges_once_and_exits() {
    let p = Pair::new();
    p.left.write("a/l", b"left");
    p.right.write("b/r", b"right");
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert_eq!(p.right.read("a/l").unwrap(), b"left");
    assert_eq!(p.left.read("b/r").unwrap(), b"right");
    assert_eq!(p.left.tree(), p.right.tree());
}

#[test]
fn deletions_made_while_stopped_are_not_resurrected() {
    let p = Pair::new();
    for i in 0..10 {
        p.left.write(format!("f{i}"), b"v1");
    }
    assert!(p.sync_only(&[]).0.success());
    // while twinsync is not running: delete on one side, edit on the other
    fs::remove_file(p.left.path("f1")).unwrap();
    fs::remove_file(p.right.path("f2")).unwrap();
    p.right.write("f3", b"v2 edited on the right");
    fs::remove_file(p.left.path("f3")).unwrap(); // deleted on left, modified on right
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert!(!p.right.exists("f1"), "deletion on the left resurrected");
    assert!(!p.left.exists("f2"), "deletion on the right resurrected");
    assert_eq!(
        p.left.read("f3").unwrap(),
        b"v2 edited on the right",
        "modification must win over deletion"
    );
    assert_eq!(p.left.tree(), p.right.tree());
    // the deleted files are in the trash, not destroyed
    assert!(p.right.trash_contents().contains(&b"v1".to_vec()));
}

#[test]
fn a_merge_that_would_delete_most_of_a_side_is_refused_unless_forced() {
    let p = Pair::new();
    for i in 0..10 {
        p.left.write(format!("f{i}"), b"v");
    }
    assert!(p.sync_only(&[]).0.success());
    for i in 0..8 {
        fs::remove_file(p.left.path(format!("f{i}"))).unwrap();
    }
    let (st, err) = p.sync_only(&[]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("refusing to merge") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&p.right.root).unwrap().count(),
        11,
        "something was changed"
    );
    let (st, err) = p.sync_only(&["--force"]);
    assert!(st.success(), "{err}");
    assert!(!p.right.exists("f0"));
}

#[test]
fn an_emptied_side_is_refused_as_an_unmounted_volume() {
    let p = Pair::new();
    p.left.write("x", b"v");
    p.left.write("y", b"v");
    assert!(p.sync_only(&[]).0.success());
    for n in ["x", "y"] {
        fs::remove_file(p.right.path(n)).unwrap();
    }
    let (st, err) = p.sync_only(&[]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("is empty") && err.contains("mounted"), "{err}");
    assert!(p.left.exists("x") && p.left.exists("y"));
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing_not_even_the_index() {
    let p = Pair::new();
    p.left.write("new-left", b"L");
    p.right.write("new-right", b"R");
    p.left.write("both", b"left side");
    p.right.write("both", b"right side!");
    let before = (p.left.tree(), p.right.tree());
    let (st, err) = p.sync_only(&["--dry-run"]);
    assert!(st.success(), "{err}");
    assert_eq!(before, (p.left.tree(), p.right.tree()));
    assert!(
        err.contains("would copy L→R: new on left") && err.contains("new-left"),
        "{err}"
    );
    assert!(err.contains("would copy R→L: new on right"), "{err}");
    assert!(err.contains("conflict"), "{err}");
    let index_dir = p.left.path(".twinsync/index");
    assert!(
        fs::read_dir(&index_dir).map_or(true, |mut d| d.next().is_none()),
        "dry run wrote the index"
    );
}

#[test]
fn a_dry_run_creates_nothing_not_even_the_state_folder() {
    let p = Pair::new();
    p.left.write("d/new-left", b"L");
    p.right.write("new-right", b"R");
    let (st, err) = p.sync_only(&["--dry-run"]);
    assert!(st.success(), "{err}");
    for r in [&p.left, &p.right] {
        assert!(
            !r.exists(".twinsync"),
            "{} was created by a dry run",
            r.path(".twinsync").display()
        );
    }
    assert!(!p.right.exists("d") && !p.left.exists("new-right"));
}

/// Every file content in the tree, its trash and conflict copies.
fn all_versions(p: &Pair) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = Vec::new();
    for r in [&p.left, &p.right] {
        for (k, _) in r.tree() {
            if let Some(data) = r.read(&k) {
                v.push(data);
            }
        }
        v.extend(r.trash_contents());
    }
    v
}

#[test]
fn kill_9_at_any_point_of_a_merge_loses_nothing_and_the_next_merge_converges() {
    use std::process::{Command, Stdio};
    let p = Pair::new();
    let mut expected = Vec::new();
    for i in 0..400 {
        let l = format!("left {i}");
        p.left.write(format!("d{}/l{i}", i % 20), l.as_bytes());
        expected.push(l.into_bytes());
        let r = format!("right {i}");
        p.right.write(format!("d{}/r{i}", i % 20), r.as_bytes());
        expected.push(r.into_bytes());
        if i % 10 == 0 {
            // both sides wrote the same path: a conflict to keep
            let (a, b) = (format!("both-left {i}"), format!("both-right {i}!"));
            p.left.write(format!("c{i}"), a.as_bytes());
            p.right.write(format!("c{i}"), b.as_bytes());
            expected.push(a.into_bytes());
            expected.push(b.into_bytes());
        }
    }
    for delay_ms in [5u64, 20, 40, 80, 150] {
        let mut child = Command::new(crate::harness::bin())
            .args(["--sync-only", "-d", "0"])
            .arg(&p.left.root)
            .arg(&p.right.root)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // its agents see their stdin close and exit; wait for the locks
        for _ in 0..200 {
            if !p.left.path(".twinsync/lock").exists() && !p.right.path(".twinsync/lock").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert_eq!(p.left.tree(), p.right.tree());
    let present = all_versions(&p);
    for v in &expected {
        assert!(present.contains(v), "lost {:?}", String::from_utf8_lossy(v));
    }
    // and a merge after that changes nothing
    let before = p.left.tree();
    assert!(p.sync_only(&[]).0.success());
    assert_eq!(before, p.left.tree());
}

#[test]
fn odd_names_and_symlinks_merge_both_ways() {
    let p = Pair::new();
    let names: Vec<Vec<u8>> = vec![
        b"new\nline".to_vec(),
        b"\xff\xfe".to_vec(),
        b"-dash".to_vec(),
        vec![b'z'; 255],
    ];
    for (i, n) in names.iter().enumerate() {
        let side = if i % 2 == 0 { &p.left } else { &p.right };
        side.write(n, n);
    }
    std::os::unix::fs::symlink("new\nline", p.left.path("link-to-odd")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", p.right.path("dangling")).unwrap();
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert_eq!(p.left.tree(), p.right.tree());
    assert_eq!(
        fs::read_link(p.right.path("link-to-odd"))
            .unwrap()
            .as_os_str(),
        std::ffi::OsStr::new("new\nline")
    );
    // deleted while stopped, on the other side
    fs::remove_file(p.right.path(&names[0])).unwrap();
    fs::remove_file(p.left.path("dangling")).unwrap();
    assert!(p.sync_only(&[]).0.success());
    assert!(!p.left.exists(&names[0]) && !p.right.exists("dangling"));
    assert_eq!(p.left.tree(), p.right.tree());
}

#[test]
fn same_content_with_different_mtimes_is_no_conflict() {
    let p = Pair::new();
    p.left.write("same.txt", b"identical bytes");
    p.right.write("same.txt", b"identical bytes");
    p.left.write("diff.txt", b"left bytes!!");
    p.right.write("diff.txt", b"right bytes!"); // same size, other bytes
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for f in ["same.txt", "diff.txt"] {
        p.left.set_mtime(f, old);
    }
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert_eq!(p.left.tree(), p.right.tree(), "mtimes not aligned");
    let names: Vec<String> = fs::read_dir(&p.left.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("same.conflict-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("diff.conflict-")),
        "{names:?}"
    );
}
