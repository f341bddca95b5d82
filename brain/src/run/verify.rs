//! Background verification: once a burst has settled, and now and then, both
//! replicas are listed again and compared with the index.

use std::time::Instant;

use anyhow::Result;
use tracing::{error, warn};

use super::{Brain, Rescan};

/// A burst is over when nothing happened for this long: verification
/// follows (at least ten times the last scan's duration).
pub(super) const VERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Verification also runs this often when nothing happens.
pub(super) const VERIFY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl Brain {
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
}
