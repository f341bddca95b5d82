//! What the runner counts and shows: counters, the state published to
//! `twinsync status` and the metrics, the decisions logged.

use tracing::{debug, info};

use super::Brain;
use crate::engine::Trace;
use crate::execute::BatchStats;
use crate::state::State;

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

impl Brain {
    /// Shows `state` (and the counters) to `status` and the metrics.
    pub(super) fn show(&self, state: State) {
        let mut st = self.status.lock().expect("status");
        st.state = state;
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
        st.settled = state == State::Live && self.verified && !self.engine.has_work();
    }

    /// The oldest change not yet synced, for the metrics: noted when a
    /// change is queued, forgotten when `idle` (no batch running) with
    /// nothing queued.
    pub(super) fn note_pending(&self, idle: bool) {
        if self.engine.has_work() {
            self.note_change_waits();
        } else if idle {
            self.status.lock().expect("status").oldest_pending = None;
        }
    }

    /// A change waits (queued, or seen while reconnecting, for the merge
    /// that follows): the oldest pending change is noted now unless one
    /// older is.
    pub(super) fn note_change_waits(&self) {
        let mut st = self.status.lock().expect("status");
        st.oldest_pending.get_or_insert_with(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        });
    }

    pub(super) fn tally(&mut self, stats: &BatchStats) {
        for s in 0..2 {
            self.counters.copied[s] += stats.copied[s];
            self.counters.bytes[s] += stats.bytes[s];
            self.counters.ops[s] += stats.ops[s];
        }
        self.counters.errors += stats.errors;
        self.counters.refused += stats.refused;
    }

    /// Count and log the decisions about events taken in.
    pub(super) fn note_traces(&mut self, traces: Vec<Trace>) {
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

    pub(super) fn log_traces(&self, traces: &[Trace]) {
        for t in traces {
            if self.settings.dry_run {
                info!(side = %t.side, path = %t.path, "would {t}");
            } else {
                debug!(side = %t.side, path = %t.path, "{t}");
            }
        }
    }
}
