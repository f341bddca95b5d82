//! Completion: the helpers' answers to a batch entered in the index, and
//! the reports held while it ran decided.

use super::*;

/// The stamps of our writes kept per side (see `Engine::produced`).
const PRODUCED_MAX: usize = 4096;

impl Engine {
    /// The batch is done: the helpers' answers give the stamps of what it
    /// wrote (so the filter's reports of those writes are recognised) and
    /// the writes they refused (the destination changed meanwhile: both
    /// versions are merged again, under the conflict rules). `missed[t]`
    /// lists the copies into side `t` that did not arrive as planned, with
    /// what was found afterwards on the source and on the destination;
    /// `ops_failed` tells that some helper operation failed (the index then
    /// cannot be trusted: both sides are rescanned). The events held while
    /// the batch ran are then taken in, in order; their decisions are
    /// returned.
    pub fn complete(&mut self, report: Report) -> Vec<Trace> {
        self.epoch += 1;
        let Report {
            applied,
            missed,
            ops_failed,
            refused_moves,
        } = report;
        if !refused_moves.is_empty() {
            // The index goes back to before the batch at and below both
            // ends of each refused move (the rest of the batch happened);
            // the merge of both listings against it sorts the rest out.
            self.undo_within(&refused_moves);
            self.pending[0].rescan = true;
        }
        // The paths the held reports of each side name: where an entry
        // left (renamed away or removed), and every path they touch (set
        // lookups below, once per refused or missed path).
        let mut held_gone: [HashSet<RelPath>; 2] = Default::default();
        let mut held_touched: [HashSet<RelPath>; 2] = Default::default();
        for (i, events) in self.deferred.iter().enumerate() {
            for e in events {
                match e {
                    Event::Moved { from, to, .. } => {
                        held_gone[i].insert(from.clone());
                        held_touched[i].insert(from.clone());
                        held_touched[i].insert(to.clone());
                    }
                    Event::Removed { path } => {
                        held_gone[i].insert(path.clone());
                        held_touched[i].insert(path.clone());
                    }
                    Event::Changed { path, .. } => {
                        held_touched[i].insert(path.clone());
                    }
                    _ => {}
                }
            }
        }
        for t in Side::BOTH {
            self.regroup(t.idx(), &applied[t]);
            for a in &applied[t] {
                if let Applied::Done(_, Some(sig)) | Applied::Removed(_, Some(sig)) = a {
                    if sig.kind == Kind::File && sig.ctime_ns > 0 {
                        if self.produced[t].len() >= PRODUCED_MAX {
                            self.produced[t].clear();
                        }
                        self.produced[t].insert(sig.stamp());
                    }
                }
            }
        }
        for t in Side::BOTH {
            let (ti, si) = (t.idx(), t.other().idx());
            // The last answer written or refused per path: "the batch wrote
            // there again later" without a scan of the rest per answer (a
            // big batch's answers are many).
            let last_write: HashMap<&RelPath, usize> = applied[ti]
                .iter()
                .enumerate()
                .filter_map(|(i, b)| match b {
                    Applied::Done(q, _) | Applied::Refused(q, _) => Some((q, i)),
                    Applied::Removed(..) => None,
                })
                .collect();
            let written_after =
                |i: usize, path: &RelPath| last_write.get(path).is_some_and(|&j| j > i);
            for (i, a) in applied[ti].iter().enumerate() {
                if let Applied::Done(path, Some(sig)) = a {
                    if sig.ctime_ns > 0 {
                        // Bounded: stale reports come within moments of the
                        // install (a big merge's copies are not kept).
                        if self.installed_ctime[ti].len() >= 4096 {
                            self.installed_ctime[ti].clear();
                        }
                        self.installed_ctime[ti].insert(path.clone(), (sig.ctime_ns, sig.ino));
                        // The last write of the batch there, if unreported
                        // (a reported one after it, such as a mode set on a
                        // directory a replayed move put there, has echoes).
                        let later = written_after(i, path);
                        // (This write: the move's, answered first there, or
                        // the symlink's.)
                        let unreported = self.unreported[ti].contains(path)
                            && (self.moving[ti].contains_key(path) || sig.kind == Kind::Symlink);
                        if unreported && !later {
                            if self.quiet[ti].len() >= 4096 {
                                self.quiet[ti].clear();
                            }
                            self.quiet[ti].insert(path.clone(), sig.stamp());
                        } else {
                            self.quiet[ti].remove(path);
                        }
                    }
                }
                match a {
                    Applied::Done(path, Some(sig)) => {
                        let k = self.known.get(path).copied();
                        if let Some(k) = k {
                            if k.same_content(sig) && k.stamps[ti] != sig.stamp() {
                                self.k_insert(path.clone(), k.with_stamp(ti, sig.stamp()));
                            }
                            // A directory's attribute set leaves the owner or
                            // mode a user gave it just before (a chown whose
                            // report, older than our write, is dropped): the
                            // answer shows it, a change of this side.
                            let later = written_after(i, path);
                            if k.kind == Kind::Dir
                                && sig.kind == Kind::Dir
                                && (k.mode != sig.mode || !k.same_owner(sig))
                                && !later
                                && !self.moving[ti].contains_key(path)
                            {
                                self.pending[ti]
                                    .state
                                    .entry(path.clone())
                                    .or_insert(Some(*sig));
                            }
                        }
                        // (The move's answer comes first: a copy the batch
                        // makes there after it answers after it.)
                        if let Some(from) = self.moving[ti].remove(path) {
                            // Moved from `from`: a report there from before
                            // is of what is here now. What the move took
                            // along is the entry as a user left it before
                            // (its report, older, names `from`): another
                            // version than the index's is their change,
                            // unless the batch wrote there after the move.
                            self.fence(ti, from, Some(path.clone()), sig);
                            let rewritten = written_after(i, path);
                            // (Nor when the batch then trashed it, or moved it
                            // on, with a directory above it: what the user
                            // left there is not here any more.)
                            let gone = applied[ti][i + 1..].iter().any(|b| match b {
                                Applied::Removed(q, _) => path.is_within(q),
                                Applied::Done(q, _) => {
                                    self.moving[ti].get(q).is_some_and(|f| path.is_within(f))
                                }
                                Applied::Refused(..) => false,
                            });
                            if !rewritten && !gone && !k.is_some_and(|k| k.same_content(sig)) {
                                self.pending[ti]
                                    .state
                                    .entry(path.clone())
                                    .or_insert(Some(*sig));
                            }
                        }
                    }
                    Applied::Removed(path, Some(sig)) => {
                        self.fence(ti, path.clone(), None, sig);
                    }
                    Applied::Done(_, None) | Applied::Removed(_, None) => {}
                    Applied::Refused(path, found) => {
                        // Someone changed the destination since it was last
                        // seen: what the batch meant to put there is still a
                        // change of the other side, and what is there now is
                        // one of this side (modification wins over deletion;
                        // two versions are a conflict). As the batch's own
                        // operation there left it on the other side, if it
                        // made it (a conflict copy's rename).
                        let meant = self.known.get(path).map(|k| k.sig);
                        let made = applied[si].iter().rev().find_map(|a| match a {
                            Applied::Done(q, Some(x)) if q == path => Some(*x),
                            _ => None,
                        });
                        let meant = made
                            .filter(|x| meant.is_some_and(|m| m.same_content(x)))
                            .or(meant);
                        let before = self.inflight[ti].get(path).copied().flatten();
                        self.k_restore(path, before);
                        let theirs = &mut self.pending[si];
                        theirs.state.entry(path.clone()).or_insert(meant);
                        theirs.forced.insert(path.clone());
                        // (A newer report queued meanwhile stays. Nothing
                        // there, left by a rename or removal at or above it
                        // that is held: that report tells where it went.)
                        let told = found.is_none()
                            && ancestors(path, true).any(|a| held_gone[ti].contains(&a));
                        if !told {
                            self.pending[ti].state.entry(path.clone()).or_insert(*found);
                            self.pending[ti].forced.insert(path.clone());
                        }
                    }
                }
            }
        }
        for t in Side::BOTH {
            self.restamp_siblings(t.idx(), &applied[t]);
        }
        // What the batch's own operations left at each path (a replayed
        // move, a symlink): a missed copy finding it there finds ours.
        let ours: [HashMap<&RelPath, twinsync_proto::Stamp>; 2] = [0, 1].map(|i| {
            applied[i]
                .iter()
                .filter_map(|a| match a {
                    Applied::Done(p, Some(sig)) => Some((p, sig.stamp())),
                    _ => None,
                })
                .collect()
        });
        for t in Side::BOTH {
            let (ti, si) = (t.idx(), t.other().idx());
            self.copied_out[si].extend(ours[ti].keys().map(|p| (*p).clone()));
            for c in &missed[ti] {
                if self.missed_sibling(ti, &applied[ti], c) {
                    continue;
                }
                let installed = c.installed
                    || c.dst
                        .is_some_and(|b| ours[ti].get(&c.path) == Some(&b.stamp()));
                if installed {
                    self.copied_out[si].insert(c.path.clone());
                }
                // The state the destination had just before the copy.
                let base = self.inflight[ti].get(&c.path).copied().flatten();
                let both = |src: Sig, dst: Sig| {
                    Known::new(dst)
                        .with_stamp(ti, dst.stamp())
                        .with_stamp(si, src.stamp())
                };
                match (c.src, c.dst) {
                    // rsync read a newer version of the source: both agree
                    // on size and mtime; the bytes of what the source holds
                    // now are compared when it next reports (its stamp is
                    // not taken for the installed version's).
                    (Some(a), Some(b)) if a.same_content(&b) => {
                        let mut k = both(a, b);
                        // Unless the source is as the batch's own operation
                        // there left it, before the copy read it (the
                        // conflict move of a file written just before).
                        if ours[si].get(&c.path) != Some(&a.stamp()) {
                            k.stamps[si] = Stamp::UNKNOWN;
                        }
                        if !installed {
                            k.stamps[ti] = Stamp::UNKNOWN;
                        }
                        self.k_insert(c.path.clone(), k);
                    }
                    // What arrived is a newer version of the source than
                    // planned (both held it); the source's later change or
                    // deletion follows it.
                    (a, Some(b)) if installed => {
                        self.k_insert(c.path.clone(), Known::new(b).with_stamp(ti, b.stamp()));
                        self.pending[si].state.entry(c.path.clone()).or_insert(a);
                    }
                    // Not copied (unreadable source, refused destination):
                    // left as it was; the next change or rescan retries.
                    // Unless a directory above it was refused (a user's
                    // file where the batch made it): the source's change
                    // waits for the merge of that directory.
                    (Some(a), None) => {
                        self.k_restore(&c.path, base);
                        let above = applied[ti].iter().any(|x| {
                            matches!(x, Applied::Refused(r, _) if c.path.is_within(r) && c.path != *r)
                        });
                        // Nor when the destination's user changed a
                        // directory above it meanwhile (a rename, a file in
                        // its place): that change's replay may take the
                        // source along where nothing retries it.
                        let moved_above = ancestors(&c.path, false).any(|a| {
                            held_touched[ti].contains(&a) || self.pending[ti].state.contains_key(&a)
                        });
                        if above || moved_above {
                            self.pending[si]
                                .state
                                .entry(c.path.clone())
                                .or_insert(Some(a));
                        }
                    }
                    (None, None) => {
                        let meant = self.known.get(&c.path).map(|k| k.sig);
                        self.k_restore(&c.path, base);
                        // The source moved away (with a directory above
                        // it) or was removed: the version planned is still
                        // to copy, as the source's change, which follows
                        // the move (pending or held: where the pending
                        // moves took it, their replay rekeyed what was
                        // queued below them already). Not reported yet: it
                        // waits for the report of the move (or removal).
                        let (now_at, moved) = self.source_now_at(si, &c.path);
                        if let Some(sig) = meant {
                            if moved {
                                self.pending[si].state.entry(now_at).or_insert(Some(sig));
                            } else {
                                if self.vanished[si].len() >= 4096 {
                                    self.vanished[si].clear();
                                }
                                self.vanished[si].insert(c.path.clone(), sig);
                            }
                        }
                    }
                    // Nothing arrived, the source is gone and the
                    // destination holds something of its own: merged again
                    // (a modification wins over the deletion).
                    (None, Some(b)) => {
                        let meant = self.known.get(&c.path).map(|k| k.sig);
                        self.k_restore(&c.path, base);
                        // The source moved away (its move taken in): what
                        // it moved is the version planned, not the index's
                        // (restored) one: its bytes are compared, not taken
                        // for the index's with the rename's stamp.
                        let (now_at, moved) = self.source_now_at(si, &c.path);
                        if moved {
                            // Still to copy where the move took it, as the
                            // source's change (a report of the move queued
                            // there already stays; a move not taken in yet
                            // takes this along when it is).
                            if let Some(sig) = meant {
                                self.pending[si]
                                    .state
                                    .entry(now_at.clone())
                                    .or_insert(Some(sig));
                            }
                        } else if base.is_some() {
                            self.pending[si].state.insert(c.path.clone(), None);
                        }
                        self.pending[si].renamed.remove(&now_at);
                        if judge(base.as_ref(), ti, &b) != Judged::Same {
                            self.pending[ti].state.insert(c.path.clone(), Some(b));
                        }
                    }
                    // Nothing arrived and the destination was written
                    // meanwhile: both merged again against the index.
                    (Some(a), Some(b)) => {
                        self.k_restore(&c.path, base);
                        if judge(base.as_ref(), si, &a) != Judged::Same {
                            self.pending[si]
                                .state
                                .entry(c.path.clone())
                                .or_insert(Some(a));
                        }
                        if judge(base.as_ref(), ti, &b) != Judged::Same {
                            self.pending[ti]
                                .state
                                .entry(c.path.clone())
                                .or_insert(Some(b));
                        }
                    }
                }
            }
        }
        self.undo.clear();
        self.inflight = Default::default();
        self.moved_here = Default::default();
        self.leaving = Default::default();
        self.moving = Default::default();
        if ops_failed {
            if self.failed_ops_rescans < 1 {
                self.failed_ops_rescans += 1;
                self.pending[0].rescan = true;
            }
        } else {
            self.failed_ops_rescans = 0;
        }
        let mut traces = Vec::new();
        for side in Side::BOTH {
            for ev in std::mem::take(&mut self.deferred[side]) {
                traces.push(self.on_event(side, ev));
            }
        }
        traces
    }

    /// Where the source of a missed copy at `path` on side `si` is now, as
    /// that side's pending moves took it, and whether it moved (by those,
    /// or by a rename reported during the batch, not taken in yet).
    fn source_now_at(&self, si: usize, path: &RelPath) -> (RelPath, bool) {
        let mut now_at = path.clone();
        for (f, t) in &self.pending[si].moves {
            if let Some(p) = now_at.rebase(f, t) {
                now_at = p;
            }
        }
        let moved = now_at != *path
            || self.deferred[si]
                .iter()
                .any(|e| matches!(e, Event::Moved { from, .. } if path.is_within(from)));
        (now_at, moved)
    }

    pub(super) fn k_restore(&mut self, path: &RelPath, base: Option<Known>) {
        self.changed.insert(path.clone());
        match base {
            Some(b) => self.known.insert(path.clone(), b),
            None => self.known.remove(path),
        };
    }
}
