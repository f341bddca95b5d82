//! The index on disk: loading it, writing down a batch's intents, journaling
//! batches, and when to fold the journal into a snapshot.

use anyhow::{bail, Context, Result};
use tracing::{error, info, warn};

use super::Brain;
use crate::side::Side;

/// The journal is folded into a snapshot after this many records (one per
/// batch that changed the index): loading the index replays every record,
/// so a long live run of small batches must not leave thousands of them.
const JOURNAL_MAX_RECORDS: usize = 2000;
/// The journal is also folded once it holds as many entries as the index
/// (amortised: the snapshot costs what the journal already did), but never
/// below this many: a small index is not rewritten every few batches.
const JOURNAL_MIN_ENTRIES: usize = 10_000;

impl Brain {
    /// Load the index of the last sync, checking it belongs to these roots.
    pub(super) fn load_index(&mut self) -> Result<()> {
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
    pub(super) async fn load_installed(&mut self) -> Result<()> {
        for side in Side::BOTH {
            let installed = self.links[side].installed(false).await?;
            self.engine.set_installed(side, installed);
        }
        Ok(())
    }

    pub(super) fn save_snapshot(&mut self) {
        if self.settings.dry_run {
            return;
        }
        self.engine.clear_delta();
        if let Err(e) = self.index.snapshot(&self.header, self.engine.known()) {
            error!("cannot write the index: {e}");
        }
    }

    pub(super) fn save_delta(&mut self) {
        if self.settings.dry_run {
            return;
        }
        let (records, entries) = (self.index.journal_len(), self.index.journal_entries());
        if self.engine.snapshot_due()
            || records > JOURNAL_MAX_RECORDS
            || entries > self.engine.known().len().max(JOURNAL_MIN_ENTRIES)
        {
            self.save_snapshot();
            return;
        }
        let (set, removed) = self.engine.take_delta();
        if let Err(e) = self.index.append(set, removed) {
            error!("cannot append to the index journal: {e}");
        }
    }

    /// Group commit: make the journal's records durable (see
    /// [`crate::index`]); called once a burst has settled and before the
    /// pair is reported settled.
    pub(super) fn sync_index(&mut self) {
        if let Err(e) = self.index.sync() {
            error!("cannot sync the index journal to disk: {e}");
        }
    }

    /// Write down the copies, directories, attributes and moves `batch` is
    /// about to make, and return them (see
    /// [`Index::intend`]).
    pub(super) fn intend(&mut self, batch: &crate::engine::Batch) -> Vec<crate::index::Intent> {
        let intents = self.engine.intents(batch);
        if let Err(e) = self.index.intend(&intents) {
            warn!("cannot write down the batch's copies in the index journal: {e}");
        }
        intents
    }
}
