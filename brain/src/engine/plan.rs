//! Planning: the pending changes of both sides turned into one batch of
//! operations and copies (direction, conflicts, deletions, moves replayed).

use super::*;

impl Engine {
    /// Plan the next batch from everything pending, and set the index to the
    /// state the batch will produce. `now` (seconds since the epoch) names
    /// conflict copies.
    pub fn plan(&mut self, now: i64) -> Batch {
        let b = self.plan_batch(now);
        if !self.ordered {
            return b;
        }
        // Whatever becomes of them, the reports of these writes come before
        // the next mark asked of their side.
        for t in Side::BOTH {
            let m = &mut self.marks[t];
            for c in &b.copies[t] {
                m.wrote(&c.path);
            }
            for op in b.ops[t].iter().chain(&b.links[t]) {
                m.wrote(op.target());
            }
        }
        b
    }

    pub(super) fn plan_batch(&mut self, now: i64) -> Batch {
        let mut b = Batch::default();
        // Only the listings right after a crash use them.
        self.intents.clear();
        self.listed = Default::default();
        self.installed = Default::default();
        self.now = now;
        self.moved_here = Default::default();
        self.leaving = Default::default();
        self.moving = Default::default();
        self.copied_out = Default::default();
        self.unreported = Default::default();
        self.linking = Default::default();
        self.renaming = Default::default();
        let mut carried: [Vec<(RelPath, Sig)>; 2] = Default::default();
        if self.flips.len() > 4096 {
            self.flips.retain(|_, f| now - f.since <= LOOP_WINDOW);
        }
        self.undo.clear();
        let mut pend = [
            std::mem::take(&mut self.pending[0]),
            std::mem::take(&mut self.pending[1]),
        ];
        self.inflight = Default::default();
        if pend[0].rescan || pend[1].rescan {
            b.rescan = true;
            b.trace(self.tracing, Side::Left, &RelPath::root(), || {
                "rescan both replicas and reconcile".to_string()
            });
            return b;
        }

        // 0. Files found equal by content (same bytes, other mtime or mode):
        //    only their attributes move, and no conflict copy is made.
        for (t, path, w) in std::mem::take(&mut self.attr_fixes) {
            b.trace(self.tracing, t, &path, || {
                format!("set mtime and mode on {t}: same content on both sides")
            });
            b.ops[t].push(Op::SetAttr {
                path: path.clone(),
                expect: Expect::Kind(w.kind),
                mode: Some(w.mode),
                mtime_ns: Some(w.mtime_ns),
                owner: w.owner(),
                xattrs: none_carried(&w),
            });
            self.inflight[t].insert(path.clone(), self.known.get(&path).copied());
            self.k_insert(path, Known::new(w).with_stamp(t.other().idx(), w.stamp()));
        }

        let replayed = pend.iter().any(|p| !p.moves.is_empty());
        // 1. Moves (composed as they came in, see `compose_move`), replayed
        //    in order on the other side. If one conflicts, the batch is only
        //    a rescan.
        for s in Side::BOTH {
            let t = s.other();
            let moves = std::mem::take(&mut pend[s].moves);
            for (from, to) in moves {
                if let Some(why) = self.move_conflict(&pend[t].state, &pend[s].state, &from, &to) {
                    // Reconcile by a full merge, and nothing else in this
                    // batch (the rest of it may depend on the move): undo
                    // the index changes of the moves replayed so far.
                    b.trace(self.tracing, s, &to, || {
                        format!("move from {from} {why} on {t}: rescan")
                    });
                    self.abort();
                    return Batch {
                        rescan: true,
                        traces: b.traces,
                        ..Batch::default()
                    };
                }
                // New directories above the destination are made first, with
                // their modes on `s`. Made by the move itself (as parents),
                // one could be reported after the batch together with what
                // the batch put in it and then removed again.
                let mut missing: Vec<RelPath> = ancestors(&to, false)
                    .take_while(|a| !self.known.contains_key(a))
                    .collect();
                while let Some(a) = missing.pop() {
                    let Some(Some(sig)) = pend[s].state.get(&a).copied() else {
                        break;
                    };
                    if sig.kind != Kind::Dir {
                        break;
                    }
                    self.copy_to(
                        &mut b,
                        t,
                        &a,
                        sig,
                        None,
                        false,
                        &format!("new on {s}, moved into"),
                    );
                }
                b.trace(self.tracing, t, &to, || {
                    format!("move {from} -> {to} on {t} (moved on {s}; no data sent)")
                });
                let expect = self.expect_on(t, &to, self.known.get(&to));
                // A file moves only as the version the index has there: one
                // a user changed since (not reported yet) is refused, not
                // passed off as the version the mover renamed. A directory's
                // stamp changes with every name made in it, so it moves as
                // it is.
                let mut source = Expect::Any;
                if let Some(k) = self.known.get(&from).filter(|k| k.kind == Kind::File) {
                    self.renaming[t].insert(k.stamps[t]);
                    if k.stamps[t].is_known() {
                        source = Expect::Version(k.stamps[t]);
                    }
                }
                b.ops[t].push(Op::Move {
                    from: from.clone(),
                    source,
                    to: to.clone(),
                    expect,
                });
                self.k_rekey(&from, &to);
                rekey(&mut pend[t].state, &from, &to);
                // The rename gave the moved entry a new stamp on both sides:
                // the other's comes with the helper's answer; the mover's
                // is taken when nothing else changed it, else its report is
                // compared (it may also hold other bytes).
                if pend[s].renamed.remove(&to).is_some() {
                    if let (Some(k), Some(Some(x))) =
                        (self.known.get(&to).copied(), pend[s].state.get(&to))
                    {
                        if k.same_content(x) {
                            self.k_insert(to.clone(), k.with_stamp(s.idx(), x.stamp()));
                        }
                    }
                }
                self.inflight[t].insert(to.clone(), None);
                self.moved_here[t].insert(to.clone());
                self.leaving[t].insert(from.clone());
                self.moving[t].insert(to.clone(), from.clone());
                self.unreported[t].insert(to.clone());
            }
        }

        // A pending state that is the index's (once the moves are replayed)
        // is no change. What the last batch left over (cut at its size) was
        // checked then: unless something came in since, no need again (a
        // big merge would pay this walk once per batch).
        for (i, p) in pend
            .iter_mut()
            .enumerate()
            .filter(|_| replayed || self.epoch != self.planned_epoch)
        {
            let known = &self.known;
            let forced = &p.forced;
            p.state.retain(|k, v| {
                forced.contains(k) || !v.is_some_and(|x| judge(known.get(k), i, &x) == Judged::Same)
            });
        }

        // 2. Every changed path, merged three ways (index, left, right), in
        //    order (a directory before what is in it), each taken out of the
        //    pending maps as it is merged: what is merged moves from them to
        //    the index. A batch ends after `limit` actions; the rest stays
        //    pending for the next one.
        let total = pend[0].state.len() + pend[1].state.len();
        let limit = (total / 8).max(self.min_batch);
        let mut trashed: [BTreeSet<RelPath>; 2] = Default::default();
        // Directories that lost a conflict: set aside with their contents,
        // which the rescan that follows merges.
        let mut aside: BTreeSet<RelPath> = BTreeSet::new();
        loop {
            let actions = b.copies[0].len() + b.copies[1].len() + b.ops[0].len() + b.ops[1].len();
            if actions >= limit {
                b.more = !(pend[0].state.is_empty() && pend[1].state.is_empty());
                break;
            }
            let first = |i: usize| pend[i].state.first_key_value().map(|(k, _)| k);
            let which = match (first(0), first(1)) {
                (None, None) => break,
                (Some(a), Some(c)) => a.cmp(c),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
            };
            let take =
                |i: usize, pend: &mut [Pending; 2]| pend[i].state.pop_first().expect("first");
            let (path, mut l, mut r) = match which {
                std::cmp::Ordering::Less => {
                    let (p, l) = take(0, &mut pend);
                    (p, Some(l), None)
                }
                std::cmp::Ordering::Greater => {
                    let (p, r) = take(1, &mut pend);
                    (p, None, Some(r))
                }
                std::cmp::Ordering::Equal => {
                    let (p, l) = take(0, &mut pend);
                    let (_, r) = take(1, &mut pend);
                    (p, Some(l), Some(r))
                }
            };
            let forced = [pend[0].forced.remove(&path), pend[1].forced.remove(&path)];
            let verified = [
                pend[0].verified.remove(&path),
                pend[1].verified.remove(&path),
            ];
            // A file whose bytes only a comparison can tell (not compared
            // yet: a pending move brought it here) waits for the next plan.
            if let (Some(Some(x)), None) | (None, Some(Some(x))) = (l, r) {
                let i = usize::from(l.is_none());
                let k = self.known.get(&path);
                if !forced[i] && !verified[i] && needs_compare(k, i, &x) {
                    carried[i].push((path, x));
                    continue;
                }
            }
            if !aside.is_empty() && ancestors(&path, false).any(|a| aside.contains(&a)) {
                continue;
            }
            if self.stuck.contains(&path) {
                b.trace(self.tracing, Side::Left, &path, || {
                    "not acted on: found looping (until the next rescan)".to_string()
                });
                continue;
            }
            let base = self.known.get(&path).copied();
            // What an interrupted batch copied, where the source removed it
            // since: nothing is left to compare it with, and it is the
            // source's version; the deletion follows it.
            if self.adopted.contains(&path) {
                if let (Some(k), (Some(Some(x)), Some(None)) | (Some(None), Some(Some(x)))) =
                    (base, (l, r))
                {
                    let i = usize::from(l == Some(None));
                    if k.same_content(&x) && !forced[i] {
                        self.k_insert(path.clone(), k.with_stamp(i, x.stamp()));
                        if i == 0 {
                            l = None;
                        } else {
                            r = None;
                        }
                    }
                }
            }
            let base = self.known.get(&path).copied();
            if let Some(k) = base.filter(|k| k.kind == Kind::Dir) {
                // A directory replaced by a file (or symlink) on one side
                // while the other side put something in it: both changed it.
                let to_file =
                    |x: Option<Option<Sig>>| x.flatten().is_some_and(|x| x.kind != Kind::Dir);
                let grew = |st: &BTreeMap<RelPath, Option<Sig>>| {
                    range_within(st, &path).any(|(q, v)| *q != path && v.is_some())
                };
                if r.is_none() && to_file(l) && grew(&pend[1].state) {
                    r = Some(Some(k.sig));
                } else if l.is_none() && to_file(r) && grew(&pend[0].state) {
                    l = Some(Some(k.sig));
                }
            }
            match (l, r) {
                (Some(x), None) => self.propagate(
                    &mut b,
                    &pend,
                    &mut trashed,
                    Side::Left,
                    &path,
                    x,
                    base,
                    forced[0],
                ),
                (None, Some(x)) => self.propagate(
                    &mut b,
                    &pend,
                    &mut trashed,
                    Side::Right,
                    &path,
                    x,
                    base,
                    forced[1],
                ),
                (Some(Some(a)), Some(Some(c)))
                    if a.kind == Kind::File
                        && a.same_content(&c)
                        && forced == [false, false]
                        && verified == [false, false]
                        && Side::BOTH
                            .iter()
                            .any(|t| self.moved_here[*t].iter().any(|m| path.is_within(m))) =>
                {
                    // Files of the same size and mtime on both sides, which
                    // a move this batch replays brought here before they
                    // could be compared (ties may hold other bytes): they
                    // wait for the next plan's comparison.
                    carried[0].push((path.clone(), a));
                    carried[1].push((path, c));
                }
                (Some(Some(a)), Some(Some(c))) => {
                    if self.both_changed(&mut b, now, &path, a, c, forced[0] || forced[1]) {
                        aside.insert(path.clone());
                    }
                }
                (Some(None), Some(None)) => {
                    self.k_remove_within(&path);
                    b.trace(self.tracing, Side::Left, &path, || {
                        "nothing to do: removed on both sides".to_string()
                    });
                }
                (Some(Some(a)), Some(None)) => {
                    self.copy_to(
                        &mut b,
                        Side::Right,
                        &path,
                        a,
                        None,
                        forced[0],
                        "modified on left, removed on right: modification wins",
                    );
                }
                (Some(None), Some(Some(c))) => {
                    self.copy_to(
                        &mut b,
                        Side::Left,
                        &path,
                        c,
                        None,
                        forced[1],
                        "modified on right, removed on left: modification wins",
                    );
                }
                (None, None) => {}
            }
        }
        if b.more {
            for (i, p) in pend.into_iter().enumerate() {
                self.pending[i].state = p.state;
                self.pending[i].forced = p.forced;
                self.pending[i].verified = p.verified;
                self.pending[i].renamed = p.renamed;
            }
        }
        for (i, c) in carried.into_iter().enumerate() {
            for (path, x) in c {
                self.pending[i].state.insert(path, Some(x));
            }
        }
        self.plan_links(&mut b);
        self.plan_relinks(&mut b);
        self.planned_epoch = self.epoch;
        self.adopted.clear();
        b
    }

