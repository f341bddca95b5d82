//! Fixed scenarios of issue #10, each against the real binary. Some fail
//! against today's product: that is their point. Every wait is bounded and
//! waits on a condition.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, SystemTime};

use crate::campaign::{self, Knobs, Mode};
use crate::harness::{self, bin, wait_for, Brain, Entry, Tree};

const WAIT: Duration = Duration::from_secs(20);

/// A local pair in a temp dir and its (not yet started) brain.
struct Pair {
    dir: tempfile::TempDir,
    left: PathBuf,
    right: PathBuf,
    brain: Brain,
}

impl Pair {
    fn new(opts: &[&str]) -> Pair {
        let dir = harness::temp_dir("twinsync-regress-", false);
        let (left, right) = (dir.path().join("left"), dir.path().join("right"));
        fs::create_dir(&left).unwrap();
        fs::create_dir(&right).unwrap();
        let marker = format!("regress-{}", dir.path().display());
        let brain = Brain::new(dir.path(), harness::args(opts, &left, &right), &marker);
        Pair {
            dir,
            left,
            right,
            brain,
        }
    }

    fn start(&mut self) {
        self.brain.spawn();
        self.brain.wait_live(WAIT);
    }

    fn trees(&self) -> (Tree, Tree) {
        (
            harness::tree(&self.left, true),
            harness::tree(&self.right, true),
        )
    }

    /// Wait (bounded) until the brain is settled and both trees are equal;
    /// panic with the differences if not.
    fn converge(&mut self) -> Tree {
        let mut last = (Tree::new(), Tree::new());
        let ok = wait_for(WAIT, || {
            assert!(
                self.brain.exited().is_none(),
                "twinsync exited:\n{}",
                self.brain.log_tail(40)
            );
            let settled = self.brain.settled();
            last = self.trees();
            settled && last.0 == last.1
        });
        assert!(
            ok,
            "not converged within {WAIT:?}:\n{}\nlog tail:\n{}",
            harness::diff(&last.0, &last.1, 30).join("\n"),
            self.brain.log_tail(40)
        );
        last.0
    }

