//! The brain's main loop: start both agents, merge, then turn events into
//! batches until stopped. All decisions are the engine's; this file does the
//! I/O around them.

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use twinsync_filter::Excludes;
use twinsync_proto::{AgentOptions, Event, RelPath, Sig};

use crate::config::Settings;
use crate::engine::{Batch, Engine, Policy, Side, Trace};
use crate::index::{Header, Index};
use crate::link::{Link, Notice, Transport};
use crate::rsync::{self, End, RsyncOptions};
use crate::status;

/// Files up to this size travel inline between hosts.
const INLINE_MAX: u64 = 1 << 20;
/// Bytes per inline read/write request.
const INLINE_CHUNK: u64 = 8 << 20;

/// Group inline copies into requests of at most `INLINE_CHUNK` bytes.
fn inline_chunks(list: &[(RelPath, Sig)]) -> Vec<&[(RelPath, Sig)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, sig)) in list.iter().enumerate() {
        if bytes + sig.size > INLINE_CHUNK && i > start {
            out.push(&list[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += sig.size;
    }
    if start < list.len() {
        out.push(&list[start..]);
    }
    out
}

fn end_of(t: &Transport, root: &std::path::Path, settings: &Settings) -> End {
    match t {
        Transport::Local => End::Local(root.to_path_buf()),
        Transport::Ssh { session, host, .. } => End::Remote {
            host: host.clone(),
            path: root.to_path_buf(),
            ctl: session.control_socket().to_path_buf(),
            config: settings.ssh_config.clone(),
        },
    }
}

/// Counters shown in logs (and by `status`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Files copied into each side.
    pub copied: [u64; 2],
    /// Bytes copied into each side.
    pub bytes: [u64; 2],
    /// Helper operations applied on each side.
    pub ops: [u64; 2],
    /// Events dropped as echoes.
    pub echoes: u64,
    /// Conflicts kept.
    pub conflicts: u64,
    /// Errors logged.
    pub errors: u64,
}

/// How a run ended without error.
#[derive(Debug)]
pub enum Exit {
    /// Stopped by a signal, or a one-shot merge is done.
    Done,
    /// A banned program (`-b`) is running.
    Banned(String),
}

/// The first of `programs` that is running now (by process name).
fn banned_running(programs: &[String]) -> Option<String> {
    if programs.is_empty() {
        return None;
    }
    let rd = std::fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
            let comm = comm.trim();
            if let Some(p) = programs.iter().find(|p| p.as_str() == comm) {
                return Some(p.clone());
            }
        }
    }
    None
}

struct Brain {
    status: status::Shared,
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
    /// The next batch is a merge of full scans (safety nets apply).
    merging: bool,
    /// A merge's batches are under way (a big merge takes several).
    in_merge: bool,
    /// The remote link is down: reconnect before planning more.
    down: bool,
}

/// Failed copies per destination side, with what was found there instead.
type Failed = [Vec<crate::engine::Copied>; 2];

