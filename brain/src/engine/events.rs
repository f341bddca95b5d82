//! Live events: what a side's report means against the index, the
//! pending changes and the running batch (echoes, held reports, moves and
//! their fences).

use super::*;

impl Engine {
    /// The entry at `path` in side `p`'s view: the index with `p`'s pending
    /// moves applied.
    pub(super) fn view_get(&self, p: usize, path: &RelPath) -> Option<Known> {
        let origin = self.pending[p].origin(path)?;
        self.known.get(origin.as_ref()).copied()
    }

    /// True when what side `p` has at `path` is new: neither in its view nor
    /// moved away from there by one of its pending moves.
    pub(super) fn is_new(&self, p: usize, path: &RelPath) -> bool {
        self.pending[p]
            .origin(path)
            .is_some_and(|o| !self.known.contains_key(o.as_ref()))
    }

    /// True when side `p`'s view has something at or below `path`. May
    /// over-approximate (it then only makes the caller queue a `None` for a
    /// path that is not there, which the plan skips: nothing is indexed
    /// there): an entry moved into `path` counts even if a later move took
    /// it away again, and so does an indexed entry below `path` that a move
    /// took away.
    pub(super) fn view_any_within(&self, p: usize, path: &RelPath) -> bool {
        if self.pending[p].moves.is_empty() {
            return range_within(&self.known, path).next().is_some();
        }
        let mut cur = Cow::Borrowed(path);
        for (from, to) in self.pending[p].moves.iter().rev() {
            if to.is_within(&cur) {
                return true;
            }
            if let Some(back) = cur.rebase(to, from) {
                cur = Cow::Owned(back);
            } else if cur.is_within(from) {
                return false;
            }
        }
        range_within(&self.known, &cur).next().is_some()
    }

    /// The paths at or below `path` in side `p`'s view. Entries that
    /// earlier moves put strictly below `path` are not listed: a rename onto
    /// `path` (the only caller) needs it to be a file or an empty directory,
    /// so the side already reported them gone.
    pub(super) fn view_keys_within(&self, p: usize, path: &RelPath) -> Vec<RelPath> {
        let Some(origin) = self.pending[p].origin(path) else {
            return Vec::new();
        };
        range_within(&self.known, &origin)
            .map(|(k, _)| k.rebase(&origin, path).expect("within origin"))
            .filter(|k| self.view_get(p, k).is_some())
            .collect()
    }

