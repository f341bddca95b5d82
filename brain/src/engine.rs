//! The sync decisions, pure: events and scans in, batches of actions out.
//! No I/O happens here (the clock is passed in), which is what lets the model
//! test drive it.
//!
//! State:
//! - `known`: the last state both replicas agreed on, per path (the index).
//!   It doubles as the echo ledger: when a batch is planned, `known` is set to
//!   what the brain is about to write, so the filter's report of that write
//!   matches it exactly and is dropped.
//! - `pending[side]`: what changed on a side since the last batch: the latest
//!   state of each changed path (`None`: gone) and the moves, in order.
//! - `inflight[side]`: for each path the running batch overwrites, the state
//!   it had before; a report of that old state while the write is in flight
//!   is not a change either.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use twinsync_filter::Excludes;
use twinsync_proto::{Entry, Event, Kind, Op, RelPath, Sig};

use crate::conflict::conflict_name;

/// One of the two replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The local side, where the brain runs.
    Left,
    /// The other side.
    Right,
}

impl Side {
    /// Both sides, left first.
    pub const BOTH: [Side; 2] = [Side::Left, Side::Right];

    /// The other side.
    #[must_use]
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    /// 0 for left, 1 for right.
    #[must_use]
    pub fn idx(self) -> usize {
        self as usize
    }

    /// `L` or `R`.
    #[must_use]
    pub fn letter(self) -> char {
        match self {
            Side::Left => 'L',
            Side::Right => 'R',
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Left => "left",
            Side::Right => "right",
        })
    }
}

/// What the engine decided about one event or path, with its reason: the
/// material of `--dry-run` traces and debug logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The side the event came from, or the side acted on.
    pub side: Side,
    /// The path.
    pub path: RelPath,
    /// The decision and its reason, e.g. `dropped: echo of our write`.
    pub decision: String,
}

/// A kept conflict: the loser's version was renamed to `kept_as` on its side
/// and copied to the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The path both sides changed.
    pub path: RelPath,
    /// The side whose version won.
    pub winner: Side,
    /// Where the losing version is kept, on both sides.
    pub kept_as: RelPath,
    /// Why the winner won (`newer-left`, `tie-prefer-left`, …).
    pub reason: String,
}

/// A copy that did not arrive as planned, and what was found after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The path.
    pub path: RelPath,
    /// The source's state after the batch.
    pub src: Option<Sig>,
    /// The destination's state after the batch.
    pub dst: Option<Sig>,
}

/// The work of one batch. `ops[s]` run on side `s` in order before any
/// content moves; then `copies[s]` are copied *into* side `s` from the other
/// side (one rsync per direction).
#[derive(Debug, Default)]
pub struct Batch {
    /// Helper operations per destination side.
    pub ops: [Vec<Op>; 2],
    /// Content copies per destination side, with the source signature
    /// expected to arrive.
    pub copies: [Vec<(RelPath, Sig)>; 2],
    /// Conflicts resolved in this batch.
    pub conflicts: Vec<Conflict>,
    /// One line per action with its reason.
    pub traces: Vec<Trace>,
    /// Both replicas must be rescanned and reconciled before going on.
    pub rescan: bool,
    /// Number of indexed entries this batch deletes on each side (for the
    /// mass-deletion safety net).
    pub deleted: [usize; 2],
}

impl Batch {
    /// True when nothing is to be done.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.iter().all(Vec::is_empty) && self.copies.iter().all(Vec::is_empty) && !self.rescan
    }
}

#[derive(Debug, Default)]
struct Pending {
    moves: Vec<(RelPath, RelPath)>,
    state: BTreeMap<RelPath, Option<Sig>>,
    rescan: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.state.is_empty() && !self.rescan
    }
}

/// Tunables of the decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Which side wins a conflict when both mtimes are equal.
    pub prefer: Side,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { prefer: Side::Left }
    }
}

/// The decision engine.
#[derive(Debug)]
pub struct Engine {
    known: BTreeMap<RelPath, Sig>,
    pending: [Pending; 2],
    inflight: [HashMap<RelPath, Option<Sig>>; 2],
    excludes: Excludes,
    policy: Policy,
    /// Index keys changed since the last [`Engine::take_delta`].
    changed: std::collections::BTreeSet<RelPath>,
    /// Whether to record a [`Trace`] per decision (dry runs, debug logs).
    pub tracing: bool,
    /// Rescans in a row caused by failed helper operations (at most one, so
    /// a lasting failure such as a permission error does not loop).
    failed_ops_rescans: u32,
    /// Previous values of the index entries the current batch changed, to
    /// undo it when it could not be carried out (a link lost mid-batch).
    undo: Vec<(RelPath, Option<Sig>)>,
}

