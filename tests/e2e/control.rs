//! Control for scripts: `twinsync flush`, `pause`, `resume` and
//! `conflicts`, through a running instance's socket.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::harness::{bin, eventually, Pair};

/// A live pair whose instance `name` has its socket in its own runtime
/// directory.
fn controlled(name: &str) -> (Pair, PathBuf) {
    let mut p = Pair::new();
    let rt = p.dir.path().join("run");
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    p.start(&["--instance", name]);
    (p, rt)
}

fn twinsync(rt: &PathBuf, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("TWINSYNC_RUNTIME_DIR", rt)
        .output()
        .unwrap()
}

/// `twinsync ARGS` must succeed.
fn ok(rt: &PathBuf, args: &[&str]) -> String {
    let out = twinsync(rt, args);
    assert!(
        out.status.success(),
        "twinsync {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The instance's status (`twinsync status --json`).
fn status(rt: &PathBuf) -> serde_json::Value {
    let text = ok(rt, &["status", "--json"]);
    serde_json::from_str(text.lines().next().expect("an instance")).unwrap()
}

#[test]
fn flush_returns_once_a_change_made_just_before_has_arrived() {
    let (p, rt) = controlled("flush-test");
    for round in 0..3 {
        let data = format!("round {round}").into_bytes();
        p.left.write(format!("l{round}"), &data);
        p.right.write(format!("r{round}"), &data);
        ok(&rt, &["flush", "flush-test", "--timeout", "30"]);
        // No waiting here: flush has returned, so it is there.
        assert_eq!(
            p.right.read(format!("l{round}")).as_deref(),
            Some(&data[..])
        );
        assert_eq!(p.left.read(format!("r{round}")).as_deref(), Some(&data[..]));
        let st = status(&rt);
        assert_eq!(st["queue"], 0, "{st}");
    }
    // The name may be left out when one instance runs.
    p.left.write("last", b"x");
    ok(&rt, &["flush"]);
    assert_eq!(p.right.read("last").as_deref(), Some(&b"x"[..]));
    assert_eq!(status(&rt)["repairs"], 0);
}

#[test]
fn flush_gives_up_after_its_timeout_saying_why() {
    let (_p, rt) = controlled("flush-timeout");
    // A flush waits at least a quiet second for its verification.
    let out = twinsync(&rt, &["flush", "flush-timeout", "--timeout", "0.2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("flush-timeout did not settle within 0.2 s"),
        "{err}"
    );
    let out = twinsync(&rt, &["flush", "no-such-instance"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "no twinsync instance \"no-such-instance\" is running (running: flush-timeout)"
        ),
        "{err}"
    );
}

#[test]
fn a_change_waits_while_paused_and_travels_on_resume() {
    let (p, rt) = controlled("pause-test");
    ok(&rt, &["pause", "pause-test"]);
    p.left.write("held", b"h");
    // The change reached the brain, which holds it.
    eventually("the change queued while paused", || {
        let st = status(&rt);
        st["state"] == "paused" && st["queue"].as_u64() > Some(0)
    });
    assert!(!p.right.exists("held"), "travelled while paused");
    // A flush cannot settle a paused instance: it says so at once.
    let out = twinsync(&rt, &["flush", "pause-test"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("paused"), "{err}");
    ok(&rt, &["resume", "pause-test"]);
    p.right.eventually_has("held", b"h");
    ok(&rt, &["flush", "pause-test", "--timeout", "30"]);
    assert_eq!(status(&rt)["state"], "live");
}

#[test]
fn conflicts_lists_the_copies_not_yet_resolved() {
    let (p, rt) = controlled("conflicts-test");
    assert_eq!(ok(&rt, &["conflicts", "--json"]), "");
    ok(&rt, &["pause"]);
    p.left.write("doc.txt", b"left version, newer");
    p.right.write("doc.txt", b"right");
    let older = SystemTime::now() - Duration::from_secs(3600);
    p.right.set_mtime("doc.txt", older);
    eventually("both writes queued", || {
        status(&rt)["queue"].as_u64() >= Some(2)
    });
    ok(&rt, &["resume"]);
    ok(&rt, &["flush", "--timeout", "30"]);
    let text = ok(&rt, &["conflicts", "conflicts-test", "--json"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let c: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(c["path"], "doc.txt", "{c}");
    let kept = c["kept_as"].as_str().unwrap().to_string();
    assert!(
        kept.starts_with("doc.conflict-") && kept.ends_with("-right.txt"),
        "{c}"
    );
    assert_eq!(c["current"]["side"], "left", "{c}");
    assert_eq!(c["current"]["size"], 19, "{c}");
    assert_eq!(c["kept"]["side"], "right", "{c}");
    assert_eq!(c["kept"]["size"], 5, "{c}");
    let mtime = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let on_disk = |r: &crate::harness::Replica, rel: &str| {
        mtime(std::fs::metadata(r.path(rel)).unwrap().modified().unwrap())
    };
    assert_eq!(
        c["current"]["mtime_ns"],
        on_disk(&p.right, "doc.txt"),
        "{c}"
    );
    assert_eq!(c["kept"]["mtime_ns"], on_disk(&p.left, &kept), "{c}");
    // The table says the same.
    let table = ok(&rt, &["conflicts"]);
    assert!(table.contains(&format!("doc.txt → {kept}")), "{table}");
    // Resolved by deleting the copy: no longer listed.
    std::fs::remove_file(p.left.path(&kept)).unwrap();
    p.right.eventually_gone(&kept);
    ok(&rt, &["flush", "--timeout", "30"]);
    assert_eq!(ok(&rt, &["conflicts", "--json"]), "");
}
