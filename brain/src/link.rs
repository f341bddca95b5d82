//! The brain's end of an agent: spawns `twinsync agent` (a local child
//! process, or behind a transport such as ssh), performs the handshake, and
//! routes frames: responses to their requests, events to the main loop.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use twinsync_proto::{
    decode, encode, try_encode, AgentOptions, Entry, Event, FromAgent, Op, OpResult, RelPath,
    Request, Response, Sig, ToAgent, XattrScope, Xattrs, MAGIC, MAX_FRAME, MAX_ITEMS,
    PROTOCOL_VERSION,
};

use crate::side::Side;
use twinsync_helpers::pace::{Pacer, SLICE};

/// Write `msg` as one frame; file contents (a write request) at the
/// `pacer`'s rate, in slices, flushing before each pause.
async fn send_paced(
    writer: &mut BufWriter<BoxWrite>,
    msg: &ToAgent,
    pacer: Option<&mut Pacer>,
) -> std::io::Result<()> {
    let frame = encode(msg);
    let contents = matches!(
        msg,
        ToAgent::Request {
            req: Request::WriteFiles { .. },
            ..
        }
    );
    let Some(pacer) = pacer.filter(|_| contents) else {
        return writer.write_all(&frame).await;
    };
    for slice in frame.chunks(SLICE) {
        let wait = pacer.delay(slice.len(), std::time::Instant::now());
        if !wait.is_zero() {
            writer.flush().await?;
            tokio::time::sleep(wait).await;
        }
        writer.write_all(slice).await?;
    }
    Ok(())
}

/// How long the agent may take to answer the hello.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the brain pings an agent.
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(3);
/// Silence after which a link is declared dead.
const DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

type BoxRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The far end of a link is no agent of this protocol: none is installed
/// there (the handshake went unanswered), or one of another version. A
/// remote one may be replaced by a copy of this binary
/// ([`crate::remote::install`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NoMatchingAgent {
    /// The whole message, with what to do.
    pub message: String,
    /// What was found, in a few words (`did not answer the handshake: early
    /// eof`).
    pub found: String,
}

/// How an agent is reached.
#[derive(Clone)]
pub enum Transport {
    /// A child process of the brain.
    Local,
    /// A command on a remote host over one multiplexed ssh connection.
    Ssh {
        /// The connection.
        session: Arc<openssh::Session>,
        /// The agent binary on the remote (`--remote-path`).
        program: String,
        /// `[user@]host` for messages and for rsync.
        host: String,
    },
}

impl Transport {
    fn describe(&self) -> String {
        match self {
            Transport::Local => "local".into(),
            Transport::Ssh { program, host, .. } => format!("ssh {host}: {program} agent"),
        }
    }
}

enum Guard {
    Local(Child),
    Remote(Option<openssh::Child<Arc<openssh::Session>>>),
}

/// What an agent tells the main loop.
#[derive(Debug)]
pub enum Notice {
    /// Filter events (side, link id, events).
    Events(Side, u64, Vec<Event>),
    /// The agent stopped (stream closed) or reported a fatal error.
    Lost(Side, u64, String),
}

type Waiters = Arc<DashMap<u64, oneshot::Sender<Result<Response, String>>>>;
type Chunks = Arc<DashMap<u64, mpsc::UnboundedSender<ScanPart>>>;

/// A part of a replica's listing, as it streams in (see [`Link::scan`]).
#[derive(Debug)]
pub struct ScanPart {
    /// Entries, in ascending order of their paths across all parts.
    pub entries: Vec<Entry>,
    /// Paths the agent could not read.
    pub unreadable: Vec<RelPath>,
}

/// A listing under way: its parts, then its end.
pub struct Scan {
    side: Side,
    parts: mpsc::UnboundedReceiver<ScanPart>,
    done: oneshot::Receiver<Result<Response, String>>,
    progress: crate::progress::Progress,
    count: u64,
}

impl Scan {
    /// The next part, `None` once the listing is over (or the link lost).
    pub async fn next(&mut self) -> Option<ScanPart> {
        let part = self.parts.recv().await?;
        self.count += part.entries.len() as u64;
        self.progress.set(self.count);
        Some(part)
    }

