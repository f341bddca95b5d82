//! The batches: while there is work, plan one, run it through the agents
//! and rsync, and take in its report; with what surrounds them (live
//! deletions held, content compared before planning, marks asked after).

use std::time::Instant;

use anyhow::Result;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::conflict_log::record_conflicts;
use super::main_loop::Signals;
use super::phase::Phase;
use super::{now, trim_heap, Brain, Rescan};
use crate::engine::Batch;
use crate::execute::execute;
use crate::link::Notice;
use crate::side::Side;
use crate::state::State;

impl Brain {
    /// Run batches while there is work, the phase plans them and the sync
    /// is not paused; events keep arriving meanwhile. Returns early when a
    /// signal asks to stop or the link is lost (see the phase), and after a
    /// dry run's one plan.
    pub(super) async fn run_batches(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
        signals: &mut Signals,
    ) -> Result<()> {
        while self.engine.has_work() && self.phase.plans() && !self.control.paused() {
            if self.phase == Phase::Live && !self.settings.dry_run {
                let deleting = self.engine.live_deletions();
                if deleting.iter().any(|&d| d > 0) {
                    self.hold_deletions(notices, deleting).await?;
                    if !self.phase.plans() || !self.engine.has_work() {
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
            // A big merge runs in several batches: the last one ends it.
            let merging = self.phase == Phase::Merging;
            let merge_done = merging && !batch.more;
            self.show(if merging { State::Merging } else { State::Live });
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
            if !batch.is_empty() && !self.run_batch(batch, notices, signals).await? {
                break;
            }
            if merging {
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
                self.phase.merged();
                trim_heap();
            }

            if rescan && self.phase != Phase::Stopping {
                self.show(State::Scanning);
                self.rescan(Rescan::Live).await?;
            }
        }
        Ok(())
    }

    /// Run `batch` while taking in events (and signals: a stop waits for
    /// the batch to end), then its report, and save the index. False when
    /// a lost link cut it short: the engine is left as after a crash, for
    /// the reconnection's merge.
    async fn run_batch(
        &mut self,
        batch: Batch,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
        signals: &mut Signals,
    ) -> Result<bool> {
        let intents = self.intend(&batch);
        self.status.lock().expect("status").in_batch = crate::execute::changes(&batch);
        let exec = execute(self.links.clone(), self.ends(), self.rsync.clone(), batch);
        tokio::pin!(exec);
        let outcome = loop {
            tokio::select! {
                out = &mut exec => break out,
                Some(n) = notices.recv() => self.on_notice(n)?,
                _ = signals.term.recv() => self.phase.stop(),
                _ = signals.int.recv() => self.phase.stop(),
            }
        };
        self.status.lock().expect("status").in_batch = 0;
        let (report, stats) = match outcome {
            Ok(x) => x,
            // A link lost during the batch is dead (`alive` is cleared before
            // the loss is told), even when a stop asked for meanwhile keeps
            // the phase from saying so.
            Err(e)
                if (self.phase == Phase::Reconnecting || !self.links.iter().all(|l| l.alive()))
                    && !self.links.iter().any(|l| l.refused()) =>
            {
                warn!("batch interrupted by a lost link: {e:#}");
                self.engine.abort();
                // As after a crash: what the batch made before the link
                // went is its own, not a change (the reconnection's merge
                // recognises it).
                self.engine.set_intents(intents);
                self.phase.link_lost();
                return Ok(false);
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
        Ok(true)
    }

    /// Before a plan: files whose size and mtime cannot tell their versions
    /// apart are hashed on both sides (see [`Engine::to_compare`]).
    pub(super) async fn compare_content(&mut self) -> Result<()> {
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

    /// Ask a mark of each side the batches wrote files on (live only: a
    /// merge has no reports to order), so that the engine knows when their
    /// reports are all in.
    pub(super) async fn ask_marks(&mut self) {
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
}