/// Run a sync as `settings` say. Returns when stopped by a signal, after a
/// one-shot merge, or on a fatal error.
///
/// # Errors
/// Fatal errors: an agent that cannot start or is lost, a vanished root.
pub async fn run(settings: Settings) -> Result<Exit> {
    if let Some(p) = banned_running(&settings.banned) {
        return Ok(Exit::Banned(p));
    }
    let (ntx, mut notices) = mpsc::unbounded_channel();
    let options = AgentOptions {
        excludes: settings.excludes.clone(),
        watch: !settings.sync_only,
        // A dry run changes nothing, so it neither cleans the trash nor
        // takes the lock (the agents then create no `.twinsync/`).
        trash_days: (!settings.dry_run).then_some(settings.trash_days),
        lock: (!settings.dry_run).then(|| settings.instance.clone()),
    };
    let status: status::Shared = Arc::new(std::sync::Mutex::new(status::Status {
        instance: settings.instance.clone(),
        left: settings.left.display().to_string(),
        right: match &settings.remote {
            Some(r) => format!("{}:{}", r.display_host(), r.path.display()),
            None => settings.right.display().to_string(),
        },
        pid: std::process::id(),
        state: "starting".into(),
        ..Default::default()
    }));
    let roots = [settings.left.clone(), settings.right.clone()];
    let right_transport = match &settings.remote {
        None => Transport::Local,
        Some(spec) => {
            let session = crate::remote::connect(spec, settings.ssh_config.as_deref()).await?;
            Transport::Ssh {
                session,
                program: settings.remote_path.clone(),
                host: spec.display_host(),
            }
        }
    };
    let transports = [Transport::Local, right_transport];
    let agent_log = settings.agent_log.clone();
    let (l, r) = tokio::join!(
        Link::start(
            Side::Left,
            &transports[0],
            agent_log.as_deref(),
            roots[0].as_os_str().as_bytes(),
            options.clone(),
            ntx.clone(),
        ),
        Link::start(
            Side::Right,
            &transports[1],
            agent_log.as_deref(),
            roots[1].as_os_str().as_bytes(),
            options.clone(),
            ntx.clone(),
        ),
    );
    let links = [Arc::new(l?), Arc::new(r?)];
    let excludes = Excludes::new(&settings.excludes).map_err(anyhow::Error::msg)?;
    let engine = Engine::new(
        excludes,
        Policy {
            prefer: settings.prefer,
            conflicts_beside: settings.conflicts_beside,
        },
    );
    let mut engine = engine;
    engine.tracing = settings.dry_run || settings.debug >= 2;
    if settings.dry_run {
        // A dry run shows the whole plan at once.
        engine.min_batch = usize::MAX;
    }
    let index_dir = roots[0].join(".twinsync").join("index");
    // A dry run creates nothing in the replicas: with no index yet, it reads
    // the empty one of a scratch folder (kept until the end of the run).
    let scratch = if settings.dry_run && !index_dir.is_dir() {
        Some(tempfile::tempdir().context(
            "cannot create a scratch folder for the dry run: point TMPDIR at a writable folder",
        )?)
    } else {
        None
    };
    let index = Index::open(
        scratch
            .as_ref()
            .map_or(index_dir.as_path(), tempfile::TempDir::path),
        &settings.instance,
    )
    .context("cannot open the index in the left replica's .twinsync/")?;
    let header = Index::header(
        &roots[0].to_string_lossy(),
        &roots[1].to_string_lossy(),
        [links[0].root_dev, links[1].root_dev],
    );
    let _status_server = match status::serve(Arc::clone(&status)) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(
                "no status socket in {}: {e}",
                status::runtime_dir().display()
            );
            None
        }
    };
    // `TWINSYNC_RSYNC` names another rsync binary (or a missing one, to
    // exercise the fallback).
    let rsync_program = std::env::var("TWINSYNC_RSYNC").unwrap_or_else(|_| "rsync".into());
    let mut brain = Brain {
        status,
        transports,
        options,
        notices_tx: ntx,
        index,
        header,
        scanned: [0; 2],
        merging: true,
        in_merge: false,
        down: false,
        rsync: RsyncOptions {
            program: rsync_program.clone(),
            extra: settings.rsync_extra.clone(),
            available: {
                let found = rsync::on_path(&rsync_program);
                if !found {
                    warn!(
                        "rsync is not installed: local copies are made by twinsync's own helper \
                         (no delta transfer). Install rsync (apt-get install rsync) for that, and \
                         for large files to or from a remote replica"
                    );
                }
                found
            },
        },
        settings,
        engine,
        links,
        roots,
        counters: Counters::default(),
    };
    let res = brain.main_loop(&mut notices).await;
    for l in &brain.links {
        l.shutdown().await;
    }
    res
}

