//! The simulated world: two replicas (trees, trashes, the filters' queues)
//! and the engine; the clock, the filters' reports, and the engine's side
//! of a sync (deliver, plan, complete, settle).

mod checks;
mod execute;
mod helpers;
mod users;

pub(crate) use checks::{Check, STRICT};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use twinsync::engine::{Applied, Batch, Engine, Policy, Report};
use twinsync::side::Side;
use twinsync_filter::Excludes;
use twinsync_proto::{Entry, Event, Expect, OpFail, RelPath, Sig};

use crate::actions::During;
use crate::schedules::Echoes;
use crate::tree::{digest, within, Node, Tree};
use crate::{NOW_BASE, SETTLE_ROUNDS};

#[derive(Default)]
struct Replica {
    tree: Tree,
    trash: Vec<(RelPath, Node)>,
    /// `.twinsync/conflicts/` (conflict losers kept aside).
    conflicts: Vec<(RelPath, Node)>,
    /// Events reported by the filter and not yet handed to the engine, with
    /// their sequence numbers.
    queue: VecDeque<(u64, Event)>,
    /// Sequence number of the last event reported.
    seq: u64,
    /// Sequence number of the last event handed to the engine (or lost).
    delivered: u64,
    /// `delivered` when the engine last planned.
    planned: u64,
    /// Paths users changed, with the sequence number of the event that
    /// reports it: outstanding until the engine planned after seeing it.
    touches: Vec<(u64, RelPath)>,
}

pub(crate) struct World {
    engine: Engine,
    reps: [Replica; 2],
    clock: i64,
    next_ino: u64,
    /// The last ctime given (a global counter: every status change of an
    /// inode gets a new one).
    next_ctime: u64,
    next_content: u64,
    slow_filter: bool,
    lazy_filter: bool,
    /// Random schedules avoid the sequences of known bugs (hand-written
    /// cases do not).
    pub(crate) avoid_known_bugs: bool,
    /// The paths the rest of the running batch writes or removes
    /// unconditionally (no `Expect`), per side: see
    /// [`World::unconditional_avoided`].
    unconditional: Vec<(Side, RelPath)>,
    /// The paths where the running batch's writes were refused.
    refused: Vec<(Side, RelPath)>,
    /// The index when the running batch was planned.
    known_before: BTreeMap<RelPath, twinsync::engine::Known>,
    /// Versions an unconditional operation trashed or replaced although the
    /// index did not have them (see [`World::unconditional_loss`]).
    bug_trashed: BTreeSet<u64>,
    /// Races allowed (users act while batches run, events arrive late).
    races: bool,
    /// Every content a user wrote.
    written: BTreeSet<u64>,
    /// Contents a user deleted or overwrote.
    exempt: BTreeSet<u64>,
    /// Paths a user deleted while both replicas agreed on them, and by whom.
    deleted: BTreeMap<RelPath, (String, (bool, u64))>,
    /// Directories created by the current helper operation or copy.
    created_dirs: Vec<(Side, RelPath)>,
    pub(crate) log: Vec<String>,
    /// Helper operations that failed or were refused and copies that did
    /// not arrive.
    pub(crate) mishaps: Vec<String>,
    /// Paths the engine found looping (always a bug).
    loops: Vec<String>,
    /// Helper operations of the last batch that failed.
    failed_ops: usize,
    /// Both trees as they were when the helper operations of the running
    /// batch started (what a directory they create stands for).
    before_ops: Option<[Tree; 2]>,
    /// What the last batch trashed or moved away, per side.
    removed_last: [Vec<RelPath>; 2],
}

pub(crate) fn l(s: Side) -> char {
    s.letter()
}

