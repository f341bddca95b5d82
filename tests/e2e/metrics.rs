//! `--metrics ADDR`: Prometheus text format over HTTP, scraped from a live
//! instance and checked by `promtool check metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{bin, eventually, require_tool, Pair};

fn twinsync_ok(rt: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env("TWINSYNC_RUNTIME_DIR", rt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "twinsync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(rt: &Path) -> serde_json::Value {
    let text = twinsync_ok(rt, &["status", "--json"]);
    serde_json::from_str(text.lines().next().expect("an instance")).unwrap()
}

/// `GET path` over HTTP/1.1: (status line, body).
fn get(addr: &str, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.lines().next().unwrap().to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "{head}");
    (status, body.to_string())
}

/// The value of the series `name{pair="…"<labels>}`.
fn value(text: &str, name: &str, labels: &str) -> f64 {
    let sep = if labels.is_empty() { "" } else { "," };
    let prefix = format!("{name}{{pair=\"metrics-test\"{sep}{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
        .parse()
        .unwrap()
}

/// `promtool check metrics` (Debian's prometheus package) finds nothing to
/// say: the format and the naming conventions are right.
fn promtool_check(dir: &Path, text: &str) -> String {
    let promtool = require_tool("promtool", "prometheus");
    let scraped: PathBuf = dir.join("scrape.prom");
    std::fs::write(&scraped, text).unwrap();
    let out = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::from(std::fs::File::open(&scraped).unwrap()))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
    said
}

#[test]
fn metrics_are_served_live_and_pass_promtool() {
    let mut p = Pair::new();
    let rt = p.dir.path().join("run");
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    p.start(&["--instance", "metrics-test", "--metrics", "127.0.0.1:0"]);
    let addr = status(&rt)["metrics"]
        .as_str()
        .expect("the address")
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    p.left.write("a", b"12345");
    p.left.write("b", b"123");
    p.right.write("c", b"1234567");
    twinsync_ok(&rt, &["flush", "--timeout", "30"]);
    let (code, text) = get(&addr, "/metrics");
    assert_eq!(code, "HTTP/1.1 200 OK");
    promtool_check(p.dir.path(), &text);
    // The probes of wait_live count too.
    assert!(
        value(
            &text,
            "twinsync_files_copied_total",
            "direction=\"to_right\""
        ) >= 2.0
    );
    assert!(
        value(
            &text,
            "twinsync_files_copied_total",
            "direction=\"to_left\""
        ) >= 1.0
    );
    assert!(
        value(
            &text,
            "twinsync_copied_bytes_total",
            "direction=\"to_right\""
        ) >= 8.0
    );
    assert!(
        value(
            &text,
            "twinsync_copied_bytes_total",
            "direction=\"to_left\""
        ) >= 7.0
    );
    assert!(value(&text, "twinsync_echoes_dropped_total", "") >= 3.0);
    assert_eq!(value(&text, "twinsync_conflicts_total", ""), 0.0);
    assert_eq!(value(&text, "twinsync_errors_total", ""), 0.0);
    assert_eq!(value(&text, "twinsync_repairs_total", ""), 0.0);
    assert_eq!(value(&text, "twinsync_queue_depth", ""), 0.0);
    // `--watcher` defaults to auto: the kernel's events on both sides.
    for side in ["left", "right"] {
        let labels = format!("side=\"{side}\",backend=\"inotify\"");
        assert_eq!(value(&text, "twinsync_watcher_info", &labels), 1.0);
    }
    assert_eq!(
        status(&rt)["watchers"],
        serde_json::json!(["inotify", "inotify"])
    );
    let synced = value(&text, "twinsync_last_sync_timestamp_seconds", "");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - synced).abs() < 60.0, "{synced} vs {now}");

    // Paused with a change queued: the queue, the lag and the state show it.
    twinsync_ok(&rt, &["pause"]);
    p.left.write("held", b"h");
    eventually("the change queued", || {
        status(&rt)["queue"].as_u64() > Some(0)
    });
    let (_, text) = get(&addr, "/metrics");
    promtool_check(p.dir.path(), &text);
    assert!(value(&text, "twinsync_queue_depth", "") >= 1.0, "{text}");
    assert!(
        value(&text, "twinsync_oldest_pending_change_age_seconds", "") > 0.0,
        "{text}"
    );
    assert_eq!(value(&text, "twinsync_state", "state=\"paused\""), 1.0);
    assert_eq!(value(&text, "twinsync_state", "state=\"live\""), 0.0);

    twinsync_ok(&rt, &["resume"]);
    twinsync_ok(&rt, &["flush", "--timeout", "30"]);
    assert_eq!(p.right.read("held").as_deref(), Some(&b"h"[..]));
    eventually("settled, in the metrics", || {
        let (_, text) = get(&addr, "/metrics");
        value(&text, "twinsync_settled", "") == 1.0
            && value(&text, "twinsync_state", "state=\"live\"") == 1.0
            && value(&text, "twinsync_queue_depth", "") == 0.0
            && value(&text, "twinsync_oldest_pending_change_age_seconds", "") == 0.0
    });

    let (code, _) = get(&addr, "/elsewhere");
    assert_eq!(code, "HTTP/1.1 404 Not Found");
}

#[test]
fn the_polling_watcher_shows_in_the_metrics_and_the_status() {
    let mut p = Pair::new();
    let rt = p.dir.path().join("run");
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    p.start(&[
        "--instance",
        "metrics-test",
        "--metrics",
        "127.0.0.1:0",
        "--watcher",
        "poll",
        "--poll-interval",
        "50",
    ]);
    let addr = status(&rt)["metrics"]
        .as_str()
        .expect("the address")
        .to_string();
    let (_, text) = get(&addr, "/metrics");
    promtool_check(p.dir.path(), &text);
    for side in ["left", "right"] {
        let labels = format!("side=\"{side}\",backend=\"poll\"");
        assert_eq!(value(&text, "twinsync_watcher_info", &labels), 1.0);
    }
    assert!(!text.contains("backend=\"inotify\""), "{text}");
    let table = twinsync_ok(&rt, &["status"]);
    let (head, row) = table.split_once('\n').expect("a header and a row");
    assert!(head.contains("WATCHER"), "{table}");
    assert!(row.contains(" poll "), "{table}");
}

#[test]
fn a_metrics_address_in_use_stops_it_at_start_saying_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let p = Pair::new();
    let (st, err) = crate::harness::run_once(&[
        "--sync-only".as_ref(),
        "--metrics".as_ref(),
        addr.as_ref(),
        p.left.root.as_os_str(),
        p.right.root.as_os_str(),
    ]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot serve metrics on {addr} (--metrics)")),
        "{err}"
    );
}
