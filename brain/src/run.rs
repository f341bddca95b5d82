//! The runner: start both agents, merge, then turn events into batches
//! until stopped. All decisions are the engine's; the runner does the I/O
//! around them. One job per file:
//!
//! - `start`: wiring at start-up (agents, index, status socket, metrics),
//!   and starting the remote agent (again after a loss).
//! - `phase`: the runner's `Phase` (merging, live, reconnecting, stopping)
//!   and its transitions.
//! - `main_loop`: the loop itself, one match on the phase per turn:
//!   batches while there is work, then a wait for events, signals,
//!   `twinsync` commands or the next verification.
//! - `batch`: the batches: planned, run, their reports taken in.
//! - `scan`: listing both replicas and merging them against the index.
//! - `persist`: the index on disk: loading it, journaling batches, folding
//!   the journal into a snapshot.
//! - `safety`: the safety nets (mass deletion, vanished or emptied root).
//! - `verify`: background verification.
//! - `reconnect`: the remote link lost, found again.
//! - `notices`: what the agents report (events, a lost link).
//! - `reload`: SIGHUP (new excludes).
//! - `counters`: what the runner counts and shows (`status`, metrics, logs).
//! - `transfer`: where copies go through (rsync endpoints and options).
//! - `conflict_log`: `.twinsync/conflicts.log`.
//! - `banned`: the `/proc` scan for banned programs (`-b`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use twinsync_proto::AgentOptions;

use crate::config::Settings;
use crate::engine::Engine;
use crate::index::{Header, Index};
use crate::link::{Link, Notice, Transport};
use crate::rsync::RsyncOptions;
use crate::status;
use phase::Phase;

mod banned;
mod batch;
mod conflict_log;
mod counters;
mod main_loop;
mod notices;
mod persist;
mod phase;
mod reconnect;
mod reload;
mod safety;
mod scan;
mod start;
mod transfer;
mod verify;

pub use counters::Counters;
pub use start::run;

/// How a run ended without error.
#[derive(Debug)]
pub enum Exit {
    /// Stopped by a signal, or a one-shot merge is done.
    Done,
    /// A banned program (`-b`) is running.
    Banned(String),
}

/// The runner's state: the settings, both links and the engine, and what the
/// loop keeps between its turns.
struct Brain {
    status: status::Shared,
    /// `twinsync pause`, `resume`, `flush`, `conflicts`.
    control: crate::control::Hub,
    transports: [Transport; 2],
    options: AgentOptions,
    notices_tx: mpsc::UnboundedSender<Notice>,
    settings: Settings,
    engine: Engine,
    links: [Arc<Link>; 2],
    roots: [PathBuf; 2],
    rsync: RsyncOptions,
    counters: Counters,
    index: Index,
    header: Header,
    /// Entries each side had at its last scan (for the safety nets).
    scanned: [usize; 2],
    /// Where the runner is: what the main loop does at its next turn.
    phase: Phase,
    /// When the last merge started, until the pair is said to be live.
    merge_started: Option<Instant>,
    /// No change since the last verification found the replicas equal to
    /// the index.
    verified: bool,
    /// When the last event or batch was seen.
    last_activity: Instant,
    /// How long the last full scan took (verification waits a multiple of
    /// it after a burst: bounded CPU on big trees).
    scan_time: std::time::Duration,
    /// When the last verification ran.
    last_verify: Instant,
}

/// Why both replicas are listed again: the mass-deletion net differs, and
/// a verification's listing draws no progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rescan {
    /// A merge: at start-up, after a reconnection, on SIGUSR1.
    Merge,
    /// While live, asked for by the engine.
    Live,
    /// While live, the background verification: as `Live`, but silent (no
    /// spinners, no progress lines: the pair is live, nothing to wait for).
    Verify,
}

/// Hand the heap's free pages back to the system after a listing and at the
/// end of a merge (glibc keeps them otherwise: the resident size would stay
/// at the merge's peak). Costs a walk of the free chunks: not done in live
/// batches.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn now() -> i64 {
    twinsync_helpers::time::now_secs()
}