    /// How the listing ended, once [`Scan::next`] gave `None`.
    ///
    /// # Errors
    /// When the agent could not list its replica or went away.
    pub async fn finish(self) -> Result<()> {
        drop(self.progress);
        match self.done.await {
            Ok(Ok(Response::ScanDone { .. })) => Ok(()),
            Ok(Ok(other)) => bail!("unexpected answer to a scan: {other:?}"),
            Ok(Err(e)) => bail!("scanning the {} replica: {e}", self.side),
            Err(_) => bail!("the {} agent went away while scanning", self.side),
        }
    }
}

/// A connected agent.
pub struct Link {
    side: Side,
    tx: mpsc::UnboundedSender<ToAgent>,
    waiters: Waiters,
    chunks: Chunks,
    next: AtomicU64,
    guard: tokio::sync::Mutex<Guard>,
    /// Device of the replica root, from the hello.
    pub root_dev: u64,
    /// The agent runs as root (it can give entries any owner).
    pub root: bool,
    alive: Arc<std::sync::atomic::AtomicBool>,
    /// Set when the link was dropped because the agent broke the protocol
    /// (an unsafe path): not a lost link to reconnect, a hostile or broken
    /// agent to stop for.
    refused: Arc<std::sync::atomic::AtomicBool>,
    /// Distinguishes this link's notices from those of a replaced one.
    pub id: u64,
}

impl Link {
    /// Start an agent over `transport`, say hello for `root`, and begin
    /// routing its frames; events go to `notices`.
    ///
    /// # Errors
    /// When the agent cannot be started, speaks another protocol, or refuses
    /// the root.
    pub async fn start(
        side: Side,
        transport: &Transport,
        agent_log: Option<&str>,
        root: &[u8],
        options: AgentOptions,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<Link> {
        let what = transport.describe();
        // Contents are paced where they go onto the network: a local
        // agent's answers go to this process (which paces what it sends on,
        // or copies between local roots itself); a remote agent's go over ssh.
        let mut options = options;
        let mut pacer = None;
        match transport {
            Transport::Local => options.bwlimit = None,
            Transport::Ssh { .. } => pacer = options.bwlimit.map(Pacer::new),
        }
        let (guard, reader, writer): (Guard, BoxRead, BoxWrite) = match transport {
            Transport::Local => {
                let exe = std::env::current_exe().context("cannot find the twinsync executable")?;
                let mut cmd = Command::new(exe);
                cmd.arg("agent")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    // Its own process group: the terminal's Ctrl-C (sent to
                    // the whole foreground group) reaches the brain only,
                    // which finishes its batch and then says goodbye.
                    .kill_on_drop(true);
                own_group(&mut cmd);
                if let Some(level) = agent_log {
                    cmd.env("TWINSYNC_LOG", level);
                }
                let mut child = cmd
                    .spawn()
                    .with_context(|| format!("cannot start the {side} agent ({what})"))?;
                let stdin = child.stdin.take().expect("piped");
                let stdout = child.stdout.take().expect("piped");
                (Guard::Local(child), Box::new(stdout), Box::new(stdin))
            }
            Transport::Ssh {
                session, program, ..
            } => {
                let mut child = Arc::clone(session)
                    .arc_command(program.as_str())
                    .arg("agent")
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::inherit())
                    .spawn()
                    .await
                    .with_context(|| format!("cannot start the {side} agent ({what})"))?;
                let stdin = child.stdin().take().expect("piped");
                let stdout = child.stdout().take().expect("piped");
                (
                    Guard::Remote(Some(child)),
                    Box::new(stdout),
                    Box::new(stdin),
                )
            }
        };
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        let mut writer = BufWriter::new(writer);

        let hello = ToAgent::Hello {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION,
            root: root.to_vec(),
            options,
        };
        writer.write_all(&encode(&hello)).await?;
        writer.flush().await?;
        let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_msg(&mut reader))
            .await
            .map_err(|_| anyhow!("the {side} agent ({what}) did not answer the handshake in time"))?
            .map_err(|e| {
                anyhow::Error::new(NoMatchingAgent {
                    message: format!(
                        "the {side} agent ({what}) did not answer the handshake: {e}. Is \
                         twinsync installed there? Install the same version as here (twinsync \
                         {}) on that host, e.g. copy this binary to /usr/local/bin/twinsync, or \
                         point --remote-path at it",
                        env!("CARGO_PKG_VERSION")
                    ),
                    found: format!("did not answer the handshake ({e})"),
                })
            })?;
        let (root_dev, agent_root) = match first {
            FromAgent::Hello {
                magic,
                version,
                agent_version,
                root_dev,
                root,
            } => {
                if magic != MAGIC || version != PROTOCOL_VERSION {
                    return Err(NoMatchingAgent {
                        message: format!(
                            "the {side} agent ({what}) is twinsync {agent_version} speaking \
                             protocol {version}; this is twinsync {} speaking protocol \
                             {PROTOCOL_VERSION}. Install the same version on both sides (e.g. \
                             copy this binary there, or point --remote-path at a matching one)",
                            env!("CARGO_PKG_VERSION")
                        ),
                        found: format!("is twinsync {agent_version}, protocol {version}"),
                    }
                    .into());
                }
                (root_dev, root)
            }
            // The agent's own words for a brain of another protocol.
            FromAgent::Fatal { message } if message.starts_with("protocol mismatch") => {
                return Err(NoMatchingAgent {
                    message: format!("the {side} agent ({what}): {message}"),
                    found: message,
                }
                .into());
            }
            FromAgent::Fatal { message } => bail!("{side} replica: {message}"),
            other => bail!("the {side} agent sent {other:?} instead of a hello"),
        };