    /// Why the replay of the move `from` -> `to` on the side whose pending
    /// changes are `t_state` cannot go ahead, if it cannot.
    pub(super) fn move_conflict(
        &self,
        t_state: &BTreeMap<RelPath, Option<Sig>>,
        s_state: &BTreeMap<RelPath, Option<Sig>>,
        from: &RelPath,
        to: &RelPath,
    ) -> Option<&'static str> {
        if !self.known.contains_key(from) {
            return Some("is not indexed");
        }
        // The other side changed the entry or a directory above either end
        // (removed, replaced or moved it), or put something where it goes.
        if ancestors(from, true)
            .chain(ancestors(to, true))
            .any(|a| t_state.contains_key(&a))
        {
            return Some("conflicts with a change");
        }
        if range_within(t_state, to).any(|(_, v)| v.is_some()) {
            return Some("goes where something was added");
        }
        // The kernel renames a directory only onto an empty one: entries
        // the index has below the destination that the mover did not
        // remove came after the rename (a batch put them there, into the
        // directory the mover renamed). Replaying it would trash them on
        // the other side.
        if range_within(&self.known, to)
            .any(|(k, _)| k != to && !matches!(s_state.get(k), Some(None)))
        {
            return Some("goes onto a directory with entries");
        }
        // A directory above the destination is not one in the index: the
        // mover made it in place of a file, which is only merged after the
        // moves.
        if ancestors(to, false).any(|a| self.known.get(&a).is_some_and(|k| k.kind != Kind::Dir)) {
            return Some("goes below what is not a directory");
        }
        None
    }

    /// `path` changed on `s` only: bring the other side to `x`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn propagate(
        &mut self,
        b: &mut Batch,
        pend: &[Pending; 2],
        trashed: &mut [BTreeSet<RelPath>; 2],
        s: Side,
        path: &RelPath,
        x: Option<Sig>,
        base: Option<Known>,
        forced: bool,
    ) {
        let t = s.other();
        match x {
            Some(sig) if !forced && judge(base.as_ref(), s.idx(), &sig) == Judged::Same => {}
            Some(sig) => {
                let why = match (base, forced) {
                    (None, _) => "new",
                    (Some(_), true) => "another version (content differs; same size and mtime)",
                    (Some(_), false) => "changed",
                };
                self.copy_to(b, t, path, sig, base, forced, &format!("{why} on {s}"));
            }
            None => {
                if base.is_none() && range_within(&self.known, path).next().is_none() {
                    return;
                }
                if ancestors(path, true).any(|a| trashed[t].contains(&a)) {
                    self.k_remove_within(path);
                    return;
                }
                self.remove_on(b, pend, trashed, t, path, &format!("removed on {s}"));
            }
        }
    }

    /// Remove `path` on `t`, except what `t` changed below it meanwhile
    /// (modification wins: those are kept, and restored on the other side).
    pub(super) fn remove_on(
        &mut self,
        b: &mut Batch,
        pend: &[Pending; 2],
        trashed: &mut [BTreeSet<RelPath>; 2],
        t: Side,
        path: &RelPath,
        why: &str,
    ) {
        let t_changed_below = range_within(&pend[t].state, path).any(|(_, v)| v.is_some());
        if !t_changed_below {
            b.trace(self.tracing, t, path, || {
                format!("delete on {t} (to trash): {why}")
            });
            let expect = self.expect_on(t, path, self.known.get(path));
            b.ops[t].push(Op::Trash {
                path: path.clone(),
                expect,
            });
            self.leaving[t].insert(path.clone());
            self.inflight[t].insert(path.clone(), self.known.get(path).copied());
            self.k_remove_within(path);
            trashed[t].insert(path.clone());
            return;
        }
        // Keep the directory (recreate it on the other side) and remove only
        // what the other side did not touch.
        let s = t.other();
        if let Some(k) = self.known.get(path).copied() {
            b.ops[s].push(Op::Mkdir {
                path: path.clone(),
                mode: k.mode,
                owner: k.owner(),
                xattrs: None,
            });
            b.trace(self.tracing, s, path, || {
                format!("keep directory: {t} changed entries inside it")
            });
        }
        let depth = path.depth();
        let children: Vec<RelPath> = range_within(&self.known, path)
            .filter(|(k, _)| k.depth() == depth + 1)
            .map(|(k, _)| k.clone())
            .collect();
        for c in children {
            if pend[t].state.get(&c).is_some_and(Option::is_some) {
                continue;
            }
            self.remove_on(b, pend, trashed, t, &c, why);
        }
    }

    /// What side `t` must hold for a write there to replace it: the
    /// indexed version as `t` last showed it (any version when its stamp
    /// was never observed), or nothing.
    pub(super) fn expect_on(&self, t: Side, path: &RelPath, k: Option<&Known>) -> Expect {
        if self.moved_here[t].contains(path) {
            // Moved there by this batch: its stamp there is not known yet.
            return Expect::Any;
        }
        if k.is_none() && !path.is_root() && {
            let (lo, hi) = path.children_range();
            self.moved_here[t].range(lo..hi).next().is_some()
        } {
            // A directory this batch's move below it makes on the way (the
            // source's user then removed it): not absent when trashed.
            return Expect::Any;
        }
        match k {
            None => Expect::Absent,
            Some(k) if k.kind == Kind::File && k.stamps[t].is_known() => {
                Expect::Version(k.stamps[t])
            }
            // A directory (or an entry whose stamp was never observed): of
            // its kind. One a user removed or replaced meanwhile is refused,
            // not taken for what the batch replaces.
            Some(k) => Expect::Kind(k.kind),
        }
    }

    /// Count a copy of `path` into `t`; true when the path goes back and
    /// forth ([`LOOP_FLIPS`] changes of direction within [`LOOP_WINDOW`]
    /// seconds): it is then not acted on until the next rescan.
    pub(super) fn flipped(&mut self, t: Side, path: &RelPath) -> bool {
        let now = self.now;
        let f = self.flips.entry(path.clone()).or_default();
        if f.last.is_none() || now - f.since > LOOP_WINDOW {
            *f = Flips {
                since: now,
                count: 0,
                last: None,
            };
        }
        if f.last == Some(t.other()) {
            f.count += 1;
        }
        f.last = Some(t);
        if f.count >= LOOP_FLIPS {
            self.flips.remove(path);
            self.stuck.insert(path.clone());
            return true;
        }
        false
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_to(
        &mut self,
        b: &mut Batch,
        t: Side,
        path: &RelPath,
        sig: Sig,
        base: Option<Known>,
        forced: bool,
        why: &str,
    ) {
        let s = t.other();
        if sig.kind == Kind::File && self.flipped(t, path) {
            b.loops.push(path.clone());
            b.trace(self.tracing, t, path, || {
                format!(
                    "not copied {}→{}: goes back and forth (a bug)",
                    s.letter(),
                    t.letter()
                )
            });
            return;
        }
        // Only the attributes change: a file or link of the same size and
        // mtime, or a directory that is there already (not a mkdir, which
        // would make it again where a user renamed or removed it meanwhile
        // and the entries that went with it would differ; gone, the batch
        // fails there and both sides are listed again).
        let attr_only = base.is_some_and(|k| {
            k.kind == sig.kind
                && (k.kind == Kind::Dir
                    || !forced && k.size == sig.size && k.mtime_ns == sig.mtime_ns)
        });
        let mut expect = self.expect_on(t, path, base.as_ref());
        if attr_only {
            b.ops[t].push(Op::SetAttr {
                path: path.clone(),
                expect: Expect::Kind(sig.kind),
                mode: Some(sig.mode),
                mtime_ns: None,
                owner: sig.owner(),
                xattrs: none_carried(&sig),
            });
            b.trace(self.tracing, t, path, || {
                format!("chmod {:o} on {t}: {why}", sig.mode)
            });
        } else if sig.kind == Kind::Dir {
            if base.is_some_and(|k| k.kind != Kind::Dir) {
                // A file (or link) replaced by a directory: it goes first.
                b.ops[t].push(Op::Trash {
                    path: path.clone(),
                    expect,
                });
                self.leaving[t].insert(path.clone());
            }
            b.ops[t].push(Op::Mkdir {
                path: path.clone(),
                mode: sig.mode,
                owner: sig.owner(),
                xattrs: none_carried(&sig),
            });
            b.trace(self.tracing, t, path, || format!("mkdir on {t}: {why}"));
        } else {
            if base.is_some_and(|k| k.kind == Kind::Dir) {
                // A directory replaced by a file: the directory goes to the trash.
                b.ops[t].push(Op::Trash {
                    path: path.clone(),
                    expect: Expect::Any,
                });
                self.leaving[t].insert(path.clone());
                self.k_remove_within(path);
                expect = Expect::Absent;
            }
            if sig.kind == Kind::Symlink {
                self.unreported[t].insert(path.clone());
            }
            b.copies[t].push(Copy {
                path: path.clone(),
                sig,
                expect,
            });
            b.trace(self.tracing, t, path, || {
                format!("copy {}→{}: {why}", s.letter(), t.letter())
            });
        }
        // What the batch writes there: a report of it is told from a user's
        // write by the stamp the helper answers with.
        self.inflight[t].insert(path.clone(), base);
        let mut k = Known::new(sig);
        k.stamps[s] = sig.stamp();
        self.k_insert(path.clone(), k);
    }

    /// Both sides changed `path`, to `l` and `r`. Returns true when a
    /// directory lost: it is set aside with its contents, so what is queued
    /// below it is not merged now (a conflict copy in the tree is merged by
    /// the rescan that follows).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn both_changed(
        &mut self,
        b: &mut Batch,
        now: i64,
        path: &RelPath,
        l: Sig,
        r: Sig,
        forced: bool,
    ) -> bool {
        if l.same_content(&r) && !forced {
            let k = Known {
                sig: l,
                stamps: [l.stamp(), r.stamp()],
            };
            self.k_insert(path.clone(), k);
            self.relink.note(path, l, r);
            b.trace(self.tracing, Side::Left, path, || {
                "nothing to do: same on both sides".to_string()
            });
            return false;
        }
        let (winner, reason) = match l.mtime_ns.cmp(&r.mtime_ns) {
            std::cmp::Ordering::Greater => (Side::Left, "newer-left".to_string()),
            std::cmp::Ordering::Less => (Side::Right, "newer-right".to_string()),
            std::cmp::Ordering::Equal => (
                self.policy.prefer,
                format!("tie-prefer-{}", self.policy.prefer),
            ),
        };
        let (w, lo) = if winner == Side::Left { (l, r) } else { (r, l) };
        let loser = winner.other();
        if w.kind == Kind::Dir && lo.kind == Kind::Dir {
            // Only the modes differ: the winner's mode applies.
            b.ops[loser].push(Op::SetAttr {
                path: path.clone(),
                expect: Expect::Kind(Kind::Dir),
                mode: Some(w.mode),
                mtime_ns: None,
                owner: w.owner(),
                xattrs: None,
            });
            self.k_insert(path.clone(), Known::new(w));
            b.trace(self.tracing, loser, path, || {
                format!(
                    "chmod {:o} on {loser}: directory mode changed on both sides, {reason}",
                    w.mode
                )
            });
            return false;
        }
        let kept_as = if self.policy.conflicts_beside {
            // Syncthing's way: beside the file, on both sides.
            // A name no version holds on either side (two conflicts of a
            // path within a second get -1, -2…).
            let taken = |e: &Engine, n: &RelPath| {
                e.known.contains_key(n)
                    || e.pending.iter().any(|p| p.state.contains_key(n))
                    || e.inflight.iter().any(|m| m.contains_key(n))
            };
            let mut kept_as = conflict_name(path, now, loser);
            let mut n = 0;
            while taken(self, &kept_as) {
                n += 1;
                kept_as = crate::conflict::conflict_name_n(path, now, loser, n);
            }
            // The loser's version is kept under that name, and only it: a
            // user's change there since (not reported yet) is refused, the
            // conflict merged again with it. A directory's stamp changes
            // with every name made in it: it is kept as it is.
            let source = if lo.kind == Kind::Dir || !lo.stamp().is_known() {
                Expect::Any
            } else {
                Expect::Version(lo.stamp())
            };
            b.ops[loser].push(Op::Move {
                from: path.clone(),
                source,
                to: kept_as.clone(),
                expect: Expect::Absent,
            });
            self.leaving[loser].insert(path.clone());
            self.moving[loser].insert(kept_as.clone(), path.clone());
            if lo.kind == Kind::Dir {
                // The losing directory's contents are not listed here: a full
                // merge copies them over.
                b.rescan = true;
            } else {
                b.copies[winner].push(Copy {
                    path: kept_as.clone(),
                    sig: lo,
                    expect: Expect::Absent,
                });
                self.inflight[winner].insert(kept_as.clone(), None);
            }
            self.inflight[loser].insert(kept_as.clone(), None);
            self.k_insert(kept_as.clone(), Known::new(lo));
            kept_as
        } else {
            // osync's way: the loser goes to its replica's
            // .twinsync/conflicts/, kept for --trash-days, not synced.
            b.ops[loser].push(Op::KeepConflict { path: path.clone() });
            if lo.kind == Kind::Dir {
                // A losing directory left the tree with its contents.
                self.k_remove_within(path);
            }
            RelPath::from_bytes(
                format!(
                    ".twinsync/conflicts/{}",
                    twinsync_helpers::time::date_of(now)
                )
                .into_bytes(),
            )
            .join(path.as_bytes())
        };
        b.trace(self.tracing, loser, path, || {
            format!("conflict {reason}: keep {loser}'s version as {loser}'s {kept_as}")
        });
        self.copy_to(
            b,
            loser,
            path,
            w,
            None,
            true,
            &format!("conflict winner ({reason})"),
        );
        b.conflicts.push(Conflict {
            path: path.clone(),
            winner,
            kept_as,
            reason,
        });
        lo.kind == Kind::Dir
    }
}
