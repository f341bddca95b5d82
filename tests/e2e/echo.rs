use std::fs;
use std::process::Command;

use crate::harness::{bin, Pair};

/// After a change has arrived, nothing is sent back: once the pair is
/// settled (`twinsync flush`, which waits for a verification after a quiet
/// time), the source file keeps its inode, mtime and ctime, nothing was
/// copied or changed on the left, and the echoes were seen and dropped
/// (`status`).
#[test]
fn writes_are_never_echoed_back() {
    let mut p = Pair::new();
    let rt = p.dir.path().join("run");
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    p.start(&["--instance", "echo-test"]);
    let control = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env("TWINSYNC_RUNTIME_DIR", &rt)
            .output()
            .unwrap();
        assert!(out.status.success(), "twinsync {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = || -> serde_json::Value {
        serde_json::from_str(control(&["status", "--json"]).lines().next().unwrap()).unwrap()
    };
    // (The start's probe files went both ways.)
    let into_left = status()["files"][0].as_u64().unwrap();
    p.left.write("a/f", b"payload");
    fs::create_dir_all(p.left.path("e/m/p/t/y")).unwrap();
    std::os::unix::fs::symlink("f", p.left.path("a/l")).unwrap();
    p.right.eventually_has("a/f", b"payload");
    p.right.eventually_has_dir("e/m/p/t/y");
    let before = fs::symlink_metadata(p.left.path("a/f")).unwrap();
    control(&["flush", "echo-test", "--timeout", "60"]);
    let after = fs::symlink_metadata(p.left.path("a/f")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.ino(), before.mtime_nsec(), before.ctime_nsec()),
        (after.ino(), after.mtime_nsec(), after.ctime_nsec())
    );
    let v = status();
    // No file copied into the left since; echoes dropped: some.
    assert_eq!(v["files"][0].as_u64(), Some(into_left), "{v}");
    assert!(v["echoes"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["repairs"].as_u64(), Some(0), "{v}");
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
