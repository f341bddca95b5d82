//! The main loop: batches while there is work, then a wait for what comes
//! next (events, signals, `twinsync` commands, the next verification).

use std::time::Instant;

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::banned::banned_running;
use super::conflict_log::record_conflicts;
use super::verify::{VERIFY_AFTER, VERIFY_EVERY};
use super::{now, trim_heap, Brain, Exit, Rescan};
use crate::execute::execute;
use crate::link::Notice;

impl Brain {
    pub(super) async fn main_loop(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
    ) -> Result<Exit> {
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
}
