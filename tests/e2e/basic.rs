use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use crate::harness::{eventually, Pair};

#[test]
fn initial_sync_is_a_union_of_both_sides() {
    let mut p = Pair::new();
    p.left.write("only-left", b"L");
    p.left.write("both/x", b"same");
    p.right.write("both/x", b"same");
    p.right.write("deep/er/only-right", b"R");
    fs::create_dir_all(p.right.path("empty/dir")).unwrap();
    p.start(&[]);
    p.eventually_equal();
    assert_eq!(p.right.read("only-left").unwrap(), b"L");
    assert_eq!(p.left.read("deep/er/only-right").unwrap(), b"R");
    assert!(p.left.path("empty/dir").is_dir());
}

#[test]
fn creates_writes_and_deletes_go_both_ways() {
    let mut p = Pair::new();
    p.start(&[]);
    for (a, b) in [
        (p.left.clone(), p.right.clone()),
        (p.right.clone(), p.left.clone()),
    ] {
        a.write("f", b"one");
        b.eventually_has("f", b"one");
        a.write("f", b"two, longer");
        b.eventually_has("f", b"two, longer");
        fs::remove_file(a.path("f")).unwrap();
        b.eventually_gone("f");
    }
    p.eventually_equal();
}

#[test]
fn mkdir_p_loses_nothing_created_inside_at_once() {
    let mut p = Pair::new();
    p.start(&[]);
    for side in [p.left.clone(), p.right.clone()] {
        let base = format!("tree-{}", side.root.file_name().unwrap().to_string_lossy());
        fs::create_dir_all(side.path(format!("{base}/a/b/c/d/e"))).unwrap();
        for i in 0..20 {
            fs::write(side.path(format!("{base}/a/b/c/d/e/f{i}")), format!("{i}")).unwrap();
            fs::write(side.path(format!("{base}/a/b/g{i}")), format!("{i}")).unwrap();
        }
        fs::create_dir_all(side.path(format!("{base}/empty/one/two"))).unwrap();
    }
    p.eventually_equal();
    assert!(p.right.path("tree-left/empty/one/two").is_dir());
    assert!(p.left.path("tree-right/empty/one/two").is_dir());
}

#[test]
fn removing_a_whole_tree_removes_it_on_the_other_side() {
    let mut p = Pair::new();
    p.left.write("t/a/b/f", b"x");
    p.left.write("t/g", b"y");
    // Not all the replica: emptying one stops the sync (next test).
    p.left.write("keep", b"k");
    p.start(&[]);
    p.eventually_equal();
    fs::remove_dir_all(p.right.path("t")).unwrap();
    p.left.eventually_gone("t");
    p.eventually_equal();
}

#[test]
fn emptying_a_replica_changes_nothing_on_the_other_side() {
    let mut p = Pair::new();
    for i in 0..20 {
        p.left.write(format!("d{}/f{i}", i % 3), b"x");
    }
    p.start(&[]);
    p.eventually_equal();
    for e in fs::read_dir(&p.right.root).unwrap().flatten() {
        if e.file_name() != ".twinsync" {
            fs::remove_dir_all(e.path()).unwrap();
        }
    }
    let status = p.wait_exit();
    assert!(!status.success(), "{status:?}");
    for i in 0..20 {
        assert!(p.left.exists(format!("d{}/f{i}", i % 3)), "d{}/f{i}", i % 3);
    }
    // (The harness's own probe files may be there.)
    assert!(
        !p.left.trash_contents().iter().any(|c| c == b"x"),
        "{}",
        p.log_tail()
    );
}

#[test]
fn symlinks_are_kept_as_links_and_never_followed() {
    let mut p = Pair::new();
    p.start(&[]);
    symlink("/etc/hostname", p.left.path("abs")).unwrap();
    symlink("../nowhere", p.left.path("dangling")).unwrap();
    fs::create_dir(p.right.path("d")).unwrap();
    symlink("d", p.right.path("dirlink")).unwrap();
    eventually("links on the other side", || {
        p.right.exists("abs") && p.right.exists("dangling") && p.left.exists("dirlink")
    });
    assert_eq!(
        fs::read_link(p.right.path("abs")).unwrap().to_str(),
        Some("/etc/hostname")
    );
    assert_eq!(
        fs::read_link(p.right.path("dangling")).unwrap().to_str(),
        Some("../nowhere")
    );
    assert!(fs::symlink_metadata(p.left.path("dirlink"))
        .unwrap()
        .file_type()
        .is_symlink());
    p.eventually_equal();
}

#[test]
fn modes_and_mtimes_arrive() {
    let mut p = Pair::new();
    p.left.write("f", b"data");
    p.start(&[]);
    p.right.eventually_has("f", b"data");
    fs::set_permissions(p.left.path("f"), fs::Permissions::from_mode(0o600)).unwrap();
    eventually("mode 600 on the right", || {
        fs::metadata(p.right.path("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
            == 0o600
    });
    fs::create_dir(p.right.path("d")).unwrap();
    p.left.eventually_has_dir("d");
    fs::set_permissions(p.right.path("d"), fs::Permissions::from_mode(0o711)).unwrap();
    eventually("dir mode 711 on the left", || {
        fs::metadata(p.left.path("d")).unwrap().permissions().mode() & 0o777 == 0o711
    });
    // touch -d: an mtime change alone
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    p.right.set_mtime("f", t);
    eventually("mtime on the left", || {
        fs::metadata(p.left.path("f")).unwrap().modified().unwrap() == t
    });
    p.eventually_equal();
}

#[test]
fn without_rsync_the_helpers_copy_and_nothing_is_lost() {
    let mut p = Pair::new();
    p.envs
        .push(("TWINSYNC_RSYNC".into(), "/nonexistent/rsync".into()));
    p.left.write("before", b"from the start");
    p.start(&[]);
    p.right.eventually_has("before", b"from the start");
    p.right.write("d/new", b"made on the right");
    p.left.eventually_has("d/new", b"made on the right");
    p.left.write("before", b"overwritten");
    p.right.eventually_has("before", b"overwritten");
    p.eventually_equal();
    assert!(
        p.right
            .trash_contents()
            .contains(&b"from the start".to_vec()),
        "overwritten version not kept"
    );
    assert!(p.log_text().contains("rsync is not installed"));
}