    /// Take in one event from `side`, returning what was decided.
    pub fn on_event(&mut self, side: Side, ev: Event) -> Trace {
        self.epoch += 1;
        let p = side.idx();
        let trace = |path: &RelPath, (v, d): (Verdict, std::borrow::Cow<'static, str>)| {
            Trace::new(side, path, v, d)
        };
        match ev {
            Event::Changed { path, sig } => {
                if self.excludes.excluded(&path) {
                    return trace(&path, (Verdict::Dropped, "excluded".into()));
                }
                if sig.kind.unsynced() {
                    return trace(
                        &path,
                        (
                            Verdict::Dropped,
                            "not synced (a socket, or a device while owners are not \
                         carried)"
                                .into(),
                        ),
                    );
                }
                if self.holds(p, &path, &sig) {
                    self.deferred[p].push(Event::Changed {
                        path: path.clone(),
                        sig,
                    });
                    return trace(
                        &path,
                        (
                            Verdict::Held,
                            "may report the running batch's own write (decided after it)".into(),
                        ),
                    );
                }
                let Some(path) = self.through_fences(p, path.clone(), Some(sig.ctime_ns)) else {
                    return trace(
                        &path,
                        (
                            Verdict::Dropped,
                            "reports an entry from before our batch trashed it".into(),
                        ),
                    );
                };
                if sig.kind == Kind::File
                    && self.produced[p].contains(&sig.stamp())
                    && !self.pending[p].state.contains_key(&path)
                    && self
                        .known
                        .get(&path)
                        .is_some_and(|k| k.same_content(&sig) && k.stamps[p] != sig.stamp())
                {
                    // (With the indexed stamp, the marks decide: after ours,
                    // a same-tick write of a coarse clock is compared.)
                    return trace(
                        &path,
                        (
                            Verdict::Echo,
                            "a state our own writes there made (the indexed content)".into(),
                        ),
                    );
                }
                if let Some(&(ct, ino)) = self.installed_ctime[p].get(&path) {
                    if sig.ctime_ns < ct {
                        if ino != sig.ino {
                            // Another entry, which ours replaced (or which
                            // was gone before ours came).
                            if self.older_gone[p].len() >= 4096 {
                                self.older_gone[p].clear();
                            }
                            self.older_gone[p].insert(path.clone(), sig.ino);
                        } else if sig.kind == Kind::File {
                            // A change of that very file before our write (a
                            // rename, attributes) reported late: its bytes may
                            // be another version's (a tie). Compared again.
                            if let Some(k) = self.known.get(&path).copied() {
                                if k.kind == Kind::File
                                    && k.stamps[p].is_known()
                                    && !self.copied_out[p].contains(&path)
                                {
                                    self.k_insert(path.clone(), k.with_stamp(p, Stamp::UNKNOWN));
                                    let now = Sig {
                                        ino,
                                        ctime_ns: ct,
                                        ..k.sig
                                    };
                                    self.pending[p]
                                        .state
                                        .entry(path.clone())
                                        .or_insert(Some(now));
                                    return trace(
                                        &path,
                                        (Verdict::Queued, "maybe changed before our write there (content to compare)".into()),
                                    );
                                }
                            }
                        }
                        return trace(
                            &path,
                            (
                                Verdict::Dropped,
                                "reports a state older than our write there".into(),
                            ),
                        );
                    }
                    if sig.ctime_ns > ct {
                        self.installed_ctime[p].remove(&path);
                    }
                }
                let after_ours = self.marks[p].after_ours(&path);
                self.older_gone[p].remove(&path);
                self.vanished[p].remove(&path);
                self.groups[p].note(&path, &sig);
                self.link_siblings(p, &path, &sig);
                let judged = judge(self.view_get(p, &path).as_ref(), p, &sig);
                self.pending[p].forced.remove(&path);
                self.pending[p].verified.remove(&path);
                self.pending[p].renamed.remove(&path);
                if let Some(slot) = self.pending[p].state.get_mut(&path) {
                    if judged == Judged::Same {
                        // Back to the synced state (e.g. the last step of our own write).
                        self.pending[p].state.remove(&path);
                        return trace(&path, (Verdict::Echo, "back to the ledger's state".into()));
                    }
                    *slot = Some(sig);
                    return trace(&path, (Verdict::Coalesced, "with a queued change".into()));
                }
                if judged == Judged::Same && after_ours && sig.kind == Kind::File {
                    // Reported after every report of our write there, yet
                    // with its stamp: a user's write in the same tick of a
                    // coarse clock (same size, same mtime). Its bytes tell.
                    if let Some(k) = self.known.get(&path).copied() {
                        self.k_insert(path.clone(), k.with_stamp(p, Stamp::UNKNOWN));
                    }
                    self.pending[p].state.insert(path.clone(), Some(sig));
                    return trace(
                        &path,
                        (
                            Verdict::Queued,
                            "reported after our write there with its stamp (content to compare)"
                                .into(),
                        ),
                    );
                }
                if judged == Judged::Same {
                    if self.quiet[p].get(&path) == Some(&sig.stamp()) {
                        // Our write there is never reported (a rename into
                        // place): this report, which shows it, was of a
                        // user's change before it, taken after it. A
                        // removal reported next is of that older entry.
                        self.older_gone[p].insert(path.clone(), sig.ino);
                    }
                    return trace(
                        &path,
                        (
                            Verdict::Echo,
                            "the indexed version: what we wrote or already synced".into(),
                        ),
                    );
                }
                if let Some(Some(prev)) = self.inflight[p].get(&path) {
                    if judge(Some(prev), p, &sig) == Judged::Same {
                        return trace(
                            &path,
                            (Verdict::Echo, "state before our in-flight write".into()),
                        );
                    }
                }
                self.pending[p].state.insert(path.clone(), Some(sig));
                if judged == Judged::Suspect {
                    trace(
                        &path,
                        (
                            Verdict::Queued,
                            "maybe changed (same size and mtime, another version: \
                         content to compare)"
                                .into(),
                        ),
                    )
                } else {
                    trace(&path, (Verdict::Queued, "changed".into()))
                }
            }
            Event::Removed { path } => {
                if self.excludes.excluded(&path) {
                    return trace(&path, (Verdict::Dropped, "excluded".into()));
                }
                if !self.deferred[p].is_empty()
                    || ancestors(&path, true).any(|a| self.leaving[p].contains(&a))
                {
                    self.deferred[p].push(Event::Removed { path: path.clone() });
                    return trace(&path, (Verdict::Held, "after a held event".into()));
                }
                // Unless it comes after the mark that followed our write
                // there: then it is of what we wrote (a user's removal
                // since).
                if self.older_gone[p].remove(&path).is_some() && !self.marks[p].settled(&path) {
                    return trace(
                        &path,
                        (
                            Verdict::Dropped,
                            "removal of an entry older than our write there".into(),
                        ),
                    );
                }
                if !self.vanished[p].is_empty() && !path.is_root() {
                    drop(take_within(&mut self.vanished[p], &path));
                }
                let here = |e: &Engine, path: &RelPath| {
                    e.view_any_within(p, path)
                        || range_within(&e.pending[p].state, path).next().is_some()
                };
                if !here(self, &path) {
                    // Nothing is known here: the removal of an entry the
                    // brain moved away before (reported late), where it is
                    // now; or of one it trashed (nothing to do).
                    match self.through_fences(p, path.clone(), None) {
                        Some(moved) if moved != path && here(self, &moved) => {
                            return self.on_event(side, Event::Removed { path: moved });
                        }
                        _ => return trace(&path, (Verdict::Echo, "not in the ledger".into())),
                    }
                }
                self.unlink_siblings(p, &path);
                self.cancel_moves_into(p, &path);
                let known_here = self.view_any_within(p, &path);
                let queued: Vec<RelPath> = keys_within(&self.pending[p].state, &path);
                if !known_here && queued.is_empty() {
                    return trace(&path, (Verdict::Echo, "not in the ledger".into()));
                }
                for k in queued {
                    // Still queued as gone when the view has it (the other
                    // side has it) or when a pending move took it away (the
                    // mark that makes a change of the other side there
                    // conflict with the move); dropped when it was new.
                    if self.is_new(p, &k) {
                        self.pending[p].state.remove(&k);
                    } else {
                        self.pending[p].state.insert(k, None);
                    }
                }
                if known_here {
                    self.pending[p].state.insert(path.clone(), None);
                }
                trace(&path, (Verdict::Queued, "removed".into()))
            }
            Event::Moved { from, to, sig } => {
                let leaving =
                    |q: &RelPath| ancestors(q, true).any(|a| self.leaving[p].contains(&a));
                if !self.deferred[p].is_empty()
                    || self.inflight[p].contains_key(&to)
                    || self.inflight[p].keys().any(|k| k.is_within(&from))
                    || leaving(&from)
                    || leaving(&to)
                {
                    // (Below the source too: what the batch puts there may
                    // land after the rename, in a directory made again.)
                    let t = to.clone();
                    self.deferred[p].push(Event::Moved { from, to, sig });
                    return trace(
                        &t,
                        (Verdict::Held, "while the running batch writes there".into()),
                    );
                }
                if let Some(f) = self.fence_renamed(p, &sig) {
                    // A user's rename of the entry a batch then moved away
                    // from (or trashed at) `f.at`, made before: a step of
                    // its way there. Away from `f.at` (it came back): the
                    // batch's answer told the rest. (From elsewhere to
                    // `f.at`: its departure from there is news, taken
                    // through the fence as any late report.)
                    let at = f.at.clone();
                    if from.is_within(&at) {
                        return trace(
                            &to,
                            (
                                Verdict::Dropped,
                                "a rename of an entry before our batch moved it away".into(),
                            ),
                        );
                    }
                }
                if self.older_gone[p].get(&from) == Some(&sig.ino) {
                    // The older entry left by this rename: a removal
                    // reported there next is of what came after it.
                    self.older_gone[p].remove(&from);
                }
                let from_x = self.excludes.excluded(&from);
                let to_x = self.excludes.excluded(&to);
                if from_x && to_x {
                    return trace(&to, (Verdict::Dropped, "excluded".into()));
                }
                if to_x {
                    return self.on_event(side, Event::Removed { path: from });
                }
                if from_x {
                    return self.on_event(side, Event::Changed { path: to, sig });
                }
                if from == to {
                    return self.on_event(side, Event::Changed { path: to, sig });
                }
                if to.is_within(&from) || from.is_within(&to) {
                    // Not a rename a file system makes: do not guess.
                    self.pending[p].rescan = true;
                    return trace(
                        &to,
                        (
                            Verdict::Noted,
                            format!("moved from {from} into itself: rescan").into(),
                        ),
                    );
                }
                // A rename made before the batches moved away or trashed
                // what it names: the ends are where those entries are now.
                let (from, to) = match (
                    self.through_fences(p, from.clone(), Some(sig.ctime_ns)),
                    self.through_fences(p, to.clone(), Some(sig.ctime_ns)),
                ) {
                    (Some(f), Some(t)) if f == from && t == to => (f, t),
                    (Some(f), Some(t))
                        if t != to
                            && self.installed_ctime[p]
                                .get(&t)
                                .is_some_and(|&(ct, ino)| ino == sig.ino && ct > sig.ctime_ns) =>
                    {
                        // The renamed entry itself is where our move took
                        // it since, which answered with its state: only the
                        // source's removal is news.
                        return self.on_event(side, Event::Removed { path: f });
                    }
                    (Some(f), Some(t)) => {
                        return self.on_event(
                            side,
                            Event::Moved {
                                from: f,
                                to: t,
                                sig,
                            },
                        )
                    }
                    // Moved into what is in the trash now.
                    (Some(f), None) => return self.on_event(side, Event::Removed { path: f }),
                    // Moved out of what is in the trash now: new here.
                    (None, Some(t)) => return self.on_event(side, Event::Changed { path: t, sig }),
                    (None, None) => {
                        return trace(
                            &to,
                            (
                                Verdict::Dropped,
                                "moved within what our batch trashed".into(),
                            ),
                        )
                    }
                };
                self.groups[p].rekey(&from, &to);
                self.groups[p].note(&to, &sig);
                self.link_siblings(p, &to, &sig);
                // Older than what our write left there, and another inode.
                let older = |q: &RelPath| {
                    self.installed_ctime[p]
                        .get(q)
                        .is_some_and(|&(ct, ino)| sig.ctime_ns < ct && ino != sig.ino)
                };
                if older(&to) {
                    // Replaced by our write since (a symlink made there):
                    // the source is gone, and nothing of it is at `to`. A
                    // removal reported there next is of that older entry
                    // (unless it comes after the mark that followed ours).
                    if self.older_gone[p].len() >= 4096 {
                        self.older_gone[p].clear();
                    }
                    self.older_gone[p].insert(to.clone(), sig.ino);
                    return self.on_event(side, Event::Removed { path: from });
                }
                if older(&from) {
                    // What was renamed is not what our write put at `from`
                    // later: a user's entry, new at `to`, with what was
                    // reported below it before our write (older than it).
                    let ct = self.installed_ctime[p].get(&from).map_or(0, |&(ct, _)| ct);
                    let below: Vec<(RelPath, Sig)> = range_within(&self.pending[p].state, &from)
                        .filter(|(k, _)| **k != from)
                        .filter_map(|(k, v)| v.filter(|x| x.ctime_ns < ct).map(|x| (k.clone(), x)))
                        .collect();
                    for (k, x) in below {
                        self.pending[p].state.remove(&k);
                        let moved = k.rebase(&from, &to).expect("within");
                        self.pending[p].state.entry(moved).or_insert(Some(x));
                    }
                    return self.on_event(side, Event::Changed { path: to, sig });
                }
                if self.pending[p].state.get(&to).is_some_and(|x| {
                    x.is_some_and(|x| x.kind == sig.kind && x.stamp() == sig.stamp())
                }) && match self.pending[p].state.get(&from) {
                    Some(x) => x.is_none(),
                    None => self.view_get(p, &from).is_none(),
                } {
                    // Already taken in (by a listing after the rename: the
                    // entry with the rename's stamp at `to`, none at `from`).
                    // Late reports below the source taken since go along
                    // (the listing's own entries there stay).
                    let below: Vec<(RelPath, Option<Sig>)> =
                        range_within(&self.pending[p].state, &from)
                            .filter(|(k, _)| **k != from)
                            .map(|(k, v)| (k.clone(), *v))
                            .collect();
                    for (k, v) in below {
                        self.pending[p].state.remove(&k);
                        let moved = k.rebase(&from, &to).expect("within");
                        self.pending[p].state.entry(moved).or_insert(v);
                    }
                    return trace(
                        &to,
                        (
                            Verdict::Dropped,
                            format!("moved from {from}, already listed").into(),
                        ),
                    );
                }
                // What the batches installed below the source after the
                // rename (by its time) is not in the moved directory: the
                // helper made the missing parents again at the old place.
                let late: Vec<(RelPath, Option<Sig>)> = self.installed_ctime[p]
                    .iter()
                    .filter(|(k, (ct, _))| k.is_within(&from) && *ct > sig.ctime_ns)
                    .map(|(k, _)| (k.clone(), self.view_get(p, k).map(|k| k.sig)))
                    .collect();
                let gone: Vec<(RelPath, Sig)> = take_within(&mut self.vanished[p], &from)
                    .into_iter()
                    .collect();
                let decision = self.on_moved(p, &from, &to, sig);
                for (k, x) in gone {
                    // A copy that found no source: the rename took it.
                    let moved = k.rebase(&from, &to).expect("within");
                    self.pending[p].state.entry(moved).or_insert(Some(x));
                }
                for (k, x) in late {
                    let moved = k.rebase(&from, &to).expect("within");
                    self.pending[p].state.insert(moved, None);
                    if let Some(x) = x {
                        self.pending[p].state.insert(k, Some(x));
                    }
                }
                trace(&to, (decision.0, decision.1.into()))
            }
            Event::RescanNeeded { reason } => {
                self.pending[p].rescan = true;
                trace(
                    &RelPath::root(),
                    (Verdict::Noted, format!("rescan needed: {reason}").into()),
                )
            }
            Event::RootGone => trace(
                &RelPath::root(),
                (Verdict::Noted, "replica root gone".into()),
            ),
            Event::Mark { n } => {
                self.marks[p].reported(n);
                trace(
                    &RelPath::root(),
                    (
                        Verdict::Noted,
                        format!("mark {n}: our writes' reports are in").into(),
                    ),
                )
            }
            Event::Error { path, message } => {
                trace(&path, (Verdict::Noted, format!("error: {message}").into()))
            }
        }
    }

