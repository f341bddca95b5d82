//! Control of a running instance through its status socket: `twinsync
//! flush`, `pause`, `resume` and `conflicts`, for scripts and hand-overs.
//!
//! The protocol extends the status one (see [`crate::status`]): on connect
//! the instance writes its status as one JSON line, as before (`twinsync
//! status` reads it and closes); a client may then write one [`Request`] as
//! a JSON line and read one [`Reply`] line. What is shared with the main
//! loop is [`Control`]: the paused flag and the flush tickets are watched
//! values the socket sets and the loop reads between batches; a conflicts
//! request needs the index, so the loop answers it.
//!
//! A flush is a ticket: it is served by the first verification (both
//! replicas listed again and found equal to the index, nothing queued) that
//! starts after the request and at least a quiet second after the last
//! change seen, so a change made just before the request has been reported
//! by the watcher and synced, or is found by that listing.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::status::{self, Status};

/// What a client asks of a running instance, after reading its status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Finish the batch in flight, then plan nothing until resumed (changes
    /// keep being watched and queue up).
    Pause,
    /// Sync what queued while paused, and go on.
    Resume,
    /// Answer once both replicas are settled: nothing queued, nothing
    /// running, verified equal to the index since the request.
    Flush,
    /// The conflict copies not yet resolved.
    Conflicts,
}

/// The instance's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// Done (paused, resumed, flushed).
    Done,
    /// The unresolved conflicts.
    Conflicts(Vec<Unresolved>),
    /// Not done, and why.
    Refused(String),
}

/// One version of a conflicted file, as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The side whose write this version is (`left`, `right`).
    pub side: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// A conflict whose losing version is still kept: the user has not yet
/// resolved it (by deleting or renaming the copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    /// The path both sides changed.
    pub path: String,
    /// Where the losing version is kept.
    pub kept_as: String,
    /// When the conflict was found (seconds since the epoch).
    pub time: i64,
    /// Why the winner won (`newer-left`, …).
    pub reason: String,
    /// The version at `path` now (the winner's, unless changed since);
    /// `None` when the path is gone.
    pub current: Option<Version>,
    /// The kept version; `None` when it is in the losing replica's
    /// `.twinsync/conflicts/` (`--conflict-copies state-dir`), outside the
    /// index: its size and time are not known here.
    pub kept: Option<Version>,
}

/// What the socket and the main loop share.
pub struct Control {
    paused: watch::Sender<bool>,
    /// Flush tickets handed out, and the highest one served.
    asked: watch::Sender<u64>,
    flushed: watch::Sender<u64>,
    /// When the last flush was asked for.
    asked_at: Mutex<Option<Instant>>,
    /// Wakes the main loop after a change here.
    wake: Notify,
    /// Conflicts requests, answered by the main loop.
    conflicts: mpsc::UnboundedSender<oneshot::Sender<Vec<Unresolved>>>,
    dry_run: bool,
}

/// The main loop's end of [`Control`].
pub struct Hub {
    shared: Arc<Control>,
    conflicts: mpsc::UnboundedReceiver<oneshot::Sender<Vec<Unresolved>>>,
}

impl Hub {
    /// A running instance's controls (`dry_run`: nothing is ever flushed).
    #[must_use]
    pub fn new(dry_run: bool) -> Hub {
        let (tx, rx) = mpsc::unbounded_channel();
        Hub {
            shared: Arc::new(Control {
                paused: watch::Sender::new(false),
                asked: watch::Sender::new(0),
                flushed: watch::Sender::new(0),
                asked_at: Mutex::new(None),
                wake: Notify::new(),
                conflicts: tx,
                dry_run,
            }),
            conflicts: rx,
        }
    }

    /// The socket's end.
    #[must_use]
    pub fn shared(&self) -> Arc<Control> {
        Arc::clone(&self.shared)
    }

    /// Paused: no batch is planned.
    #[must_use]
    pub fn paused(&self) -> bool {
        *self.shared.paused.borrow()
    }

    /// The flush ticket a verification starting now serves.
    #[must_use]
    pub fn ticket(&self) -> u64 {
        *self.shared.asked.borrow()
    }

    /// When a flush waits: the time it was asked for (the verification that
    /// serves it waits for quiet after it).
    #[must_use]
    pub fn flush_asked_at(&self) -> Option<Instant> {
        if *self.shared.flushed.borrow() >= self.ticket() {
            return None;
        }
        *self.shared.asked_at.lock().expect("control")
    }

    /// A verification that started at `ticket` found the replicas settled.
    pub fn flushed(&self, ticket: u64) {
        self.shared.flushed.send_if_modified(|f| {
            let newer = ticket > *f;
            *f = (*f).max(ticket);
            newer
        });
    }

    /// Wait for a change of the controls; a conflicts request comes with
    /// the sender of its answer.
    pub async fn next(&mut self) -> Option<oneshot::Sender<Vec<Unresolved>>> {
        tokio::select! {
            () = self.shared.wake.notified() => None,
            Some(ask) = self.conflicts.recv() => Some(ask),
        }
    }
}

