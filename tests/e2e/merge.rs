//! The stateful merge: --sync-only, start-up, deletions while stopped,
//! conflicts, safety nets, dry runs.

use std::ffi::OsStr;
use std::fs;

use crate::harness::{run_once, Pair};

fn sync_only(p: &Pair, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let mut args: Vec<&OsStr> = vec![OsStr::new("--sync-only")];
    args.extend(extra.iter().map(OsStr::new));
    args.push(p.left.root.as_os_str());
    args.push(p.right.root.as_os_str());
    run_once(&args)
}

#[test]
fn sync_only_merges_once_and_exits() {
    let p = Pair::new();
    p.left.write("a/l", b"left");
    p.right.write("b/r", b"right");
    let (st, err) = sync_only(&p, &[]);
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
    assert!(sync_only(&p, &[]).0.success());
    // while twinsync is not running: delete on one side, edit on the other
    fs::remove_file(p.left.path("f1")).unwrap();
    fs::remove_file(p.right.path("f2")).unwrap();
    p.right.write("f3", b"v2 edited on the right");
    fs::remove_file(p.left.path("f3")).unwrap(); // deleted on left, modified on right
    let (st, err) = sync_only(&p, &[]);
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
    assert!(sync_only(&p, &[]).0.success());
    for i in 0..8 {
        fs::remove_file(p.left.path(format!("f{i}"))).unwrap();
    }
    let (st, err) = sync_only(&p, &[]);
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
    let (st, err) = sync_only(&p, &["--force"]);
    assert!(st.success(), "{err}");
    assert!(!p.right.exists("f0"));
}

#[test]
fn an_emptied_side_is_refused_as_an_unmounted_volume() {
    let p = Pair::new();
    p.left.write("x", b"v");
    p.left.write("y", b"v");
    assert!(sync_only(&p, &[]).0.success());
    for n in ["x", "y"] {
        fs::remove_file(p.right.path(n)).unwrap();
    }
    let (st, err) = sync_only(&p, &[]);
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
    let (st, err) = sync_only(&p, &["--dry-run"]);
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
