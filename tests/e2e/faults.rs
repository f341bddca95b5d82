use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{eventually, run_once, Pair};

#[test]
fn an_inotify_queue_overflow_is_rescanned_and_converges() {
    let mut p = Pair::new();
    p.left.write("old/keep", b"k");
    p.left.write("old/del", b"d");
    for d in 0..40 {
        fs::create_dir_all(p.left.path(format!("flood/{d}"))).unwrap();
    }
    // The inotify backend's overflow, whatever backend the suite runs with.
    p.start(&["--watcher", "inotify"]);
    p.eventually_equal();
    let agents = p.agent_pids();
    assert_eq!(agents.len(), 2, "expected two agents");
    // Freeze both agents so their kernel queues fill past
    // max_queued_events while we flood the left replica.
    let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .map_or(16384, |s| s.trim().parse().unwrap());
    for &a in &agents {
        unsafe { libc::kill(a, libc::SIGSTOP) };
    }
    let n = limit + 2000;
    for i in 0..n {
        let d = p.left.path(format!("flood/{}", i % 40));
        fs::write(d.join(format!("f{i}")), b"x").unwrap();
    }
    fs::remove_file(p.left.path("old/del")).unwrap();
    for &a in &agents {
        unsafe { libc::kill(a, libc::SIGCONT) };
    }
    // 18k files through a rescan and rsync: allow a slow, busy disk.
    crate::harness::eventually_within(
        std::time::Duration::from_secs(90),
        "all flood files on the right",
        || {
            (0..40)
                .map(|d| fs::read_dir(p.right.path(format!("flood/{d}"))).map_or(0, |r| r.count()))
                .sum::<usize>()
                == n
        },
    );
    p.right.eventually_gone("old/del");
    assert!(p.right.exists("old/keep"));
    p.eventually_equal();
    assert!(p.log_text().contains("rescan"), "no rescan in the log");
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn unreadable_files_are_logged_and_skipped_without_stopping() {
    let mut p = Pair::new();
    p.left.write("secret", b"s");
    fs::set_permissions(p.left.path("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    p.left.write("public", b"p");
    if is_root() {
        // root reads everything: run the sync as nobody instead.
        for e in [
            &p.dir.path().to_path_buf(),
            &p.left.root,
            &p.right.root,
            &p.left.path("secret"),
            &p.left.path("public"),
        ] {
            std::os::unix::fs::chown(e, Some(65534), Some(65534)).unwrap();
        }
        assert!(
            Command::new("setpriv").arg("--version").output().is_ok(),
            "setpriv (util-linux) is needed"
        );
        spawn_as_nobody(&mut p);
        p.right.eventually_has("public", b"p");
        // the sync goes on: later writes still arrive (written as nobody)
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
            ])
            .arg(format!("echo later > '{}'", p.left.path("later").display()))
            .status()
            .unwrap();
        assert!(out.success());
    } else {
        p.start(&[]);
        p.right.eventually_has("public", b"p");
        p.left.write("later", b"later\n");
    }
    p.right.eventually_has("later", b"later\n");
    assert!(!p.right.exists("secret"));
    assert!(
        p.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "sync stopped"
    );
    eventually("the failure is logged with the path", || {
        let log = p.log_text();
        log.contains("secret") && (log.contains("Permission denied") || log.contains("not copied"))
    });
}

#[test]
fn a_vanished_root_stops_the_sync_and_deletes_nothing() {
    let mut p = Pair::new();
    for i in 0..50 {
        p.left.write(format!("f{i}"), b"keep me");
    }
    p.start(&[]);
    p.eventually_equal();
    let away = p.dir.path().join("right-unmounted");
    fs::rename(&p.right.root, &away).unwrap();
    let st = p.wait_exit();
    assert!(!st.success());
    assert!(p.log_text().contains("vanished"), "{}", p.log_tail());
    for i in 0..50 {
        assert_eq!(p.left.read(format!("f{i}")).unwrap(), b"keep me");
    }
}

#[test]
fn a_missing_root_at_start_is_a_clear_error() {
    let p = Pair::new();
    let missing = p.dir.path().join("nope");
    let (st, err) = run_once(&[p.left.root.as_os_str(), missing.as_os_str()]);
    assert_eq!(st.code(), Some(2));
    assert!(
        err.contains("does not exist") && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn the_same_root_twice_or_nested_roots_are_refused() {
    let p = Pair::new();
    let (st, err) = run_once(&[p.left.root.as_os_str(), p.left.root.as_os_str()]);
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("same directory"), "{err}");
    let inner = p.left.path("inner");
    fs::create_dir(&inner).unwrap();
    let (st, err) = run_once(&[p.left.root.as_os_str(), inner.as_os_str()]);
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("inside the other"), "{err}");
    let (st, err) = run_once(&[OsStr::new("only-one")]);
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("two replica roots"), "{err}");
}

#[test]
fn sigterm_stops_cleanly() {
    let mut p = Pair::new();
    p.start(&[]);
    let st = p.stop();
    assert!(st.success(), "{st}");
    assert!(p.log_text().contains("stopped"));
}