impl World {
    pub(crate) fn new(slow_filter: bool, lazy_filter: bool, races: bool) -> Self {
        let mut engine = Engine::new(Excludes::default(), Policy::default());
        // Reports are ordered against the batches' writes by marks, as live.
        engine.set_ordered(true);
        // In half the scenarios, batches are cut after each action, as a big
        // merge's are after many: what is left over must be planned later as
        // if in one batch.
        if slow_filter {
            engine.min_batch = 1;
        }
        // In the other half, every directory move is a big one (one undo
        // record, the index split and joined, a snapshot).
        if !slow_filter {
            engine.big_move = 0;
        }
        let mut w = World {
            engine,
            reps: Default::default(),
            clock: 0,
            next_ino: 1,
            next_ctime: 1,
            next_content: 1,
            slow_filter,
            lazy_filter,
            avoid_known_bugs: true,
            unconditional: Vec::new(),
            refused: Vec::new(),
            known_before: BTreeMap::new(),
            bug_trashed: BTreeSet::new(),
            races,
            written: BTreeSet::new(),
            exempt: BTreeSet::new(),
            deleted: BTreeMap::new(),
            created_dirs: Vec::new(),
            log: Vec::new(),
            mishaps: Vec::new(),
            loops: Vec::new(),
            failed_ops: 0,
            removed_last: Default::default(),
            before_ops: None,
        };
        // Start from two empty replicas, merged.
        w.engine.load_scan(Side::Left, Vec::new());
        w.engine.load_scan(Side::Right, Vec::new());
        w
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock * 1_000_000_007
    }