impl Control {
    /// Carry out `request`.
    async fn answer(&self, request: Request) -> Reply {
        match request {
            Request::Pause | Request::Resume => {
                self.paused.send_replace(request == Request::Pause);
                self.wake.notify_one();
                Reply::Done
            }
            Request::Flush => self.flush().await,
            Request::Conflicts => {
                let (tx, rx) = oneshot::channel();
                if self.conflicts.send(tx).is_err() {
                    return Reply::Refused("the instance is stopping".into());
                }
                match rx.await {
                    Ok(list) => Reply::Conflicts(list),
                    Err(_) => Reply::Refused("the instance is stopping".into()),
                }
            }
        }
    }

    async fn flush(&self) -> Reply {
        if self.dry_run {
            return Reply::Refused("a dry run syncs nothing: there is nothing to flush".into());
        }
        let mut paused = self.paused.subscribe();
        if *paused.borrow() {
            return Reply::Refused("the instance is paused: resume it first".into());
        }
        let mut ticket = 0;
        *self.asked_at.lock().expect("control") = Some(Instant::now());
        self.asked.send_modify(|t| {
            *t += 1;
            ticket = *t;
        });
        self.wake.notify_one();
        let mut flushed = self.flushed.subscribe();
        tokio::select! {
            r = flushed.wait_for(|f| *f >= ticket) => match r {
                Ok(_) => Reply::Done,
                Err(_) => Reply::Refused("the instance is stopping".into()),
            },
            _ = paused.wait_for(|p| *p) => {
                Reply::Refused("the instance was paused before it settled".into())
            }
        }
    }
}

/// One connection to the socket: the status line (`line`), then at most
/// one request and its reply.
pub(crate) async fn session(
    conn: tokio::net::UnixStream,
    line: String,
    control: Arc<Control>,
) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    write.write_all(line.as_bytes()).await?;
    let mut request = String::new();
    // A status client closes at once: nothing to read.
    if tokio::io::BufReader::new(read)
        .read_line(&mut request)
        .await?
        == 0
    {
        return Ok(());
    }
    let reply = match serde_json::from_str::<Request>(&request) {
        Ok(r) => control.answer(r).await,
        Err(e) => Reply::Refused(format!("not a request: {e}")),
    };
    let mut out = serde_json::to_string(&reply).unwrap_or_default();
    out.push('\n');
    write.write_all(out.as_bytes()).await
}

/// The unresolved conflicts: the records of `LEFT/.twinsync/conflicts.log`
/// whose kept copy the index still holds (copies beside the file), or that
/// are younger than `trash_days` (copies in a `.twinsync/conflicts/`, which
/// are removed after that).
#[must_use]
pub fn unresolved(
    left_root: &std::path::Path,
    known: &std::collections::BTreeMap<twinsync_proto::RelPath, crate::index::Known>,
    trash_days: u32,
    now: i64,
) -> Vec<Unresolved> {
    let Some(log) = read_log(left_root) else {
        return Vec::new();
    };
    let version = |side: &str, path: &str| {
        known
            .get(&twinsync_proto::RelPath::from(path))
            .map(|k| Version {
                side: side.to_string(),
                size: k.sig.size,
                mtime_ns: k.sig.mtime_ns,
            })
    };
    let mut out = Vec::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
        let (path, kept_as, winner) = (field("path"), field("kept_as"), field("winner"));
        let loser = if winner == "left" { "right" } else { "left" };
        let time = v
            .get("time")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        let kept = version(loser, kept_as);
        let in_state_dir = kept_as.starts_with(".twinsync/");
        let open = if in_state_dir {
            now - time < i64::from(trash_days) * 86_400
        } else {
            kept.is_some()
        };
        if open && !path.is_empty() {
            out.push(Unresolved {
                path: path.to_string(),
                kept_as: kept_as.to_string(),
                time,
                reason: field("reason").to_string(),
                current: version(winner, path),
                kept,
            });
        }
    }
    out
}

/// The conflicts log, read through `.twinsync/`'s descriptor (never a
/// symlink, as it is written).
fn read_log(left_root: &std::path::Path) -> Option<String> {
    let dir = twinsync_helpers::ops::open_state_dir(left_root, b"").ok()?;
    let fd = rustix::fs::openat(
        &dir,
        c"conflicts.log",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    std::io::read_to_string(std::fs::File::from(fd)).ok()
}

/// Why a control command failed (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No instance to talk to.
    #[error("no twinsync instance is running (looked in {0})")]
    NoneRunning(PathBuf),
    /// The instance named is not running.
    #[error("no twinsync instance {name:?} is running (running: {running})")]
    NotRunning {
        /// The name asked for.
        name: String,
        /// The names of the running ones.
        running: String,
    },
    /// No name, and more than one instance.
    #[error("several instances are running ({0}): name one")]
    Ambiguous(String),
    /// The socket failed.
    #[error("instance {name}: {source}")]
    Io {
        /// The instance.
        name: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The instance closed the connection without answering.
    #[error("instance {0} stopped before answering")]
    Gone(String),
    /// The instance said no.
    #[error("instance {name}: {why}")]
    Refused {
        /// The instance.
        name: String,
        /// Its reason.
        why: String,
    },
    /// `flush --timeout` passed.
    #[error(
        "instance {name} did not settle within {secs} s (state {state}, {queue} changes \
         queued); it goes on syncing"
    )]
    Timeout {
        /// The instance.
        name: String,
        /// The timeout.
        secs: f64,
        /// Its state when asked.
        state: crate::state::State,
        /// Its queue when asked.
        queue: usize,
    },
}