impl Brain {
    async fn rescan(&mut self) -> Result<()> {
        let t = Instant::now();
        let had = self.engine.known().len();
        let (mut sl, mut sr) = (self.links[0].scan()?, self.links[1].scan()?);
        // Listings merge into the index as they stream in: a full merge, so
        // saved as a snapshot, with no journal or undo kept meanwhile.
        for side in Side::BOTH {
            self.engine.begin_scan(side);
        }
        let mut open = [true, true];
        while open[0] || open[1] {
            let (side, part) = tokio::select! {
                p = sl.next(), if open[0] => (Side::Left, p),
                p = sr.next(), if open[1] => (Side::Right, p),
            };
            match part {
                Some(part) => {
                    if let Err(e) = self.engine.scan_chunk(side, part.entries, part.unreadable) {
                        bail!("{e}");
                    }
                }
                None => open[side.idx()] = false,
            }
        }
        let (l, r) = tokio::join!(sl.finish(), sr.finish());
        l?;
        r?;
        let counts = [
            self.engine.end_scan(Side::Left),
            self.engine.end_scan(Side::Right),
        ];
        info!(
            left = counts[0],
            right = counts[1],
            ms = t.elapsed().as_millis() as u64,
            "scanned both replicas"
        );
        self.scanned = counts;
        for side in Side::BOTH {
            if counts[side.idx()] == 0 && had > 0 && !self.settings.force {
                bail!(
                    "refusing to sync: the {side} replica {} is empty, but the index says both \
                     sides held {had} entries at the last sync. Is its volume mounted? If the \
                     emptying is intended, run again with --force",
                    self.roots[side.idx()].display()
                );
            }
        }
        self.check_mass_deletion(self.engine.pending_deletions())?;
        // The listings entered what they found the same on both sides in the
        // index (in order, so its nodes are half full), unjournaled.
        self.engine.compact_known();
        self.save_snapshot();
        trim_heap();
        self.merging = self.engine.has_work();
        self.in_merge = self.merging;
        Ok(())
    }

    /// Load the index of the last sync, checking it belongs to these roots.
    fn load_index(&mut self) -> Result<()> {
        let Some(loaded) = self.index.load().context("cannot read the index")? else {
            info!("no index yet: first sync is a union (nothing deleted)");
            return Ok(());
        };
        for side in Side::BOTH {
            let (was, now) = (loaded.header.devs[side.idx()], self.header.devs[side.idx()]);
            if was != now && !self.settings.force {
                bail!(
                    "refusing to sync: the {side} root {} is on another device than at the last \
                     sync (device {was:#x}, now {now:#x}): a volume unmounted or swapped? If \
                     intended, run again with --force",
                    self.roots[side.idx()].display()
                );
            }
        }
        info!(entries = loaded.known.len(), "index loaded");
        self.engine.set_known(loaded.known);
        Ok(())
    }

    fn save_snapshot(&mut self) {
        if self.settings.dry_run {
            return;
        }
        self.engine.clear_delta();
        if let Err(e) = self.index.snapshot(&self.header, self.engine.known()) {
            error!("cannot write the index: {e}");
        }
    }

    fn save_delta(&mut self) {
        if self.settings.dry_run {
            return;
        }
        // Folded into a snapshot once the journal holds as much as the index
        // (amortised: the snapshot costs what the journal already did).
        let (records, entries) = (self.index.journal_len(), self.index.journal_entries());
        if self.engine.snapshot_due()
            || records > 2000
            || entries > self.engine.known().len().max(10_000)
        {
            self.save_snapshot();
            return;
        }
        let (set, removed) = self.engine.take_delta();
        if let Err(e) = self.index.append(set, removed) {
            error!("cannot append to the index journal: {e}");
        }
    }

    /// Before a merge calls a conflict: files of the same size changed on
    /// both sides are hashed on both; equal bytes are no conflict.
    async fn settle_equal_content(&mut self) -> Result<()> {
        let paths = self.engine.same_size_conflicts();
        if paths.is_empty() {
            return Ok(());
        }
        let (l, r) = tokio::join!(
            self.links[0].hash(paths.clone()),
            self.links[1].hash(paths.clone())
        );
        let (l, r) = (l?, r?);
        let equal: Vec<RelPath> = paths
            .into_iter()
            .zip(l.into_iter().zip(r))
            .filter_map(|(p, (a, b))| (a.is_some() && a == b).then_some(p))
            .collect();
        if !equal.is_empty() {
            info!(
                files = equal.len(),
                "same content on both sides: only attributes to align"
            );
            self.engine.settle_equal_content(&equal);
        }
        Ok(())
    }