    /// `twinsync --sync-only [extra] LEFT RIGHT` to completion.
    fn sync_only(&self, extra: &[&str]) -> (std::process::ExitStatus, String) {
        let out = Command::new(bin())
            .args(["--sync-only"])
            .args(extra)
            .arg(&self.left)
            .arg(&self.right)
            .env("TWINSYNC_RUNTIME_DIR", &self.brain.runtime_dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn mtime_of(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

/// Files of a tree whose name is `name` or a conflict copy of it.
fn versions(t: &Tree, name: &str) -> Vec<(String, Vec<u8>)> {
    let prefix = format!("{name}.conflict-");
    t.iter()
        .filter_map(|(k, e)| {
            let k = String::from_utf8_lossy(k).into_owned();
            match e {
                Entry::File { data, .. } if k == name || k.starts_with(&prefix) => {
                    Some((k, data.clone()))
                }
                _ => None,
            }
        })
        .collect()
}

/// cp -p restore: another file with the same size and mtime, renamed over.
fn restore_over(dir: &Path, target: &Path, data: &[u8]) {
    let mtime = mtime_of(target);
    assert_eq!(fs::metadata(target).unwrap().len(), data.len() as u64);
    let staging = dir.join("restore.staging");
    harness::write_with_mtime(&staging, data, mtime).unwrap();
    fs::rename(&staging, target).unwrap();
}

#[test]
fn cp_p_restore_live() {
    let _one = crate::one_at_a_time();
    let mut p = Pair::new(&[]);
    p.start();
    fs::write(p.left.join("conf"), b"version one").unwrap();
    wait_for(WAIT, || {
        fs::read(p.right.join("conf")).ok().as_deref() == Some(b"version one")
    });
    p.converge();
    restore_over(p.dir.path(), &p.left.join("conf"), b"version TWO");
    let ok = wait_for(WAIT, || {
        fs::read(p.right.join("conf")).ok().as_deref() == Some(b"version TWO")
    });
    assert!(
        ok,
        "right/conf still holds {:?} after a cp -p restore on the left (same size and mtime)\nlog tail:\n{}",
        String::from_utf8_lossy(&fs::read(p.right.join("conf")).unwrap_or_default()),
        p.brain.log_tail(30)
    );
    p.converge();
}

#[test]
fn cp_p_restore_sync_only() {
    let _one = crate::one_at_a_time();
    let mut p = Pair::new(&[]);
    p.start();
    fs::write(p.left.join("conf"), b"version one").unwrap();
    p.converge();
    assert_eq!(fs::read(p.right.join("conf")).unwrap(), b"version one");
    let st = p.brain.stop();
    assert!(st.is_some_and(|s| s.success()), "stop: {st:?}");
    restore_over(p.dir.path(), &p.left.join("conf"), b"version TWO");
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "--sync-only failed: {st}\n{err}");
    let got = fs::read(p.right.join("conf")).unwrap();
    assert!(
        got == b"version TWO",
        "right/conf holds {:?} after a cp -p restore on the left (same size and mtime) and --sync-only; expected \"version TWO\"",
        String::from_utf8_lossy(&got)
    );
    let (l, r) = p.trees();
    assert!(
        l == r,
        "trees differ:\n{}",
        harness::diff(&l, &r, 20).join("\n")
    );
}

#[test]
fn same_mtime_tie_live() {
    let _one = crate::one_at_a_time();
    let mut p = Pair::new(&[]);
    p.start();
    fs::write(p.left.join("conf"), b"original").unwrap();
    wait_for(WAIT, || p.right.join("conf").exists());
    p.converge();
    // Paused, so that both writes are reports of the same moment for the
    // engine (live, a write delayed until after the other side's version
    // was installed there is a later edit of that version, not a tie).
    p.brain.control("pause");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for (root, data) in [(&p.left, b"LEFT-version-1"), (&p.right, b"RIGHT-versio-2")] {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                harness::write_with_mtime(&root.join("conf"), data, t).unwrap();
            });
        }
    });
    // Both reports taken in (queued on both sides), then resumed.
    assert!(
        wait_for(WAIT, || {
            p.brain
                .status()
                .is_some_and(|s| s["queue"].as_u64().unwrap_or(0) >= 2)
        }),
        "the paused pair never queued both writes:\n{}",
        p.brain.log_tail(40)
    );
    p.brain.control("resume");
    let l = p.converge();
    let got = versions(&l, "conf");
    let has = |d: &[u8]| got.iter().any(|(_, x)| x == d);
    assert!(
        has(b"LEFT-version-1") && has(b"RIGHT-versio-2") && got.iter().any(|(k, _)| k == "conf"),
        "after concurrent same-length, same-mtime writes both versions must be kept (at conf and conf.conflict-*, on both sides); found: {:?}\n--- brain log ---\n{}",
        got.iter().map(|(k, d)| format!("{k}={}", String::from_utf8_lossy(d))).collect::<Vec<_>>(),
        p.brain.log_tail(60)
    );
}

#[test]
fn same_mtime_tie_first_sync() {
    let _one = crate::one_at_a_time();
    let p = Pair::new(&[]);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    harness::write_with_mtime(&p.left.join("f"), b"left bytes", t).unwrap();
    harness::write_with_mtime(&p.right.join("f"), b"RIGHTbytes", t).unwrap();
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "--sync-only failed: {st}\n{err}");
    let (l, r) = p.trees();
    assert!(
        l == r,
        "trees differ after the first sync:\n{}",
        harness::diff(&l, &r, 20).join("\n")
    );
    let got = versions(&l, "f");
    let has = |d: &[u8]| got.iter().any(|(_, x)| x == d);
    assert!(
        has(b"left bytes") && has(b"RIGHTbytes"),
        "a first sync of two different same-size same-mtime files must keep both; found: {:?}",
        got.iter()
            .map(|(k, d)| format!("{k}={}", String::from_utf8_lossy(d)))
            .collect::<Vec<_>>()
    );
}

/// The copy counters of a status.
fn counters(s: &serde_json::Value) -> (String, String) {
    (s["files"].to_string(), s["bytes"].to_string())
}