        let (tx, mut rx) = mpsc::unbounded_channel::<ToAgent>();
        {
            // Heartbeat: a ping every few seconds keeps the agent's watchdog
            // fed and gives the reader below something to expect.
            let tx = tx.clone();
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let mut tick = tokio::time::interval(PING_EVERY);
                loop {
                    tick.tick().await;
                    if tx.send(ToAgent::Ping).is_err() {
                        return;
                    }
                }
            }));
        }
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            while let Some(msg) = rx.recv().await {
                if send_paced(&mut writer, &msg, pacer.as_mut()).await.is_err() {
                    break;
                }
                // Send whatever else is queued before flushing.
                while let Ok(msg) = rx.try_recv() {
                    if send_paced(&mut writer, &msg, pacer.as_mut()).await.is_err() {
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
        }));

        let waiters: Waiters = Arc::default();
        let chunks: Chunks = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        static NEXT_LINK: AtomicU64 = AtomicU64::new(1);
        let link_id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        {
            let alive = Arc::clone(&alive);
            let refused = Arc::clone(&refused);
            let waiters = Arc::clone(&waiters);
            let chunks = Arc::clone(&chunks);
            // Silence means a dead link only across hosts: a local agent's
            // pipe cannot half-die (its end is seen as EOF), and a local agent
            // stopped by a signal is not gone.
            let dead_after = match transport {
                Transport::Ssh { .. } => Some(DEAD_AFTER),
                Transport::Local => None,
            };
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let why = loop {
                    let msg = match dead_after {
                        Some(limit) => tokio::time::timeout(limit, read_msg(&mut reader)).await,
                        None => Ok(read_msg(&mut reader).await),
                    };
                    let Ok(msg) = msg else {
                        break format!(
                            "no word from the agent for {} s: the link is dead",
                            DEAD_AFTER.as_secs()
                        );
                    };
                    if let Ok(m) = &msg {
                        if let Err(e) = check_paths(m) {
                            refused.store(true, Ordering::SeqCst);
                            break e;
                        }
                    }
                    match msg {
                        Ok(FromAgent::Events(evs)) => {
                            tracing::trace!(%side, "← {} events: {}", evs.len(), brief(&evs));
                            if notices.send(Notice::Events(side, link_id, evs)).is_err() {
                                return;
                            }
                        }
                        Ok(FromAgent::Response { id, result }) => {
                            tracing::trace!(%side, id, "← answer: {}", brief(&result));
                            chunks.remove(&id);
                            if let Some((_, w)) = waiters.remove(&id) {
                                let _ = w.send(result);
                            }
                        }
                        Ok(FromAgent::ScanChunk {
                            id,
                            entries,
                            unreadable,
                        }) => {
                            if let Some(c) = chunks.get(&id) {
                                let _ = c.send(ScanPart {
                                    entries,
                                    unreadable,
                                });
                            }
                        }
                        Ok(FromAgent::Pong | FromAgent::Hello { .. }) => {}
                        Ok(FromAgent::Fatal { message }) => break message,
                        Err(e) => break format!("connection to the agent lost: {e}"),
                    }
                };
                alive.store(false, Ordering::SeqCst);
                waiters.clear();
                chunks.clear();
                let _ = notices.send(Notice::Lost(side, link_id, why));
            }));
        }
        Ok(Link {
            side,
            tx,
            waiters,
            chunks,
            next: AtomicU64::new(1),
            guard: tokio::sync::Mutex::new(guard),
            root_dev,
            root: agent_root,
            alive,
            refused,
            id: link_id,
        })
    }

    /// False once the agent's stream has ended or gone silent.
    #[must_use]
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// True when the link was dropped because the agent broke the protocol
    /// (an unsafe path): reconnecting would only meet it again.
    #[must_use]
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }

    async fn request(&self, req: Request) -> Result<Response> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let req = ToAgent::Request { id, req };
        // Never a frame the agent would refuse (the writer encodes it again).
        if let Err(e) = try_encode(&req) {
            bail!("a request to the {} agent is too large: {e}", self.side);
        }
        tracing::trace!(side = %self.side, id, "→ {}", brief(&req));
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(id, tx);
        // The reader marks the link dead *before* dropping the waiters, so a
        // waiter inserted after that is caught here instead of waiting forever.
        if !self.alive() {
            self.waiters.remove(&id);
            bail!("the {} agent is gone", self.side);
        }
        self.tx
            .send(req)
            .map_err(|_| anyhow!("the {} agent is gone", self.side))?;
        rx.await
            .map_err(|_| anyhow!("the {} agent went away before answering", self.side))?
            .map_err(|e| anyhow!("{} agent: {e}", self.side))
    }

    /// Start listing the whole replica (placing watches first when
    /// watching); the listing streams in through the returned [`Scan`].
    ///
    /// # Errors
    /// When the agent is gone.
    pub fn scan(&self) -> Result<Scan> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (ctx, parts) = mpsc::unbounded_channel();
        self.chunks.insert(id, ctx);
        let (tx, done) = oneshot::channel();
        self.waiters.insert(id, tx);
        if !self.alive() {
            self.waiters.remove(&id);
            self.chunks.remove(&id);
            bail!("the {} agent is gone", self.side);
        }
        self.tx
            .send(ToAgent::Request {
                id,
                req: Request::Scan,
            })
            .map_err(|_| anyhow!("the {} agent is gone", self.side))?;
        Ok(Scan {
            side: self.side,
            parts,
            done,
            progress: crate::progress::Progress::new(format!("scanning {}", self.side), None),
            count: 0,
        })
    }

    /// Ask for `items` in requests of at most [`MAX_ITEMS`] each (in order),
    /// and check that each answer has one result per item asked.
    async fn each<I: Clone, T>(
        &self,
        what: &str,
        items: Vec<I>,
        ask: impl Fn(Vec<I>) -> Request,
        take: impl Fn(Response) -> Option<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_ITEMS) {
            let r = self.request(ask(chunk.to_vec())).await?;
            let Some(got) = take(r) else {
                bail!(
                    "the {} agent gave an unexpected answer to {what}",
                    self.side
                );
            };
            if got.len() != chunk.len() {
                bail!(
                    "the {} agent answered {what} of {} paths with {} results",
                    self.side,
                    chunk.len(),
                    got.len()
                );
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Apply helper operations in order.
    ///
    /// # Errors
    /// When the agent fails or goes away (per-op failures are in the result).
    pub async fn apply(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        self.apply_reading(ops, None).await
    }

    /// Apply helper operations in order, the [`Op::SetAttr`] and
    /// [`Op::Mkdir`] without extended attributes given those their entries
    /// have in the other local replica at `src_root` (read there by this
    /// agent's helper: no round trip to the other agent first).
    ///
    /// # Errors
    /// When the agent fails, goes away or refuses to read `src_root`.
    pub async fn apply_with_xattrs_from(
        &self,
        ops: Vec<Op>,
        src_root: &std::path::Path,
    ) -> Result<Vec<OpResult>> {
        use std::os::unix::ffi::OsStrExt;
        let from = twinsync_proto::XattrSource {
            root: src_root.as_os_str().as_bytes().to_vec(),
            scope: XattrScope::current(),
        };
        self.apply_reading(ops, Some(from)).await
    }

    async fn apply_reading(
        &self,
        ops: Vec<Op>,
        xattrs_from: Option<twinsync_proto::XattrSource>,
    ) -> Result<Vec<OpResult>> {
        self.each(
            "apply",
            ops,
            |ops| Request::Apply {
                ops,
                xattrs_from: xattrs_from.clone(),
            },
            |r| match r {
                Response::Applied(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// lstat paths.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn stat(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Sig>>> {
        self.each(
            "stat",
            paths,
            |paths| Request::Stat { paths },
            |r| match r {
                Response::Stats(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// lstat files staged below the agent's `.twinsync/stage/` (paths
    /// relative to it).
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn stat_staged(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Sig>>> {
        self.each(
            "stat of staged files",
            paths,
            |paths| Request::StatStaged { paths },
            |r| match r {
                Response::Stats(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Whether the replica root's path still leads to the directory the
    /// agent serves, with its `.twinsync/`.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn intact(&self) -> Result<bool> {
        match self.request(Request::Intact).await? {
            Response::Intact(b) => Ok(b),
            other => bail!("unexpected answer to intact: {other:?}"),
        }
    }

    /// Ask the helper for a mark after everything it did so far (see
    /// [`Request::Mark`]): its number, or `None` when it makes none.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn mark(&self) -> Result<Option<u64>> {
        match self.request(Request::Mark).await? {
            Response::Marked(n) => Ok(n),
            other => bail!("unexpected answer to mark: {other:?}"),
        }
    }

    /// Read symlink targets.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_links(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Vec<u8>>>> {
        let r = self
            .each(
                "readlink",
                paths,
                |paths| Request::ReadLinks { paths },
                |r| match r {
                    Response::Links(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(r.into_iter()
            .map(|b| b.map(serde_bytes::ByteBuf::into_vec))
            .collect())
    }

    /// BLAKE3 digests of files.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn hash(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Vec<u8>>>> {
        let r = self
            .each(
                "hash",
                paths,
                |paths| Request::Hash { paths },
                |r| match r {
                    Response::Hashes(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(r.into_iter()
            .map(|h| h.map(serde_bytes::ByteBuf::into_vec))
            .collect())
    }

    /// Read whole small files (for transfers to or from a remote replica),
    /// with the extended attributes carried. What the agent sends is data,
    /// checked against what was asked: a file for another path, with data
    /// beyond the size its own signature says, not a regular file, or with
    /// attributes outside the scope, is taken for an unreadable one.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_files(
        &self,
        paths: Vec<RelPath>,
    ) -> Result<Vec<Result<twinsync_proto::FileData, String>>> {
        let asked = paths.clone();
        let got = self
            .each(
                "read",
                paths,
                |paths| Request::ReadFiles {
                    paths,
                    scope: XattrScope::current(),
                },
                |r| match r {
                    Response::Files(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(check_read(self.side, &asked, got))
    }

    /// The extended attributes carried (see [`XattrScope::current`]) of
    /// entries (`None`: missing or unreadable). A list with names outside
    /// the scope, or not in order, is taken for an unreadable one.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_xattrs(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Xattrs>>> {
        let scope = XattrScope::current();
        let got = self
            .each(
                "read of extended attributes",
                paths,
                |paths| Request::ReadXattrs { paths, scope },
                |r| match r {
                    Response::Xattrs(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(got
            .into_iter()
            .map(|x| x.filter(|x| x.scope == scope && x.is_valid()))
            .collect())
    }

    /// The files the agent's helper installed since the record was last
    /// emptied (`forget` empties it), with their stamps.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn installed(&self, forget: bool) -> Result<Vec<(RelPath, twinsync_proto::Stamp)>> {
        match self.request(Request::Installed { forget }).await? {
            Response::Installed(r) => {
                if let Some((p, _)) = r.iter().find(|(p, _)| !valid_path(p)) {
                    bail!("the {} agent reported an unsafe path {p}", self.side);
                }
                Ok(r)
            }
            other => bail!("unexpected answer to installed: {other:?}"),
        }
    }

    /// Copy files from another local replica (when rsync is missing).
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn copy_from(
        &self,
        src_root: &std::path::Path,
        paths: Vec<(RelPath, twinsync_proto::Expect)>,
    ) -> Result<Vec<Result<Sig, twinsync_proto::OpFail>>> {
        use std::os::unix::ffi::OsStrExt;
        let src_root = src_root.as_os_str().as_bytes().to_vec();
        self.each(
            "copy",
            paths,
            |paths| Request::CopyFrom {
                src_root: src_root.clone(),
                paths,
                scope: XattrScope::current(),
            },
            |r| match r {
                Response::Written(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Write whole small files.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn write_files(
        &self,
        files: Vec<twinsync_proto::FileData>,
    ) -> Result<Vec<Result<Sig, twinsync_proto::OpFail>>> {
        self.each(
            "write",
            files,
            |files| Request::WriteFiles { files },
            |r| match r {
                Response::Written(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Ask the agent to exit and wait for it.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(ToAgent::Shutdown);
        let mut guard = self.guard.lock().await;
        let wait = std::time::Duration::from_secs(5);
        match &mut *guard {
            Guard::Local(child) => {
                let _ = tokio::time::timeout(wait, child.wait()).await;
            }
            Guard::Remote(child) => {
                if let Some(child) = child.take() {
                    let _ = tokio::time::timeout(wait, child.wait()).await;
                }
            }
        }
    }
}

async fn read_msg(r: &mut BufReader<BoxRead>) -> Result<FromAgent> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        bail!("frame of {len} bytes exceeds the limit");
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(decode(&body)?)
}

/// True for a path an agent may report: relative, no `.` or `..`, not the
/// root, not in `.twinsync/`.
fn valid_path(p: &RelPath) -> bool {
    p.is_safe() && !p.is_root() && !twinsync_helpers::ops::in_state_dir(p)
}

/// What an agent says is data: every path in a listing or an event must be
/// one it may report (the root only where "this could not be read" is meant).
fn check_paths(m: &FromAgent) -> std::result::Result<(), String> {
    let bad = |p: &RelPath| format!("the agent reported an unsafe path {p}: link dropped");
    let root_ok = |p: &RelPath| p.is_root() || valid_path(p);
    match m {
        FromAgent::ScanChunk {
            entries,
            unreadable,
            ..
        } => {
            if let Some(e) = entries.iter().find(|e| !valid_path(&e.path)) {
                return Err(bad(&e.path));
            }
            if let Some(p) = unreadable.iter().find(|p| !root_ok(p)) {
                return Err(bad(p));
            }
        }
        FromAgent::Events(evs) => {
            for ev in evs {
                match ev {
                    Event::Changed { path, .. } | Event::Removed { path } => {
                        if !valid_path(path) {
                            return Err(bad(path));
                        }
                    }
                    Event::Moved { from, to, .. } => {
                        if let Some(p) = [from, to].into_iter().find(|p| !valid_path(p)) {
                            return Err(bad(p));
                        }
                    }
                    Event::Error { path, .. } => {
                        if !root_ok(path) {
                            return Err(bad(path));
                        }
                    }
                    Event::RescanNeeded { .. } | Event::RootGone | Event::Mark { .. } => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A message's `Debug` form cut to a line, for the trace log (`-d 3`).
fn brief(x: &impl std::fmt::Debug) -> String {
    let mut s = format!("{x:?}");
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A read answer, checked against what was asked: a file for another path,
/// with data segments out of order or beyond the size its own signature
/// says, or not a regular file, is taken for an unreadable one (never
/// written anywhere).
fn check_read(
    side: Side,
    asked: &[RelPath],
    got: Vec<Result<twinsync_proto::FileData, String>>,
) -> Vec<Result<twinsync_proto::FileData, String>> {
    got.into_iter()
        .zip(asked)
        .map(|(r, p)| {
            let f = r?;
            if &f.path != p
                || f.sig.kind != twinsync_proto::Kind::File
                || !f.extents_valid()
                || f.xattrs.scope != XattrScope::current()
                || !f.xattrs.is_valid()
            {
                return Err(format!(
                    "the {side} agent answered a read of {p} with {} ({} bytes of data, {:?}): ignored",
                    f.path,
                    f.data_len(),
                    f.sig.kind
                ));
            }
            Ok(f)
        })
        .collect()
}

/// Start `cmd` in a process group of its own, out of reach of the
/// terminal's Ctrl-C (sent to the whole foreground group): the brain
/// finishes its batch first. A Ctrl-C sent while the child is being made,
/// before it leaves the brain's group, is ignored too (it would otherwise
/// be delivered, with the default action, right before the program starts;
/// rsync installs its own handler again).
pub fn own_group(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    // SAFETY: signal(2) is async-signal-safe, as required between fork and
    // exec; nothing is allocated or locked.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinsync_proto::{FileData, Kind};

    fn sig(kind: Kind, size: u64) -> Sig {
        Sig {
            kind,
            size,
            mtime_ns: 0,
            mode: 0o644,
            ino: 1,
            ctime_ns: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            nlink: 1,
            allocated: 0,
            xattrs: Default::default(),
        }
    }

    #[test]
    fn a_hostile_agents_listing_and_events_are_refused() {
        let entry = |p: &str| Entry {
            path: p.into(),
            sig: sig(Kind::File, 0),
        };
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            ".twinsync/index",
            ".twinsync",
            "a/../b",
            "a//b",
            "",
        ] {
            let chunk = FromAgent::ScanChunk {
                id: 1,
                entries: vec![entry("ok"), entry(bad)],
                unreadable: vec![],
            };
            assert!(check_paths(&chunk).is_err(), "{bad:?}");
            let ev = FromAgent::Events(vec![Event::Changed {
                path: bad.into(),
                sig: sig(Kind::File, 0),
            }]);
            assert!(check_paths(&ev).is_err(), "{bad:?}");
            let mv = FromAgent::Events(vec![Event::Moved {
                from: "ok".into(),
                to: bad.into(),
                sig: sig(Kind::File, 0),
            }]);
            assert!(check_paths(&mv).is_err(), "{bad:?}");
        }
        let fine = FromAgent::ScanChunk {
            id: 1,
            entries: vec![entry("a/b"), entry("-x"), entry(".twinsyncx")],
            unreadable: vec![RelPath::root()],
        };
        assert!(check_paths(&fine).is_ok());
    }

    #[test]
    fn a_read_answered_for_another_path_or_size_is_not_taken() {
        let at = |offset: u64, data: &[u8]| twinsync_proto::Extent {
            offset,
            data: serde_bytes::ByteBuf::from(data.to_vec()),
        };
        let file = |p: &str, data: &[u8], s: Sig| {
            Ok(FileData {
                path: p.into(),
                extents: if data.is_empty() {
                    vec![]
                } else {
                    vec![at(0, data)]
                },
                sig: s,
                xattrs: twinsync_proto::Xattrs::default(),
                expect: twinsync_proto::Expect::Any,
            })
        };
        let asked: Vec<RelPath> = vec!["a".into(), "b".into(), "c".into(), "d".into()];
        let got = vec![
            file(".twinsync/index", b"x", sig(Kind::File, 1)),
            file("b", b"xx", sig(Kind::File, 1)),
            file("c", b"", sig(Kind::Symlink, 0)),
            file("d", b"ok", sig(Kind::File, 2)),
        ];
        let r = check_read(Side::Left, &asked, got);
        assert!(r[0].is_err() && r[1].is_err() && r[2].is_err());
        assert_eq!(r[3].as_ref().unwrap().extents[0].data.as_slice(), b"ok");
        // Segments out of order, overlapping, empty or past the size.
        for extents in [
            vec![at(5, b"b"), at(0, b"a")],
            vec![at(0, b"aa"), at(1, b"b")],
            vec![at(3, b"")],
            vec![at(9, b"xy")],
            vec![at(u64::MAX, b"x")],
        ] {
            let mut f = file("s", b"", sig(Kind::File, 10));
            if let Ok(f) = &mut f {
                f.extents = extents;
            }
            assert!(check_read(Side::Left, &["s".into()], vec![f])[0].is_err());
        }
        let mut sparse = file("s", b"", sig(Kind::File, 1 << 30));
        if let Ok(f) = &mut sparse {
            f.extents = vec![at(0, b"a"), at(1, b"b"), at((1 << 30) - 1, b"z")];
        }
        assert!(check_read(Side::Left, &["s".into()], vec![sparse])[0].is_ok());
        // Attributes outside the scope carried (root's, while owners are
        // not carried): refused, never written.
        let mut f = file("e", b"", sig(Kind::File, 0));
        if let Ok(f) = &mut f {
            f.xattrs.list.push(twinsync_proto::Xattr {
                name: serde_bytes::ByteBuf::from(b"security.capability".to_vec()),
                value: serde_bytes::ByteBuf::from(vec![1]),
            });
        }
        assert!(check_read(Side::Left, &["e".into()], vec![f])[0].is_err());
    }
}
