//! Listing both replicas and merging the listings against the index (at
//! start-up, after a reconnection, on SIGUSR1, for the engine, to verify).

use std::time::Instant;

use anyhow::{bail, Result};
use tracing::{info, warn};

use super::{trim_heap, Brain, Rescan};
use crate::side::Side;

impl Brain {
    /// List both replicas and merge them against the index. A link lost
    /// meanwhile is not an error: the phase turns to reconnecting, and the
    /// reconnection merges again.
    pub(super) async fn rescan(&mut self, kind: Rescan) -> Result<()> {
        match self.rescan_once(kind).await {
            Err(e)
                if self.settings.remote.is_some()
                    && !self.links.iter().all(|l| l.alive())
                    && !self.links.iter().any(|l| l.refused()) =>
            {
                warn!("rescan interrupted by a lost link: {e:#}");
                self.engine.abort();
                self.phase.link_lost();
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
        let shown = kind != Rescan::Verify;
        let (mut sl, mut sr) = (self.links[0].scan(shown)?, self.links[1].scan(shown)?);
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
        self.check_emptied(had, counts)?;
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
        self.phase.listed(self.engine.has_work());
        Ok(())
    }
}