/// `twinsync --sync-only LEFT RIGHT` to completion, as nobody when run as
/// root (root reads everything): (status, stderr).
fn sync_only_unprivileged(p: &Pair) -> (std::process::ExitStatus, String) {
    if !is_root() {
        return p.sync_only(&[]);
    }
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(p.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let exe = p.dir.path().join("twinsync");
    if !exe.exists() {
        fs::copy(crate::harness::bin(), &exe).unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .arg("--sync-only")
        .arg(&p.left.root)
        .arg(&p.right.root)
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv (util-linux) is needed");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreadable_directory_is_not_taken_for_deleted_at_a_merge() {
    let p = Pair::new();
    p.left.write("locked/a", b"a");
    p.left.write("locked/sub/b", b"b");
    // Enough besides that its loss stays under the mass-deletion limit.
    for i in 0..10 {
        p.left.write(format!("open{i}"), b"o");
    }
    let (st, err) = sync_only_unprivileged(&p);
    assert!(st.success(), "{err}");
    assert_eq!(p.right.read("locked/sub/b").as_deref(), Some(&b"b"[..]));
    // The left's directory can no longer be listed (write and search only:
    // the mode synced to the right still lets entries be renamed out of
    // it there): its listing says nothing of what is inside, which must
    // not read as "deleted".
    fs::set_permissions(p.left.path("locked"), fs::Permissions::from_mode(0o300)).unwrap();
    p.right.write("new", b"n");
    let (st, err) = sync_only_unprivileged(&p);
    fs::set_permissions(p.left.path("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(st.success(), "{err}");
    assert!(
        err.contains("locked"),
        "the unreadable directory is named: {err}"
    );
    assert_eq!(p.right.read("locked/a").as_deref(), Some(&b"a"[..]));
    assert_eq!(p.right.read("locked/sub/b").as_deref(), Some(&b"b"[..]));
    assert!(
        p.right.trash_contents().is_empty(),
        "{:?}",
        p.right.trash_contents()
    );
    // and the rest of the merge went on
    assert_eq!(p.left.read("new").as_deref(), Some(&b"n"[..]));
    assert_eq!(p.left.read("locked/a").as_deref(), Some(&b"a"[..]));
}

/// Start the live sync of `p`, as nobody when run as root (root reads
/// everything), and wait until it is live both ways.
fn start_unprivileged(p: &mut Pair) {
    if !is_root() {
        p.start(&[]);
        return;
    }
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(p.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    spawn_as_nobody(p);
    p.wait_live();
}

/// Start the live sync of `p` as nobody (uid and gid 65534), from a copy
/// of the binary nobody can run, wherever the build lives.
pub(crate) fn spawn_as_nobody(p: &mut Pair) {
    let exe = p.dir.path().join("twinsync");
    fs::copy(crate::harness::bin(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let log = fs::File::create(&p.log).unwrap();
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["-d", "2"])
        .arg(&p.left.root)
        .arg(&p.right.root)
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("setpriv (util-linux) is needed");
    p.child = Some(child);
}

/// Both ways, a new file arrives on the other side.
fn still_syncs_both_ways(p: &Pair, tag: &str) {
    p.left.write(format!("from-left-{tag}"), b"L");
    p.right.write(format!("from-right-{tag}"), b"R");
    p.right.eventually_has(format!("from-left-{tag}"), b"L");
    p.left.eventually_has(format!("from-right-{tag}"), b"R");
}

#[test]
fn an_unreadable_directory_at_start_is_left_alone_and_the_rest_syncs() {
    let mut p = Pair::new();
    p.left.write("secret/inner", b"s");
    p.left.write("secret/sub/deeper", b"d");
    for i in 0..10 {
        p.left.write(format!("open{i}"), b"o");
    }
    // Synced once while readable: the index knows what is inside.
    let (st, err) = sync_only_unprivileged(&p);
    assert!(st.success(), "{err}");
    assert_eq!(
        p.right.read("secret/sub/deeper").as_deref(),
        Some(&b"d"[..])
    );
    fs::set_permissions(p.left.path("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    start_unprivileged(&mut p);
    still_syncs_both_ways(&p, "1");
    assert_eq!(p.right.read("secret/inner").as_deref(), Some(&b"s"[..]));
    assert_eq!(
        p.right.read("secret/sub/deeper").as_deref(),
        Some(&b"d"[..])
    );
    assert!(
        p.right.trash_contents().iter().all(|c| c == b"probe"),
        "trashed on the right: {:?}\n{}",
        p.right.trash_contents(),
        p.log_text()
    );
    assert!(
        p.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the sync stopped:\n{}",
        p.log_tail()
    );
}

#[test]
fn a_directory_made_unreadable_live_keeps_the_sync_going() {
    let mut p = Pair::new();
    p.left.write("locked/inner", b"i");
    p.right.write("locked/inner", b"i");
    start_unprivileged(&mut p);
    p.eventually_equal();
    // A watched directory made unreadable, and one created unreadable.
    fs::set_permissions(p.left.path("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::create_dir(p.left.path("fresh")).unwrap();
    fs::set_permissions(p.left.path("fresh"), fs::Permissions::from_mode(0o000)).unwrap();
    // (root writes into it regardless; the sync cannot see it yet)
    fs::write(p.left.path("fresh/later"), b"f").unwrap();
    still_syncs_both_ways(&p, "1");
    p.right.eventually_has_dir("fresh");
    assert_eq!(p.right.read("locked/inner").as_deref(), Some(&b"i"[..]));
    // Made readable again, its contents are picked up.
    fs::set_permissions(p.left.path("fresh"), fs::Permissions::from_mode(0o755)).unwrap();
    p.right.eventually_has("fresh/later", b"f");
    still_syncs_both_ways(&p, "2");
    assert_eq!(p.right.read("locked/inner").as_deref(), Some(&b"i"[..]));
    assert!(
        p.right.trash_contents().iter().all(|c| c == b"probe"),
        "trashed on the right: {:?}",
        p.right.trash_contents()
    );
    assert!(
        p.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the sync stopped:\n{}",
        p.log_tail()
    );
}