fn range_within<'a, V>(
    map: &'a BTreeMap<RelPath, V>,
    dir: &RelPath,
) -> impl Iterator<Item = (&'a RelPath, &'a V)> + 'a {
    let (lo, hi) = dir.children_range();
    let own = map.get_key_value(dir);
    let children: Box<dyn Iterator<Item = (&RelPath, &V)>> = if dir.is_root() {
        Box::new(map.iter().filter(|(k, _)| !k.is_root()))
    } else {
        Box::new(map.range(lo..hi))
    };
    own.into_iter().chain(children)
}

fn keys_within<V>(map: &BTreeMap<RelPath, V>, dir: &RelPath) -> Vec<RelPath> {
    range_within(map, dir).map(|(k, _)| k.clone()).collect()
}

/// Move every key at or below `from` to the same place below `to`; what was
/// at or below `to` is dropped first.
fn rekey<V>(map: &mut BTreeMap<RelPath, V>, from: &RelPath, to: &RelPath) {
    if from == to {
        return;
    }
    let moved: Vec<(RelPath, V)> = keys_within(map, from)
        .into_iter()
        .filter_map(|k| map.remove(&k).map(|v| (k, v)))
        .collect();
    for k in keys_within(map, to) {
        map.remove(&k);
    }
    for (k, v) in moved {
        map.insert(k.rebase(from, to).expect("within from"), v);
    }
}

impl Engine {
    /// An engine with an empty index.
    #[must_use]
    pub fn new(excludes: Excludes, policy: Policy) -> Self {
        Engine {
            known: BTreeMap::new(),
            pending: Default::default(),
            inflight: Default::default(),
            excludes,
            policy,
            changed: std::collections::BTreeSet::new(),
            undo: Vec::new(),
            tracing: true,
            failed_ops_rescans: 0,
        }
    }

    fn k_record(&mut self, path: &RelPath) {
        self.undo
            .push((path.clone(), self.known.get(path).copied()));
        self.changed.insert(path.clone());
    }

    fn k_insert(&mut self, path: RelPath, sig: Sig) {
        self.k_record(&path);
        self.known.insert(path, sig);
    }

    fn k_remove_within(&mut self, dir: &RelPath) {
        for k in keys_within(&self.known, dir) {
            self.k_record(&k);
            self.known.remove(&k);
        }
    }

    fn k_rekey(&mut self, from: &RelPath, to: &RelPath) {
        let from_keys = keys_within(&self.known, from);
        for k in from_keys.iter().chain(keys_within(&self.known, to).iter()) {
            self.k_record(k);
        }
        for k in &from_keys {
            self.k_record(&k.rebase(from, to).expect("within from"));
        }
        rekey(&mut self.known, from, to);
    }

    /// The batch planned last could not be carried out (a link was lost):
    /// put the index back as it was before it. A full rescan follows.
    pub fn abort(&mut self) {
        while let Some((path, old)) = self.undo.pop() {
            match old {
                Some(sig) => self.known.insert(path.clone(), sig),
                None => self.known.remove(&path),
            };
            self.changed.insert(path);
        }
        self.inflight = Default::default();
    }

    /// The index changes since the last call: entries set, entries removed.
    pub fn take_delta(&mut self) -> (Vec<(RelPath, Sig)>, Vec<RelPath>) {
        let mut set = Vec::new();
        let mut removed = Vec::new();
        for k in std::mem::take(&mut self.changed) {
            match self.known.get(&k) {
                Some(s) => set.push((k, *s)),
                None => removed.push(k),
            }
        }
        (set, removed)
    }

    /// Forget the recorded index changes (after a full snapshot).
    pub fn clear_delta(&mut self) {
        self.changed.clear();
    }

    /// Replace the exclude rules (SIGHUP).
    pub fn set_excludes(&mut self, excludes: Excludes) {
        self.excludes = excludes;
    }

    /// Replace the index (loaded from disk).
    pub fn set_known(&mut self, known: BTreeMap<RelPath, Sig>) {
        self.known = known;
    }

    /// The index.
    #[must_use]
    pub fn known(&self) -> &BTreeMap<RelPath, Sig> {
        &self.known
    }

