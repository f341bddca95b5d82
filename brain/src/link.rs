//! The brain's end of an agent: the [`Link`], and how it starts: the agent
//! spawned (see `process`), the handshake, then the tasks that ping it, write
//! its frames and route what it sends (answers to their requests, events to
//! the main loop).
//!
//! The parts: `process` (spawning and stopping the agent), `wire` (frames on
//! its pipes), `requests` (requests and their answers), `checks` (what the
//! brain takes from an agent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;
use twinsync_proto::{encode, AgentOptions, Event, FromAgent, ToAgent, MAGIC, PROTOCOL_VERSION};

use crate::side::Side;
use twinsync_helpers::pace::Pacer;

mod checks;
mod process;
mod requests;
mod wire;

use checks::{brief, check_paths};
pub use process::own_group;
use process::Guard;
use requests::{Chunks, Waiters};
pub use requests::{Scan, ScanPart};
use wire::{read_msg, send_paced};

/// How long the agent may take to answer the hello.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the brain pings an agent.
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(3);
/// Silence after which a link is declared dead.
const DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

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

/// What an agent tells the main loop.
#[derive(Debug)]
pub enum Notice {
    /// Filter events (side, link id, events).
    Events(Side, u64, Vec<Event>),
    /// The agent stopped (stream closed) or reported a fatal error.
    Lost(Side, u64, String),
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
        let (guard, reader, writer) = process::spawn(side, transport, &what, agent_log).await?;
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
}

#[cfg(test)]
mod tests;
