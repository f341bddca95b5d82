//! Instance status: each running instance serves a snapshot of its state on
//! a Unix socket in the runtime directory; `twinsync status` collects them.
//! The same socket takes control requests (see [`crate::control`]).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::State;

/// What `twinsync status` shows of one instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Instance name.
    pub instance: String,
    /// Left root.
    pub left: String,
    /// Right root.
    pub right: String,
    /// Brain pid.
    pub pid: u32,
    /// What it is doing.
    pub state: State,
    /// Changes waiting for the next batch.
    pub queue: usize,
    /// Changes in the batch being applied (a merge's are many), 0 between
    /// batches.
    #[serde(default)]
    pub in_batch: usize,
    /// End of the last batch (seconds since the epoch).
    pub last_sync: Option<i64>,
    /// Files copied into left, into right.
    pub files: [u64; 2],
    /// Bytes copied into left, into right.
    pub bytes: [u64; 2],
    /// Events dropped as echoes.
    pub echoes: u64,
    /// Conflicts kept.
    pub conflicts: u64,
    /// Errors: operations that failed (logged as warnings, with the path)
    /// and every error the brain logged.
    pub errors: u64,
    /// Writes refused because the destination changed meanwhile (merged
    /// again under the conflict rules).
    #[serde(default)]
    pub refused: u64,
    /// Paths found going back and forth with no change in between (a bug).
    #[serde(default)]
    pub loops: u64,
    /// Differences the background verification found between the replicas
    /// and the index, and repaired (a bug elsewhere: must stay 0).
    #[serde(default)]
    pub repairs: u64,
    /// Verification passes run.
    #[serde(default)]
    pub verifications: u64,
    /// Live, nothing queued, no batch running, and the replicas verified
    /// equal to the index since the last change: the pair is in sync.
    #[serde(default)]
    pub settled: bool,
    /// When the oldest change not yet synced was seen (seconds since the
    /// epoch; an upper bound: it is forgotten when the sync is idle with
    /// nothing queued), `None` when there is none.
    #[serde(default)]
    pub oldest_pending: Option<f64>,
    /// Where the metrics are served (`--metrics`).
    #[serde(default)]
    pub metrics: Option<String>,
    /// The lag: the age of the oldest change not yet synced, in seconds, when
    /// the status was taken (`None` when nothing waits).
    #[serde(default)]
    pub lag: Option<f64>,
    /// How the left and the right agent see changes (`None`: not watching,
    /// a one-shot merge, or the agent not started yet).
    #[serde(default)]
    pub watchers: [Option<WatcherBackend>; 2],
}

/// The watcher backend an agent uses (`--watcher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatcherBackend {
    /// The kernel's events, one watch per directory.
    Inotify,
    /// Every watched directory listed again per interval.
    Poll,
}

impl WatcherBackend {
    /// The backend an agent opened with these options uses (the agent
    /// chooses with [`twinsync_filter::Watching::chosen`] too).
    #[must_use]
    pub fn of(options: &twinsync_proto::AgentOptions) -> Option<WatcherBackend> {
        twinsync_filter::Watching::chosen(options.watch, options.poll_ms).map(|w| match w {
            twinsync_filter::Watching::Events => WatcherBackend::Inotify,
            twinsync_filter::Watching::Poll(_) => WatcherBackend::Poll,
        })
    }

    /// Its name, as `--watcher` spells it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            WatcherBackend::Inotify => "inotify",
            WatcherBackend::Poll => "poll",
        }
    }
}

/// The WATCHER cell of `twinsync status`: one name when both sides use the
/// same backend, `left/right` when not, `-` when neither watches.
fn watcher_cell(w: [Option<WatcherBackend>; 2]) -> String {
    let name = |b: Option<WatcherBackend>| b.map_or("-", WatcherBackend::name);
    if w[0] == w[1] {
        name(w[0]).to_string()
    } else {
        format!("{}/{}", name(w[0]), name(w[1]))
    }
}

/// Errors logged by this process so far (counted by [`CountErrors`]).
static ERRORS_LOGGED: AtomicU64 = AtomicU64::new(0);

/// A `tracing` layer that counts the events logged at level ERROR, for
/// [`Status::errors`].
pub struct CountErrors;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountErrors {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            ERRORS_LOGGED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The status now: the loop's last update, with the errors logged since and
/// the lag as of now.
#[must_use]
pub fn snapshot(shared: &Shared) -> Status {
    let mut s = shared.lock().expect("status").clone();
    s.errors += ERRORS_LOGGED.load(Ordering::Relaxed);
    s.lag = s.oldest_pending.map(|t| (epoch_now() - t).max(0.0));
    s
}

/// Shared, updated by the main loop.
pub type Shared = Arc<Mutex<Status>>;

/// The directory holding the instances' control sockets:
/// `$TWINSYNC_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/twinsync`, else
/// `/run/twinsync` for root, else `/tmp/twinsync-UID`.
#[must_use]
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TWINSYNC_RUNTIME_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("twinsync");
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        PathBuf::from("/run/twinsync")
    } else {
        PathBuf::from(format!("/tmp/twinsync-{uid}"))
    }
}