    /// True when something waits to be planned.
    #[must_use]
    pub fn has_work(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }

    /// Number of queued changes (both sides).
    #[must_use]
    pub fn queue_depth(&self) -> usize {
        self.pending
            .iter()
            .map(|p| p.state.len() + p.moves.len())
            .sum()
    }

    /// Take in one event from `side`, returning what was decided.
    pub fn on_event(&mut self, side: Side, ev: Event) -> Trace {
        let p = side.idx();
        let trace = |path: &RelPath, d: &str| Trace {
            side,
            path: path.clone(),
            decision: d.to_string(),
        };
        match ev {
            Event::Changed { path, sig } => {
                if self.excludes.excluded(&path) {
                    return trace(&path, "dropped: excluded");
                }
                if sig.kind == Kind::Other {
                    return trace(
                        &path,
                        "dropped: special file (fifo, socket or device) is not synced",
                    );
                }
                if let Some(slot) = self.pending[p].state.get_mut(&path) {
                    if self.known.get(&path).is_some_and(|k| k.same_content(&sig)) {
                        // Back to the synced state (e.g. the last step of our own write).
                        self.pending[p].state.remove(&path);
                        return trace(&path, "dropped: echo (back to the ledger's state)");
                    }
                    *slot = Some(sig);
                    return trace(&path, "coalesced with a queued change");
                }
                if self.known.get(&path).is_some_and(|k| k.same_content(&sig)) {
                    return trace(
                        &path,
                        "dropped: echo (matches the ledger: what we wrote or already synced)",
                    );
                }
                if let Some(Some(prev)) = self.inflight[p].get(&path) {
                    if prev.same_content(&sig) {
                        return trace(&path, "dropped: echo (state before our in-flight write)");
                    }
                }
                self.pending[p].state.insert(path.clone(), Some(sig));
                trace(&path, "queued: changed")
            }
            Event::Removed { path } => {
                if self.excludes.excluded(&path) {
                    return trace(&path, "dropped: excluded");
                }
                let known_here = range_within(&self.known, &path).next().is_some();
                let pend = &mut self.pending[p].state;
                let queued: Vec<RelPath> = keys_within(pend, &path);
                if !known_here && queued.is_empty() {
                    return trace(&path, "dropped: echo (not in the ledger)");
                }
                for k in queued {
                    if self.known.contains_key(&k) {
                        pend.insert(k, None);
                    } else {
                        pend.remove(&k);
                    }
                }
                if known_here {
                    pend.insert(path.clone(), None);
                }
                trace(&path, "queued: removed")
            }
            Event::Moved { from, to, sig } => {
                let from_x = self.excludes.excluded(&from);
                let to_x = self.excludes.excluded(&to);
                if from_x && to_x {
                    return trace(&to, "dropped: excluded");
                }
                if to_x {
                    return self.on_event(side, Event::Removed { path: from });
                }
                if from_x {
                    return self.on_event(side, Event::Changed { path: to, sig });
                }
                let pend = &mut self.pending[p];
                rekey(&mut pend.state, &from, &to);
                let from_known =
                    self.known.contains_key(&from) && !matches!(pend.state.get(&to), Some(None));
                if from_known {
                    pend.moves.push((from.clone(), to.clone()));
                    if !self.known[&from].same_content(&sig) {
                        pend.state.insert(to.clone(), Some(sig));
                    }
                    trace(&to, &format!("queued: moved from {from}"))
                } else {
                    pend.state.insert(to.clone(), Some(sig));
                    trace(
                        &to,
                        &format!("queued: moved from {from} (not yet synced: copy)"),
                    )
                }
            }
            Event::RescanNeeded { reason } => {
                self.pending[p].rescan = true;
                trace(&RelPath::root(), &format!("rescan needed: {reason}"))
            }
            Event::RootGone => trace(&RelPath::root(), "replica root gone"),
            Event::Error { path, message } => trace(&path, &format!("error: {message}")),
        }
    }

