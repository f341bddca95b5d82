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
use twinsync_proto::{AgentOptions, Event};

use crate::config::Settings;
use crate::engine::{Engine, Policy, Trace};
use crate::execute::{execute, BatchStats};
use crate::index::{Header, Index};
use crate::link::{Link, Notice, Transport};
use crate::rsync::{self, End, RsyncOptions};
use crate::side::Side;
use crate::status;

fn end_of(t: &Transport, root: &std::path::Path, settings: &Settings) -> End {
    match t {
        Transport::Local => End::Local(root.to_path_buf()),
        Transport::Ssh {
            session,
            host,
            program,
        } => End::Remote {
            host: host.clone(),
            path: root.to_path_buf(),
            ctl: session.control_socket().to_path_buf(),
            config: settings.ssh_config.clone(),
            program: program.clone(),
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
    /// Writes refused because the destination changed meanwhile (merged
    /// again under the conflict rules).
    pub refused: u64,
    /// Paths found going back and forth with no change in between (a bug).
    pub loops: u64,
    /// Differences the background verification found and repaired (a bug
    /// elsewhere: events missed or misjudged).
    pub repairs: u64,
    /// Verification passes run.
    pub verifications: u64,
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
    /// The next batch is a merge of full scans (safety nets apply).
    merging: bool,
    /// A merge's batches are under way (a big merge takes several).
    in_merge: bool,
    /// When the last merge started, until the pair is said to be live.
    merge_started: Option<Instant>,
    /// The remote link is down: reconnect before planning more.
    down: bool,
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

/// A burst is over when nothing happened for this long: verification
/// follows (at least ten times the last scan's duration).
/// Why both replicas are listed again: the mass-deletion net differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rescan {
    /// A merge: at start-up, after a reconnection, on SIGUSR1.
    Merge,
    /// While live: asked for by the engine, or a verification.
    Live,
}

/// The fewest entries a side must have for a live deletion of more than
/// `--max-delete` percent of it to stop the sync (below that, only a side
/// that lost every entry does).
const LIVE_NET_MIN: usize = 1000;

const VERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Verification also runs this often when nothing happens.
const VERIFY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// Live deletions wait until their side has been quiet this long and its
/// root is seen intact: `rm -rf ROOT` removes entries one by one before the
/// root itself, and none of that must reach the other side.
const DELETE_QUIET: std::time::Duration = std::time::Duration::from_millis(250);

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
        excludes: settings.excludes.patterns().to_vec(),
        watch: !settings.sync_only,
        // A dry run changes nothing, so it neither cleans the trash nor
        // takes the lock (the agents then create no `.twinsync/`).
        trash_days: (!settings.dry_run).then_some(settings.trash_days),
        lock: (!settings.dry_run).then(|| settings.instance.clone()),
        // Root's agents give what they make its source's owner and group.
        owners: true,
        bwlimit: settings.bwlimit,
        poll_ms: settings.poll_ms,
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
    if let Some(addr) = settings.metrics {
        let bound = crate::metrics::serve(addr, Arc::clone(&status))
            .await
            .with_context(|| format!("cannot serve metrics on {addr} (--metrics)"))?;
        info!(address = %bound, "metrics at http://{bound}/metrics");
        status.lock().expect("status").metrics = Some(bound.to_string());
    }
    let roots = [settings.left.clone(), settings.right.clone()];
    let left = Link::start(
        Side::Left,
        &Transport::Local,
        settings.agent_log.as_deref(),
        roots[0].as_os_str().as_bytes(),
        options.clone(),
        ntx.clone(),
    );
    let right = async {
        let Some(spec) = &settings.remote else {
            let link = Link::start(
                Side::Right,
                &Transport::Local,
                settings.agent_log.as_deref(),
                roots[1].as_os_str().as_bytes(),
                options.clone(),
                ntx.clone(),
            )
            .await?;
            return Ok((Transport::Local, link));
        };
        // A transient failure (sshd throttling new connections, a restart
        // under way, a master connection dying at once while sshd still
        // drops a killed brain's) is retried twice before giving up.
        let mut tries = 0;
        loop {
            let root = roots[1].as_os_str().as_bytes();
            match start_remote(spec, &settings, root, options.clone(), ntx.clone()).await {
                Ok(x) => return Ok::<_, anyhow::Error>(x),
                // No agent to be had is not transient.
                Err(e) if tries < 2 && !e.is::<crate::link::NoMatchingAgent>() => {
                    tries += 1;
                    warn!("{e:#}; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(500 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    };
    let (l, r) = tokio::join!(left, right);
    let (right_transport, r) = r?;
    let transports = [Transport::Local, right_transport];
    let links = [Arc::new(l?), Arc::new(r)];
    carry_owners(&links);
    let engine = Engine::new(
        settings.excludes.compiled().clone(),
        Policy {
            prefer: settings.prefer,
            conflicts_beside: settings.conflicts_beside,
        },
    );
    let mut engine = engine;
    engine.tracing = settings.dry_run || settings.debug >= 2;
    // Live, each side's reports are ordered against the batches' writes.
    engine.set_ordered(!settings.sync_only && !settings.dry_run);
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
    // The index is reached through a descriptor of `.twinsync/index/`
    // opened with no symlink followed, in a `.twinsync/` that must be ours:
    // a replica's user who swaps it cannot aim root's writes elsewhere.
    let index = match &scratch {
        Some(d) => Index::open(d.path(), &settings.instance),
        None => twinsync_helpers::ops::open_state_dir(&roots[0], b"index")
            .map(|fd| Index::open_in(fd, &index_dir, &settings.instance)),
    }
    .context("cannot open the index in the left replica's .twinsync/")?;
    let header = Index::header(
        &roots[0].to_string_lossy(),
        &roots[1].to_string_lossy(),
        [links[0].root_dev, links[1].root_dev],
    );
    let control = crate::control::Hub::new(settings.dry_run);
    let _status_server = match status::serve(Arc::clone(&status), control.shared()) {
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
        control,
        transports,
        options,
        notices_tx: ntx,
        index,
        header,
        scanned: [0; 2],
        merging: true,
        in_merge: false,
        merge_started: None,
        down: false,
        verified: false,
        last_activity: Instant::now(),
        scan_time: std::time::Duration::ZERO,
        last_verify: Instant::now(),
        rsync: RsyncOptions {
            program: rsync_program.clone(),
            extra: settings.rsync_extra.clone(),
            bwlimit: settings.bwlimit,
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
    /// List both replicas and merge them against the index. A link lost
    /// meanwhile is not an error: the pair is marked down, and the
    /// reconnection merges again.
    async fn rescan(&mut self, kind: Rescan) -> Result<()> {
        match self.rescan_once(kind).await {
            Err(e)
                if self.settings.remote.is_some()
                    && !self.links.iter().all(|l| l.alive())
                    && !self.links.iter().any(|l| l.refused()) =>
            {
                warn!("rescan interrupted by a lost link: {e:#}");
                self.engine.abort();
                self.down = true;
                Ok(())
            }
            r => r,
        }
    }

    async fn rescan_once(&mut self, kind: Rescan) -> Result<()> {
        let t = Instant::now();
        if matches!(kind, Rescan::Merge) {
            self.merge_started.get_or_insert(t);
        }
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
                None => open[side] = false,
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
        self.scan_time = t.elapsed();
        for path in self.engine.take_stuck() {
            info!(%path, "acted on again after the rescan");
        }
        for side in Side::BOTH {
            if counts[side] == 0 && had > 0 && !self.settings.force {
                bail!(
                    "refusing to sync: the {side} replica {} is empty, but the index says both \
                     sides held {had} entries at the last sync. Is its volume mounted? If the \
                     emptying is intended, run again with --force",
                    self.roots[side].display()
                );
            }
        }
        self.check_mass_deletion(self.engine.pending_deletions(), kind)?;
        // The listings entered what they found the same on both sides in the
        // index (in order, so its nodes are half full), unjournaled.
        self.engine.compact_known();
        self.save_snapshot();
        if !self.settings.dry_run {
            // The index now holds what the helpers installed.
            for link in &self.links {
                link.installed(true).await?;
            }
        }
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
            let (was, now) = (loaded.header.devs[side], self.header.devs[side]);
            if was != now && !self.settings.force {
                bail!(
                    "refusing to sync: the {side} root {} is on another device than at the last \
                     sync (device {was:#x}, now {now:#x}): a volume unmounted or swapped? If \
                     intended, run again with --force",
                    self.roots[side].display()
                );
            }
        }
        info!(entries = loaded.known.len(), "index loaded");
        if !loaded.intents.is_empty() {
            info!(
                copies = loaded.intents.len(),
                "the last run ended in the middle of a batch: its copies are recognised"
            );
        }
        self.engine.set_known(loaded.known);
        self.engine.set_intents(loaded.intents);
        Ok(())
    }

    /// What each agent's helper recorded installing since the index was
    /// last saved whole: after a crash, it tells the interrupted batch's
    /// copies from a user's same-size, same-mtime write.
    async fn load_installed(&mut self) -> Result<()> {
        for side in Side::BOTH {
            let installed = self.links[side].installed(false).await?;
            self.engine.set_installed(side, installed);
        }
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

    /// Before a plan: files whose size and mtime cannot tell their versions
    /// apart are hashed on both sides (see [`Engine::to_compare`]).
    async fn compare_content(&mut self) -> Result<()> {
        let paths = self.engine.to_compare();
        if paths.is_empty() {
            return Ok(());
        }
        let (l, r) = tokio::join!(
            self.links[0].hash(paths.clone()),
            self.links[1].hash(paths.clone())
        );
        let (l, r) = (l?, r?);
        let digest = |d: Option<Vec<u8>>| d.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok());
        let results = paths
            .into_iter()
            .zip(l.into_iter().zip(r))
            .map(|(p, (a, b))| (p, digest(a), digest(b)))
            .collect();
        self.engine.compared(results);
        Ok(())
    }

    /// The mass-deletion safety net, for batches that merge full scans.
    /// Refuse a merge that would delete more than `--max-delete` % of a
    /// side's entries (`deleted`: entries per side), before it starts. A
    /// rescan while live (asked for by the engine, or a verification) takes
    /// what the live sync would: the deletions of a moment of churn in a
    /// small tree are no sign of a lost volume, while a side emptied, or
    /// more than the share of a tree of [`LIVE_NET_MIN`] entries, is.
    fn check_mass_deletion(&self, deleted: [usize; 2], kind: Rescan) -> Result<()> {
        if self.settings.force {
            return Ok(());
        }
        let pct = usize::from(self.settings.max_delete_percent);
        for side in Side::BOTH {
            let (del, had) = (deleted[side], self.scanned[side]);
            let over = had > 0 && del > 0 && del * 100 > had * pct;
            let refuse = match kind {
                Rescan::Merge => over,
                Rescan::Live => (del >= had && had > 1) || (had >= LIVE_NET_MIN && over),
            };
            if refuse {
                bail!(
                    "refusing to merge: it would delete {del} of the {had} entries of the {side} \
                     replica {} (more than {}%). Nothing was changed. Check the other replica; \
                     if the deletions are intended, run again with --force",
                    self.roots[side].display(),
                    self.settings.max_delete_percent
                );
            }
        }
        Ok(())
    }

    fn log_traces(&self, traces: &[Trace]) {
        for t in traces {
            if self.settings.dry_run {
                info!(side = %t.side, path = %t.path, "would {t}");
            } else {
                debug!(side = %t.side, path = %t.path, "{t}");
            }
        }
    }

    /// Both replicas as rsync endpoints (from their transports).
    fn ends(&self) -> [End; 2] {
        [Side::Left, Side::Right]
            .map(|s| end_of(&self.transports[s], &self.roots[s], &self.settings))
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
        st.refused = self.counters.refused;
        st.loops = self.counters.loops;
        st.repairs = self.counters.repairs;
        st.verifications = self.counters.verifications;
        st.settled = state == "live" && self.verified && !self.engine.has_work();
    }

    /// The oldest change not yet synced, for the metrics: noted when a
    /// change is queued, forgotten when `idle` (no batch running) with
    /// nothing queued.
    fn note_pending(&self, idle: bool) {
        let mut st = self.status.lock().expect("status");
        if self.engine.has_work() {
            st.oldest_pending.get_or_insert_with(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
            });
        } else if idle {
            st.oldest_pending = None;
        }
    }

    /// SIGHUP: re-read the excludes from the config file; when they changed,
    /// restart both agents with them and reconcile.
    async fn reload(&mut self) -> Result<()> {
        let Some(path) = self.settings.config_file.clone() else {
            info!("SIGHUP: no config file to reload (-c)");
            return Ok(());
        };
        let excludes = match crate::config_file::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|file| self.settings.excludes.reread(&file))
        {
            Ok(x) => x,
            Err(e) => {
                error!("SIGHUP: keeping the current excludes: {e}");
                return Ok(());
            }
        };
        if excludes.patterns() == self.settings.excludes.patterns() {
            info!("SIGHUP: excludes unchanged");
            return Ok(());
        }
        info!(excludes = ?excludes.patterns(), "SIGHUP: new excludes; restarting the agents");
        self.options.excludes = excludes.patterns().to_vec();
        self.engine.set_excludes(excludes.compiled().clone());
        self.settings.excludes = excludes;
        for side in Side::BOTH {
            self.links[side].shutdown().await;
            let link = Link::start(
                side,
                &self.transports[side],
                self.settings.agent_log.as_deref(),
                self.roots[side].as_os_str().as_bytes(),
                self.options.clone(),
                self.notices_tx.clone(),
            )
            .await?;
            self.links[side] = Arc::new(link);
        }
        twinsync_proto::set_owners_carried(self.links.iter().all(|l| l.root));
        self.rescan(Rescan::Merge).await
    }

    async fn main_loop(&mut self, notices: &mut mpsc::UnboundedReceiver<Notice>) -> Result<Exit> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut sigusr1 = signal(SignalKind::user_defined1())?;
        let mut banned_check = tokio::time::interval(std::time::Duration::from_secs(2));
        self.load_index()?;
        if !self.settings.dry_run {
            self.load_installed().await?;
        }
        self.set_state("scanning");
        self.rescan(Rescan::Merge).await?;
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
            while self.engine.has_work() && !stopping && !self.down && !self.control.paused() {
                if !self.in_merge && !self.merging && !self.settings.dry_run {
                    let deleting = self.engine.live_deletions();
                    if deleting.iter().any(|&d| d > 0) {
                        self.hold_deletions(notices, deleting, &mut stopping)
                            .await?;
                        if stopping || self.down || !self.engine.has_work() {
                            continue;
                        }
                    }
                }
                self.compare_content().await?;
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
                for path in &batch.loops {
                    self.counters.loops += 1;
                    error!(
                        %path,
                        "goes back and forth between the replicas with no change in between \
                         (a bug: please report it); not acted on until the next rescan"
                    );
                }
                if !batch.conflicts.is_empty() {
                    self.counters.conflicts += batch.conflicts.len() as u64;
                    record_conflicts(&self.roots[0], &batch.conflicts);
                }
                if !batch.is_empty() {
                    let intents = self.intend(&batch);
                    self.status.lock().expect("status").in_batch = crate::execute::changes(&batch);
                    let exec = execute(self.links.clone(), self.ends(), self.rsync.clone(), batch);
                    tokio::pin!(exec);
                    let outcome = loop {
                        tokio::select! {
                            out = &mut exec => break out,
                            Some(n) = notices.recv() => self.on_notice(n)?,
                            _ = sigterm.recv() => { stopping = true; }
                            _ = sigint.recv() => { stopping = true; }
                        }
                    };
                    self.status.lock().expect("status").in_batch = 0;
                    let (report, stats) = match outcome {
                        Ok(x) => x,
                        Err(e)
                            if (self.down || !self.links.iter().all(|l| l.alive()))
                                && !self.links.iter().any(|l| l.refused()) =>
                        {
                            warn!("batch interrupted by a lost link: {e:#}");
                            self.engine.abort();
                            // As after a crash: what the batch made before
                            // the link went is its own, not a change (the
                            // reconnection's merge recognises it).
                            self.engine.set_intents(intents);
                            self.down = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    self.tally(&stats);
                    crate::report::batch(&stats);
                    self.last_activity = Instant::now();
                    self.verified = false;
                    let traces = self.engine.complete(report);
                    self.note_traces(traces);
                    self.ask_marks().await;
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
                    self.rescan(Rescan::Live).await?;
                }
            }
            if stopping {
                self.set_state("stopping");
                self.save_snapshot();
                info!("stopped");
                return Ok(Exit::Done);
            }
            if self.down {
                // Reconnect first: nothing below may use the lost link.
                continue;
            }
            if !self.control.paused()
                && (self.settings.sync_only
                    || (self.settings.exit_on_no_events && !self.engine.has_work()))
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
            let paused = self.control.paused();
            if !paused && !self.engine.has_work() && !self.settings.dry_run {
                if let Some(t) = self.merge_started.take() {
                    crate::report::live(self.engine.known(), t.elapsed());
                }
            }
            self.set_state(if paused { "paused" } else { "live" });
            self.note_pending(true);
            // Verify once a burst has settled, and now and then; a flush
            // waits for one, after a quiet time since it was asked for.
            let quiet = VERIFY_AFTER.max(self.scan_time * 10);
            let verify_at = if let Some(asked) = self.control.flush_asked_at() {
                self.last_activity.max(asked) + quiet
            } else if self.verified {
                self.last_verify + VERIFY_EVERY
            } else {
                self.last_activity + quiet
            };
            let verify_in = verify_at.saturating_duration_since(Instant::now());
            tokio::select! {
                () = tokio::time::sleep(verify_in), if !self.settings.dry_run && !paused => {
                    self.verify().await?;
                }
                Some(n) = notices.recv() => {
                    self.on_notice(n)?;
                    // Take in everything already queued before planning.
                    while let Ok(n) = notices.try_recv() {
                        self.on_notice(n)?;
                    }
                }
                ask = self.control.next() => if let Some(reply) = ask {
                    let _ = reply.send(crate::control::unresolved(
                        &self.roots[0],
                        self.engine.known(),
                        self.settings.trash_days,
                        now(),
                    ));
                },
                _ = sigterm.recv() => stopping = true,
                _ = sigint.recv() => stopping = true,
                _ = sighup.recv() => self.reload().await?,
                _ = sigusr1.recv() => {
                    info!("SIGUSR1: full re-merge");
                    self.set_state("scanning");
                    self.rescan(Rescan::Merge).await?;
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

    /// Live deletions wait for their side to be quiet ([`DELETE_QUIET`]) and
    /// its root to be seen intact: a root deleted (`rm -rf` removes what is
    /// inside first), moved away or unmounted changes nothing on the other
    /// side. A side emptied, or a deletion of more than `--max-delete`
    /// percent of a big tree, stops the sync unless `--force`.
    /// Ask a mark of each side the batches wrote files on (live only: a
    /// merge has no reports to order), so that the engine knows when their
    /// reports are all in.
    async fn ask_marks(&mut self) {
        if self.settings.sync_only || self.settings.dry_run {
            return;
        }
        for side in Side::BOTH {
            if self.engine.wants_mark(side) {
                // A link lost meanwhile is noticed (and recovered) by the
                // loop; without a mark, reports are judged by their stamp.
                let n = self.links[side].mark().await.ok().flatten();
                self.engine.marked(side, n);
            }
        }
    }

    async fn hold_deletions(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
        deleting: [usize; 2],
        stopping: &mut bool,
    ) -> Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                Some(n) = notices.recv() => self.on_notice(n)?,
                () = tokio::time::sleep(DELETE_QUIET) => break,
                _ = sigterm.recv() => { *stopping = true; return Ok(()); }
                _ = sigint.recv() => { *stopping = true; return Ok(()); }
            }
        }
        if self.down {
            // A lost link says nothing of the root: the reconnection's
            // merge decides these deletions again.
            return Ok(());
        }
        let deleting = {
            let now = self.engine.live_deletions();
            [deleting[0].max(now[0]), deleting[1].max(now[1])]
        };
        for t in Side::BOTH {
            if deleting[t] == 0 {
                continue;
            }
            // The deletions come from the other side: is its root intact?
            let s = t.other();
            let intact = match self.links[s].intact().await {
                Ok(intact) => intact,
                Err(e) if matches!(self.transports[s], Transport::Ssh { .. }) => {
                    // The link, not the root: reconnect and merge again.
                    warn!(side = %s, "link lost: {e:#}");
                    self.down = true;
                    return Ok(());
                }
                Err(_) => false,
            };
            if !intact {
                bail!(
                    "the {s} replica root {} vanished or lost its .twinsync/ (deleted, moved \
                     or unmounted); stopping without changing the other side ({} deletions \
                     not applied). Restore the root, then start again",
                    self.roots[s].display(),
                    deleting[t]
                );
            }
        }
        if self.settings.force {
            return Ok(());
        }
        let had = self.engine.known().len();
        for t in Side::BOTH {
            let del = deleting[t];
            let pct = usize::from(self.settings.max_delete_percent);
            if (del >= had && had > 1) || (had >= LIVE_NET_MIN && del * 100 > had * pct) {
                bail!(
                    "refusing to delete {del} of the {had} entries of the {t} replica {}: the \
                     {} replica lost them all at once (more than {pct}%). Nothing was deleted. \
                     Check the {} replica; if the deletions are intended, run again with --force",
                    self.roots[t].display(),
                    t.other(),
                    t.other()
                );
            }
        }
        Ok(())
    }

    /// Background verification: both replicas are listed again and
    /// compared with the index; what differs (and was not reported by
    /// events) is repaired by the batches that follow, and counted as
    /// `repairs`: each one is a bug elsewhere.
    async fn verify(&mut self) -> Result<()> {
        self.set_state("verifying");
        let ticket = self.control.ticket();
        self.counters.verifications += 1;
        self.rescan(Rescan::Live).await?;
        self.compare_content().await?;
        let found = self.engine.queue_depth();
        self.last_verify = Instant::now();
        if found == 0 {
            self.control.flushed(ticket);
            self.verified = true;
            self.merging = false;
            self.in_merge = false;
            return Ok(());
        }
        self.counters.repairs += found as u64;
        for (side, path) in self.engine.pending_paths().into_iter().take(20) {
            warn!(%side, %path, "verification: differs from the index (repairing)");
        }
        error!(
            repairs = found,
            "verification found differences the live sync had missed; repairing them (a bug: \
             please report it with the log)"
        );
        Ok(())
    }

    fn tally(&mut self, stats: &BatchStats) {
        for s in 0..2 {
            self.counters.copied[s] += stats.copied[s];
            self.counters.bytes[s] += stats.bytes[s];
            self.counters.ops[s] += stats.ops[s];
        }
        self.counters.errors += stats.errors;
        self.counters.refused += stats.refused;
    }

    /// Write down the copies, directories, attributes and moves `batch` is
    /// about to make, and return them (see
    /// [`Index::intend`]).
    fn intend(&mut self, batch: &crate::engine::Batch) -> Vec<crate::index::Intent> {
        let intents = self.engine.intents(batch);
        if let Err(e) = self.index.intend(&intents) {
            warn!("cannot write down the batch's copies in the index journal: {e}");
        }
        intents
    }

    /// Count and log the decisions about events taken in.
    fn note_traces(&mut self, traces: Vec<Trace>) {
        for t in traces {
            if t.is_echo() {
                self.counters.echoes += 1;
            }
            if self.settings.dry_run {
                info!(side = %t.side, path = %t.path, "event: {t}");
            } else {
                debug!(side = %t.side, path = %t.path, "event: {t}");
            }
        }
    }

    fn on_notice(&mut self, n: Notice) -> Result<()> {
        match n {
            Notice::Events(side, id, _) if id != self.links[side].id => Ok(()),
            Notice::Lost(side, id, _) if id != self.links[side].id => Ok(()),
            Notice::Events(side, _, events) => {
                self.last_activity = Instant::now();
                self.verified = false;
                for ev in events {
                    match &ev {
                        Event::RootGone => bail!(
                            "the {side} replica root {} vanished (deleted, moved or unmounted); \
                             stopping without changing the other side",
                            self.roots[side].display()
                        ),
                        Event::Error { path, message } => {
                            self.counters.errors += 1;
                            warn!(%side, %path, "{message}");
                        }
                        _ => {}
                    }
                    let t = self.engine.on_event(side, ev);
                    self.note_traces(vec![t]);
                }
                self.note_pending(false);
                Ok(())
            }
            Notice::Lost(side, _, why) => {
                if matches!(self.transports[side], Transport::Ssh { .. })
                    && !self.links[side].refused()
                {
                    warn!(%side, "link lost: {why}");
                    self.down = true;
                    return Ok(());
                }
                if !self.roots[side].is_dir() {
                    bail!(
                        "the {side} replica root {} vanished; stopping without changing the other side",
                        self.roots[side].display()
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
            let attempt = start_remote(
                &spec,
                &self.settings,
                self.roots[side].as_os_str().as_bytes(),
                self.options.clone(),
                self.notices_tx.clone(),
            );
            // Bounded: a connection that hangs half-open is retried.
            let attempt = async {
                tokio::time::timeout(std::time::Duration::from_secs(8), attempt)
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer within 8 s"))?
            };
            match attempt.await {
                Ok((transport, link)) => {
                    self.transports[side] = transport;
                    self.links[side] = Arc::new(link);
                    twinsync_proto::set_owners_carried(self.links.iter().all(|l| l.root));
                    self.down = false;
                    info!("reconnected; reconciling both replicas");
                    // Stale notices of the old link are dropped.
                    while notices.try_recv().is_ok() {}
                    self.load_installed().await?;
                    return self.rescan(Rescan::Merge).await;
                }
                Err(e) => {
                    warn!("reconnect failed: {e:#}");
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    }
}

/// Connect to the right replica's host and start its agent on `root`: the
/// right side's transport and link, at start-up and at each reconnection.
async fn start_remote(
    spec: &crate::remote::RemoteSpec,
    settings: &Settings,
    root: &[u8],
    options: AgentOptions,
    notices: mpsc::UnboundedSender<Notice>,
) -> Result<(Transport, Link)> {
    let session = crate::remote::connect(spec, settings.ssh_config.as_deref()).await?;
    let remote = crate::remote::install::Remote {
        session,
        host: spec.display_host(),
        program: &settings.remote_path,
        install: settings.agent_install,
    };
    remote
        .start(settings.agent_log.as_deref(), root, options, notices)
        .await
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

/// Owners and groups, and the extended attributes only root may set
/// (`trusted.*`, `security.*`: file capabilities), are part of an entry's
/// state when both agents run as root (only root can set them; otherwise a
/// difference could never be repaired). `user.*` attributes and POSIX ACLs
/// are carried whoever runs the agents (see [`twinsync_proto::XattrScope`]).
/// Said once, at start, when they are not.
fn carry_owners(links: &[Arc<Link>; 2]) {
    let carried = links.iter().all(|l| l.root);
    twinsync_proto::set_owners_carried(carried);
    if carried {
        info!(
            "numeric owners and groups, and all extended attributes (trusted.*, security.*), \
             are carried (both agents run as root)"
        );
    } else if links.iter().any(|l| l.root) {
        warn!(
            "owners, groups and the extended attributes only root may set (trusted.*, \
             security.*: file capabilities) are not carried: the {} agent does not run as root \
             (run it as root, e.g. log in as root over ssh, to carry them)",
            if links[0].root {
                Side::Right
            } else {
                Side::Left
            }
        );
    }
}

/// Append one JSON line per conflict to the left replica's
/// `.twinsync/conflicts.log`.
fn record_conflicts(left_root: &std::path::Path, conflicts: &[crate::engine::Conflict]) {
    let path = left_root.join(".twinsync").join("conflicts.log");
    // Through `.twinsync/`'s descriptor, never a symlink (see the index).
    let opened = twinsync_helpers::ops::open_state_dir(left_root, b"").and_then(|dir| {
        rustix::fs::openat(
            &dir,
            c"conflicts.log",
            rustix::fs::OFlags::WRONLY
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::APPEND
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .map(std::fs::File::from)
        .map_err(std::io::Error::from)
    });
    let mut f = match opened {
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