    /// The mass-deletion safety net, for batches that merge full scans.
    /// Refuse a merge that would delete more than `--max-delete` % of a
    /// side's entries (`deleted`: entries per side), before it starts.
    fn check_mass_deletion(&self, deleted: [usize; 2]) -> Result<()> {
        if self.settings.force {
            return Ok(());
        }
        for side in Side::BOTH {
            let (del, had) = (deleted[side.idx()], self.scanned[side.idx()]);
            if had > 0 && del > 0 && del * 100 > had * usize::from(self.settings.max_delete_percent)
            {
                bail!(
                    "refusing to merge: it would delete {del} of the {had} entries of the {side} \
                     replica {} (more than {}%). Nothing was changed. Check the other replica; \
                     if the deletions are intended, run again with --force",
                    self.roots[side.idx()].display(),
                    self.settings.max_delete_percent
                );
            }
        }
        Ok(())
    }

    fn log_traces(&self, traces: &[Trace]) {
        for t in traces {
            if self.settings.dry_run {
                info!(side = %t.side, path = %t.path, "would {}", t.decision);
            } else {
                debug!(side = %t.side, path = %t.path, "{}", t.decision);
            }
        }
    }

    /// Both replicas as rsync endpoints (from their transports).
    fn ends(&self) -> [End; 2] {
        [Side::Left, Side::Right].map(|s| {
            end_of(
                &self.transports[s.idx()],
                &self.roots[s.idx()],
                &self.settings,
            )
        })
    }

    fn set_state(&self, state: &str) {
        let mut st = self.status.lock().expect("status");
        st.state = state.into();
        st.queue = self.engine.queue_depth();
        st.files = self.counters.copied;
        st.bytes = self.counters.bytes;
        st.echoes = self.counters.echoes;
        st.conflicts = self.counters.conflicts;
        st.errors = self.counters.errors;
    }

    /// SIGHUP: re-read the excludes from the config file; when they changed,
    /// restart both agents with them and reconcile.
    async fn reload(&mut self) -> Result<()> {
        let Some(path) = self.settings.config_file.clone() else {
            info!("SIGHUP: no config file to reload (-c)");
            return Ok(());
        };
        let file = match crate::config_file::load(&path) {
            Ok(f) => f,
            Err(e) => {
                error!("SIGHUP: keeping the current excludes: {e}");
                return Ok(());
            }
        };
        let mut excludes = file.exclude.unwrap_or_default();
        excludes.extend(self.settings.cli_excludes.iter().cloned());
        if !self.settings.tempfiles.is_empty() {
            excludes.push(self.settings.tempfiles.clone());
        }
        if excludes == self.settings.excludes {
            info!("SIGHUP: excludes unchanged");
            return Ok(());
        }
        let compiled = Excludes::new(&excludes).map_err(anyhow::Error::msg)?;
        info!(?excludes, "SIGHUP: new excludes; restarting the agents");
        self.settings.excludes = excludes.clone();
        self.options.excludes = excludes;
        self.engine.set_excludes(compiled);
        for side in Side::BOTH {
            self.links[side.idx()].shutdown().await;
            let link = Link::start(
                side,
                &self.transports[side.idx()],
                self.settings.agent_log.as_deref(),
                self.roots[side.idx()].as_os_str().as_bytes(),
                self.options.clone(),
                self.notices_tx.clone(),
            )
            .await?;
            self.links[side.idx()] = Arc::new(link);
        }
        self.rescan().await
    }