    /// Take in a full listing of `side` (start-up or rescan): every entry that
    /// differs from the index, and every indexed path that is missing, becomes
    /// a pending change of that side.
    pub fn load_scan(&mut self, side: Side, entries: Vec<Entry>) {
        let p = side.idx();
        self.pending[p] = Pending::default();
        self.inflight[p].clear();
        let mut seen: BTreeMap<RelPath, Sig> = entries
            .into_iter()
            .filter(|e| e.sig.kind != Kind::Other && !self.excludes.excluded(&e.path))
            .map(|e| (e.path, e.sig))
            .collect();
        for (path, k) in &self.known {
            match seen.remove(path) {
                Some(sig) if k.same_content(&sig) => {}
                Some(sig) => {
                    self.pending[p].state.insert(path.clone(), Some(sig));
                }
                None => {
                    self.pending[p].state.insert(path.clone(), None);
                }
            }
        }
        for (path, sig) in seen {
            self.pending[p].state.insert(path, Some(sig));
        }
    }

    /// Plan the next batch from everything pending, and set the index to the
    /// state the batch will produce. `now` (seconds since the epoch) names
    /// conflict copies.
    pub fn plan(&mut self, now: i64) -> Batch {
        let mut b = Batch::default();
        self.undo.clear();
        let mut pend = [
            std::mem::take(&mut self.pending[0]),
            std::mem::take(&mut self.pending[1]),
        ];
        self.inflight = Default::default();
        if pend[0].rescan || pend[1].rescan {
            b.rescan = true;
            if self.tracing {
                b.traces.push(Trace {
                    side: Side::Left,
                    path: RelPath::root(),
                    decision: "rescan both replicas and reconcile".into(),
                });
            }
            return b;
        }

        // 1. Moves, in the order they happened, replayed on the other side.
        for s in Side::BOTH {
            let t = s.other();
            let moves = std::mem::take(&mut pend[s.idx()].moves);
            for (from, to) in moves {
                let t_touched = pend[t.idx()].state.contains_key(&from)
                    || pend[t.idx()].state.get(&to).is_some_and(Option::is_some);
                if !self.known.contains_key(&from) || t_touched {
                    // The other side changed the same entry meanwhile, or it
                    // is not there: reconcile by a full merge.
                    b.rescan = true;
                    if self.tracing {
                        b.traces.push(Trace {
                            side: s,
                            path: to.clone(),
                            decision: format!(
                                "move from {from} conflicts with a change on {t}: rescan"
                            ),
                        });
                    }
                    continue;
                }
                if self.tracing {
                    b.traces.push(Trace {
                        side: t,
                        path: to.clone(),
                        decision: format!(
                            "move {from} -> {to} on {t} (moved on {s}; no data sent)"
                        ),
                    });
                }
                b.ops[t.idx()].push(Op::Move {
                    from: from.clone(),
                    to: to.clone(),
                });
                self.k_rekey(&from, &to);
                rekey(&mut pend[t.idx()].state, &from, &to);
            }
        }

        // 2. Every changed path, merged three ways (index, left, right).
        let mut paths: Vec<RelPath> = pend[0].state.keys().cloned().collect();
        paths.extend(pend[1].state.keys().cloned());
        paths.sort();
        paths.dedup();
        let mut trashed: [Vec<RelPath>; 2] = Default::default();
        for path in paths {
            let l = pend[0].state.get(&path).copied();
            let r = pend[1].state.get(&path).copied();
            let base = self.known.get(&path).copied();
            match (l, r) {
                (Some(x), None) => {
                    self.propagate(&mut b, &pend, &mut trashed, Side::Left, &path, x, base)
                }
                (None, Some(x)) => {
                    self.propagate(&mut b, &pend, &mut trashed, Side::Right, &path, x, base)
                }
                (Some(Some(a)), Some(Some(c))) => self.both_changed(&mut b, now, &path, a, c),
                (Some(None), Some(None)) => {
                    self.k_remove_within(&path);
                    if self.tracing {
                        b.traces.push(Trace {
                            side: Side::Left,
                            path: path.clone(),
                            decision: "nothing to do: removed on both sides".into(),
                        });
                    }
                }
                (Some(Some(a)), Some(None)) => {
                    self.copy_to(
                        &mut b,
                        Side::Right,
                        &path,
                        a,
                        None,
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
                        "modified on right, removed on left: modification wins",
                    );
                }
                (None, None) => unreachable!("path came from a pending map"),
            }
        }
        b
    }

