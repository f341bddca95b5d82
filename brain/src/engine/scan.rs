//! Listings merged with the index as they stream in: what each side
//! changed while nobody watched, and what it lacks.

use super::*;

impl Engine {
    /// Take in a full listing of `side` at once (see [`Engine::begin_scan`]);
    /// the entries may come in any order.
    pub fn load_scan(&mut self, side: Side, mut entries: Vec<Entry>) {
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        self.begin_scan(side);
        self.scan_chunk(side, entries, Vec::new())
            .expect("sorted entries are in order");
        self.end_scan(side);
    }

    /// Start taking in a full listing of `side` (start-up or rescan), in
    /// chunks ([`Engine::scan_chunk`]) then [`Engine::end_scan`]: every entry
    /// that differs from the index, and every indexed path that is missing,
    /// becomes a pending change of that side. What was pending on the side is
    /// dropped (the listing supersedes it). What a listing enters in the index
    /// is not journaled: save a full snapshot once the listings are in.
    pub fn begin_scan(&mut self, side: Side) {
        self.epoch += 1;
        let p = side.idx();
        self.pending[p] = Pending::default();
        self.inflight[p].clear();
        self.installed_ctime[p].clear();
        self.marks[p] = marks::Marks::default();
        self.older_gone[p].clear();
        self.quiet[p].clear();
        // (Not the fences: they go by ctime, and a report taken before a
        // batch moved an entry away may still come after the listing.)
        self.vanished[p].clear();
        self.groups[p].clear();
        self.relink.clear();
        // Attributes to align, decided by a comparison before the listing:
        // the listing supersedes it (a comparison after it tells again).
        self.attr_fixes.clear();
        self.scanning[p] = Some(Scanning::default());
        self.listed[p] = None;
    }

    /// Take in the next entries of `side`'s listing, which come in ascending
    /// order of their paths, and the paths found unreadable so far (what the
    /// index has at or below those is not taken for deleted). The listing is
    /// merged with the index as it comes, so no copy of it is kept: an entry
    /// equal to the index costs nothing, and one equal to what the other
    /// side's listing already gave is entered in the index at once.
    ///
    /// # Errors
    /// When the entries are not in ascending order (after those taken
    /// before): deletions cannot be told then, and nothing must be planned
    /// from this listing.
    pub fn scan_chunk(
        &mut self,
        side: Side,
        entries: Vec<Entry>,
        unreadable: Vec<RelPath>,
    ) -> Result<(), String> {
        self.epoch += 1;
        let p = side.idx();
        let o = 1 - p;
        let mut sc = self.scanning[p]
            .take()
            .expect("scan_chunk after begin_scan");
        sc.unreadable.extend(unreadable);
        let mut res = Ok(());
        for e in entries {
            if e.path.is_root() {
                continue;
            }
            if sc.last.as_ref().is_some_and(|l| e.path <= *l) {
                res = Err(format!(
                    "the {side} agent listed {} out of order (after {}): is it another \
                     twinsync version?",
                    e.path,
                    sc.last.as_ref().expect("checked")
                ));
                break;
            }
            sc.count += 1;
            self.groups[p].note(&e.path, &e.sig);
            self.missing_between(p, &sc, Some(&e.path));
            if let Some((t, sig, stamp)) = self.intents.get(&e.path) {
                // The helper recorded installing this very version: the
                // batch's for sure, even when it is not the version planned
                // (a copy reads the source as it is when it runs).
                let recorded = self.installed[p].get(&e.path) == Some(&e.sig.stamp());
                let planned = sig.same_content(&e.sig);
                if *t == p && (planned || recorded) {
                    // Maybe installed by the interrupted batch: the version
                    // the source had then (its stamp there is the copy's).
                    // Its stamp here was never recorded, and a same-size,
                    // same-mtime write after the copy looks the same: its
                    // bytes are compared with the source's. A version other
                    // than the one planned is the source's of a later
                    // moment, whose stamp there is not known.
                    let mut k = Known::new(if planned { *sig } else { e.sig });
                    if planned {
                        k.stamps[o] = sig.stamp();
                    }
                    if recorded || *stamp == e.sig.stamp() {
                        // Recorded, or left as it was by the batch (moved
                        // along).
                        k.stamps[p] = e.sig.stamp();
                    }
                    // The source's listing, if already in, may have taken
                    // that version for a change, or passed the path by: the
                    // source removed it since (unknown then, it was not
                    // taken for missing).
                    match self.pending[o].state.get(&e.path) {
                        Some(Some(x)) => {
                            if judge(Some(&k), o, x) == Judged::Same {
                                self.pending[o].state.remove(&e.path);
                            }
                        }
                        Some(None) => {}
                        None => {
                            if self.listing_passed(o, &e.path) {
                                self.pending[o].state.insert(e.path.clone(), None);
                            }
                        }
                    }
                    self.known.insert(e.path.clone(), k);
                    self.intents.remove(&e.path);
                    self.adopted.insert(e.path.clone());
                }
            }
            let known = self.known.get(&e.path);
            if e.sig.kind.unsynced() || self.excludes.excluded(&e.path) {
                // Not synchronised: as if absent.
                if known.is_some() && !sc.protects(&e.path) {
                    self.pending[p].state.insert(e.path.clone(), None);
                }
            } else if judge(known, p, &e.sig) != Judged::Same {
                let theirs = self.pending[o].state.get(&e.path).copied().flatten();
                match theirs {
                    // The same on both sides: in sync already. Not for
                    // files: equal size and mtime may hold other bytes (a
                    // tie), which only their content tells.
                    Some(x)
                        if x.same_content(&e.sig)
                            && x.kind != Kind::File
                            && self.pending[o].moves.is_empty() =>
                    {
                        let l = if p == 0 { e.sig } else { x };
                        let mut k = Known::new(l);
                        k.stamps[p] = e.sig.stamp();
                        k.stamps[o] = x.stamp();
                        self.pending[o].state.remove(&e.path);
                        self.known.insert(e.path.clone(), k);
                    }
                    _ => {
                        self.pending[p].state.insert(e.path.clone(), Some(e.sig));
                    }
                }
            }
            sc.last = Some(e.path);
        }
        // Filled in order, the pending map's nodes are half full: rebuilt
        // each time it doubles (amortised O(1) per entry), it stays compact.
        let n = self.pending[p].state.len();
        if n >= 2 * sc.compacted_at.max(4096) {
            compact(&mut self.pending[p].state);
            sc.compacted_at = n;
        }
        self.scanning[p] = Some(sc);
        res
    }

