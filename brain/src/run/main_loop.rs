//! The main loop: each turn matches on the runner's [`Phase`]: batches while
//! there is work, then a wait for what comes next (events, signals,
//! `twinsync` commands, the next verification); a reconnection; the stop.

use anyhow::Result;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Interval;
use tracing::info;

use super::banned::{banned_running, BANNED_CHECK_EVERY};
use super::phase::Phase;
use super::{now, Brain, Exit, Rescan};
use crate::link::Notice;
use crate::state::State;

/// The signals the loop listens to, and the timer of the banned-program
/// check.
pub(super) struct Signals {
    /// SIGTERM: stop.
    pub(super) term: Signal,
    /// SIGINT: stop.
    pub(super) int: Signal,
    /// SIGHUP: reload the excludes.
    hup: Signal,
    /// SIGUSR1: a full re-merge.
    usr1: Signal,
    /// When to look for a banned program again.
    banned_check: Interval,
}

impl Signals {
    fn new() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            banned_check: tokio::time::interval(BANNED_CHECK_EVERY),
        })
    }
}

impl Brain {
    pub(super) async fn main_loop(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
    ) -> Result<Exit> {
        let mut signals = Signals::new()?;
        self.load_index()?;
        if !self.settings.dry_run {
            self.load_installed().await?;
        }
        self.show(State::Scanning);
        self.rescan(Rescan::Merge).await?;
        if self.settings.skip_initial_sync {
            self.engine.adopt_equal();
        }
        loop {
            match self.phase {
                Phase::Reconnecting => {
                    // A reconnection may take long: what is written is made
                    // durable first.
                    self.sync_index();
                    self.reconnect(notices).await?;
                }
                Phase::Stopping => {
                    self.show(self.phase.into());
                    self.save_snapshot();
                    info!("stopped");
                    return Ok(Exit::Done);
                }
                Phase::Merging | Phase::Live => {
                    // Run batches while there is work; events keep arriving
                    // meanwhile.
                    self.run_batches(notices, &mut signals).await?;
                    // A stop or a lost link is seen to at the next turn:
                    // nothing below may use the lost link.
                    if self.phase.plans() {
                        if let Some(exit) = self.wait(notices, &mut signals).await? {
                            return Ok(exit);
                        }
                    }
                }
            }
        }
    }

    /// No batch to run (or paused): end a one-shot run, or wait for what
    /// comes next. `Some` ends the run.
    async fn wait(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
        signals: &mut Signals,
    ) -> Result<Option<Exit>> {
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
            return Ok(Some(Exit::Done));
        }
        let paused = self.control.paused();
        if !paused && !self.engine.has_work() && !self.settings.dry_run {
            if let Some(t) = self.merge_started.take() {
                crate::report::live(self.engine.known(), t.elapsed());
            }
        }
        self.show(if paused { State::Paused } else { State::Live });
        self.note_pending(true);
        let verify_in = self
            .verify_at()
            .saturating_duration_since(std::time::Instant::now());
        let sync_at = self.index.sync_at();
        tokio::select! {
            // The burst has settled (or the oldest unsynced record is due).
            () = tokio::time::sleep_until(sync_at.unwrap_or_else(std::time::Instant::now).into()),
                if sync_at.is_some() => self.sync_index(),
            () = tokio::time::sleep(verify_in), if !self.settings.dry_run && !paused => {
                self.verify(notices).await?;
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
            _ = signals.term.recv() => self.phase.stop(),
            _ = signals.int.recv() => self.phase.stop(),
            _ = signals.hup.recv() => self.reload().await?,
            _ = signals.usr1.recv() => {
                info!("SIGUSR1: full re-merge");
                self.show(State::Scanning);
                self.rescan(Rescan::Merge).await?;
            }
            _ = signals.banned_check.tick() => {
                if let Some(p) = banned_running(&self.settings.banned) {
                    self.save_snapshot();
                    return Ok(Some(Exit::Banned(p)));
                }
            }
        }
        Ok(None)
    }
}