    /// `path` changed on `s` only: bring the other side to `x`.
    #[allow(clippy::too_many_arguments)]
    fn propagate(
        &mut self,
        b: &mut Batch,
        pend: &[Pending; 2],
        trashed: &mut [Vec<RelPath>; 2],
        s: Side,
        path: &RelPath,
        x: Option<Sig>,
        base: Option<Sig>,
    ) {
        let t = s.other();
        match x {
            Some(sig) if base.is_some_and(|b| b.same_content(&sig)) => {}
            Some(sig) => {
                let why = if base.is_some() { "changed" } else { "new" };
                self.copy_to(b, t, path, sig, base, &format!("{why} on {s}"));
            }
            None => {
                if base.is_none() && range_within(&self.known, path).next().is_none() {
                    return;
                }
                if trashed[t.idx()].iter().any(|d| path.is_within(d)) {
                    self.k_remove_within(path);
                    return;
                }
                self.remove_on(b, pend, trashed, t, path, &format!("removed on {s}"));
            }
        }
    }

    /// Remove `path` on `t`, except what `t` changed below it meanwhile
    /// (modification wins: those are kept, and restored on the other side).
    fn remove_on(
        &mut self,
        b: &mut Batch,
        pend: &[Pending; 2],
        trashed: &mut [Vec<RelPath>; 2],
        t: Side,
        path: &RelPath,
        why: &str,
    ) {
        let t_changed_below = range_within(&pend[t.idx()].state, path).any(|(_, v)| v.is_some());
        if !t_changed_below {
            if self.tracing {
                b.traces.push(Trace {
                    side: t,
                    path: path.clone(),
                    decision: format!("delete on {t} (to trash): {why}"),
                });
            }
            b.ops[t.idx()].push(Op::Trash { path: path.clone() });
            b.deleted[t.idx()] += range_within(&self.known, path).count();
            self.k_remove_within(path);
            trashed[t.idx()].push(path.clone());
            return;
        }
        // Keep the directory (recreate it on the other side) and remove only
        // what the other side did not touch.
        let s = t.other();
        if let Some(k) = self.known.get(path).copied() {
            b.ops[s.idx()].push(Op::Mkdir {
                path: path.clone(),
                mode: k.mode,
            });
            if self.tracing {
                b.traces.push(Trace {
                    side: s,
                    path: path.clone(),
                    decision: format!("keep directory: {t} changed entries inside it"),
                });
            }
        }
        let depth = path.depth();
        let children: Vec<RelPath> = range_within(&self.known, path)
            .filter(|(k, _)| k.depth() == depth + 1)
            .map(|(k, _)| k.clone())
            .collect();
        for c in children {
            if pend[t.idx()].state.get(&c).is_some_and(Option::is_some) {
                continue;
            }
            self.remove_on(b, pend, trashed, t, &c, why);
        }
    }

    fn copy_to(
        &mut self,
        b: &mut Batch,
        t: Side,
        path: &RelPath,
        sig: Sig,
        base: Option<Sig>,
        why: &str,
    ) {
        let s = t.other();
        let attr_only = base.is_some_and(|k| {
            k.kind == sig.kind
                && k.kind != Kind::Dir
                && k.size == sig.size
                && k.mtime_ns == sig.mtime_ns
        });
        if sig.kind == Kind::Dir {
            b.ops[t.idx()].push(Op::Mkdir {
                path: path.clone(),
                mode: sig.mode,
            });
            if self.tracing {
                b.traces.push(Trace {
                    side: t,
                    path: path.clone(),
                    decision: format!("mkdir on {t}: {why}"),
                });
            }
        } else if attr_only {
            b.ops[t.idx()].push(Op::SetAttr {
                path: path.clone(),
                mode: Some(sig.mode),
                mtime_ns: None,
            });
            if self.tracing {
                b.traces.push(Trace {
                    side: t,
                    path: path.clone(),
                    decision: format!("chmod {:o} on {t}: {why}", sig.mode),
                });
            }
        } else {
            if let Some(k) = base.filter(|k| k.kind == Kind::Dir) {
                // A directory replaced by a file: the directory goes to the trash.
                let _ = k;
                b.ops[t.idx()].push(Op::Trash { path: path.clone() });
                self.k_remove_within(path);
            }
            b.copies[t.idx()].push((path.clone(), sig));
            self.inflight[t.idx()].insert(path.clone(), base);
            if self.tracing {
                b.traces.push(Trace {
                    side: t,
                    path: path.clone(),
                    decision: format!("copy {}→{}: {why}", s.letter(), t.letter()),
                });
            }
        }
        self.k_insert(path.clone(), sig);
    }