#[test]
fn two_writers_no_loop() {
    let _one = crate::one_at_a_time();
    let mut p = Pair::new(&[]);
    for d in 0..10 {
        fs::create_dir_all(p.left.join(format!("d{d}"))).unwrap();
    }
    p.start();
    p.converge();
    std::thread::scope(|s| {
        for (root, tag) in [(&p.left, "L"), (&p.right, "R")] {
            s.spawn(move || {
                for i in 0..300 {
                    let d = root.join(format!("d{}", i % 10));
                    let _ = fs::create_dir_all(&d);
                    fs::write(d.join(format!("{tag}-{i}")), format!("{tag} file {i}")).unwrap();
                    if i % 15 == 0 {
                        fs::write(root.join("shared.txt"), format!("{tag} shared at step {i}"))
                            .unwrap();
                    }
                }
            });
        }
    });
    p.converge();
    // The counters stop growing: settled, equal trees and the same counters
    // over two status reads 200 ms apart.
    let mut seen = Vec::new();
    let ok = wait_for(WAIT, || {
        let Some(a) = p.brain.status() else {
            return false;
        };
        std::thread::sleep(Duration::from_millis(200));
        let Some(b) = p.brain.status() else {
            return false;
        };
        let (l, r) = p.trees();
        let settled =
            |s: &serde_json::Value| s["state"] == "live" && s["queue"].as_u64() == Some(0);
        seen.push(format!("{:?} -> {:?}", counters(&a), counters(&b)));
        settled(&a) && settled(&b) && counters(&a) == counters(&b) && l == r
    });
    assert!(
        ok,
        "the copy counters kept growing (or the pair never settled) within {WAIT:?}: last reads {:?}\nlog tail:\n{}",
        &seen[seen.len().saturating_sub(5)..],
        p.brain.log_tail(30)
    );
    let (l, _) = p.trees();
    for tag in ["L", "R"] {
        for i in 0..300 {
            let k = format!("d{}/{tag}-{i}", i % 10);
            assert!(
                l.contains_key(k.as_bytes()),
                "{k} missing after convergence"
            );
        }
    }
}

/// A small campaign run: private churn on each side, plain writes to a few
/// shared files; no conflict copy may appear in a private subtree.
#[test]
fn private_churn_no_spurious_conflicts() {
    let _one = crate::one_at_a_time();
    let seed = 424_242;
    if let Err(report) = campaign::run(
        seed,
        Mode::Local,
        Knobs {
            gentle_shared: true,
        },
    ) {
        panic!("{report}\n(this is the regression private_churn_no_spurious_conflicts: cargo test -p twinsync --test campaign -- private_churn_no_spurious_conflicts --nocapture)");
    }
}