    /// Where a report of side `p` at `path` taken at `ctime` (`None`: a
    /// removal, whose time is not known) belongs, through the fences of the
    /// entries the batches moved away or trashed there since: `None` when
    /// it reports an entry now in the trash. A removal is only ever taken
    /// through them when nothing is known at `path` on the side.
    pub(super) fn through_fences(
        &self,
        p: usize,
        mut path: RelPath,
        ctime: Option<i64>,
    ) -> Option<RelPath> {
        for f in &self.fences[p] {
            if ctime.is_some_and(|c| c >= f.ctime_ns) || !path.is_within(&f.at) {
                continue;
            }
            if ctime.is_none() && path == f.at && f.to.is_some() {
                // The removal of the moved entry's old name: the move's own
                // report (its two halves not paired), never of the entry
                // where the move took it (that one's removal is reported
                // there, by the directory holding it).
                continue;
            }
            path = path.rebase(&f.at, f.to.as_ref()?).expect("within");
        }
        Some(path)
    }

    /// Side `p`'s entry at `at` left it, as `sig` (after the rename) says
    /// (see [`Fence`]).
    pub(super) fn fence(&mut self, p: usize, at: RelPath, to: Option<RelPath>, sig: &Sig) {
        if self.fences[p].len() >= FENCES {
            self.fences[p].drain(..FENCES / 2);
        }
        self.fences[p].push(Fence {
            at,
            to,
            ctime_ns: sig.ctime_ns,
            ino: sig.ino,
        });
    }

