//! Background verification: once a burst has settled, and now and then, both
//! replicas are listed again and compared with the index.

use std::time::Instant;

use anyhow::Result;
use tracing::{error, warn};

use super::{Brain, Rescan};

/// A burst is over when nothing happened for this long: verification
/// follows (at least [`VERIFY_SCANS`] times the last scan's duration).
const VERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// The quiet time before a verification is at least this many times the
/// last full listing's duration: a verification is a full listing, so on a
/// big tree it takes at most about a tenth of the time (bounded CPU).
const VERIFY_SCANS: u32 = 10;
/// Verification also runs this often when nothing happens.
const VERIFY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// The differences a verification names in the log, one line each (all are
/// counted): enough to see what was missed, without a line per file of a
/// whole subtree.
const REPAIRS_LOGGED: usize = 20;

impl Brain {
    /// When the next verification is due: once a burst has settled, and now
    /// and then; a flush waits for one, after a quiet time since it was
    /// asked for.
    pub(super) fn verify_at(&self) -> Instant {
        let quiet = VERIFY_AFTER.max(self.scan_time * VERIFY_SCANS);
        if let Some(asked) = self.control.flush_asked_at() {
            self.last_activity.max(asked) + quiet
        } else if self.verified {
            self.last_verify + VERIFY_EVERY
        } else {
            self.last_activity + quiet
        }
    }

    /// Background verification: both replicas are listed again and
    /// compared with the index; what differs (and was not reported by
    /// events) is repaired by the batches that follow, and counted as
    /// `repairs`: each one is a bug elsewhere.
    pub(super) async fn verify(&mut self) -> Result<()> {
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
            self.phase.merged();
            return Ok(());
        }
        self.counters.repairs += found as u64;
        for (side, path) in self.engine.pending_paths().into_iter().take(REPAIRS_LOGGED) {
            warn!(%side, %path, "verification: differs from the index (repairing)");
        }
        error!(
            repairs = found,
            "verification found differences the live sync had missed; repairing them (a bug: \
             please report it with the log)"
        );
        Ok(())
    }
}
