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
    decode, encode, AgentOptions, Entry, Event, FromAgent, Op, OpResult, RelPath, Request,
    Response, Sig, ToAgent, MAGIC, MAX_FRAME, PROTOCOL_VERSION,
};

use crate::engine::Side;

/// How long the agent may take to answer the hello.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the brain pings an agent.
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(3);
/// Silence after which a link is declared dead.
const DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

type BoxRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

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
    alive: Arc<std::sync::atomic::AtomicBool>,
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
                    .process_group(0)
                    .kill_on_drop(true);
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
                anyhow!(
                    "the {side} agent ({what}) did not answer the handshake: {e}. Is twinsync \
                     installed there? Install the same version as here (twinsync {}) on that \
                     host, e.g. copy this binary to /usr/local/bin/twinsync, or point \
                     --remote-path at it",
                    env!("CARGO_PKG_VERSION")
                )
            })?;
        let root_dev = match first {
            FromAgent::Hello {
                magic,
                version,
                agent_version,
                root_dev,
            } => {
                if magic != MAGIC || version != PROTOCOL_VERSION {
                    bail!(
                        "the {side} agent ({what}) is twinsync {agent_version} speaking protocol \
                         {version}; this is twinsync {} speaking protocol {PROTOCOL_VERSION}. \
                         Install the same version on both sides (e.g. copy this binary there, or \
                         point --remote-path at a matching one)",
                        env!("CARGO_PKG_VERSION")
                    );
                }
                root_dev
            }
            FromAgent::Fatal { message } => bail!("{side} replica: {message}"),
            other => bail!("the {side} agent sent {other:?} instead of a hello"),
        };

        let (tx, mut rx) = mpsc::unbounded_channel::<ToAgent>();
        {
            // Heartbeat: a ping every few seconds keeps the agent's watchdog
            // fed and gives the reader below something to expect.
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PING_EVERY);
                loop {
                    tick.tick().await;
                    if tx.send(ToAgent::Ping).is_err() {
                        return;
                    }
                }
            });
        }
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if writer.write_all(&encode(&msg)).await.is_err() {
                    break;
                }
                // Send whatever else is queued before flushing.
                while let Ok(msg) = rx.try_recv() {
                    if writer.write_all(&encode(&msg)).await.is_err() {
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
        });

        let waiters: Waiters = Arc::default();
        let chunks: Chunks = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        static NEXT_LINK: AtomicU64 = AtomicU64::new(1);
        let link_id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        {
            let alive = Arc::clone(&alive);
            let waiters = Arc::clone(&waiters);
            let chunks = Arc::clone(&chunks);
            // Silence means a dead link only across hosts: a local agent's
            // pipe cannot half-die (its end is seen as EOF), and a local agent
            // stopped by a signal is not gone.
            let dead_after = match transport {
                Transport::Ssh { .. } => Some(DEAD_AFTER),
                Transport::Local => None,
            };
            tokio::spawn(async move {
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
                    match msg {
                        Ok(FromAgent::Events(evs)) => {
                            if notices.send(Notice::Events(side, link_id, evs)).is_err() {
                                return;
                            }
                        }
                        Ok(FromAgent::Response { id, result }) => {
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
            });
        }
        Ok(Link {
            side,
            tx,
            waiters,
            chunks,
            next: AtomicU64::new(1),
            guard: tokio::sync::Mutex::new(guard),
            root_dev,
            alive,
            id: link_id,
        })
    }

    /// False once the agent's stream has ended or gone silent.
    #[must_use]
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    async fn request(&self, req: Request) -> Result<Response> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(id, tx);
        // The reader marks the link dead *before* dropping the waiters, so a
        // waiter inserted after that is caught here instead of waiting forever.
        if !self.alive() {
            self.waiters.remove(&id);
            bail!("the {} agent is gone", self.side);
        }
        self.tx
            .send(ToAgent::Request { id, req })
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

    /// Apply helper operations in order.
    ///
    /// # Errors
    /// When the agent fails or goes away (per-op failures are in the result).
    pub async fn apply(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        match self.request(Request::Apply { ops }).await? {
            Response::Applied(r) => Ok(r),
            other => bail!("unexpected answer to apply: {other:?}"),
        }
    }

    /// lstat paths.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn stat(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Sig>>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        match self.request(Request::Stat { paths }).await? {
            Response::Stats(r) => Ok(r),
            other => bail!("unexpected answer to stat: {other:?}"),
        }
    }

    /// Read symlink targets.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_links(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Vec<u8>>>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        match self.request(Request::ReadLinks { paths }).await? {
            Response::Links(r) => Ok(r
                .into_iter()
                .map(|b| b.map(serde_bytes::ByteBuf::into_vec))
                .collect()),
            other => bail!("unexpected answer to readlink: {other:?}"),
        }
    }

    /// BLAKE3 digests of files.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn hash(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Vec<u8>>>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        match self.request(Request::Hash { paths }).await? {
            Response::Hashes(r) => Ok(r
                .into_iter()
                .map(|h| h.map(serde_bytes::ByteBuf::into_vec))
                .collect()),
            other => bail!("unexpected answer to hash: {other:?}"),
        }
    }

    /// Read whole small files (for transfers to or from a remote replica).
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_files(
        &self,
        paths: Vec<RelPath>,
    ) -> Result<Vec<Result<twinsync_proto::FileData, String>>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        match self.request(Request::ReadFiles { paths }).await? {
            Response::Files(r) => Ok(r),
            other => bail!("unexpected answer to read: {other:?}"),
        }
    }

    /// The files the agent's helper installed since the record was last
    /// emptied (`forget` empties it), with their stamps.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn installed(&self, forget: bool) -> Result<Vec<(RelPath, twinsync_proto::Stamp)>> {
        match self.request(Request::Installed { forget }).await? {
            Response::Installed(r) => Ok(r),
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
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let src_root = src_root.as_os_str().as_bytes().to_vec();
        match self.request(Request::CopyFrom { src_root, paths }).await? {
            Response::Written(r) => Ok(r),
            other => bail!("unexpected answer to copy: {other:?}"),
        }
    }

    /// Write whole small files.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn write_files(
        &self,
        files: Vec<twinsync_proto::FileData>,
    ) -> Result<Vec<Result<Sig, twinsync_proto::OpFail>>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        match self.request(Request::WriteFiles { files }).await? {
            Response::Written(r) => Ok(r),
            other => bail!("unexpected answer to write: {other:?}"),
        }
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
