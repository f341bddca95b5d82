//! The safety nets: a merge or live deletions that would empty a side or
//! delete more than `--max-delete` percent of it, and a replica root that
//! vanished, stop the sync before the other side is changed.

use anyhow::{bail, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::warn;

use super::phase::Phase;
use super::{Brain, Rescan};
use crate::link::{Notice, Transport};
use crate::side::Side;

/// The fewest entries a side must have for a live deletion of more than
/// `--max-delete` percent of it to stop the sync (below that, only a side
/// that lost every entry does).
const LIVE_NET_MIN: usize = 1000;

/// Live deletions wait until their side has been quiet this long and its
/// root is seen intact: `rm -rf ROOT` removes entries one by one before the
/// root itself, and none of that must reach the other side.
const DELETE_QUIET: std::time::Duration = std::time::Duration::from_millis(250);

/// More than `pct` percent of `had` entries deleted.
fn over_share(del: usize, had: usize, pct: usize) -> bool {
    had > 0 && del > 0 && del * 100 > had * pct
}

/// The live net: deleting `del` of a side's `had` entries stops the sync
/// when it empties the side (of more than one entry), or when it is more
/// than `pct` percent of a tree of at least [`LIVE_NET_MIN`] entries.
fn live_net(del: usize, had: usize, pct: usize) -> bool {
    (del >= had && had > 1) || (had >= LIVE_NET_MIN && over_share(del, had, pct))
}

impl Brain {
    /// A listing that found a side empty, when the index held `had`
    /// entries, stops the sync (unless `--force`): an unmounted volume
    /// looks like that. `counts`: entries each side listed.
    pub(super) fn check_emptied(&self, had: usize, counts: [usize; 2]) -> Result<()> {
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
        Ok(())
    }

    /// The mass-deletion safety net, for batches that merge full scans.
    /// Refuse a merge that would delete more than `--max-delete` % of a
    /// side's entries (`deleted`: entries per side), before it starts. A
    /// rescan while live (asked for by the engine, or a verification) takes
    /// what the live sync would: the deletions of a moment of churn in a
    /// small tree are no sign of a lost volume, while a side emptied, or
    /// more than the share of a tree of [`LIVE_NET_MIN`] entries, is.
    pub(super) fn check_mass_deletion(&self, deleted: [usize; 2], kind: Rescan) -> Result<()> {
        if self.settings.force {
            return Ok(());
        }
        let pct = usize::from(self.settings.max_delete_percent);
        for side in Side::BOTH {
            let (del, had) = (deleted[side], self.scanned[side]);
            let refuse = match kind {
                Rescan::Merge => over_share(del, had, pct),
                Rescan::Live | Rescan::Verify => live_net(del, had, pct),
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

    /// Live deletions wait for their side to be quiet ([`DELETE_QUIET`]) and
    /// its root to be seen intact: a root deleted (`rm -rf` removes what is
    /// inside first), moved away or unmounted changes nothing on the other
    /// side. A side emptied, or a deletion of more than `--max-delete`
    /// percent of a big tree, stops the sync unless `--force`.
    pub(super) async fn hold_deletions(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
        deleting: [usize; 2],
    ) -> Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                Some(n) = notices.recv() => self.on_notice(n)?,
                () = tokio::time::sleep(DELETE_QUIET) => break,
                _ = sigterm.recv() => { self.phase.stop(); return Ok(()); }
                _ = sigint.recv() => { self.phase.stop(); return Ok(()); }
            }
        }
        if self.phase == Phase::Reconnecting {
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
                    self.phase.link_lost();
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
            // The same net as a live rescan's.
            if live_net(del, had, pct) {
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
}