/// Removes the socket when dropped.
pub struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serve `status` on `<runtime dir>/<instance>.sock`, and `control`'s
/// requests.
///
/// # Errors
/// When the socket cannot be created.
pub fn serve(status: Shared, control: Arc<crate::control::Control>) -> std::io::Result<Server> {
    let dir = runtime_dir();
    std::fs::create_dir_all(&dir)?;
    let name = status.lock().expect("status").instance.clone();
    let path = dir.join(format!("{name}.sock"));
    if std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let line = {
                let mut l = serde_json::to_string(&snapshot(&status)).unwrap_or_default();
                l.push('\n');
                l
            };
            tokio::spawn(crate::control::session(conn, line, Arc::clone(&control)));
        }
    });
    Ok(Server { path })
}

pub(crate) fn collect() -> Vec<Status> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(runtime_dir()) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "sock") {
            continue;
        }
        let Ok(conn) = std::os::unix::net::UnixStream::connect(&p) else {
            continue; // a dead instance's leftover
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(conn).read_line(&mut line).is_ok() {
            if let Ok(s) = serde_json::from_str::<Status>(&line) {
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| a.instance.cmp(&b.instance));
    out
}

/// `twinsync status [NAME]`: every instance, or only `name` (exit 1 when it
/// is not running, as a monitor wants).
#[must_use]
pub fn print_status(name: Option<&str>, json: bool) -> ExitCode {
    let mut all = collect();
    if let Some(name) = name {
        all.retain(|s| s.instance == name);
        if all.is_empty() {
            eprintln!(
                "twinsync: no twinsync instance {name:?} is running (looked in {})",
                runtime_dir().display()
            );
            return ExitCode::from(1);
        }
    }
    crate::stdout::emit(render(&all, json).as_bytes())
}

/// The text `twinsync status` prints for `all`.
fn render(all: &[Status], json: bool) -> String {
    render_at(all, json, epoch_now())
}

/// [`render`] as of `now` (seconds since the epoch).
fn render_at(all: &[Status], json: bool, now: f64) -> String {
    use crate::human;
    use std::fmt::Write as _;
    let mut out = String::new();
    if json {
        for s in all {
            let _ = writeln!(out, "{}", serde_json::to_string(s).unwrap_or_default());
        }
        return out;
    }
    if all.is_empty() {
        let _ = writeln!(
            out,
            "no twinsync instance is running (looked in {})",
            runtime_dir().display()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{:<20} {:<12} {:>7} {:>8} {:>10} {:>8} {:>13} {:>21} {:>7} {:>9} {:>6} {:>8}  PAIR",
        "INSTANCE",
        "STATE",
        "QUEUE",
        "LAG",
        "LAST SYNC",
        "PID",
        "FILES L←/→R",
        "BYTES L←/→R",
        "ECHOES",
        "CONFLICTS",
        "ERRORS",
        "WATCHER"
    );
    for s in all {
        #[allow(clippy::cast_precision_loss)]
        let last = s.last_sync.map_or_else(
            || "never".into(),
            |t| format!("{} ago", human::duration(now - t as f64)),
        );
        let _ = writeln!(
            out,
            "{:<20} {:<12} {:>7} {:>8} {:>10} {:>8} {:>13} {:>21} {:>7} {:>9} {:>6} {:>8}  {} ⇄ {}",
            s.instance,
            s.state,
            human::count((s.queue + s.in_batch) as u64),
            s.lag.map_or_else(|| "-".into(), human::duration),
            last,
            s.pid,
            format!("{}/{}", human::count(s.files[0]), human::count(s.files[1])),
            format!("{}/{}", human::bytes(s.bytes[0]), human::bytes(s.bytes[1])),
            human::count(s.echoes),
            human::count(s.conflicts),
            human::count(s.errors),
            watcher_cell(s.watchers),
            s.left,
            s.right
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads_as_people_read_numbers() {
        let s = Status {
            instance: "docs".into(),
            left: "/l".into(),
            right: "host:/r".into(),
            pid: 42,
            state: State::Merging,
            queue: 1200,
            in_batch: 300,
            last_sync: Some(1_000),
            files: [3, 28_143],
            bytes: [512, 20 << 20],
            errors: 2,
            lag: Some(4.2),
            watchers: [Some(WatcherBackend::Inotify), Some(WatcherBackend::Poll)],
            ..Status::default()
        };
        let text = render_at(&[s], false, 1_012.0);
        let row = text.lines().nth(1).unwrap();
        for cell in [
            "merging",
            "1,500",
            "4.2 s",
            "12 s ago",
            "3/28,143",
            "512 B/20.0 MiB",
            " inotify/poll ",
            "/l ⇄ host:/r",
        ] {
            assert!(row.contains(cell), "{cell:?} in\n{text}");
        }
        let idle = Status {
            instance: "idle".into(),
            ..Status::default()
        };
        let row = render_at(&[idle], false, 1_012.0);
        let row = row.lines().nth(1).unwrap();
        assert!(row.contains(" - ") && row.contains("never"), "{row}");
    }
}