fn rm_rf_root_keeps_the_other_side(remove_right: bool) {
    let mut p = Pair::new(&[]);
    for i in 0..200 {
        let d = p.left.join(format!("d{}", i % 7));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    p.start();
    p.converge();
    let (gone, kept) = if remove_right {
        (&p.right, &p.left)
    } else {
        (&p.left, &p.right)
    };
    fs::remove_dir_all(gone).unwrap();
    let st = p.brain.wait_exit(WAIT);
    let t = harness::tree(kept, true);
    let missing: Vec<String> = (0..200)
        .map(|i| format!("d{}/f{i}", i % 7))
        .filter(|k| !matches!(t.get(k.as_bytes()), Some(Entry::File { .. })))
        .collect();
    assert!(
        missing.is_empty(),
        "after rm -rf of the {} root, {} of 200 files are gone from the other side's tree (first: {:?}); trash holds {} files",
        if remove_right { "right" } else { "left" },
        missing.len(),
        &missing[..missing.len().min(5)],
        harness::contents_below(&kept.join(".twinsync/trash")).len()
    );
    match st {
        Some(st) => assert!(
            !st.success(),
            "the brain exited with {st} after its replica root vanished (expected non-zero)"
        ),
        None => panic!(
            "the brain did not exit within {WAIT:?} after the {} root vanished\nlog tail:\n{}",
            if remove_right { "right" } else { "left" },
            p.brain.log_tail(20)
        ),
    }
}

#[test]
fn rm_rf_right_root_changes_nothing_left() {
    let _one = crate::one_at_a_time();
    rm_rf_root_keeps_the_other_side(true);
}

#[test]
fn rm_rf_left_root_changes_nothing_right() {
    let _one = crate::one_at_a_time();
    rm_rf_root_keeps_the_other_side(false);
}

/// uid/gid of nobody/nogroup.
const NOBODY: u32 = 65534;

fn chown_nobody(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

#[test]
fn unreadable_dir_left_alone() {
    let _one = crate::one_at_a_time();
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut p = Pair::new(&[]);
    let setpriv = "/usr/bin/setpriv";
    if root {
        assert!(
            Path::new(setpriv).exists(),
            "setpriv missing: .ci/run must apt-get install util-linux"
        );
        // The temp dir (and what is below it) belongs to nobody, who runs the sync.
        fs::set_permissions(p.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for d in [
            p.dir.path().to_path_buf(),
            p.left.clone(),
            p.right.clone(),
            p.brain.runtime_dir.clone(),
            p.dir.path().join("state"),
        ] {
            chown_nobody(&d);
        }
        let log = fs::File::create(&p.brain.log).unwrap();
        drop(log);
        chown_nobody(&p.brain.log);
        // The binary must be reachable by nobody.
        let out = Command::new(setpriv)
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                &bin(),
                "--version",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nobody cannot run {}: {}",
            bin(),
            String::from_utf8_lossy(&out.stderr)
        );
        p.brain.setpriv = Some(vec![
            setpriv.into(),
            "--reuid=nobody".into(),
            "--regid=nogroup".into(),
            "--clear-groups".into(),
        ]);
        p.brain
            .envs
            .push((OsString::from("HOME"), p.dir.path().as_os_str().to_owned()));
    }
    let write = |path: PathBuf, data: &[u8]| {
        fs::write(&path, data).unwrap();
        if root {
            chown_nobody(&path);
        }
    };
    write(p.left.join("plain-l"), b"readable left");
    write(p.right.join("plain-r"), b"readable right");
    let locked = p.left.join("locked");
    fs::create_dir(&locked).unwrap();
    write(locked.join("secret"), b"inside");
    if root {
        chown_nobody(&locked);
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();

    p.brain.spawn();
    let ok = wait_for(WAIT, || {
        p.brain.exited().is_none()
            && fs::read(p.right.join("plain-l")).ok().as_deref() == Some(b"readable left")
            && fs::read(p.left.join("plain-r")).ok().as_deref() == Some(b"readable right")
    });
    assert!(
        ok,
        "with an unreadable dir on the left, the other files did not sync both ways (brain running: {})\nlog tail:\n{}",
        p.brain.pid().is_some(),
        p.brain.log_tail(30)
    );
    // Live both ways afterwards too.
    write(p.left.join("later-l"), b"later left");
    write(p.right.join("later-r"), b"later right");
    let ok = wait_for(WAIT, || {
        p.brain.exited().is_none()
            && fs::read(p.right.join("later-l")).ok().as_deref() == Some(b"later left")
            && fs::read(p.left.join("later-r")).ok().as_deref() == Some(b"later right")
    });
    assert!(
        ok,
        "live changes did not sync both ways next to an unreadable dir\nlog tail:\n{}",
        p.brain.log_tail(30)
    );
    assert!(
        p.brain.exited().is_none(),
        "the brain exited\nlog tail:\n{}",
        p.brain.log_tail(30)
    );
    assert!(
        p.brain.settled() || wait_for(WAIT, || p.brain.settled()),
        "never settled"
    );
    // The unreadable dir is left as it was.
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(&locked).expect("left/locked is gone");
    assert!(
        md.is_dir() && md.mode() & 0o7777 == 0,
        "left/locked changed: mode {:o}",
        md.mode()
    );
    assert_eq!(
        fs::read(locked.join("secret")).unwrap(),
        b"inside",
        "left/locked/secret changed"
    );
    assert!(
        !p.right.join("locked/secret").exists(),
        "content of an unreadable dir reached the right"
    );
    let st = p.brain.stop();
    assert!(st.is_some_and(|s| s.success()), "stop: {st:?}");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn sigint_to_process_group_is_clean() {
    let _one = crate::one_at_a_time();
    let mut p = Pair::new(&[]);
    fs::write(p.left.join("a"), b"a").unwrap();
    p.brain.own_group = true;
    p.start();
    p.converge();
    let pgid = p.brain.pid().unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let st = p.brain.wait_exit(WAIT);
    assert!(
        st.is_some_and(|s| s.success()),
        "SIGINT to the process group: exit {st:?} (expected 0)\nlog tail:\n{}",
        p.brain.log_tail(30)
    );
    for side in [&p.left, &p.right] {
        let lock = side.join(".twinsync/lock");
        assert!(
            !lock.exists(),
            "{} left behind after a clean exit",
            lock.display()
        );
    }
}

#[test]
fn dry_run_creates_nothing() {
    let _one = crate::one_at_a_time();
    let p = Pair::new(&[]);
    fs::write(p.left.join("l"), b"left").unwrap();
    fs::write(p.right.join("r"), b"right").unwrap();
    let (st, err) = p.sync_only(&["--dry-run"]);
    assert!(st.success(), "--dry-run --sync-only failed: {st}\n{err}");
    for side in [&p.left, &p.right] {
        assert!(
            !side.join(".twinsync").exists(),
            "--dry-run created {}",
            side.join(".twinsync").display()
        );
    }
    assert!(
        !p.right.join("l").exists() && !p.left.join("r").exists(),
        "--dry-run copied files"
    );
}
