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

/// The cell of the status table's first row under `header` (the columns
/// are right-aligned: a cell ends where its header does and starts after
/// the header before it).
fn column(table: &str, header: &str) -> String {
    let mut lines = table.lines();
    let head: Vec<char> = lines.next().unwrap().chars().collect();
    let row: Vec<char> = lines.next().unwrap().chars().collect();
    let text: String = head.iter().collect();
    let at = text.find(&format!(" {header} ")).expect("the header") + 1;
    let start = text[..at].chars().count();
    let end = start + header.chars().count();
    let before = head[..start]
        .iter()
        .rposition(|c| *c != ' ')
        .map_or(0, |i| i + 1);
    row[before..end]
        .iter()
        .collect::<String>()
        .trim()
        .to_string()
}

/// The status table as people read it: a last sync, the lag while a change
/// waits, sizes in KiB/MiB.
#[test]
fn status_shows_the_last_sync_the_lag_and_readable_sizes() {
    let (p, rt) = controlled("status-lag");
    let big = vec![5u8; 3 << 20];
    p.left.write("big", &big);
    ok(&rt, &["flush", "status-lag", "--timeout", "30"]);
    let st = status(&rt);
    assert!(st["last_sync"].as_i64().is_some(), "{st}");
    assert!(st["bytes"][1].as_u64().unwrap() >= 3 << 20, "{st}");
    assert!(st["lag"].is_null(), "nothing waits: {st}");
    let table = ok(&rt, &["status", "status-lag"]);
    let row = table.lines().nth(1).expect("a row");
    assert!(row.contains("3.0 MiB") && row.contains(" ago"), "{table}");
    // A change held back by a pause ages: the lag grows with it.
    ok(&rt, &["pause", "status-lag"]);
    p.left.write("waits", b"w");
    eventually("a lag of a second", || {
        status(&rt)["lag"].as_f64().is_some_and(|l| l >= 1.0)
    });
    let st = status(&rt);
    assert_eq!(st["state"], "paused", "{st}");
    assert!(st["queue"].as_u64().unwrap() >= 1, "{st}");
    let table = ok(&rt, &["status", "status-lag"]);
    let lag = column(&table, "LAG");
    assert!(lag.ends_with(" s") && lag != "0.0 s", "{table}");
    ok(&rt, &["resume", "status-lag"]);
    ok(&rt, &["flush", "status-lag", "--timeout", "30"]);
    assert!(status(&rt)["lag"].is_null());
    // One instance by name; another name is an error.
    let out = twinsync(&rt, &["status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nope\" is running"));
}

/// Issue 15: `ERRORS 0` while the log showed errors.
#[test]
fn status_counts_the_errors_logged() {
    let mut p = Pair::new();
    let rt = p.dir.path().join("run");
    let cfg = p.dir.path().join("pair.toml");
    std::fs::write(&cfg, "exclude = [\"^skip\"]\n").unwrap();
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    p.start(&["--instance", "status-errors", "-c", cfg.to_str().unwrap()]);
    assert_eq!(status(&rt)["errors"], 0);
    // A reload that fails is logged as an error, and counted.
    std::fs::write(&cfg, "exclude = [\"(\"]\n").unwrap();
    unsafe { libc::kill(p.child.as_ref().unwrap().id() as i32, libc::SIGHUP) };
    eventually("the error logged", || {
        p.log_text()
            .contains("SIGHUP: keeping the current excludes")
    });
    eventually("the error counted", || status(&rt)["errors"] == 1);
    let table = ok(&rt, &["status"]);
    assert_eq!(column(&table, "ERRORS"), "1", "{table}");
}

/// Issue 15: `QUEUE 0` during a merge. The changes of the batch being
/// applied are shown (a bandwidth limit keeps the merge running).
#[test]
fn status_shows_the_queue_during_a_merge() {
    let mut p = Pair::new();
    let rt = p.dir.path().join("run");
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    for i in 0..200 {
        p.left.write(format!("m/{i:03}"), &[7u8; 10_000]);
    }
    p.spawn(&["--instance", "status-merge", "--bwlimit", "200"]);
    let mut seen = None;
    eventually("a merge with its queue shown", || {
        let out = twinsync(&rt, &["status", "--json"]);
        let Some(line) = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(String::from)
        else {
            return false;
        };
        let st: serde_json::Value = serde_json::from_str(&line).unwrap();
        let queued = st["queue"].as_u64().unwrap() + st["in_batch"].as_u64().unwrap_or(0);
        if st["state"] == "merging" && queued > 0 {
            seen = Some(queued);
            return true;
        }
        false
    });
    let queued = seen.unwrap();
    assert!(queued <= 200 + 1, "{queued}");
    p.eventually_equal();
}