/// Send `request` to instance `name` (the only one running when `None`);
/// wait at most `timeout` for the reply (`None`: as long as it takes).
///
/// # Errors
/// See [`ClientError`].
pub fn ask(
    name: Option<&str>,
    request: Request,
    timeout: Option<Duration>,
) -> Result<(Status, Reply), ClientError> {
    let name = match name {
        Some(n) => n.to_string(),
        None => only_instance()?,
    };
    let io = |source| ClientError::Io {
        name: name.clone(),
        source,
    };
    let path = status::runtime_dir().join(format!("{name}.sock"));
    let conn = std::os::unix::net::UnixStream::connect(&path).map_err(|_| {
        let running: Vec<String> = status::collect().into_iter().map(|s| s.instance).collect();
        ClientError::NotRunning {
            name: name.clone(),
            running: if running.is_empty() {
                "none".into()
            } else {
                running.join(", ")
            },
        }
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut reader = BufReader::new(conn.try_clone().map_err(io)?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let status: Status =
        serde_json::from_str(&line).map_err(|_| ClientError::Gone(name.clone()))?;
    let mut req = serde_json::to_string(&request).unwrap_or_default();
    req.push('\n');
    (&conn).write_all(req.as_bytes()).map_err(io)?;
    conn.set_read_timeout(timeout).map_err(io)?;
    let mut reply = String::new();
    match reader.read_line(&mut reply) {
        Ok(0) => return Err(ClientError::Gone(name)),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(ClientError::Timeout {
                name,
                secs: timeout.unwrap_or_default().as_secs_f64(),
                state: status.state,
                queue: status.queue,
            });
        }
        Err(e) => return Err(io(e)),
    }
    let reply: Reply = serde_json::from_str(&reply).map_err(|_| ClientError::Gone(name.clone()))?;
    if let Reply::Refused(why) = reply {
        return Err(ClientError::Refused { name, why });
    }
    Ok((status, reply))
}

fn only_instance() -> Result<String, ClientError> {
    let all = status::collect();
    match all.as_slice() {
        [] => Err(ClientError::NoneRunning(status::runtime_dir())),
        [one] => Ok(one.instance.clone()),
        many => Err(ClientError::Ambiguous(
            many.iter()
                .map(|s| s.instance.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// `twinsync pause|resume|flush [NAME]`: exit 0 once done, 1 (with the
/// reason on stderr) otherwise.
#[must_use]
pub fn command(name: Option<&str>, request: Request, timeout: Option<Duration>) -> ExitCode {
    match ask(name, request, timeout) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twinsync: {e}");
            ExitCode::from(1)
        }
    }
}

/// `twinsync conflicts [NAME] [--json]`.
#[must_use]
pub fn print_conflicts(name: Option<&str>, json: bool) -> ExitCode {
    let list = match ask(name, Request::Conflicts, Some(Duration::from_secs(60))) {
        Ok((_, Reply::Conflicts(list))) => list,
        Ok(_) => Vec::new(),
        Err(e) => {
            eprintln!("twinsync: {e}");
            return ExitCode::from(1);
        }
    };
    crate::stdout::emit(render_conflicts(&list, json).as_bytes())
}

fn render_conflicts(list: &[Unresolved], json: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if json {
        for c in list {
            let _ = writeln!(out, "{}", serde_json::to_string(c).unwrap_or_default());
        }
        return out;
    }
    if list.is_empty() {
        out.push_str("no unresolved conflicts\n");
        return out;
    }
    let version = |v: &Option<Version>| match v {
        Some(v) => format!(
            "{:<5} {:>12} {}",
            v.side,
            v.size,
            utc(v.mtime_ns.div_euclid(1_000_000_000))
        ),
        None => format!("{:<5} {:>12} {:<19}", "-", "-", "-"),
    };
    let _ = writeln!(
        out,
        "{:<5} {:>12} {:<19}  {:<5} {:>12} {:<19}  PATH → KEPT AS",
        "SIDE", "SIZE", "MTIME (UTC)", "KEPT", "SIZE", "MTIME (UTC)"
    );
    for c in list {
        let _ = writeln!(
            out,
            "{}  {}  {} → {}",
            version(&c.current),
            version(&c.kept),
            c.path,
            c.kept_as
        );
    }
    out
}

fn utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = twinsync_helpers::time::civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}
