//! Prometheus metrics (`--metrics ADDR`): the instance's [`Status`] in the
//! text exposition format (version 0.0.4), served over plain HTTP at
//! `/metrics`.
//!
//! The responder is a few lines on tokio's `TcpListener`: one GET per
//! connection, answered and closed. A scraper needs nothing more, and an
//! HTTP server crate (hyper and its stack) would add more code than this
//! module to a binary that runs on every replica's host.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::state::State;
use crate::status::{Shared, Status};

/// Bind `addr` and serve `status` there until the runtime ends; returns the
/// address bound (its port when `addr`'s is 0).
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(addr: SocketAddr, status: Shared) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                // Out of descriptors for a moment: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let status = std::sync::Arc::clone(&status);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), respond(conn, &status)).await;
            });
        }
    });
    Ok(bound)
}

/// Read one request head and answer it.
async fn respond(mut conn: TcpStream, status: &Shared) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    let (code, body) = match (method, path) {
        (b"GET" | b"HEAD", Some(b"/metrics")) => {
            let s = crate::status::snapshot(status);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            ("200 OK", render(&s, now))
        }
        (b"GET" | b"HEAD", Some(b"/")) => (
            "200 OK",
            "twinsync: the metrics are at /metrics\n".to_string(),
        ),
        (b"GET" | b"HEAD", _) => ("404 Not Found", "not found: try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let mut out = format!(
        "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != b"HEAD" {
        out.push_str(&body);
    }
    conn.write_all(out.as_bytes()).await?;
    conn.shutdown().await
}

/// `s` in the text exposition format, at `now` (seconds since the epoch).
#[must_use]
pub fn render(s: &Status, now: f64) -> String {
    let mut out = String::new();
    let pair = escape(&s.instance);
    let mut family = |name: &str, kind: &str, help: &str, series: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP twinsync_{name} {help}");
        let _ = writeln!(out, "# TYPE twinsync_{name} {kind}");
        for (labels, value) in series {
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(
                out,
                "twinsync_{name}{{pair=\"{pair}\"{sep}{labels}}} {value}"
            );
        }
    };
    let each_way = |v: [u64; 2]| {
        [
            ("direction=\"to_left\"".to_string(), v[0] as f64),
            ("direction=\"to_right\"".to_string(), v[1] as f64),
        ]
    };
    let one = |v: f64| [(String::new(), v)];
    family(
        "files_copied_total",
        "counter",
        "Files copied into each replica.",
        &each_way(s.files),
    );
    family(
        "copied_bytes_total",
        "counter",
        "Bytes copied into each replica.",
        &each_way(s.bytes),
    );
    family(
        "echoes_dropped_total",
        "counter",
        "Events recognised as the sync's own writes and dropped.",
        &one(s.echoes as f64),
    );
    family(
        "conflicts_total",
        "counter",
        "Conflicts found (the losing version kept as a copy).",
        &one(s.conflicts as f64),
    );
    family(
        "errors_total",
        "counter",
        "Errors logged (the sync went on).",
        &one(s.errors as f64),
    );
    family(
        "repairs_total",
        "counter",
        "Differences the background verification found and repaired (a bug: must stay 0).",
        &one(s.repairs as f64),
    );
    family(
        "refused_writes_total",
        "counter",
        "Writes refused because the destination changed meanwhile.",
        &one(s.refused as f64),
    );
    family(
        "verifications_total",
        "counter",
        "Verification passes run.",
        &one(s.verifications as f64),
    );
    family(
        "queue_depth",
        "gauge",
        "Changes waiting for the next batch.",
        &one(s.queue as f64),
    );
    let lag = s.oldest_pending.map_or(0.0, |t| (now - t).max(0.0));
    family(
        "oldest_pending_change_age_seconds",
        "gauge",
        "How long the oldest change not yet synced has waited (0: none).",
        &one(lag),
    );
    // Each state a series.
    let states: Vec<(String, f64)> = State::ALL
        .iter()
        .map(|st| {
            (
                format!("state=\"{st}\""),
                f64::from(u8::from(s.state == *st)),
            )
        })
        .collect();
    family(
        "state",
        "gauge",
        "The instance's state: 1 for the current one.",
        &states,
    );
    family(
        "settled",
        "gauge",
        "1 when live, nothing queued, and verified since the last change.",
        &one(f64::from(u8::from(s.settled))),
    );
    let watchers: Vec<(String, f64)> = ["left", "right"]
        .iter()
        .zip(s.watchers)
        .filter_map(|(side, w)| Some((format!("side=\"{side}\",backend=\"{}\"", w?.name()), 1.0)))
        .collect();
    if !watchers.is_empty() {
        family(
            "watcher_info",
            "gauge",
            "The watcher backend each side's agent uses (inotify or poll; --watcher): always 1.",
            &watchers,
        );
    }
    if let Some(t) = s.last_sync {
        family(
            "last_sync_timestamp_seconds",
            "gauge",
            "End of the last batch applied, seconds since the epoch.",
            &one(t as f64),
        );
    }
    out
}

/// A label value: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_the_pair_label() {
        let s = Status {
            instance: "web\"1".into(),
            state: State::Paused,
            queue: 3,
            files: [1, 2],
            bytes: [10, 20],
            last_sync: Some(1_700_000_000),
            oldest_pending: Some(1_700_000_010.5),
            watchers: [
                Some(crate::status::WatcherBackend::Inotify),
                Some(crate::status::WatcherBackend::Poll),
            ],
            ..Status::default()
        };
        let text = render(&s, 1_700_000_020.0);
        assert!(text
            .contains("twinsync_files_copied_total{pair=\"web\\\"1\",direction=\"to_right\"} 2\n"));
        assert!(text.contains("twinsync_state{pair=\"web\\\"1\",state=\"paused\"} 1\n"));
        assert!(text.contains("twinsync_state{pair=\"web\\\"1\",state=\"live\"} 0\n"));
        assert!(text.contains("twinsync_queue_depth{pair=\"web\\\"1\"} 3\n"));
        assert!(text.contains(
            "twinsync_watcher_info{pair=\"web\\\"1\",side=\"left\",backend=\"inotify\"} 1\n"
        ));
        assert!(text.contains(
            "twinsync_watcher_info{pair=\"web\\\"1\",side=\"right\",backend=\"poll\"} 1\n"
        ));
        assert!(
            text.contains("twinsync_oldest_pending_change_age_seconds{pair=\"web\\\"1\"} 9.5\n")
        );
        assert!(
            text.contains("twinsync_last_sync_timestamp_seconds{pair=\"web\\\"1\"} 1700000000\n")
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