    /// The fence of the batch's move or trash of the entry a rename side
    /// `p` reports (now `sig`), when the rename came before it: the same
    /// inode, an older ctime. (Not for a file with other names, whose
    /// inode another name shares.)
    fn fence_renamed(&self, p: usize, sig: &Sig) -> Option<&Fence> {
        if sig.kind != Kind::Dir && sig.nlink > 1 {
            return None;
        }
        self.fences[p]
            .iter()
            .rev()
            .find(|f| f.ino == sig.ino && sig.ctime_ns < f.ctime_ns)
    }

    /// True when an event of side `p` reporting `sig` at `path` must wait
    /// for the running batch to end: once one is held, every later one of
    /// the side is (their order matters); and a report of what the batch
    /// writes at `path` can only be told from a user's same-size,
    /// same-mtime write by its stamp, known when the helper answers.
    pub(super) fn holds(&self, p: usize, path: &RelPath, sig: &Sig) -> bool {
        if !self.deferred[p].is_empty() || self.moved_here[p].contains(path) {
            // (A path the batch moves an entry to and may write again: what
            // is reported there now may be either.)
            return true;
        }
        if !self.leaving[p].is_empty()
            && ancestors(path, true).any(|a| self.leaving[p].contains(&a))
        {
            // At or below what the batch moves away or trashes: a report
            // from before that is told by the time it left (a fence, known
            // when the helper answers).
            return true;
        }
        let Some(before) = self.inflight[p].get(path) else {
            return false;
        };
        if sig.kind == Kind::Dir {
            // A directory's state tells no version apart: the report of
            // its old mode may as well be a user's chmod back after ours.
            // It waits for the time of our write.
            return true;
        }
        if before.is_some_and(|b| judge(Some(&b), p, sig) == Judged::Same) {
            // The state before the write: a late report, not a change.
            return false;
        }
        // Our write, or a user's before it (older than its answer, which
        // replaced it) or after it: the answer's time tells. (A copy reads its source as it is when it
        // runs, maybe a later version than planned: its report is decided
        // once what was written is known.)
        true
    }

