use std::fs;
use std::time::Duration;

use crate::harness::Pair;

/// After a change has arrived, nothing is sent back: the source file keeps
/// its inode and mtime, and the log shows no copy in the other direction.
#[test]
fn writes_are_never_echoed_back() {
    let mut p = Pair::new();
    p.start(&[]);
    p.left.write("a/f", b"payload");
    fs::create_dir_all(p.left.path("e/m/p/t/y")).unwrap();
    std::os::unix::fs::symlink("f", p.left.path("a/l")).unwrap();
    p.right.eventually_has("a/f", b"payload");
    p.right.eventually_has_dir("e/m/p/t/y");
    let before = fs::symlink_metadata(p.left.path("a/f")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let after = fs::symlink_metadata(p.left.path("a/f")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.ino(), before.mtime_nsec(), before.ctime_nsec()),
        (after.ino(), after.mtime_nsec(), after.ctime_nsec())
    );
    let log = p.log_text();
    let back: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("path=a") || l.contains("path=e"))
        // An action sent back is an echo. (A report from the right can be
        // queued when the file changed again while it was copied: the engine
        // then finds it equal to the index and sends nothing back.)
        .filter(|l| l.contains("copy R→L") || l.contains("on left:"))
        .collect();
    assert!(back.is_empty(), "echo sent back:\n{}", back.join("\n"));
    assert!(
        log.contains("dropped: echo"),
        "no echo was even seen:\n{log}"
    );
    p.eventually_equal();
}

#[test]
fn a_real_edit_right_after_a_synced_write_is_not_swallowed() {
    let mut p = Pair::new();
    p.start(&[]);
    for i in 0..20 {
        let v = format!("version {i}");
        p.left.write("f", v.as_bytes());
        p.right.eventually_has("f", v.as_bytes());
        let w = format!("reply {i}");
        p.right.write("f", w.as_bytes());
        if !(0..4000).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            p.left.read("f").as_deref() == Some(w.as_bytes())
        }) {
            panic!("{i}: {}", p.log_tail());
        }
    }
    p.eventually_equal();
}