    /// True when side `p`'s listing, in or taken in whole, went past `path`
    /// (and could read it): had it had `path`, it would have listed it.
    pub(super) fn listing_passed(&self, p: usize, path: &RelPath) -> bool {
        match (&self.scanning[p], &self.listed[p]) {
            (Some(sc), _) => sc.last.as_ref().is_some_and(|l| l >= path) && !sc.protects(path),
            (None, Some(sc)) => !sc.protects(path),
            (None, None) => false,
        }
    }

    /// The listing of `side` is complete: what the index has after its last
    /// entry is missing. Returns the number of entries it had.
    pub fn end_scan(&mut self, side: Side) -> usize {
        self.epoch += 1;
        let p = side.idx();
        let sc = self.scanning[p].take().expect("end_scan after begin_scan");
        self.missing_between(p, &sc, None);

        compact(&mut self.pending[p].state);
        let n = sc.count;
        self.listed[p] = Some(sc);
        n
    }

    /// Every indexed path after the scan's last entry and before `upto` is
    /// missing from side `p` (unless unreadable there).
    /// An indexed path the other side lacks too (its listing already went
    /// past it, or a removal is pending there) leaves the index at once: a
    /// rescan before the next plan must not find it there again.
    pub(super) fn missing_between(&mut self, p: usize, sc: &Scanning, upto: Option<&RelPath>) {
        use std::ops::Bound;
        let o = 1 - p;
        let lo = sc.last.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        let hi = upto.map_or(Bound::Unbounded, Bound::Excluded);
        let mut gone_both = Vec::new();
        for (k, _) in self.known.range::<RelPath, _>((lo, hi)) {
            if k.is_root() || sc.protects(k) {
                continue;
            }
            if matches!(self.pending[o].state.get(k), Some(None))
                && self.pending[o].moves.is_empty()
            {
                gone_both.push(k.clone());
            } else {
                self.pending[p].state.insert(k.clone(), None);
            }
        }
        for k in gone_both {
            self.pending[o].state.remove(&k);
            self.known.remove(&k);
        }
    }
}