    /// `from` was renamed to `to` on side `p` (neither is excluded, neither
    /// is within the other). Returns the decision.
    pub(super) fn on_moved(
        &mut self,
        p: usize,
        from: &RelPath,
        to: &RelPath,
        sig: Sig,
    ) -> (Verdict, String) {
        let from_known = self.view_get(p, from).is_some()
            && !matches!(self.pending[p].state.get(from), Some(None));
        if !from_known && range_within(&self.pending[p].state, from).next().is_none() {
            // Nothing is known of the source: `to` is new, or this reports a
            // move the batch made (the filter finds a moved directory by its
            // watch when it scans a new directory above it).
            let t = self.on_event(
                Side::BOTH[p],
                Event::Changed {
                    path: to.clone(),
                    sig,
                },
            );
            return match t.verdict {
                v @ (Verdict::Echo | Verdict::Dropped) => {
                    (v, format!("{}; moved from {from}", t.reason))
                }
                _ if sig.kind == Kind::Dir => {
                    // A directory arriving from a place nothing was known of
                    // (its first rename was missed): what it holds was never
                    // reported. A listing tells.
                    self.pending[p].rescan = true;
                    (
                        Verdict::Queued,
                        format!("moved from {from} (not synced: a listing follows)"),
                    )
                }
                _ => (
                    Verdict::Queued,
                    format!("moved from {from} (not synced: as new)"),
                ),
            };
        }
        // Removals queued below `to` (a rename needs it empty): the rekey
        // below drops them, yet the other side still has those entries,
        // unless the replay of this move replaces them there.
        let gone_below: Vec<RelPath> = range_within(&self.pending[p].state, to)
            .filter(|(k, v)| {
                v.is_none()
                    && !(from_known
                        && self
                            .view_get(p, &k.rebase(to, from).expect("within to"))
                            .is_some())
            })
            .map(|(k, _)| k.clone())
            .collect();
        rekey(&mut self.pending[p].state, from, to);
        rekey(&mut self.pending[p].renamed, from, to);
        for k in gone_below {
            self.pending[p].state.entry(k).or_insert(None);
        }
        let decision = if from_known {
            // Renamed with no change reported before: only the rename gave
            // it a new stamp (its bytes are the indexed ones).
            // (Renamed again: its state at `to` is that of the last
            // rename, which is still all that changed it.)
            let renamed_only =
                !self.pending[p].state.contains_key(to) || self.pending[p].renamed.contains_key(to);
            self.compose_move(p, from, to);
            if renamed_only && sig.kind == Kind::File {
                self.pending[p].renamed.insert(to.clone(), ());
            }
            // The source is gone from this side: a change of the other side
            // there conflicts with the move.
            self.pending[p].state.insert(from.clone(), None);
            (Verdict::Queued, format!("moved from {from}"))
        } else {
            if self.pending[p].moves.iter().any(|(_, t)| t.is_within(from)) {
                // Indexed entries were moved into this new directory, which
                // moves on: their replays would aim at a stale place.
                self.pending[p].rescan = true;
            }
            // As for a removal: still queued as gone unless it was new (an
            // earlier move took the indexed entry away: keep that mark).
            if !self.is_new(p, from) {
                self.pending[p].state.insert(from.clone(), None);
            }
            (
                Verdict::Queued,
                format!("moved from {from} (not yet synced: copy)"),
            )
        };
        // Queued even when the move is replayed (dropped before merging if it
        // leaves the destination as indexed): a change of the other side at
        // the destination then conflicts with the move.
        self.pending[p].state.insert(to.clone(), Some(sig));
        decision
    }