    fn ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }

    fn ctime(&mut self) -> u64 {
        self.next_ctime += 1;
        self.next_ctime
    }

    /// A new content number; with `residue`, one of the same size (the
    /// size of a file is its content modulo 5).
    fn fresh_content(&mut self, residue: Option<u64>) -> u64 {
        let mut c = self.next_content;
        if let Some(r) = residue {
            while c % 5 != r {
                c += 1;
            }
        }
        self.next_content = c + 1;
        c
    }

    /// lstat of `p` on `s` as the helper answers it (a path through a
    /// symlink is refused).
    fn stat(&self, s: Side, p: &RelPath) -> Result<Option<Sig>, OpFail> {
        self.resolve(s, p).map_err(OpFail::Failed)?;
        Ok(self.tree(s).get(p).map(Node::sig))
    }

    /// lstat of `p` on `s`, `None` when refused or absent.
    fn stat_or_none(&self, s: Side, p: &RelPath) -> Option<Sig> {
        self.stat(s, p).ok().flatten()
    }

    pub(crate) fn tree(&self, s: Side) -> &Tree {
        &self.reps[s.idx()].tree
    }

    fn tree_mut(&mut self, s: Side) -> &mut Tree {
        &mut self.reps[s.idx()].tree
    }

    fn emit(&mut self, s: Side, ev: Event) {
        let r = &mut self.reps[s.idx()];
        r.seq += 1;
        r.queue.push_back((r.seq, ev));
    }

    fn emit_changed(&mut self, s: Side, p: &RelPath) {
        if let Some(n) = self.tree(s).get(p) {
            let sig = n.sig();
            self.emit(
                s,
                Event::Changed {
                    path: p.clone(),
                    sig,
                },
            );
        }
    }

    /// A helper or rsync created directory `p`: the filter reports it (and,
    /// when slow, what is inside it by the time it scans it).
    fn dir_created(&mut self, s: Side, p: &RelPath) {
        if self.slow_filter {
            self.created_dirs.push((s, p.clone()));
        } else {
            self.emit_changed(s, p);
        }
    }

    /// End of a helper operation or a copy: the slow filter catches up.
    fn flush_created(&mut self) {
        for (s, d) in std::mem::take(&mut self.created_dirs) {
            for p in within(self.tree(s), &d) {
                self.emit_changed(s, &p);
            }
        }
    }

    // -- the engine's side -------------------------------------------------

    pub(crate) fn deliver(&mut self, s: Side, count: usize) {
        for _ in 0..count {
            let Some((seq, ev)) = self.reps[s.idx()].queue.pop_front() else {
                return;
            };
            self.reps[s.idx()].delivered = seq;
            let ev = match ev {
                // The filter lstats the path now. (Were it gone, the filter
                // would report nothing: then the model takes it as handled
                // in time. A filter lagging behind a directory's rename
                // would never report what was made in it just before: a
                // race of the filter, not modelled.)
                Event::Changed { path, sig } if self.lazy_filter => {
                    let sig = self.tree(s).get(&path).map_or(sig, Node::sig);
                    Event::Changed { path, sig }
                }
                ev => ev,
            };
            let shown = format!("{ev:?}");
            let t = self.engine.on_event(s, ev);
            self.log.push(format!("  {} event {shown} -> {t}", l(s)));
        }
    }

    pub(crate) fn deliver_all(&mut self) {
        self.deliver(Side::Left, usize::MAX);
        self.deliver(Side::Right, usize::MAX);
    }

    pub(crate) fn overflow(&mut self, s: Side, keep: u8) {
        let r = &mut self.reps[s.idx()];
        let keep = keep as usize % (r.queue.len() + 1);
        let lost = r.queue.len() - keep;
        r.queue.truncate(keep);
        self.emit(
            s,
            Event::RescanNeeded {
                reason: "queue overflow".into(),
            },
        );
        self.log
            .push(format!("{}: overflow ({lost} queued events lost)", l(s)));
    }

    /// What the runner does before each plan: the files the engine cannot
    /// tell apart by size, mtime and stamp are hashed on both sides.
    fn compare(&mut self) {
        let paths = self.engine.to_compare();
        if paths.is_empty() {
            return;
        }
        let hash = |t: &Tree, p: &RelPath| match t.get(p) {
            Some(Node::File { content, .. }) => Some(digest(*content)),
            _ => None,
        };
        let results: Vec<_> = paths
            .into_iter()
            .map(|p| {
                let ok = |s: Side| self.resolve(s, &p).is_ok();
                let hl = hash(self.tree(Side::Left), &p).filter(|_| ok(Side::Left));
                let hr = hash(self.tree(Side::Right), &p).filter(|_| ok(Side::Right));
                (p, hl, hr)
            })
            .collect();
        let shown: Vec<String> = results
            .iter()
            .map(|(p, a, b)| {
                let c = |d: &Option<[u8; 32]>| {
                    d.map_or("-".to_string(), |d| {
                        format!("#{}", u64::from_le_bytes(d[..8].try_into().unwrap()))
                    })
                };
                format!("{p} ({} {})", c(a), c(b))
            })
            .collect();
        self.log.push(format!("compare: {}", shown.join(", ")));
        self.engine.compared(results);
    }

    pub(crate) fn plan(&mut self) -> Batch {
        self.compare();
        self.known_before = self.engine.known().clone();
        let now = NOW_BASE + self.clock;
        self.tick();
        let b = self.engine.plan(now);
        for p in &b.loops {
            self.loops.push(format!("{p} found looping"));
        }
        if !b.rescan && !b.more {
            // What was delivered is now planned for (a rescan defers it all
            // to the next batch, a cut batch the rest to the next ones).
            for r in &mut self.reps {
                r.planned = r.delivered;
                let planned = r.planned;
                r.touches.retain(|(seq, _)| *seq > planned);
            }
        }
        let mut s = String::from("plan:");
        for side in Side::BOTH {
            if !b.ops[side.idx()].is_empty() {
                let _ = write!(s, "\n    ops {}: {:?}", l(side), b.ops[side.idx()]);
            }
            if !b.copies[side.idx()].is_empty() {
                let c: Vec<String> = b.copies[side.idx()]
                    .iter()
                    .map(|c| {
                        format!(
                            "{} ({:?} {} {}, {:?})",
                            c.path, c.sig.kind, c.sig.size, c.sig.mtime_ns, c.expect
                        )
                    })
                    .collect();
                let _ = write!(s, "\n    copies into {}: {c:?}", l(side));
            }
        }
        if b.rescan {
            s.push_str("\n    rescan");
        }
        for t in &b.traces {
            let _ = write!(s, "\n    [{} {}] {t}", l(t.side), t.path);
        }
        self.log.push(s);
        b
    }

    pub(crate) fn rescan(&mut self) {
        for s in Side::BOTH {
            let entries: Vec<Entry> = self
                .tree(s)
                .iter()
                .map(|(path, n)| Entry {
                    path: path.clone(),
                    sig: n.sig(),
                })
                .collect();
            self.engine.load_scan(s, entries);
        }
        self.log.push("rescan: both replicas listed".into());
    }

    /// The engine takes the helpers' answers (as the runner, only after a
    /// batch that was not empty).
    pub(crate) fn complete(&mut self, b: &Batch, report: Report) {
        self.refused.clear();
        if b.is_empty() {
            return;
        }
        let mut s = String::from("  complete:");
        for t in Side::BOTH {
            for a in &report.applied[t.idx()] {
                if let Applied::Refused(p, found) = a {
                    let _ = write!(s, "\n    {} refused {p} (found {found:?})", l(t));
                }
            }
            for c in &report.missed[t.idx()] {
                let _ = write!(s, "\n    {} missed {c:?}", l(t));
            }
        }
        self.log.push(s);
        for t in self.engine.complete(report) {
            self.log.push(format!("  [{} {}] {t}", l(t.side), t.path));
        }
        // The runner asks each side the batch wrote on for a mark: the
        // helper makes it after everything it did, so its report comes
        // after the reports of the batch's writes (and of what users did
        // meanwhile) in that side's queue.
        for s in Side::BOTH {
            if self.engine.wants_mark(s) {
                let n = self.reps[s.idx()].seq + 1;
                self.emit(s, Event::Mark { n });
                self.engine.marked(s, Some(n));
                self.log.push(format!("  mark {n} asked of {}", l(s)));
            }
        }
    }

    pub(crate) fn sync(
        &mut self,
        deliver_first: bool,
        during: &[(u8, During)],
        echoes: Echoes,
        left_first: bool,
    ) {
        if deliver_first {
            self.deliver_all();
        }
        // One sync is one batch, or the batches a cut one continues in (as
        // the brain runs them back to back); users act during the first.
        let mut during = during;
        loop {
            let b = self.plan();
            let report = self.execute(&b, left_first, std::mem::take(&mut during));
            if echoes == Echoes::BeforeComplete {
                self.deliver_all();
            }
            self.complete(&b, report);
            if b.rescan {
                self.rescan();
            }
            if echoes == Echoes::AfterComplete {
                self.deliver_all();
            }
            if !b.more {
                break;
            }
        }
    }

    /// Deliver everything and run batches until the engine has nothing left.
    pub(crate) fn settle(&mut self) -> Result<(), String> {
        self.log.push("settle".into());
        for _ in 0..SETTLE_ROUNDS {
            self.deliver_all();
            if !self.engine.has_work() {
                return Ok(());
            }
            let b = self.plan();
            let report = self.execute(&b, true, &[]);
            self.deliver_all();
            self.complete(&b, report);
            if b.rescan {
                self.rescan();
            }
        }
        Err(format!(
            "did not settle within {SETTLE_ROUNDS} batches; still pending: {}",
            self.engine.queue_depth()
        ))
    }

    /// Settle, then check the invariants (after a rescan of both replicas
    /// when `check` says so).
    pub(crate) fn settle_and_check(&mut self, check: Check) -> Result<(), String> {
        self.settle()?;
        if check.after_rescan {
            for s in Side::BOTH {
                self.emit(
                    s,
                    Event::RescanNeeded {
                        reason: "final check".into(),
                    },
                );
            }
            self.settle()?;
        }
        self.check(check.deletions, check.trash_ok)
    }
}

/// True when `e` does not tell one version from another (any entry, or any
/// of a kind: a directory's contents are not checked either): what such an
/// operation replaces or trashes may be a version the brain never saw.
pub(crate) fn blind(e: Expect) -> bool {
    matches!(e, Expect::Any | Expect::Kind(_))
}