    fn both_changed(&mut self, b: &mut Batch, now: i64, path: &RelPath, l: Sig, r: Sig) {
        if l.same_content(&r) {
            self.k_insert(path.clone(), l);
            if self.tracing {
                b.traces.push(Trace {
                    side: Side::Left,
                    path: path.clone(),
                    decision: "nothing to do: same on both sides".into(),
                });
            }
            return;
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
            b.ops[loser.idx()].push(Op::SetAttr {
                path: path.clone(),
                mode: Some(w.mode),
                mtime_ns: None,
            });
            self.k_insert(path.clone(), w);
            if self.tracing {
                b.traces.push(Trace {
                    side: loser,
                    path: path.clone(),
                    decision: format!(
                        "chmod {:o} on {loser}: directory mode changed on both sides, {reason}",
                        w.mode
                    ),
                });
            }
            return;
        }
        let kept_as = conflict_name(path, now, loser);
        b.ops[loser.idx()].push(Op::Move {
            from: path.clone(),
            to: kept_as.clone(),
        });
        if self.tracing {
            b.traces.push(Trace {
                side: loser,
                path: path.clone(),
                decision: format!("conflict {reason}: keep {loser}'s version as {kept_as}"),
            });
        }
        if lo.kind == Kind::Dir {
            // The losing directory's contents are not listed here: a full
            // merge copies them over.
            b.rescan = true;
        } else {
            b.copies[winner.idx()].push((kept_as.clone(), lo));
        }
        self.k_insert(kept_as.clone(), lo);
        self.copy_to(
            b,
            loser,
            path,
            w,
            None,
            &format!("conflict winner ({reason})"),
        );
        b.conflicts.push(Conflict {
            path: path.clone(),
            winner,
            kept_as,
            reason,
        });
    }

    /// The batch is done. `missed[t]` lists the copies into side `t` that did
    /// not arrive as planned, with what was found afterwards on the source
    /// and on the destination; `ops_failed` tells that some helper operation
    /// failed (the index then cannot be trusted: both sides are rescanned).
    pub fn complete(&mut self, missed: [Vec<Copied>; 2], ops_failed: bool) {
        for t in Side::BOTH {
            let s = t.other();
            for c in &missed[t.idx()] {
                let base = self
                    .undo
                    .iter()
                    .find(|(p, _)| *p == c.path)
                    .map_or_else(|| self.known.get(&c.path).copied(), |(_, old)| *old);
                match (c.src, c.dst) {
                    // rsync read a newer version of the source: both agree.
                    (Some(a), Some(b)) if a.same_content(&b) => self.k_insert(c.path.clone(), b),
                    // Deleted on the source while we copied it: what arrived
                    // is ours, and the deletion follows it.
                    (None, Some(b)) => {
                        self.k_insert(c.path.clone(), b);
                        self.pending[s.idx()].state.insert(c.path.clone(), None);
                    }
                    // Not copied (unreadable source, refused destination):
                    // left as it was; the next change or rescan retries.
                    (Some(_), None) | (None, None) => self.k_restore(&c.path, base),
                    // The destination was written meanwhile: merge it again.
                    (Some(_), Some(b)) => {
                        self.k_restore(&c.path, base);
                        if !base.is_some_and(|k| k.same_content(&b)) {
                            self.pending[t.idx()]
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
        if ops_failed {
            if self.failed_ops_rescans < 1 {
                self.failed_ops_rescans += 1;
                self.pending[0].rescan = true;
            }
        } else {
            self.failed_ops_rescans = 0;
        }
    }

    fn k_restore(&mut self, path: &RelPath, base: Option<Sig>) {
        self.changed.insert(path.clone());
        match base {
            Some(b) => self.known.insert(path.clone(), b),
            None => self.known.remove(path),
        };
    }

    /// `--skip-initial-sync`: after both full scans, take into the index
    /// what is already the same on both sides and forget the differences
    /// (they are synced when next changed).
    pub fn adopt_equal(&mut self) {
        let [l, r] = std::mem::take(&mut self.pending);
        for (path, ls) in l.state {
            if let (Some(a), Some(Some(b))) = (ls, r.state.get(&path)) {
                if a.same_content(b) {
                    self.k_insert(path, a);
                }
            }
        }
    }

    /// Forget what is pending (after a dry-run batch).
    pub fn discard_pending(&mut self) {
        self.pending = Default::default();
    }

    /// A copy of the index, to restore after a dry run.
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<RelPath, Sig> {
        self.known.clone()
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