    /// Side `p` removed `path`: its pending moves of entries that are gone
    /// with it are dropped (unless a later move depends on them) and their
    /// sources queued as gone instead. Replaying them would make the other
    /// side create the missing directories above their destinations, which
    /// it would report after the batch trashed them.
    pub(super) fn cancel_moves_into(&mut self, p: usize, path: &RelPath) {
        let moves = &mut self.pending[p].moves;
        let mut cancelled = Vec::new();
        let mut i = moves.len();
        while i > 0 {
            i -= 1;
            if moves[i].1.is_within(path)
                && moves[i + 1..].iter().all(|o| independent(&moves[i], o))
            {
                cancelled.push(moves.remove(i));
            }
        }
        // Without the move, the view has the source's entries at the source
        // and what the index has at the destination at the destination: all
        // gone from this side.
        for (f, t) in cancelled {
            for k in self
                .view_keys_within(p, &f)
                .into_iter()
                .chain(self.view_keys_within(p, &t))
            {
                self.pending[p].state.entry(k).or_insert(None);
            }
        }
    }

    /// Add the indexed move `from` -> `to` of side `p` to its pending moves,
    /// composing it with earlier ones so that replaying them in order on the
    /// other side never makes a directory at a place a later move empties
    /// (the filter would report it after the batch, as a new directory):
    /// - an earlier move into what moves now (`x` -> `from/y`) is retargeted
    ///   (`x` -> `to/y`) and replayed after this one;
    /// - an earlier move to `from` itself (`x` -> `from`) becomes `x` -> `to`
    ///   (what the other side has at `from`, which this side replaced, is
    ///   then queued as gone).
    ///
    /// When the new order could change what a replay does (a move that now
    /// comes first touches what a postponed one moves, or a composed move
    /// goes into itself), the side is rescanned instead.
    pub(super) fn compose_move(&mut self, p: usize, from: &RelPath, to: &RelPath) {
        let pend = &mut self.pending[p];
        let moves = std::mem::take(&mut pend.moves);
        let chain = moves.iter().rposition(|(_, t)| t == from);
        let mut rescan = false;
        let mut kept: Vec<(RelPath, RelPath)> = Vec::with_capacity(moves.len() + 1);
        let mut later: Vec<(RelPath, RelPath)> = Vec::new();
        // The moves taken out of their place (in their old form): those that
        // now come before them must not depend on them.
        let mut postponed: Vec<(RelPath, RelPath)> = Vec::new();
        let mut chain_src = None;
        for (i, m) in moves.into_iter().enumerate() {
            if Some(i) == chain {
                rescan |= !postponed.iter().all(|o| independent(&m, o));
                chain_src = Some(m.0.clone());
                postponed.push(m);
            } else if m.1.is_within(from) && m.1 != *from {
                let f = m.0.rebase(from, to).unwrap_or_else(|| m.0.clone());
                let t = m.1.rebase(from, to).expect("within from");
                rescan |= nested(&f, &t) || (!m.0.is_within(from) && nested(&m.0, to));
                later.push((f, t));
                postponed.push(m);
            } else {
                rescan |= !postponed.iter().all(|o| independent(&m, o));
                kept.push(m);
            }
        }
        match chain_src {
            // Moved back where it was: nothing to replay.
            Some(f) if f == *to => {}
            Some(f) => {
                rescan |= nested(&f, to);
                kept.push((f, to.clone()));
            }
            None => kept.push((from.clone(), to.clone())),
        }
        kept.extend(later);
        pend.moves = kept;
        pend.rescan |= rescan;
        // What the other side will have at `from` once the moves are
        // replayed (after a chain was merged: what this side had there
        // before a move replaced it) is gone from this side.
        for k in self.view_keys_within(p, from) {
            self.pending[p].state.entry(k).or_insert(None);
        }
    }
}