    async fn main_loop(&mut self, notices: &mut mpsc::UnboundedReceiver<Notice>) -> Result<Exit> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut sigusr1 = signal(SignalKind::user_defined1())?;
        let mut banned_check = tokio::time::interval(std::time::Duration::from_secs(2));
        self.load_index()?;
        self.set_state("scanning");
        self.rescan().await?;
        if self.settings.skip_initial_sync {
            self.engine.adopt_equal();
            self.merging = false;
        }
        let mut stopping = false;
        loop {
            if self.down && !stopping {
                self.reconnect(notices).await?;
            }
            // Run batches while there is work; events keep arriving meanwhile.
            while self.engine.has_work() && !stopping && !self.down {
                if self.merging {
                    self.settle_equal_content().await?;
                }
                let snapshot = self.settings.dry_run.then(|| self.engine.snapshot());
                let planned = Instant::now();
                let batch = self.engine.plan(now());
                debug!(
                    ms = planned.elapsed().as_millis() as u64,
                    more = batch.more,
                    "batch planned"
                );
                self.merging = false;
                // A big merge runs in several batches: the last one ends it.
                let merge_done = self.in_merge && !batch.more;
                self.set_state(if self.in_merge { "merging" } else { "live" });
                self.log_traces(&batch.traces);
                if let Some(known) = snapshot {
                    self.engine.set_known(known);
                    self.engine.clear_delta();
                    let rescan = batch.rescan;
                    self.engine.discard_pending();
                    if rescan {
                        info!("would rescan both replicas");
                    }
                    break;
                }
                let rescan = batch.rescan;
                if !batch.is_empty() {
                    let exec = execute(
                        self.links.clone(),
                        self.ends(),
                        self.roots.clone(),
                        self.rsync.clone(),
                        batch,
                    );
                    tokio::pin!(exec);
                    let outcome = loop {
                        tokio::select! {
                            out = &mut exec => break out,
                            Some(n) = notices.recv() => self.on_notice(n)?,
                            _ = sigterm.recv() => { stopping = true; }
                            _ = sigint.recv() => { stopping = true; }
                        }
                    };
                    let (failed, stats) = match outcome {
                        Ok(x) => x,
                        Err(e) if self.down || !self.links.iter().all(|l| l.alive()) => {
                            warn!("batch interrupted by a lost link: {e:#}");
                            self.engine.abort();
                            self.down = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    self.tally(&stats);
                    self.engine.complete(failed, stats.ops_failed);
                    self.status.lock().expect("status").last_sync = Some(now());
                    let saved = Instant::now();
                    self.save_delta();
                    debug!(ms = saved.elapsed().as_millis() as u64, "index saved");
                }
                if self.in_merge {
                    // Entered in order, the index's nodes are left half full:
                    // rebuilt after each of a merge's batches (a merge has a
                    // few, see `MIN_BATCH`), the index stays compact.
                    let compacted = Instant::now();
                    self.engine.compact_known();
                    debug!(
                        ms = compacted.elapsed().as_millis() as u64,
                        "index compacted"
                    );
                }
                if merge_done {
                    self.in_merge = false;
                    trim_heap();
                }

                if rescan && !stopping {
                    self.set_state("scanning");
                    self.rescan().await?;
                }
            }
            if stopping {
                self.set_state("stopping");
                self.save_snapshot();
                info!("stopped");
                return Ok(Exit::Done);
            }
            if self.settings.sync_only
                || (self.settings.exit_on_no_events && !self.engine.has_work())
            {
                info!(
                    copied_to_left = self.counters.copied[0],
                    copied_to_right = self.counters.copied[1],
                    conflicts = self.counters.conflicts,
                    "in sync"
                );
                self.save_snapshot();
                return Ok(Exit::Done);
            }
            self.set_state("live");
            tokio::select! {
                Some(n) = notices.recv() => {
                    self.on_notice(n)?;
                    // Take in everything already queued before planning.
                    while let Ok(n) = notices.try_recv() {
                        self.on_notice(n)?;
                    }
                }
                _ = sigterm.recv() => stopping = true,
                _ = sigint.recv() => stopping = true,
                _ = sighup.recv() => self.reload().await?,
                _ = sigusr1.recv() => {
                    info!("SIGUSR1: full re-merge");
                    self.set_state("scanning");
                    self.rescan().await?;
                }
                _ = banned_check.tick() => {
                    if let Some(p) = banned_running(&self.settings.banned) {
                        self.save_snapshot();
                        return Ok(Exit::Banned(p));
                    }
                }
            }
        }
    }

    fn tally(&mut self, stats: &BatchStats) {
        for s in 0..2 {
            self.counters.copied[s] += stats.copied[s];
            self.counters.bytes[s] += stats.bytes[s];
            self.counters.ops[s] += stats.ops[s];
        }
        self.counters.errors += stats.errors;
        self.counters.conflicts += stats.conflicts;
    }

    fn on_notice(&mut self, n: Notice) -> Result<()> {
        match n {
            Notice::Events(side, id, _) if id != self.links[side.idx()].id => Ok(()),
            Notice::Lost(side, id, _) if id != self.links[side.idx()].id => Ok(()),
            Notice::Events(side, _, events) => {
                for ev in events {
                    match &ev {
                        Event::RootGone => bail!(
                            "the {side} replica root {} vanished (deleted, moved or unmounted); \
                             stopping without changing the other side",
                            self.roots[side.idx()].display()
                        ),
                        Event::Error { path, message } => {
                            self.counters.errors += 1;
                            warn!(%side, %path, "{message}");
                        }
                        _ => {}
                    }
                    let t = self.engine.on_event(side, ev);
                    if t.is_echo() {
                        self.counters.echoes += 1;
                    }
                    if self.settings.dry_run {
                        info!(side = %t.side, path = %t.path, "event: {}", t.decision);
                    } else {
                        debug!(side = %t.side, path = %t.path, "event: {}", t.decision);
                    }
                }
                Ok(())
            }
            Notice::Lost(side, _, why) => {
                if matches!(self.transports[side.idx()], Transport::Ssh { .. }) {
                    warn!(%side, "link lost: {why}");
                    self.down = true;
                    return Ok(());
                }
                if !self.roots[side.idx()].is_dir() {
                    bail!(
                        "the {side} replica root {} vanished; stopping without changing the other side",
                        self.roots[side.idx()].display()
                    );
                }
                bail!("{side} agent: {why}")
            }
        }
    }

    /// The remote link is gone: reconnect with backoff, then reconcile what
    /// changed on either side while apart by a full merge against the index
    /// (nothing made during the outage is lost, no deletion comes back).
    async fn reconnect(&mut self, notices: &mut mpsc::UnboundedReceiver<Notice>) -> Result<()> {
        let side = Side::Right;
        let Some(spec) = self.settings.remote.clone() else {
            bail!("the right agent is gone");
        };
        let mut delay = std::time::Duration::from_millis(500);
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        loop {
            // Drop the stale link (its agent, if still alive remotely, exits
            // on its own watchdog).
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = sigterm.recv() => bail!("stopped while reconnecting"),
                _ = sigint.recv() => bail!("stopped while reconnecting"),
            }
            // Events of the live side keep queueing; a full rescan follows.
            while let Ok(n) = notices.try_recv() {
                if let Notice::Events(Side::Left, _, evs) = n {
                    for ev in evs {
                        if matches!(ev, Event::RootGone) {
                            bail!("the left replica root vanished; stopping");
                        }
                    }
                }
            }
            info!(host = %spec.display_host(), "reconnecting");
            self.set_state("reconnecting");
            let attempt = async {
                let session =
                    crate::remote::connect(&spec, self.settings.ssh_config.as_deref()).await?;
                let transport = Transport::Ssh {
                    session,
                    program: self.settings.remote_path.clone(),
                    host: spec.display_host(),
                };
                let link = Link::start(
                    side,
                    &transport,
                    self.settings.agent_log.as_deref(),
                    self.roots[side.idx()].as_os_str().as_bytes(),
                    self.options.clone(),
                    self.notices_tx.clone(),
                )
                .await?;
                Ok::<_, anyhow::Error>((transport, link))
            };
            // Bounded: a connection that hangs half-open is retried.
            let attempt = async {
                tokio::time::timeout(std::time::Duration::from_secs(8), attempt)
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer within 8 s"))?
            };
            match attempt.await {
                Ok((transport, link)) => {
                    self.transports[side.idx()] = transport;
                    self.links[side.idx()] = Arc::new(link);
                    self.down = false;
                    info!("reconnected; reconciling both replicas");
                    // Stale notices of the old link are dropped.
                    while notices.try_recv().is_ok() {}
                    return self.rescan().await;
                }
                Err(e) => {
                    warn!("reconnect failed: {e:#}");
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct BatchStats {
    ops_failed: bool,
    copied: [u64; 2],
    bytes: [u64; 2],
    ops: [u64; 2],
    errors: u64,
    conflicts: u64,
}

/// Carry out a batch: helper ops on both sides, then one rsync per
/// direction, then check that what was copied arrived.
async fn execute(
    links: [Arc<Link>; 2],
    ends: [End; 2],
    roots: [PathBuf; 2],
    rsync_opts: RsyncOptions,
    batch: Batch,
) -> Result<(Failed, BatchStats)> {
    let rsync_opts = &rsync_opts;
    let Batch {
        ops,
        copies,
        conflicts,
        ..
    } = batch;
    let mut stats = BatchStats::default();
    let [mut ops_l, mut ops_r] = ops;
    // Symlinks are made by the destination's helper (atomically, with their
    // mtime), not by rsync: read their targets on the source side first.
    let mut copies = copies;
    for dst in Side::BOTH {
        let (links_list, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut copies[dst.idx()])
            .into_iter()
            .partition(|(_, sig)| sig.kind == twinsync_proto::Kind::Symlink);
        copies[dst.idx()] = rest;
        if links_list.is_empty() {
            continue;
        }
        let paths: Vec<RelPath> = links_list.iter().map(|(p, _)| p.clone()).collect();
        let targets = links[dst.other().idx()].read_links(paths).await?;
        let ops = if dst == Side::Left {
            &mut ops_l
        } else {
            &mut ops_r
        };
        for ((path, sig), target) in links_list.into_iter().zip(targets) {
            match target {
                Some(target) => ops.push(twinsync_proto::Op::Symlink {
                    path,
                    target,
                    mtime_ns: sig.mtime_ns,
                }),
                None => {
                    warn!(%path, "symlink vanished on the {} side before it was copied", dst.other())
                }
            }
        }
    }
    let (rl, rr) = tokio::join!(links[0].apply(ops_l), links[1].apply(ops_r));
    for (side, res) in [(Side::Left, rl?), (Side::Right, rr?)] {
        for r in res {
            stats.ops[side.idx()] += 1;
            // The helper's error names the operation and its path.
            if let Err(e) = r {
                stats.errors += 1;
                stats.ops_failed = true;
                warn!(%side, "{e}");
            }
        }
    }
    if !conflicts.is_empty() {
        stats.conflicts += conflicts.len() as u64;
        record_conflicts(&roots[0], &conflicts);
    }
    let t = Instant::now();
    let _ = &roots;
    let all_local = ends.iter().all(|e| matches!(e, End::Local(_)));
    let copy = |dst: Side| {
        let list = &copies[dst.idx()];
        let (src_end, dst_end) = (ends[dst.other().idx()].clone(), ends[dst.idx()].clone());
        let (src_link, dst_link) = (
            Arc::clone(&links[dst.other().idx()]),
            Arc::clone(&links[dst.idx()]),
        );
        async move {
            if list.is_empty() {
                return Ok((None, Vec::new()));
            }
            // Across hosts, small files travel inline over the agents' open
            // channel (no new ssh session); large ones by rsync (delta
            // transfer) through the same ssh connection's control socket.
            // Borrowed: a merge's copy list is not copied again here.
            let (inline, big): (Vec<_>, Vec<&RelPath>) = if all_local {
                (Vec::new(), list.iter().map(|(p, _)| p).collect())
            } else if !rsync_opts.available {
                // No rsync: everything inline (up to the frame limit).
                (list.clone(), Vec::new())
            } else {
                let (inline, big): (Vec<_>, Vec<_>) =
                    list.iter().partition(|(_, sig)| sig.size <= INLINE_MAX);
                (
                    inline.into_iter().cloned().collect(),
                    big.into_iter().map(|(p, _)| p).collect(),
                )
            };
            let mut errors = Vec::new();
            for chunk in inline_chunks(&inline) {
                let paths: Vec<RelPath> = chunk.iter().map(|(p, _)| p.clone()).collect();
                let read = src_link.read_files(paths).await?;
                let mut files = Vec::with_capacity(read.len());
                for ((path, _), r) in chunk.iter().zip(read) {
                    match r {
                        Ok(f) => files.push(f),
                        Err(e) => errors.push(format!("{path}: {e}")),
                    }
                }
                for (r, path) in dst_link
                    .write_files(files.clone())
                    .await?
                    .into_iter()
                    .zip(files.iter().map(|f| &f.path))
                {
                    if let Err(e) = r {
                        errors.push(format!("{path}: {e}"));
                    }
                }
            }
            let paths = big;
            let out = if paths.is_empty() {
                None
            } else if let (false, End::Local(src_root)) = (rsync_opts.available, &src_end) {
                // No rsync here: the destination's helper copies from the
                // other local root itself.
                for chunk in paths.chunks(2000) {
                    let owned = chunk.iter().map(|&p| p.clone()).collect();
                    let results = dst_link.copy_from(src_root, owned).await?;
                    for (path, r) in chunk.iter().zip(results) {
                        if let Err(e) = r {
                            errors.push(format!("{path}: {e}"));
                        }
                    }
                }
                None
            } else {
                Some(rsync::copy_split(rsync_opts, &src_end, &dst_end, &paths).await?)
            };
            Ok::<_, anyhow::Error>((out, errors))
        }
    };
    let (to_l, to_r) = tokio::join!(copy(Side::Left), copy(Side::Right));
    let mut failed: Failed = Default::default();
    for (dst, out) in [(Side::Left, to_l?), (Side::Right, to_r?)] {
        let (out, inline_errors) = out;
        let list = &copies[dst.idx()];
        if list.is_empty() {
            continue;
        }
        for e in inline_errors {
            warn!(to = %dst, "not copied: {e}");
        }
        let paths: Vec<RelPath> = list.iter().map(|(p, _)| p.clone()).collect();
        let mut out = out;
        let mut found = links[dst.idx()].stat(paths).await?;
        // rsync reported every file but may still be renaming the last ones
        // into place: look again (at those only) until they are there or it
        // has exited.
        if let Some(mut exit) = out.as_mut().and_then(|o| o.exit.take()) {
            loop {
                let behind: Vec<usize> = list
                    .iter()
                    .zip(&found)
                    .enumerate()
                    .filter(|(_, ((_, want), got))| !got.is_some_and(|g| g.same_content(want)))
                    .map(|(i, _)| i)
                    .collect();
                if behind.is_empty() {
                    break;
                }
                let exited = match exit.try_recv() {
                    Ok((code, stderr)) => {
                        if let Some(o) = out.as_mut() {
                            o.code = code;
                            o.stderr = stderr;
                        }
                        true
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        false
                    }
                    Err(_) => break,
                };
                let again = links[dst.idx()]
                    .stat(behind.iter().map(|&i| list[i].0.clone()).collect())
                    .await?;
                for (i, got) in behind.into_iter().zip(again) {
                    found[i] = got;
                }
                if exited {
                    break;
                }
            }
        }
        if let Some(out) = &out {
            if !out.usable() {
                error!(to = %dst, code = ?out.code, "rsync failed: {}", out.stderr);
            } else if !out.stderr.is_empty() {
                warn!(to = %dst, "rsync: {}", out.stderr);
            }
        }
        let mut missed = Vec::new();
        for ((path, want), got) in list.iter().zip(found) {
            match got {
                Some(g) if g.same_content(want) => {
                    stats.copied[dst.idx()] += 1;
                    stats.bytes[dst.idx()] += want.size;
                }
                other => missed.push((path.clone(), other)),
            }
        }
        // What does the source hold now? (It may have changed or gone while
        // we copied: the engine decides from both ends.)
        let src_now = links[dst.other().idx()]
            .stat(missed.iter().map(|(p, _)| p.clone()).collect())
            .await?;
        for ((path, dst_sig), src_sig) in missed.into_iter().zip(src_now) {
            if dst_sig.is_none() && src_sig.is_some() {
                stats.errors += 1;
                warn!(to = %dst, %path, "not copied (unreadable on the source or refused on the destination; see rsync's message)");
            }
            failed[dst.idx()].push(crate::engine::Copied {
                path,
                src: src_sig,
                dst: dst_sig,
            });
        }
        debug!(
            to = %dst,
            files = list.len(),
            ms = t.elapsed().as_millis() as u64,
            "rsync done"
        );
    }
    Ok((failed, stats))
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

/// Append one JSON line per conflict to the left replica's
/// `.twinsync/conflicts.log`.
fn record_conflicts(left_root: &std::path::Path, conflicts: &[crate::engine::Conflict]) {
    let path = left_root.join(".twinsync").join("conflicts.log");
    let mut f = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            warn!("cannot write {}: {e}", path.display());
            return;
        }
    };
    for c in conflicts {
        let mut line = serde_json::json!({
            "time": now(),
            "path": c.path.to_string(),
            "winner": c.winner.to_string(),
            "kept_as": c.kept_as.to_string(),
            "reason": c.reason,
        })
        .to_string();
        line.push('\n');
        let _ = f.write_all(line.as_bytes());
        warn!(path = %c.path, kept_as = %c.kept_as, winner = %c.winner, "conflict: {}", c.reason);
    }
}
