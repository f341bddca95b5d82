//! Model test of the pure decision engine.
//!
//! Two replicas are simulated as in-memory trees (names `a`, `b`, `c`, three
//! levels deep, so paths collide often), with inodes and ctimes: every
//! create, write, chmod, rename or install gives the entry a new ctime (a
//! global counter), an install or a `cp -p` restore a new inode, so a new
//! version always has a new stamp. Random user operations (create, write,
//! same-size same-mtime overwrite (a tie), `cp -p` restore of other or the
//! same bytes, chmod, symlink, mkdir, rm, rm -r, rename, also over a file
//! or an empty directory) are applied to either tree and turned into the
//! events the inotify filter reports, with the lstat of the path (when the
//! filter is "lazy", as it is when the engine takes the report).
//!
//! Before each plan the files the engine names (`to_compare`) are hashed on
//! both sides (`compared`). The engine's batches are carried out on the
//! trees the way `execute.rs` and the helpers do it: helper operations, then
//! the copies, each installed by `place` only if the destination holds what
//! it expects (`Expect`), what it replaces kept in the trash; a refusal is
//! reported `Applied::Refused` with what was found, everything else that
//! acted `Applied::Done` with its lstat, copies that did not arrive as
//! missed; `complete(Report)` takes it all and replays the events it held.
//! Directories a helper creates and chmods are reported, moves, trashes and
//! symlinks are not, installs are (the filter reports a new directory at
//! once, or, when "slow", only after the write is over, together with what
//! was put inside it). Queue overflows drop queued events and are followed
//! by `RescanNeeded`.
//!
//! Schedules ([`Mode`]): *calm* ones hand every event to the engine before
//! it plans; *racing* ones also let events reach it after the next batch was
//! planned and let users act while a batch runs, between its own writes
//! (also on the very paths it writes); *late echoes* also let the events a
//! batch caused arrive after the next batch was planned.
//!
//! After every settle (all events delivered, batches planned and executed
//! until the engine has nothing left to do) the invariants are checked:
//! 1. both trees are equal (inodes and directory mtimes aside);
//! 2. no version is lost: every content a user wrote, unless a user deleted
//!    or overwrote it (which they can only do to what they saw), is still in
//!    a tree or kept as a conflict, not in a trash (the checks after a
//!    rescan allow the trash);
//! 3. no deletion is undone: what a user removed while both replicas agreed
//!    on it (and nobody changed it on the other side before that was
//!    synced) is not back afterwards;
//! 4. the engine's index describes both trees, and a file's stamps there are
//!    its current ones (or not observed);
//! 5. when calm: every helper operation succeeds and every copy arrives;
//! 6. no path is found looping.
//!
//! Known bugs: the ignored hand-written cases at the end are the minimal
//! sequences of the bugs the model found and that are not fixed yet. The
//! random schedules avoid one class of them, the operations that act on
//! whatever is at their path (see [`World::unconditional_avoided`]), so
//! that they keep checking the rest, and run with a fixed seed
//! (`MODEL_SEED=random` and `PROPTEST_CASES` for a hunt): the others, rare,
//! are still found by long random hunts (see the racing test). The other
//! hand-written cases are bugs the model found and that were fixed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use proptest::prelude::*;
use twinsync::engine::{Applied, Batch, Copied, Copy, Engine, Policy, Report};
use twinsync::side::Side;
use twinsync_filter::Excludes;
use twinsync_proto::{Entry, Event, Expect, Kind, Op, OpFail, RelPath, Sig};

const NAMES: [&str; 3] = ["a", "b", "c"];
const FILE_MODES: [u32; 3] = [0o644, 0o600, 0o755];
const DIR_MODES: [u32; 2] = [0o755, 0o700];
/// Mode of directories created by `mkdir -p` in the helpers (umask 022).
const DEFAULT_DIR_MODE: u32 = 0o755;
const MAX_DEPTH: usize = 3;
const NOW_BASE: i64 = 1_700_000_000;
const SETTLE_ROUNDS: usize = 20;

// ---------------------------------------------------------------------------
// Replica trees

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
        mtime: i64,
        ino: u64,
        ctime: u64,
        /// Which user `mkdir` this directory stands for (kept by moves and
        /// by the copies the engine makes of it on the other side).
        id: u64,
    },
    File {
        content: u64,
        mtime: i64,
        mode: u32,
        ino: u64,
        ctime: u64,
    },
    Symlink {
        content: u64,
        mtime: i64,
        ino: u64,
        ctime: u64,
    },
}

/// A node without its inode and (for directories) mtime: what must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Norm {
    Dir { mode: u32 },
    File { content: u64, mtime: i64, mode: u32 },
    Symlink { content: u64, mtime: i64 },
}

impl Node {
    fn sig(&self) -> Sig {
        match *self {
            Node::Dir {
                mode,
                mtime,
                ino,
                ctime,
                ..
            } => Sig {
                kind: Kind::Dir,
                size: 0,
                mtime_ns: mtime,
                mode,
                ino,
                ctime_ns: ctime as i64,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 1,
                allocated: 0,
                xattrs: Default::default(),
            },
            Node::File {
                content,
                mtime,
                mode,
                ino,
                ctime,
            } => Sig {
                kind: Kind::File,
                // Sizes collide on purpose: only mtimes (or, for a tie or a
                // `cp -p` restore, only stamps and bytes) tell edits apart.
                size: content % 5,
                mtime_ns: mtime,
                mode,
                ino,
                ctime_ns: ctime as i64,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 1,
                allocated: 0,
                xattrs: Default::default(),
            },
            Node::Symlink {
                content,
                mtime,
                ino,
                ctime,
            } => Sig {
                kind: Kind::Symlink,
                size: link_target(content).len() as u64,
                mtime_ns: mtime,
                mode: 0o777,
                ino,
                ctime_ns: ctime as i64,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 1,
                allocated: 0,
                xattrs: Default::default(),
            },
        }
    }

    fn norm(&self) -> Norm {
        match *self {
            Node::Dir { mode, .. } => Norm::Dir { mode },
            Node::File {
                content,
                mtime,
                mode,
                ..
            } => Norm::File {
                content,
                mtime,
                mode,
            },
            Node::Symlink { content, mtime, .. } => Norm::Symlink { content, mtime },
        }
    }

    /// What the node is, beyond its attributes: a directory's id or a
    /// file's or symlink's content.
    fn identity(&self) -> (bool, u64) {
        match *self {
            Node::Dir { id, .. } => (true, id),
            Node::File { content, .. } | Node::Symlink { content, .. } => (false, content),
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }

    fn content(&self) -> Option<u64> {
        match *self {
            Node::Dir { .. } => None,
            Node::File { content, .. } | Node::Symlink { content, .. } => Some(content),
        }
    }

    /// The same entry as a new inode (a copy renamed into place).
    fn reborn(&self, new_ino: u64, new_ctime: u64) -> Node {
        let mut n = self.clone();
        match &mut n {
            Node::Dir { ino, ctime, .. }
            | Node::File { ino, ctime, .. }
            | Node::Symlink { ino, ctime, .. } => {
                *ino = new_ino;
                *ctime = new_ctime;
            }
        }
        n
    }

    /// The inode's status changed (write, chmod, rename): a new ctime.
    fn set_ctime(&mut self, new: u64) {
        match self {
            Node::Dir { ctime, .. } | Node::File { ctime, .. } | Node::Symlink { ctime, .. } => {
                *ctime = new;
            }
        }
    }
}

type Tree = BTreeMap<RelPath, Node>;

/// The target of a symlink whose content is `c`.
fn link_target(c: u64) -> Vec<u8> {
    format!("t{c}").into_bytes()
}

fn content_of_target(target: &[u8]) -> Option<u64> {
    std::str::from_utf8(target.strip_prefix(b"t")?)
        .ok()?
        .parse()
        .ok()
}

/// `p` and everything below it, in path order.
fn within(tree: &Tree, p: &RelPath) -> Vec<RelPath> {
    let mut out: Vec<RelPath> = tree
        .get_key_value(p)
        .map(|(k, _)| k.clone())
        .into_iter()
        .collect();
    let (lo, hi) = p.children_range();
    out.extend(tree.range(lo..hi).map(|(k, _)| k.clone()));
    out
}

fn subtree(tree: &Tree, p: &RelPath) -> Vec<(RelPath, Norm)> {
    within(tree, p)
        .into_iter()
        .map(|k| {
            let n = tree[&k].norm();
            (k, n)
        })
        .collect()
}

/// The ancestors of `p` (root excluded), shallowest first.
fn ancestors(p: &RelPath) -> Vec<RelPath> {
    let mut v = Vec::new();
    let mut cur = p.parent();
    while let Some(a) = cur {
        if a.is_root() {
            break;
        }
        cur = a.parent();
        v.push(a);
    }
    v.reverse();
    v
}

/// Every path a batch writes or removes (helper operations and copies),
/// with the side it acts on.
fn batch_targets(b: &Batch) -> Vec<(Side, RelPath)> {
    let mut v = Vec::new();
    for s in Side::BOTH {
        for op in &b.ops[s.idx()] {
            match op {
                Op::Move { from, to, .. } => v.extend([(s, from.clone()), (s, to.clone())]),
                Op::Trash { path, .. }
                | Op::KeepConflict { path }
                | Op::Mkdir { path, .. }
                | Op::SetAttr { path, .. }
                | Op::Symlink { path, .. }
                | Op::Mknod { path, .. }
                | Op::Link { path, .. }
                | Op::Install { path, .. } => v.push((s, path.clone())),
            }
        }
        v.extend(b.copies[s.idx()].iter().map(|c| (s, c.path.clone())));
    }
    v
}

/// True when the batch `b` moves an entry onto `p` on `t` (which gives
/// what is there a new ctime, before the batch's copy to `p`).
fn moved_onto(b: &Batch, t: Side, p: &RelPath) -> bool {
    b.ops[t.idx()]
        .iter()
        .any(|op| matches!(op, Op::Move { to, .. } if to == p))
}

/// The digest of a file's bytes (the model's content number).
fn digest(content: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&content.to_le_bytes());
    d[8] = 0xd1;
    d
}

fn show_tree(tree: &Tree) -> String {
    let mut s = String::new();
    for (k, n) in tree {
        let _ = write!(s, "\n      {k}: {:?}", n.norm());
    }
    s
}

// ---------------------------------------------------------------------------
// Random operations

#[derive(Debug, Clone)]
enum Action {
    /// Create a file `name` in the `dir`-th directory.
    Create { dir: u8, name: u8, mode: u8 },
    /// Create a symlink.
    Symlink { dir: u8, name: u8 },
    /// Write new content into the `file`-th regular file.
    Write { file: u8 },
    /// Overwrite the `file`-th regular file in place with other bytes of
    /// the same size, keeping its mtime (a same-mtime tie).
    Tie { file: u8 },
    /// Restore the `file`-th regular file `cp -p`-style (a new inode, the
    /// same size, mtime and mode) with other bytes or (`same`) its own.
    Restore { file: u8, same: bool },
    /// chmod the `entry`-th file or directory.
    Chmod { entry: u8, mode: u8 },
    /// Create a directory.
    Mkdir { dir: u8, name: u8, mode: u8 },
    /// Remove the `entry`-th file or symlink.
    Rm { entry: u8 },
    /// Remove the `dir`-th directory (not the root) recursively.
    RmDir { dir: u8 },
    /// Rename the `entry`-th entry to `name` in the `dir`-th directory
    /// (replacing a file there, or an empty directory by a directory).
    Rename { entry: u8, dir: u8, name: u8 },
}

/// How a user rewrites a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// New bytes, a new mtime.
    New,
    /// Other bytes of the same size, the same mtime, in place.
    Tie,
    /// A new inode with the same size, mtime and mode: other bytes, or
    /// (`same`) the same ones.
    Restore { same: bool },
}

/// A user action while a batch runs.
#[derive(Debug, Clone)]
enum During {
    /// Any random action.
    User(Side, Action),
    /// An action on the `target`-th path the batch writes or removes, on
    /// the side it acts on.
    Hit { target: u8, hit: Hit },
    /// A hand-written case's action, named by its paths.
    Named(Side, U),
}

/// What a user does to a path a batch is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hit {
    /// Rewrite the file (create one when there is none).
    Rewrite(How),
    /// Remove the entry (recursively).
    Rm,
}

#[derive(Debug, Clone)]
enum Step {
    User(Side, Action),
    /// Hand up to `count` queued events of `side` to the engine.
    Deliver {
        side: Side,
        count: u8,
    },
    /// Plan a batch (after delivering everything queued, or not), let the
    /// users act while it runs (each before the `slot`-th of its operations
    /// and copies, modulo their number plus one: between its own writes, or
    /// after the last one), execute it, and complete it; its echoes are
    /// handed over as `echoes` says.
    Sync {
        deliver_first: bool,
        during: Vec<(u8, During)>,
        echoes: Echoes,
        left_copy_first: bool,
    },
    /// The kernel queue of `side` overflows: the queued events after the
    /// first `keep` are lost and a `RescanNeeded` follows.
    Overflow {
        side: Side,
        keep: u8,
    },
    /// Settle and check the invariants now.
    Settle,
}

/// When the events a batch caused (and any other queued ones) reach the
/// engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Echoes {
    /// While the batch runs, before `complete`.
    BeforeComplete,
    /// Right after `complete` (and the rescan, if any).
    AfterComplete,
    /// Later: possibly after the next batch was planned.
    Late,
}

/// How adversarial the schedule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every queued event reaches the engine before it plans; users do not
    /// act while a batch runs; echoes arrive before the next batch.
    Calm,
    /// Events may reach the engine after the next batch was planned, and
    /// users act while batches run; echoes still arrive before the next batch.
    Races,
    /// As `Races`, and the echoes of a batch may arrive after the next batch
    /// was planned.
    LateEchoes,
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Left), Just(Side::Right)]
}

/// A random user action; with `ties`, also same-size, same-mtime rewrites.
fn action(ties: bool) -> impl Strategy<Value = Action> {
    let tie = u32::from(ties);
    let sel = any::<u8>;
    let name = || 0..NAMES.len() as u8;
    prop_oneof![
        4 => (sel(), name(), 0..FILE_MODES.len() as u8)
            .prop_map(|(dir, name, mode)| Action::Create { dir, name, mode }),
        1 => (sel(), name()).prop_map(|(dir, name)| Action::Symlink { dir, name }),
        4 => sel().prop_map(|file| Action::Write { file }),
        tie => sel().prop_map(|file| Action::Tie { file }),
        tie => (sel(), any::<bool>()).prop_map(|(file, same)| Action::Restore { file, same }),
        2 => (sel(), 0..3u8).prop_map(|(entry, mode)| Action::Chmod { entry, mode }),
        3 => (sel(), name(), 0..DIR_MODES.len() as u8)
            .prop_map(|(dir, name, mode)| Action::Mkdir { dir, name, mode }),
        2 => sel().prop_map(|entry| Action::Rm { entry }),
        1 => sel().prop_map(|dir| Action::RmDir { dir }),
        3 => (sel(), sel(), name()).prop_map(|(entry, dir, name)| Action::Rename { entry, dir, name }),
    ]
}

fn step(mode: Mode, ties: bool) -> impl Strategy<Value = Step> {
    let races = mode != Mode::Calm;
    let during = if races {
        let tie = u32::from(ties);
        let hit = prop_oneof![
            2 => Just(Hit::Rewrite(How::New)),
            tie => Just(Hit::Rewrite(How::Tie)),
            tie => Just(Hit::Rewrite(How::Restore { same: false })),
            tie => Just(Hit::Rewrite(How::Restore { same: true })),
            1 => Just(Hit::Rm),
        ];
        let during = prop_oneof![
            (side(), action(ties)).prop_map(|(s, a)| During::User(s, a)),
            (any::<u8>(), hit).prop_map(|(target, hit)| During::Hit { target, hit }),
        ];
        proptest::collection::vec((any::<u8>(), during), 0..3).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let deliver_first = if races {
        any::<bool>().boxed()
    } else {
        Just(true).boxed()
    };
    let echoes = if mode == Mode::LateEchoes {
        prop_oneof![
            Just(Echoes::BeforeComplete),
            Just(Echoes::AfterComplete),
            Just(Echoes::Late)
        ]
        .boxed()
    } else {
        prop_oneof![Just(Echoes::BeforeComplete), Just(Echoes::AfterComplete)].boxed()
    };
    prop_oneof![
        12 => (side(), action(ties)).prop_map(|(s, a)| Step::User(s, a)),
        2 => (side(), 1..4u8).prop_map(|(side, count)| Step::Deliver { side, count }),
        4 => (deliver_first, during, echoes, any::<bool>()).prop_map(
            |(deliver_first, during, echoes, left_copy_first)| Step::Sync {
                deliver_first,
                during,
                echoes,
                left_copy_first,
            }
        ),
        1 => (side(), any::<u8>()).prop_map(|(side, keep)| Step::Overflow { side, keep }),
        1 => Just(Step::Settle),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    /// The filter reports a directory created by a helper or rsync only when
    /// the write is over (its scan then lists what was put inside), instead
    /// of right away.
    slow_filter: bool,
    /// The filter lstats a changed path only when the engine takes its
    /// report (the lstat then describes the path at that time, if it is
    /// still there), instead of right away.
    lazy_filter: bool,
    steps: Vec<Step>,
}

/// With `ties`, users also make same-size, same-mtime rewrites (ties and
/// `cp -p` restores).
fn scenario(mode: Mode, ties: bool, max_steps: usize) -> impl Strategy<Value = Scenario> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(step(mode, ties), 1..max_steps),
    )
        .prop_map(|(slow_filter, lazy_filter, steps)| Scenario {
            slow_filter,
            lazy_filter,
            steps,
        })
}

// ---------------------------------------------------------------------------
// The world: two replicas, their filters, and the engine

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

struct World {
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
    avoid_known_bugs: bool,
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
    log: Vec<String>,
    /// Helper operations that failed or were refused and copies that did
    /// not arrive.
    mishaps: Vec<String>,
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

fn l(s: Side) -> char {
    s.letter()
}

impl World {
    fn new(slow_filter: bool, lazy_filter: bool, races: bool) -> Self {
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

    fn tree(&self, s: Side) -> &Tree {
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

    // -- users -------------------------------------------------------------

    fn dirs(&self, s: Side) -> Vec<RelPath> {
        let mut v = vec![RelPath::root()];
        v.extend(
            self.tree(s)
                .iter()
                .filter(|(_, n)| n.is_dir())
                .map(|(k, _)| k.clone()),
        );
        v
    }

    fn pick(list: &[RelPath], sel: u8) -> Option<RelPath> {
        (!list.is_empty()).then(|| list[sel as usize % list.len()].clone())
    }

    fn pick_where(&self, s: Side, sel: u8, f: impl Fn(&Node) -> bool) -> Option<RelPath> {
        let v: Vec<RelPath> = self
            .tree(s)
            .iter()
            .filter(|(_, n)| f(n))
            .map(|(k, _)| k.clone())
            .collect();
        Self::pick(&v, sel)
    }

    fn new_path(&self, s: Side, dir: u8, name: u8) -> Option<RelPath> {
        let d = Self::pick(&self.dirs(s), dir)?;
        let p = d.join(NAMES[name as usize % NAMES.len()].as_bytes());
        (!self.tree(s).contains_key(&p)).then_some(p)
    }

    /// Record that a user on `s` changed `paths` (outstanding until planned).
    fn touch(&mut self, s: Side, paths: &[RelPath]) {
        let r = &mut self.reps[s.idx()];
        let seq = r.seq;
        r.touches.extend(paths.iter().map(|p| (seq, p.clone())));
    }

    /// A user wrote at `p`: it and its parents may exist again.
    fn wrote(&mut self, p: &RelPath) {
        self.deleted.remove(p);
        for a in ancestors(p) {
            self.deleted.remove(&a);
        }
    }

    /// True when removing `p` on `s` is a plain deletion: the other side has
    /// the same thing there and no change of it is waiting to be planned.
    fn clean_removal(&self, s: Side, p: &RelPath) -> bool {
        let o = &self.reps[s.other().idx()];
        subtree(self.tree(s), p) == subtree(&o.tree, p)
            && !o
                .touches
                .iter()
                .any(|(seq, q)| *seq > o.planned && q.is_within(p))
    }

    /// A user on `s` is about to remove `p` and everything below it.
    fn removing(&mut self, s: Side, p: &RelPath, how: &str) {
        for q in within(self.tree(s), p) {
            if self.clean_removal(s, &q) {
                let what = self.tree(s)[&q].identity();
                let how = format!("{how} on {s} at t{}", self.clock);
                self.deleted.insert(q, (how, what));
            }
        }
    }

    fn user(&mut self, s: Side, a: &Action) {
        let done = self.user_inner(s, a);
        if let Some(d) = done {
            self.log.push(format!("{}: {d}", l(s)));
        }
    }

    fn user_inner(&mut self, s: Side, a: &Action) -> Option<String> {
        let now = self.tick();
        match *a {
            Action::Create { dir, name, mode } => {
                let p = self.new_path(s, dir, name)?;
                self.create_at(s, &p, FILE_MODES[mode as usize % FILE_MODES.len()], now)
            }
            Action::Symlink { dir, name } => {
                let p = self.new_path(s, dir, name)?;
                if self.unconditional_avoided(s, &p) {
                    return None;
                }
                let content = self.fresh_content(None);
                self.written.insert(content);
                let (ino, ctime) = (self.ino(), self.ctime());
                self.tree_mut(s).insert(
                    p.clone(),
                    Node::Symlink {
                        content,
                        mtime: now,
                        ino,
                        ctime,
                    },
                );
                self.emit_changed(s, &p);
                self.touch(s, std::slice::from_ref(&p));
                self.wrote(&p);
                Some(format!("symlink {p} -> #{content}"))
            }
            Action::Write { file } => {
                let p = self.pick_where(s, file, |n| matches!(n, Node::File { .. }))?;
                self.rewrite(s, &p, How::New, now)
            }
            Action::Tie { file } => {
                let p = self.pick_where(s, file, |n| matches!(n, Node::File { .. }))?;
                self.rewrite(s, &p, How::Tie, now)
            }
            Action::Restore { file, same } => {
                let p = self.pick_where(s, file, |n| matches!(n, Node::File { .. }))?;
                self.rewrite(s, &p, How::Restore { same }, now)
            }
            Action::Chmod { entry, mode } => {
                let p = self.pick_where(s, entry, |n| !matches!(n, Node::Symlink { .. }))?;
                if self.unconditional_avoided(s, &p) {
                    return None;
                }
                let ctime = self.ctime();
                let n = self.tree_mut(s).get_mut(&p).expect("picked");
                n.set_ctime(ctime);
                let new = match n {
                    Node::Dir { mode: m, .. } => {
                        *m = DIR_MODES[mode as usize % DIR_MODES.len()];
                        *m
                    }
                    Node::File { mode: m, .. } => {
                        *m = FILE_MODES[mode as usize % FILE_MODES.len()];
                        *m
                    }
                    Node::Symlink { .. } => unreachable!(),
                };
                self.emit_changed(s, &p);
                self.touch(s, std::slice::from_ref(&p));
                self.wrote(&p);
                Some(format!("chmod {new:o} {p}"))
            }
            Action::Mkdir { dir, name, mode } => {
                let p = self.new_path(s, dir, name)?;
                if p.depth() > MAX_DEPTH || self.unconditional_avoided(s, &p) {
                    return None;
                }
                let (ino, ctime) = (self.ino(), self.ctime());
                let mode = DIR_MODES[mode as usize % DIR_MODES.len()];
                let id = self.fresh_content(None);
                self.tree_mut(s).insert(
                    p.clone(),
                    Node::Dir {
                        mode,
                        mtime: now,
                        ino,
                        ctime,
                        id,
                    },
                );
                self.emit_changed(s, &p);
                self.touch(s, std::slice::from_ref(&p));
                self.wrote(&p);
                Some(format!("mkdir {p} ({mode:o})"))
            }
            Action::Rm { entry } => {
                let p = self.pick_where(s, entry, |n| !n.is_dir())?;
                self.rm_at(s, &p)
            }
            Action::RmDir { dir } => {
                let p = self.pick_where(s, dir, Node::is_dir)?;
                self.rm_at(s, &p)
            }
            Action::Rename { entry, dir, name } => {
                let from = self.pick_where(s, entry, |_| true)?;
                let d = Self::pick(&self.dirs(s), dir)?;
                let to = d.join(NAMES[name as usize % NAMES.len()].as_bytes());
                if to.is_within(&from) || to.depth() > MAX_DEPTH + 1 {
                    return None;
                }
                if self.unconditional_avoided(s, &from) || self.unconditional_avoided(s, &to) {
                    return None;
                }
                let src = self.tree(s)[&from].clone();
                if src.is_dir()
                    && within(self.tree(s), &from)
                        .iter()
                        .any(|q| q.depth() - from.depth() + to.depth() > MAX_DEPTH + 1)
                {
                    return None;
                }
                let mut what = format!("mv {from} {to}");
                match self.tree(s).get(&to) {
                    None => {}
                    Some(Node::Dir { .. }) => {
                        // Only a directory over an empty directory.
                        if !src.is_dir() || within(self.tree(s), &to).len() > 1 {
                            return None;
                        }
                        what.push_str(" (over an empty directory)");
                        self.tree_mut(s).remove(&to);
                    }
                    Some(n) => {
                        if src.is_dir() {
                            return None;
                        }
                        let c = n.content().expect("not a dir");
                        self.exempt.insert(c);
                        let _ = write!(what, " (over #{c})");
                        self.tree_mut(s).remove(&to);
                    }
                }
                self.removing(s, &from, "mv");
                let moved: Vec<(RelPath, Node)> = within(self.tree(s), &from)
                    .into_iter()
                    .map(|k| {
                        let n = self.tree_mut(s).remove(&k).expect("listed");
                        (k, n)
                    })
                    .collect();
                let mut paths: Vec<RelPath> = Vec::new();
                for (k, n) in moved {
                    let nk = k.rebase(&from, &to).expect("within");
                    paths.push(k);
                    paths.push(nk.clone());
                    self.wrote(&nk);
                    self.tree_mut(s).insert(nk, n);
                }
                // A rename changes the moved inode's ctime.
                let ctime = self.ctime();
                let moved = self.tree_mut(s).get_mut(&to).expect("moved");
                moved.set_ctime(ctime);
                let sig = moved.sig();
                self.emit(
                    s,
                    Event::Moved {
                        from: from.clone(),
                        to: to.clone(),
                        sig,
                    },
                );
                self.touch(s, &paths);
                Some(what)
            }
        }
    }

    /// KNOWN BUG (reported; `a_file_made_where_a_batch_makes_a_directory_is_kept`):
    /// the helper operations `Mkdir`, `Move`, `SetAttr`, `KeepConflict`,
    /// and trashes, symlinks and copies expecting `Any`, act on
    /// whatever is there: a user's write there while the batch runs, before
    /// the operation, is trashed (or, under a symlink, gone). The random
    /// schedules do not act on those paths then: true when `p` on `s` is
    /// one of them (or above or below one).
    ///
    /// KNOWN ENGINE BUG (reported; `a_file_changed_again_after_its_refusal_keeps_its_stamp`):
    /// `complete` takes what a refused write found as the side's state,
    /// over a later report of the same path: a user's change there after the
    /// refusal and before `complete` leaves a stale stamp in the index. The
    /// random schedules do not change such a path then either.
    fn unconditional_avoided(&self, s: Side, p: &RelPath) -> bool {
        self.avoid_known_bugs
            && self
                .unconditional
                .iter()
                .chain(&self.refused)
                .any(|(t, q)| *t == s && (q.is_within(p) || p.is_within(q)))
    }

    /// KNOWN BUG (as [`World::unconditional_avoided`]): an operation without
    /// `Expect` is about to trash or replace what is at or below `p` on `s`;
    /// the versions there that the index did not have when the batch was
    /// planned (a user's write whose report had not reached the engine yet)
    /// are noted: losing them is that bug.
    fn unconditional_loss(&mut self, s: Side, p: &RelPath, what: &str) {
        for k in within(self.tree(s), p) {
            let n = &self.tree(s)[&k];
            let Some(c) = n.content() else { continue };
            let seen = self.known_before.get(&k).is_some_and(|kn| match n {
                Node::File { .. } => kn.stamps[s.idx()] == n.sig().stamp(),
                _ => kn.same_content(&n.sig()),
            });
            if !seen && !self.exempt.contains(&c) {
                self.log.push(format!(
                    "  !! (known bug: unconditional {what}) {} {k} #{c} replaced unseen",
                    l(s)
                ));
                self.bug_trashed.insert(c);
            }
        }
    }

    /// A user creates the file `p` on `s` (its parent exists).
    fn create_at(&mut self, s: Side, p: &RelPath, mode: u32, now: i64) -> Option<String> {
        if self.unconditional_avoided(s, p) {
            return None;
        }
        let content = self.fresh_content(None);
        self.written.insert(content);
        let (ino, ctime) = (self.ino(), self.ctime());
        self.tree_mut(s).insert(
            p.clone(),
            Node::File {
                content,
                mtime: now,
                mode,
                ino,
                ctime,
            },
        );
        self.emit_changed(s, p);
        self.touch(s, std::slice::from_ref(p));
        self.wrote(p);
        Some(format!("create {p} = #{content} ({mode:o})"))
    }

    /// A user rewrites the file `p` on `s`, as `how` says.
    fn rewrite(&mut self, s: Side, p: &RelPath, how: How, now: i64) -> Option<String> {
        let Some(Node::File {
            content: old,
            mtime,
            mode,
            ino,
            ..
        }) = self.tree(s).get(p).cloned()
        else {
            return None;
        };
        if self.unconditional_avoided(s, p) {
            return None;
        }
        let content = match how {
            How::Restore { same: true } => old,
            How::New => self.fresh_content(None),
            How::Tie | How::Restore { same: false } => self.fresh_content(Some(old % 5)),
        };
        let mtime = if how == How::New { now } else { mtime };
        let ino = if matches!(how, How::Restore { .. }) {
            self.ino()
        } else {
            ino
        };
        let ctime = self.ctime();
        self.tree_mut(s).insert(
            p.clone(),
            Node::File {
                content,
                mtime,
                mode,
                ino,
                ctime,
            },
        );
        if content != old {
            self.written.insert(content);
            self.exempt.insert(old);
        }
        self.emit_changed(s, p);
        self.touch(s, std::slice::from_ref(p));
        self.wrote(p);
        Some(match how {
            How::New => format!("write {p} = #{content} (was #{old})"),
            How::Tie => format!("tie {p} = #{content} (was #{old}; same size and mtime)"),
            How::Restore { .. } => format!(
                "cp -p restore {p} = #{content} (was #{old}; same size and mtime, new inode)"
            ),
        })
    }

    /// A user removes `p` on `s` (`rm`, or `rm -r` of a directory).
    fn rm_at(&mut self, s: Side, p: &RelPath) -> Option<String> {
        if self.unconditional_avoided(s, p) {
            return None;
        }
        if !self.tree(s)[p].is_dir() {
            self.removing(s, p, "rm");
            let n = self.tree_mut(s).remove(p).expect("there");
            self.exempt.extend(n.content());
            self.emit(s, Event::Removed { path: p.clone() });
            self.touch(s, std::slice::from_ref(p));
            return Some(format!("rm {p} (#{})", n.content().unwrap_or(0)));
        }
        self.removing(s, p, "rm -r");
        let paths = within(self.tree(s), p);
        // Post-order: children before their directory.
        let mut order = paths.clone();
        order.sort_by(|a, b| b.depth().cmp(&a.depth()).then(a.cmp(b)));
        for q in &order {
            let n = self.tree_mut(s).remove(q).expect("listed");
            self.exempt.extend(n.content());
            self.emit(s, Event::Removed { path: q.clone() });
        }
        self.touch(s, &paths);
        Some(format!("rm -r {p}"))
    }

    /// A user acts on a path the running batch writes or removes.
    fn hit(&mut self, targets: &[(Side, RelPath)], target: u8, hit: Hit) {
        let Some((s, p)) =
            (!targets.is_empty()).then(|| targets[target as usize % targets.len()].clone())
        else {
            return;
        };
        let now = self.tick();
        let done = match (hit, self.tree(s).get(&p)) {
            (Hit::Rm, Some(_)) => self.rm_at(s, &p),
            (Hit::Rewrite(how), Some(Node::File { .. })) => self.rewrite(s, &p, how, now),
            (Hit::Rewrite(_), None)
                if p.depth() <= MAX_DEPTH + 1
                    && p.parent().is_some_and(|d| {
                        d.is_root() || self.tree(s).get(&d).is_some_and(Node::is_dir)
                    }) =>
            {
                self.create_at(s, &p, FILE_MODES[0], now)
            }
            _ => None,
        };
        if let Some(d) = done {
            self.log
                .push(format!("{}: {d} (while the batch writes there)", l(s)));
        }
    }

    // -- the engine's side -------------------------------------------------

    fn deliver(&mut self, s: Side, count: usize) {
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

    fn deliver_all(&mut self) {
        self.deliver(Side::Left, usize::MAX);
        self.deliver(Side::Right, usize::MAX);
    }

    fn overflow(&mut self, s: Side, keep: u8) {
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

    fn plan(&mut self) -> Batch {
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

    fn rescan(&mut self) {
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

    fn mishap(&mut self, what: String) {
        self.log.push(format!("  !! {what}"));
        self.mishaps.push(what);
    }

    /// `Replica::resolve`: a symlink among the parents is refused.
    fn resolve(&self, s: Side, p: &RelPath) -> Result<(), String> {
        if p.is_root() {
            return Err(format!("refused path {p}"));
        }
        for a in ancestors(p) {
            if let Some(Node::Symlink { .. }) = self.tree(s).get(&a) {
                return Err(format!("refused path {p}: passes through a symlink"));
            }
        }
        Ok(())
    }

    /// The id of the directory at `p` on `s`, or a fresh one: what a
    /// directory the engine creates at `p` on the other side stands for.
    fn dir_id_from(&mut self, s: Side, p: &RelPath) -> u64 {
        let tree = self
            .before_ops
            .as_ref()
            .map_or(self.tree(s), |t| &t[s.idx()]);
        if let Some(Node::Dir { id, .. }) = tree.get(p) {
            return *id;
        }
        self.next_content += 1;
        self.next_content - 1
    }

    /// Move `p` (and what is below it) to the trash of `s`: the rename
    /// gives it a new ctime; its lstat there.
    fn trash(&mut self, s: Side, p: &RelPath) -> Option<Sig> {
        let mut top = None;
        for k in within(self.tree(s), p) {
            let mut n = self.tree_mut(s).remove(&k).expect("listed");
            if k == *p {
                n.set_ctime(self.ctime());
                top = Some(n.sig());
            }
            self.reps[s.idx()].trash.push((k, n));
        }
        top
    }

    /// `fs::create_dir_all` of `p` and its parents (new ones get `mode`
    /// only for `p` itself, when given).
    fn create_dir_all(&mut self, s: Side, p: &RelPath, mode: Option<u32>) -> Result<(), String> {
        let mut chain = ancestors(p);
        chain.push(p.clone());
        for a in chain {
            match self.tree(s).get(&a) {
                Some(Node::Dir { .. }) => {}
                Some(_) => return Err(format!("creating directory {a}: not a directory")),
                None => {
                    let (ino, ctime) = (self.ino(), self.ctime());
                    let mtime = self.tick();
                    let m = if a == *p {
                        mode.unwrap_or(DEFAULT_DIR_MODE)
                    } else {
                        DEFAULT_DIR_MODE
                    };
                    let id = self.dir_id_from(s.other(), &a);
                    self.tree_mut(s).insert(
                        a.clone(),
                        Node::Dir {
                            mode: m,
                            mtime,
                            ino,
                            ctime,
                            id,
                        },
                    );
                    self.dir_created(s, &a);
                }
            }
        }
        Ok(())
    }

    /// A helper operation on side `s`, as `Replica::apply` does it: the
    /// lstat of what it made or changed, or why it did not act.
    fn apply_op(&mut self, s: Side, op: &Op) -> Result<Option<Sig>, OpFail> {
        let failed = OpFail::Failed;
        match op {
            Op::Mknod { .. } => unreachable!("the model's users make no fifo or device"),
            Op::Link { .. } => unreachable!("the model's users make no hard link"),
            Op::Move { from, to, expect } => {
                self.resolve(s, from).map_err(failed)?;
                self.resolve(s, to).map_err(failed)?;
                if !self.tree(s).contains_key(from) {
                    return Err(failed(format!("{from}: no such file or directory")));
                }
                if from == to {
                    return self.stat(s, to);
                }
                if self.tree(s).contains_key(to) || matches!(expect, Expect::Version(_)) {
                    let found = self.stat(s, to)?;
                    if !expect.holds(found.as_ref()) {
                        return Err(OpFail::Refused { found });
                    }
                    if *expect == Expect::Any {
                        self.unconditional_loss(s, to, "move");
                    }
                    let _ = self.trash(s, to);
                }
                if let Some(parent) = to.parent().filter(|p| !p.is_root()) {
                    self.create_dir_all(s, &parent, None).map_err(failed)?;
                }
                if to.is_within(from) || !self.tree(s).contains_key(from) {
                    return Err(failed(format!("renaming {from} to {to}: invalid argument")));
                }
                for k in within(self.tree(s), from) {
                    let n = self.tree_mut(s).remove(&k).expect("listed");
                    self.tree_mut(s)
                        .insert(k.rebase(from, to).expect("within"), n);
                }
                let ctime = self.ctime();
                self.tree_mut(s)
                    .get_mut(to)
                    .expect("moved")
                    .set_ctime(ctime);
                self.stat(s, to)
            }
            Op::Trash { path, expect } => {
                self.resolve(s, path).map_err(failed)?;
                if *expect != Expect::Any {
                    let found = self.stat(s, path)?;
                    if !expect.holds(found.as_ref()) {
                        return Err(OpFail::Refused { found });
                    }
                }
                if self.tree(s).contains_key(path) {
                    if *expect == Expect::Any {
                        self.unconditional_loss(s, path, "trash");
                    }
                    return Ok(self.trash(s, path));
                }
                Ok(None)
            }
            Op::KeepConflict { path } => {
                self.resolve(s, path).map_err(failed)?;
                for k in within(self.tree(s), path) {
                    let n = self.tree_mut(s).remove(&k).expect("listed");
                    self.reps[s.idx()].conflicts.push((k, n));
                }
                Ok(None)
            }
            Op::Mkdir { path, mode, .. } => {
                self.resolve(s, path).map_err(failed)?;
                match self.tree(s).get(path) {
                    Some(Node::Dir { .. }) => {
                        let ctime = self.ctime();
                        if let Some(n @ Node::Dir { .. }) = self.tree_mut(s).get_mut(path) {
                            n.set_ctime(ctime);
                            if let Node::Dir { mode: m, .. } = n {
                                *m = *mode;
                            }
                        }
                        self.emit_changed(s, path);
                    }
                    Some(_) => {
                        // Not what the brain expected there (it trashes what
                        // it expects first): refused, as the helper does.
                        let found = self.stat(s, path)?;
                        return Err(OpFail::Refused { found });
                    }
                    None => self.create_dir_all(s, path, Some(*mode)).map_err(failed)?,
                }
                self.stat(s, path)
            }
            Op::Symlink {
                path,
                target,
                mtime_ns,
                expect,
                ..
            } => {
                // Made under an ignore-suffix name and renamed into place:
                // unreported; if the path holds what is expected (a
                // directory there is trashed first, a file replaced).
                self.resolve(s, path).map_err(failed)?;
                let content = content_of_target(target)
                    .ok_or_else(|| failed(format!("symlink {path}: unknown target {target:?}")))?;
                let found = self.stat(s, path)?;
                if !expect.holds(found.as_ref()) {
                    return Err(OpFail::Refused { found });
                }
                if *expect == Expect::Any && self.tree(s).contains_key(path) {
                    self.unconditional_loss(s, path, "symlink");
                }
                if self.tree(s).get(path).is_some_and(Node::is_dir) {
                    let _ = self.trash(s, path);
                }
                if let Some(parent) = path.parent().filter(|p| !p.is_root()) {
                    self.create_dir_all(s, &parent, None).map_err(failed)?;
                }
                if let Some(old) = self.tree(s).get(path) {
                    self.log.push(format!(
                        "  {} symlink {path} replaces {:?}",
                        l(s),
                        old.norm()
                    ));
                }
                let (ino, ctime) = (self.ino(), self.ctime());
                self.tree_mut(s).insert(
                    path.clone(),
                    Node::Symlink {
                        content,
                        mtime: *mtime_ns,
                        ino,
                        ctime,
                    },
                );
                self.stat(s, path)
            }
            Op::SetAttr {
                path,
                mode,
                mtime_ns,
                ..
            } => {
                self.resolve(s, path).map_err(failed)?;
                let ctime = self.ctime();
                let Some(n) = self.tree_mut(s).get_mut(path) else {
                    return Err(failed(format!("{path}: no such file or directory")));
                };
                let mut touched = false;
                match n {
                    Node::Dir { mode: m, mtime, .. } | Node::File { mode: m, mtime, .. } => {
                        if let Some(mode) = mode {
                            *m = *mode;
                            touched = true;
                        }
                        if let Some(t) = mtime_ns {
                            *mtime = *t;
                            touched = true;
                        }
                    }
                    Node::Symlink { mtime, .. } => {
                        if let Some(t) = mtime_ns {
                            *mtime = *t;
                            touched = true;
                        }
                    }
                }
                if touched {
                    n.set_ctime(ctime);
                    self.emit_changed(s, path);
                }
                self.stat(s, path)
            }
            Op::Install { .. } => Err(failed("the engine makes no Install op".into())),
        }
    }

    /// `Replica::place`: install `src` (staged by rsync from the other
    /// side) at `p` on `t` if `p` holds what `expect` says; what it
    /// replaces is kept in the trash (a directory is trashed).
    fn place(&mut self, t: Side, p: &RelPath, src: &Node, expect: Expect) -> Result<Sig, OpFail> {
        self.resolve(t, p).map_err(OpFail::Failed)?;
        if let Some(parent) = p.parent().filter(|q| !q.is_root()) {
            self.create_dir_all(t, &parent, None)
                .map_err(OpFail::Failed)?;
        }
        let found = self.tree(t).get(p).map(Node::sig);
        if !expect.holds(found.as_ref()) {
            return Err(OpFail::Refused { found });
        }
        if expect == Expect::Any && self.tree(t).contains_key(p) {
            self.unconditional_loss(t, p, "copy");
        }
        match self.tree(t).get(p).cloned() {
            Some(Node::Dir { .. }) => {
                let _ = self.trash(t, p);
            }
            Some(old) => self.reps[t.idx()].trash.push((p.clone(), old)),
            None => {}
        }
        let (ino, ctime) = (self.ino(), self.ctime());
        let node = src.reborn(ino, ctime);
        let sig = node.sig();
        self.tree_mut(t).insert(p.clone(), node);
        self.emit_changed(t, p);
        Ok(sig)
    }

    /// Carry out a batch as `execute.rs` does (helper operations on the
    /// left, then on the right, then the copies of each direction, each
    /// installed conditionally), with the users' actions `during` in
    /// between; returns the report for `complete`.
    fn execute(&mut self, b: &Batch, left_copy_first: bool, during: &[(u8, During)]) -> Report {
        self.failed_ops = 0;
        let targets = batch_targets(b);
        self.before_ops = Some([
            self.tree(Side::Left).clone(),
            self.tree(Side::Right).clone(),
        ]);
        let mut report = Report::default();
        // Symlinks are made by the destination's helper (`Op::Symlink`),
        // from the targets read on the source right after the operations
        // (which move the losing symlink of a conflict to its conflict
        // name), as `execute.rs` does.
        let ops = b.ops.clone();
        let mut copies: [Vec<Copy>; 2] = Default::default();
        let mut links: [Vec<Copy>; 2] = Default::default();
        for t in Side::BOTH {
            for c in &b.copies[t.idx()] {
                if c.sig.kind == Kind::Symlink {
                    links[t.idx()].push(c.clone());
                } else {
                    copies[t.idx()].push(c.clone());
                }
            }
        }
        let order = if left_copy_first {
            [Side::Left, Side::Right]
        } else {
            [Side::Right, Side::Left]
        };
        #[derive(Clone, Copy)]
        enum Stage {
            Op(Side, usize),
            Link(Side, usize),
            Copy(Side, usize),
        }
        let mut steps: Vec<Stage> = Vec::new();
        for s in Side::BOTH {
            steps.extend((0..ops[s.idx()].len()).map(|i| Stage::Op(s, i)));
        }
        for s in Side::BOTH {
            steps.extend((0..links[s.idx()].len()).map(|i| Stage::Link(s, i)));
        }
        for t in order {
            steps.extend((0..copies[t.idx()].len()).map(|i| Stage::Copy(t, i)));
        }
        let n = steps.len();
        let mut at: Vec<Vec<&During>> = vec![Vec::new(); n + 1];
        for (slot, d) in during {
            at[*slot as usize % (n + 1)].push(d);
        }
        let mut written: [Vec<(usize, Result<Sig, OpFail>)>; 2] = Default::default();
        let mut missing: [Vec<usize>; 2] = Default::default();
        let unconditional = |stage: &Stage| -> Vec<(Side, RelPath)> {
            match *stage {
                Stage::Op(s, i) => match &ops[s.idx()][i] {
                    Op::Move { from, to, .. } => vec![(s, from.clone()), (s, to.clone())],
                    Op::Trash { expect, .. } if *expect != Expect::Any => vec![],
                    Op::Trash { path, .. }
                    | Op::Mkdir { path, .. }
                    | Op::Symlink { path, .. }
                    | Op::SetAttr { path, .. }
                    | Op::KeepConflict { path }
                    | Op::Mknod { path, .. }
                    | Op::Link { path, .. }
                    | Op::Install { path, .. } => vec![(s, path.clone())],
                },
                Stage::Link(s, i) => {
                    let c = &links[s.idx()][i];
                    if c.expect == Expect::Any {
                        vec![(s, c.path.clone())]
                    } else {
                        vec![]
                    }
                }
                Stage::Copy(s, i) => {
                    let c = &copies[s.idx()][i];
                    if c.expect == Expect::Any {
                        vec![(s, c.path.clone())]
                    } else {
                        vec![]
                    }
                }
            }
        };
        for (k, &stage) in steps.iter().enumerate() {
            self.unconditional = steps[k..].iter().flat_map(unconditional).collect();
            for d in &at[k] {
                self.during(d, &targets);
            }
            let (s, op) = match stage {
                Stage::Op(s, i) => (s, ops[s.idx()][i].clone()),
                Stage::Link(s, i) => match self.read_link(s, &links[s.idx()][i]) {
                    Some(op) => (s, op),
                    None => {
                        // As `execute.rs`: reported missed, with what both
                        // ends hold now.
                        let path = links[s.idx()][i].path.clone();
                        report.missed[s.idx()].push(Copied {
                            src: self.stat_or_none(s.other(), &path),
                            dst: self.stat_or_none(s, &path),
                            path,
                            installed: false,
                        });
                        continue;
                    }
                },
                Stage::Copy(s, i) => {
                    let c = &copies[s.idx()][i];
                    // rsync stages the source as it is now; the helper
                    // installs it.
                    match self.tree(s.other()).get(&c.path).cloned() {
                        Some(src @ Node::File { .. })
                            if self.resolve(s.other(), &c.path).is_ok() =>
                        {
                            let r = self.place(s, &c.path, &src, c.expect);
                            if r.is_err() {
                                self.refused.push((s, c.path.clone()));
                            }
                            self.flush_created();
                            written[s.idx()].push((i, r));
                        }
                        _ => missing[s.idx()].push(i),
                    }
                    continue;
                }
            };
            let r = self.apply_op(s, &op);
            self.flush_created();
            let target = op.target();
            match r {
                Ok(sig) if matches!(op, Op::Trash { .. }) => {
                    report.applied[s.idx()].push(Applied::Removed(target.clone(), sig));
                }
                Ok(sig) => report.applied[s.idx()].push(Applied::Done(target.clone(), sig)),
                Err(OpFail::Refused { found }) => {
                    self.refused.push((s, target.clone()));
                    let what = format!("{} {op:?} refused: found {found:?}", l(s));
                    if matches!(op, Op::Trash { .. }) && found.is_none() {
                        // KNOWN ENGINE BUG (reported, harmless): when a side
                        // removes a directory and the other side removes an
                        // entry in it and changes another, the entry it
                        // removed is trashed there too, refused as gone.
                        self.log
                            .push(format!("  !! (known bug: trash of what is gone) {what}"));
                    } else {
                        self.mishap(what);
                    }
                    if let Op::Move { from, to, .. } = op {
                        // As execute.rs: a refused move leaves the index
                        // unsure of a whole subtree; its index changes are
                        // undone and a full merge follows.
                        report.refused_moves.push((from.clone(), to.clone()));
                    } else {
                        report.applied[s.idx()].push(Applied::Refused(target.clone(), found));
                    }
                }
                Err(OpFail::Failed(e)) => {
                    self.failed_ops += 1;
                    report.ops_failed = true;
                    self.mishap(format!("{} {op:?} failed: {e}", l(s)));
                }
            }
        }
        self.unconditional.clear();
        for d in &at[n] {
            self.during(d, &targets);
        }
        self.before_ops = None;
        for t in Side::BOTH {
            let list = &copies[t.idx()];
            let mut missed: Vec<(RelPath, Option<Sig>, bool)> = Vec::new();
            for &i in &missing[t.idx()] {
                let p = &list[i].path;
                let stale = self.removed_last[t.other().idx()]
                    .iter()
                    .any(|d| p.is_within(d));
                if stale {
                    // A late report of an entry that the previous batch
                    // trashed or moved away: rsync says it vanished.
                    self.log.push(format!(
                        "  copy of {p} into {} vanished (stale report)",
                        l(t)
                    ));
                } else {
                    self.mishap(format!("copy of {p} into {}: source vanished", l(t)));
                }
                let dst = self.stat_or_none(t, p);
                if self.tree(t.other()).get(p).is_none() && dst.is_some() {
                    // KNOWN ENGINE BUG (reported;
                    // `a_file_made_where_a_vanished_copy_goes_is_kept`):
                    // `complete` takes what is at the destination as what
                    // arrived, and the source's deletion then trashes it.
                    self.unconditional_loss(t, &p.clone(), "missed copy");
                }
                missed.push((p.clone(), dst, false));
            }
            for (i, r) in std::mem::take(&mut written[t.idx()]) {
                let c = &list[i];
                match r {
                    Ok(sig) if sig.same_content(&c.sig) => {
                        report.applied[t.idx()].push(Applied::Done(c.path.clone(), Some(sig)));
                    }
                    // The source changed after the plan: what arrived is newer.
                    Ok(sig) => {
                        self.mishap(format!("copy of {} into {}: source changed", c.path, l(t)));
                        missed.push((c.path.clone(), Some(sig), true));
                    }
                    Err(OpFail::Refused { found }) => {
                        let what =
                            format!("copy of {} into {} refused: found {found:?}", c.path, l(t));
                        if moved_onto(b, t, &c.path) {
                            // KNOWN BUG (reported): the copy expects the
                            // destination's stamp from before the batch's own
                            // move onto it, which gave it a new ctime.
                            self.log
                                .push(format!("  !! (known bug: moved onto first) {what}"));
                        } else {
                            self.mishap(what);
                        }
                        report.applied[t.idx()].push(Applied::Refused(c.path.clone(), found));
                    }
                    Err(OpFail::Failed(e)) => {
                        self.mishap(format!("copy of {} into {} failed: {e}", c.path, l(t)));
                        missed.push((c.path.clone(), self.stat_or_none(t, &c.path), false));
                    }
                }
            }
            for (path, dst, installed) in missed {
                let src = self.stat_or_none(t.other(), &path);
                report.missed[t.idx()].push(Copied {
                    path,
                    src,
                    dst,
                    installed,
                });
            }
        }
        for s in Side::BOTH {
            self.removed_last[s.idx()] = b.ops[s.idx()]
                .iter()
                .filter_map(|op| match op {
                    Op::Move { from, .. } => Some(from.clone()),
                    Op::Trash { path, .. } => Some(path.clone()),
                    _ => None,
                })
                .collect();
        }
        if report.ops_failed {
            self.log
                .push(format!("  ({} helper ops failed)", self.failed_ops));
        }
        report
    }

    /// The `Op::Symlink` that makes the symlink copy `c` into `t`, from
    /// the target read on the other side now (none when it is gone or no
    /// longer the version planned, as `execute.rs` checks).
    fn read_link(&mut self, t: Side, c: &Copy) -> Option<Op> {
        match self.tree(t.other()).get(&c.path) {
            Some(n @ Node::Symlink { content, .. })
                if self.resolve(t.other(), &c.path).is_ok() && n.sig().same_content(&c.sig) =>
            {
                Some(Op::Symlink {
                    path: c.path.clone(),
                    target: link_target(*content),
                    mtime_ns: c.sig.mtime_ns,
                    owner: None,
                    xattrs: Default::default(),
                    expect: c.expect,
                })
            }
            _ => {
                self.log.push(format!(
                    "  symlink {} vanished on {} before it was copied",
                    c.path,
                    l(t.other())
                ));
                None
            }
        }
    }

    /// A user action while the batch runs.
    fn during(&mut self, d: &During, targets: &[(Side, RelPath)]) {
        match d {
            During::User(s, a) => {
                if let Some(done) = self.user_inner(*s, a) {
                    self.log
                        .push(format!("{}: {done} (while the batch runs)", l(*s)));
                }
            }
            During::Hit { target, hit } => self.hit(targets, *target, *hit),
            During::Named(s, u) => {
                let a = self.action_for(*s, *u);
                let done = self.user_inner(*s, &a);
                let done = done.unwrap_or_else(|| panic!("{u:?} on {s} did nothing"));
                self.log
                    .push(format!("{}: {done} (while the batch runs)", l(*s)));
            }
        }
    }

    /// The engine takes the helpers' answers (as the runner, only after a
    /// batch that was not empty).
    fn complete(&mut self, b: &Batch, report: Report) {
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

    fn sync(
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
    fn settle(&mut self) -> Result<(), String> {
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
    fn settle_and_check(&mut self, check: Check) -> Result<(), String> {
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

    // -- invariants --------------------------------------------------------

    fn check(&self, deletions: bool, trash_ok: bool) -> Result<(), String> {
        let mut errs: Vec<String> = Vec::new();
        let (lt, rt) = (self.tree(Side::Left), self.tree(Side::Right));
        // 1. Equal trees.
        let keys: BTreeSet<&RelPath> = lt.keys().chain(rt.keys()).collect();
        for k in keys {
            let a = lt.get(k).map(Node::norm);
            let b = rt.get(k).map(Node::norm);
            if a != b {
                errs.push(format!("replicas differ at {k}: left {a:?}, right {b:?}"));
            }
        }
        // 2. No version lost.
        let in_tree: BTreeSet<u64> = lt
            .values()
            .chain(rt.values())
            .chain(
                self.reps
                    .iter()
                    .flat_map(|r| r.conflicts.iter().map(|(_, n)| n)),
            )
            .filter_map(Node::content)
            .collect();
        let in_trash: BTreeSet<u64> = self
            .reps
            .iter()
            .flat_map(|r| r.trash.iter().filter_map(|(_, n)| n.content()))
            .collect();
        for c in self.written.difference(&self.exempt) {
            if in_tree.contains(c) || self.avoid_known_bugs && self.bug_trashed.contains(c) {
                continue;
            }
            if in_trash.contains(c) {
                if !trash_ok {
                    errs.push(format!(
                        "version #{c} (neither deleted nor overwritten by a user) was trashed"
                    ));
                }
                continue;
            }
            errs.push(format!(
                "version #{c} (neither deleted nor overwritten by a user) is lost"
            ));
        }
        // 3. No deletion resurrected.
        for (p, (how, what)) in self.deleted.iter().filter(|_| deletions) {
            for (s, t) in [(Side::Left, lt), (Side::Right, rt)] {
                if let Some(n) = t.get(p).filter(|n| n.identity() == *what) {
                    errs.push(format!(
                        "{p} ({how}) was resurrected on {s}: {:?}",
                        n.norm()
                    ));
                }
            }
        }
        // 4. The index describes the replicas.
        let known = self.engine.known();
        for (k, n) in lt {
            match known.get(k) {
                Some(sig) if sig.same_content(&n.sig()) => {}
                other => errs.push(format!(
                    "index at {k}: {other:?}, replicas have {:?}",
                    n.norm()
                )),
            }
        }
        for k in known.keys() {
            if !lt.contains_key(k) {
                errs.push(format!("index lists {k}, missing from the replicas"));
            }
        }
        // 4b. A file's stamps in the index are its versions' on each side
        // (or not observed yet): a stale one would refuse the next write or
        // deletion there.
        for (k, kn) in known {
            for s in Side::BOTH {
                let Some(n @ Node::File { .. }) = self.tree(s).get(k) else {
                    continue;
                };
                let st = kn.stamps[s.idx()];
                if st.is_known() && st != n.sig().stamp() {
                    errs.push(format!(
                        "index at {k}: the stamp on {s} is not the file's ({:?})",
                        n.norm()
                    ));
                }
            }
        }
        // 6. No path goes back and forth.
        errs.extend(self.loops.iter().cloned());
        // Without races every helper op succeeds and every copy arrives.
        if !self.races {
            for m in &self.mishaps {
                errs.push(format!("without races: {m}"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }

    fn report(&self, err: &str) -> String {
        format!(
            "{err}\n--- left:{}\n--- right:{}\n--- history:\n{}",
            show_tree(self.tree(Side::Left)),
            show_tree(self.tree(Side::Right)),
            self.log.join("\n")
        )
    }
}

/// When and what is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Check {
    /// Check once a rescan of both replicas was reconciled too, not as soon
    /// as the engine has nothing left to do.
    after_rescan: bool,
    /// Check that no deletion came back (invariant 3).
    deletions: bool,
    /// A version no user deleted or overwrote may be in a trash (not lost).
    trash_ok: bool,
}

fn run(sc: &Scenario, mode: Mode, check: Check) -> Result<(), TestCaseError> {
    let mut w = World::new(sc.slow_filter, sc.lazy_filter, mode != Mode::Calm);
    for st in &sc.steps {
        match st {
            Step::User(s, a) => w.user(*s, a),
            Step::Deliver { side, count } => w.deliver(*side, *count as usize),
            Step::Sync {
                deliver_first,
                during,
                echoes,
                left_copy_first,
            } => w.sync(*deliver_first, during, *echoes, *left_copy_first),
            Step::Overflow { side, keep } => w.overflow(*side, *keep),
            Step::Settle => {
                if let Err(e) = w.settle_and_check(check) {
                    return Err(TestCaseError::fail(w.report(&e)));
                }
            }
        }
    }
    w.settle_and_check(check)
        .map_err(|e| TestCaseError::fail(w.report(&e)))
}

// ---------------------------------------------------------------------------
// Hand-written cases: the minimal sequences behind the bugs the model found.

/// A user action named by paths (names from [`NAMES`]).
#[derive(Debug, Clone, Copy)]
enum U {
    Create(&'static str),
    Symlink(&'static str),
    Write(&'static str),
    Tie(&'static str),
    Restore(&'static str, bool),
    /// chmod to another mode (see [`World::action_for`]).
    Chmod(&'static str),
    Mkdir(&'static str),
    Rm(&'static str),
    RmDir(&'static str),
    Mv(&'static str, &'static str),
}

/// One step of a hand-written case.
#[derive(Debug, Clone)]
enum T {
    L(U),
    R(U),
    /// Settle and check.
    Settle,
    /// Plan a batch after delivering everything; these users act while it
    /// runs, before its first operation; its echoes arrive before it
    /// completes.
    SyncWhile(Vec<(Side, U)>),
    /// As `SyncWhile`, each user action before the batch's `n`-th
    /// operation or copy (or after the last one).
    SyncAt(Vec<(u8, Side, U)>),
    /// Hand the events queued on a side to the engine.
    Deliver(Side),
    /// Plan a batch from what was handed over so far (the rest reaches the
    /// engine while it runs, with its echoes), run it and complete it.
    SyncEarly,
}

impl World {
    fn index_of(list: &[RelPath], p: &RelPath) -> u8 {
        let i = list
            .iter()
            .position(|q| q == p)
            .unwrap_or_else(|| panic!("{p} is not there: {list:?}"));
        u8::try_from(i).expect("small trees")
    }

    fn listed(&self, s: Side, f: impl Fn(&Node) -> bool) -> Vec<RelPath> {
        self.tree(s)
            .iter()
            .filter(|(_, n)| f(n))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The random-operation form of `u` (selectors pointing at its paths).
    fn action_for(&self, s: Side, u: U) -> Action {
        let name_of = |p: &RelPath| {
            let n = NAMES
                .iter()
                .position(|n| n.as_bytes() == p.file_name())
                .unwrap_or_else(|| panic!("{p}: names are a, b or c"));
            u8::try_from(n).expect("three names")
        };
        let parent_of = |p: &RelPath| {
            let parent = p.parent().expect("not the root");
            Self::index_of(&self.dirs(s), &parent)
        };
        match u {
            U::Create(p) => {
                let p = RelPath::from(p);
                Action::Create {
                    dir: parent_of(&p),
                    name: name_of(&p),
                    mode: 0,
                }
            }
            U::Symlink(p) => {
                let p = RelPath::from(p);
                Action::Symlink {
                    dir: parent_of(&p),
                    name: name_of(&p),
                }
            }
            U::Mkdir(p) => {
                let p = RelPath::from(p);
                Action::Mkdir {
                    dir: parent_of(&p),
                    name: name_of(&p),
                    mode: 0,
                }
            }
            U::Write(p) => Action::Write {
                file: Self::index_of(
                    &self.listed(s, |n| matches!(n, Node::File { .. })),
                    &p.into(),
                ),
            },
            U::Chmod(p) => {
                // The first mode that is not the entry's (0o600 for a new
                // file, 0o700 for a new directory, and back).
                let p = RelPath::from(p);
                let (modes, now): (&[u32], u32) = match self.tree(s).get(&p) {
                    Some(Node::Dir { mode, .. }) => (&DIR_MODES, *mode),
                    Some(Node::File { mode, .. }) => (&FILE_MODES, *mode),
                    _ => panic!("{p}: not a file or directory on {s}"),
                };
                let mode = modes.iter().position(|m| *m != now).expect("two modes");
                Action::Chmod {
                    entry: Self::index_of(
                        &self.listed(s, |n| !matches!(n, Node::Symlink { .. })),
                        &p,
                    ),
                    mode: u8::try_from(mode).expect("few modes"),
                }
            }
            U::Tie(p) => Action::Tie {
                file: Self::index_of(
                    &self.listed(s, |n| matches!(n, Node::File { .. })),
                    &p.into(),
                ),
            },
            U::Restore(p, same) => Action::Restore {
                file: Self::index_of(
                    &self.listed(s, |n| matches!(n, Node::File { .. })),
                    &p.into(),
                ),
                same,
            },
            U::Rm(p) => Action::Rm {
                entry: Self::index_of(&self.listed(s, |n| !n.is_dir()), &p.into()),
            },
            U::RmDir(p) => Action::RmDir {
                dir: Self::index_of(&self.listed(s, Node::is_dir), &p.into()),
            },
            U::Mv(from, to) => {
                let to = RelPath::from(to);
                Action::Rename {
                    entry: Self::index_of(&self.listed(s, |_| true), &from.into()),
                    dir: parent_of(&to),
                    name: name_of(&to),
                }
            }
        }
    }

    /// Plan a batch after delivering everything, run it with these users
    /// acting in it, deliver its echoes and complete it.
    fn sync_at(&mut self, during: &[(u8, Side, U)]) {
        self.deliver_all();
        let b = self.plan();
        let during: Vec<(u8, During)> = during
            .iter()
            .map(|&(k, s, u)| (k, During::Named(s, u)))
            .collect();
        let report = self.execute(&b, true, &during);
        self.deliver_all();
        self.complete(&b, report);
        if b.rescan {
            self.rescan();
        }
    }

    fn act(&mut self, s: Side, u: U) {
        let a = self.action_for(s, u);
        let done = self.user_inner(s, &a);
        let done = done.unwrap_or_else(|| panic!("{u:?} on {s} did nothing"));
        self.log.push(format!("{}: {done}", l(s)));
    }
}

/// Run a hand-written case; panics with the history when a check fails.
fn case(mode: Mode, check: Check, steps: &[T]) {
    case_in(World::new(false, false, mode != Mode::Calm), check, steps);
}

fn case_in(mut w: World, check: Check, steps: &[T]) {
    w.avoid_known_bugs = false;
    let mut outcome = Ok(());
    for t in steps {
        match t {
            T::L(u) => w.act(Side::Left, *u),
            T::R(u) => w.act(Side::Right, *u),
            T::Settle => outcome = w.settle_and_check(check),
            T::SyncWhile(during) => {
                let at: Vec<(u8, Side, U)> = during.iter().map(|&(s, u)| (0, s, u)).collect();
                w.sync_at(&at);
            }
            T::SyncAt(during) => w.sync_at(during),
            T::Deliver(s) => w.deliver(*s, usize::MAX),
            T::SyncEarly => w.sync(false, &[], Echoes::BeforeComplete, true),
        }
        if let Err(e) = &outcome {
            panic!("{}", w.report(e));
        }
    }
    if let Err(e) = w.settle_and_check(check) {
        panic!("{}", w.report(&e));
    }
    // `MODEL_SHOW=1`: the history of a case that passed, too.
    if std::env::var_os("MODEL_SHOW").is_some() {
        eprintln!("{}", w.report("passed"));
    }
}

const STRICT: Check = Check {
    after_rescan: false,
    deletions: true,
    trash_ok: false,
};

fn calm(steps: &[T]) {
    case(Mode::Calm, STRICT, steps);
}

use T::{Deliver, Settle, SyncAt, SyncEarly, SyncWhile, L, R};
use U::{Chmod, Create, Mkdir, Mv, Restore, Rm, RmDir, Symlink, Tie, Write};

#[test]
fn a_move_then_a_delete_of_the_moved_entry_deletes_it_on_the_other_side() {
    calm(&[L(Create("a")), Settle, L(Mv("a", "b")), L(Rm("b"))]);
}

#[test]
fn a_directory_made_where_one_was_moved_away_is_synced() {
    calm(&[L(Mkdir("a")), Settle, L(Mv("a", "b")), L(Mkdir("a"))]);
}

#[test]
fn a_deletion_inside_a_moved_directory_is_synced() {
    calm(&[
        L(Mkdir("a")),
        L(Create("a/b")),
        Settle,
        L(Mv("a", "c")),
        L(Rm("c/b")),
    ]);
}

#[test]
fn moves_onto_the_same_name_on_both_sides_keep_both_versions() {
    calm(&[
        L(Create("a")),
        L(Create("b")),
        L(Create("c")),
        Settle,
        L(Mv("b", "a")),
        R(Mv("c", "a")),
    ]);
}

#[test]
fn a_move_onto_a_directory_keeps_what_the_other_side_put_inside() {
    calm(&[
        L(Mkdir("b")),
        L(Create("c")),
        Settle,
        L(Create("b/a")),
        R(RmDir("b")),
        R(Mv("c", "b")),
    ]);
}

#[test]
fn a_move_into_a_new_directory_that_replaced_a_file_is_replayed() {
    calm(&[
        L(Create("a")),
        L(Create("c")),
        Settle,
        R(Rm("c")),
        R(Mkdir("c")),
        R(Mv("a", "c/a")),
    ]);
}

#[test]
fn a_move_into_a_directory_that_is_a_file_on_the_other_side_converges() {
    calm(&[
        L(Create("a")),
        Settle,
        L(Create("c")),
        R(Mkdir("c")),
        R(Mv("a", "c/a")),
    ]);
}

#[test]
fn a_move_into_a_directory_the_other_side_moved_away_converges() {
    calm(&[
        L(Mkdir("a")),
        L(Create("b")),
        Settle,
        L(Mv("b", "a/b")),
        R(Mv("a", "c")),
    ]);
}

#[test]
fn a_directory_replaced_by_a_file_keeps_what_the_other_side_added_inside() {
    calm(&[
        L(Mkdir("a")),
        Settle,
        L(RmDir("a")),
        L(Create("a")),
        R(Create("a/b")),
    ]);
}

#[test]
fn a_directory_losing_a_conflict_is_merged_without_failed_copies() {
    calm(&[R(Mkdir("b")), R(Create("b/a")), L(Symlink("b"))]);
}

#[test]
fn a_new_directory_renamed_over_an_emptied_one_leaves_nothing_behind() {
    calm(&[
        L(Mkdir("b")),
        L(Mkdir("b/c")),
        Settle,
        L(RmDir("b/c")),
        L(Mkdir("a")),
        L(Mv("a", "b")),
    ]);
}

#[test]
fn files_moved_into_a_new_directory_follow_it_when_it_is_renamed() {
    calm(&[
        L(Create("c")),
        Settle,
        L(Mkdir("b")),
        L(Mv("c", "b/b")),
        L(Mv("b", "c")),
    ]);
}

#[test]
fn a_directory_moved_after_a_file_was_moved_into_a_new_subdirectory_leaves_nothing_behind() {
    calm(&[
        L(Mkdir("a")),
        L(Create("c")),
        Settle,
        L(Mkdir("a/a")),
        L(Mv("c", "a/a/a")),
        L(Mv("a", "b")),
    ]);
}

#[test]
fn a_move_made_while_a_copy_lands_on_its_destination_converges() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("a")),
            Settle,
            R(Create("b")),
            SyncWhile(vec![(Side::Left, Mv("a", "b"))]),
        ],
    );
}

#[test]
fn a_file_rewritten_during_its_copy_and_then_deleted_stays_deleted() {
    case(
        Mode::Races,
        STRICT,
        &[
            R(Create("a")),
            SyncWhile(vec![(Side::Right, Write("a"))]),
            R(Rm("a")),
        ],
    );
}

/// A fixed seed, so that `cargo test` does not fail at random on the rare
/// known bugs the schedules still reach (see the ignored cases);
/// `MODEL_SEED=random` (or a number) for a hunt.
fn seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("MODEL_SEED").ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(n) => RngSeed::Fixed(n.parse().expect("MODEL_SEED: a number or random")),
        None => RngSeed::Fixed(0x7715_5eed),
    }
}

/// 256 cases, or `PROPTEST_CASES` for a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        rng_seed: seed(),
        ..ProptestConfig::default()
    })]

    /// Every event reaches the engine before it plans and users do not act
    /// while a batch runs: the replicas converge, no version is lost or even
    /// trashed, no deletion comes back, the index describes the replicas,
    /// every helper operation succeeds and every copy arrives.
    #[test]
    fn calm_schedules_converge_without_losing_trashing_or_resurrecting_anything(
        sc in scenario(Mode::Calm, true, 30)
    ) {
        run(&sc, Mode::Calm, STRICT)?;
    }

    /// Events reach the engine after the next batch was planned and users
    /// act while batches run: once a rescan is reconciled the replicas are
    /// equal, the index describes them, and no version is lost (a fresh
    /// write that rsync overwrote may be in the trash).
    #[test]
    fn racing_schedules_reconcile_by_a_rescan_without_losing_anything(
        sc in scenario(Mode::Races, false, 30)
    ) {
        run(&sc, Mode::Races, Check { after_rescan: true, deletions: false, trash_ok: true })?;
    }

    /// As above, and the echoes of a batch may reach the engine only after
    /// it planned the next one (the agent does not order its event stream
    /// with its answers).
    #[test]
    fn late_echoes_reconcile_by_a_rescan_without_losing_anything(
        sc in scenario(Mode::LateEchoes, false, 30)
    ) {
        run(&sc, Mode::LateEchoes, Check { after_rescan: true, deletions: false, trash_ok: true })?;
    }

    /// Racing schedules converge without the help of a rescan, and no
    /// deletion comes back, no version is trashed, and the index's stamps
    /// are the files'.
    ///
    /// The fixed seed passes 3000 cases. Long random hunts still find
    /// failures, about one case in ten thousand (`MODEL_SEED=random
    /// PROPTEST_CASES=1000`: 2 runs in 20 failed): a file only touched
    /// (same bytes, another stamp) removed on the other side before its
    /// bytes could be compared comes back (see the ignored case; it needs
    /// digests in the index), reports of a directory that lost a conflict
    /// taken after the rescan that merged it. Minimise them into
    /// hand-written cases as they come.
    #[test]
    fn racing_schedules_converge_without_a_rescan_or_resurrecting_anything(
        sc in scenario(Mode::Races, true, 30)
    ) {
        run(&sc, Mode::Races, STRICT)?;
    }
}

#[test]
fn a_same_mtime_tie_is_synced() {
    calm(&[L(Create("a")), Settle, L(Tie("a"))]);
}

#[test]
fn a_cp_p_restore_of_other_bytes_is_synced() {
    calm(&[L(Create("a")), Settle, R(Restore("a", false))]);
}

#[test]
fn a_cp_p_restore_of_the_same_bytes_copies_nothing() {
    calm(&[
        L(Create("a")),
        Settle,
        R(Restore("a", true)),
        Settle,
        L(Write("a")),
    ]);
}

#[test]
fn a_tie_on_a_copy_destination_before_the_copy_lands_is_kept() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("a")),
            Settle,
            L(Write("a")),
            SyncAt(vec![(0, Side::Right, Tie("a"))]),
        ],
    );
}

#[test]
fn a_restore_on_a_copy_destination_before_the_copy_lands_is_kept() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("a")),
            Settle,
            L(Write("a")),
            SyncAt(vec![(0, Side::Right, Restore("a", false))]),
        ],
    );
}

#[test]
fn a_write_on_a_copy_destination_after_the_copy_landed_wins() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("a")),
            Settle,
            L(Write("a")),
            SyncAt(vec![(1, Side::Right, Tie("a"))]),
        ],
    );
}

#[test]
fn a_deletion_of_what_a_copy_just_installed_stays_deleted() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("a")),
            Settle,
            L(Write("a")),
            SyncAt(vec![(1, Side::Right, Rm("a"))]),
        ],
    );
}

#[test]
fn a_write_on_a_file_being_trashed_wins_over_the_deletion() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("a")),
            Settle,
            L(Rm("a")),
            SyncAt(vec![(0, Side::Right, Restore("a", false))]),
        ],
    );
}

/// Engine bug (reported): when a batch replays a move onto a path and then
/// copies a newer version there (`L: mv c a; write a`), the copy expects
/// the destination's stamp from before the move; the rename gave it a new
/// ctime, so the copy is refused and a spurious conflict copy of the old
/// version is made (by the next batch).
#[test]
fn a_move_then_a_write_of_the_moved_file_is_synced_without_a_conflict() {
    let mut w = World::new(false, false, false);
    w.act(Side::Left, Create("c"));
    w.settle().unwrap();
    w.act(Side::Left, Mv("c", "a"));
    w.act(Side::Left, Write("a"));
    w.settle().unwrap();
    let conflicts: Vec<&RelPath> = w
        .tree(Side::Left)
        .keys()
        .filter(|k| k.to_string().contains("conflict"))
        .collect();
    assert!(
        conflicts.is_empty(),
        "{}",
        w.report(&format!("spurious conflict copies {conflicts:?}"))
    );
    assert!(w.mishaps.is_empty(), "{}", w.report("refused"));
}

/// Runner bug (fixed, `execute.rs`): symlink targets were read before the
/// helper operations ran, so the losing symlink of a conflict (moved to its
/// conflict name by those operations) was never copied to the other side,
/// which the index said had it.
#[test]
fn a_losing_symlink_is_kept_as_a_conflict_copy_on_both_sides() {
    calm(&[L(Symlink("b")), R(Create("b"))]);
}

/// Engine bug (fixed; the random schedules no longer avoid it): a file
/// tied (other bytes, same size and mtime) and then renamed before the
/// engine planned was taken as the moved indexed version; the move was
/// replayed and the new bytes never copied.
#[test]
fn a_tie_then_a_rename_is_synced() {
    calm(&[L(Create("c")), Settle, R(Tie("c")), R(Mv("c", "a"))]);
}

/// Engine bug (fixed; the random schedules no longer avoid it): a file
/// tied (other bytes, same size and mtime) and chmodded before the engine
/// planned was taken as a mode change: only the mode was set on the other
/// side, the new bytes were never copied.
#[test]
fn a_tie_then_a_chmod_is_synced() {
    calm(&[L(Create("b")), Settle, L(Tie("b")), L(Chmod("b"))]);
}

/// Known bug (reported): `Op::Mkdir` (like `Move`, `Symlink`, `SetAttr`,
/// and trashes and copies expecting `Any`) carries no `Expect`: a file a
/// user makes at its path while the batch runs, before it, is trashed.
#[test]
fn a_file_made_where_a_batch_makes_a_directory_is_kept() {
    case(
        Mode::Races,
        STRICT,
        &[L(Mkdir("a")), SyncAt(vec![(0, Side::Right, Create("a"))])],
    );
}

/// Known bug (reported): the replay of a move trashes what is at its
/// destination whatever it is: a file a user just made there, whose report
/// had not reached the engine yet, goes to the trash.
#[test]
fn a_file_made_where_a_move_is_replayed_is_kept() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Create("c"));
    w.settle().unwrap();
    w.act(Side::Right, Mv("c", "b"));
    w.deliver(Side::Right, 1);
    w.act(Side::Left, Create("b"));
    w.sync(false, &[], Echoes::BeforeComplete, true);
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (reported): a copy into the left is refused (the user made
/// the file meanwhile); the user ties it before the batch completes; the
/// reports of both writes reach the engine, then `complete` replaces the
/// queued (newer) state with what the refusal found: the index keeps a
/// stale stamp, and a later deletion on the right is refused on the left
/// and undone.
#[test]
fn a_file_changed_again_after_its_refusal_keeps_its_stamp() {
    case(
        Mode::Races,
        STRICT,
        &[
            R(Create("a")),
            SyncAt(vec![
                (0, Side::Left, Create("a")),
                (1, Side::Left, Tie("a")),
            ]),
            Settle,
            R(Rm("a")),
        ],
    );
}

/// Engine bug (reported): a copy whose source is deleted while the batch
/// runs is reported missed with what the destination holds; `complete`
/// takes that as what arrived, although it is a user's new file there, and
/// the source's deletion then trashes it.
#[test]
fn a_file_made_where_a_vanished_copy_goes_is_kept() {
    case(
        Mode::Races,
        STRICT,
        &[
            R(Create("a")),
            SyncAt(vec![
                (0, Side::Right, Rm("a")),
                (0, Side::Left, Create("a")),
            ]),
        ],
    );
}

/// Engine bug (fixed; rare in the calm schedules): after a rescan, a path
/// both sides hold with the same bytes was compared equal and taken into
/// the index, while a pending move of the right (`a` -> `b`) was then
/// replayed onto it on the left: the left's `b` was trashed and replaced by
/// its `a` (another version), and the replicas differed. A move's
/// destination is no longer compared: the move conflicts with the change
/// there, and a full merge sorts it out.
#[test]
fn a_move_after_a_rescan_onto_an_equal_path_converges() {
    calm(&[
        L(Create("c")),
        L(Create("a")),
        Settle,
        L(Mv("c", "b")),
        R(Mv("c", "a")),
        // The moves conflict: a rescan (the merge is not planned yet).
        SyncAt(vec![]),
        R(Mv("a", "b")),
    ]);
}

/// Runner bug (fixed in `execute.rs`, and now in the model, which lagged
/// behind it): a symlink copy whose source is renamed before its target is
/// read was not reported missed, so the index said the destination had it;
/// the rename's replay there then failed, and the rescan after the failure
/// took the index's entry at the new name, missing on the right, as a
/// deletion: the user's symlink was trashed on the left.
#[test]
fn a_symlink_renamed_while_it_is_copied_is_kept() {
    case(
        Mode::Races,
        STRICT,
        &[L(Symlink("b")), SyncAt(vec![(0, Side::Left, Mv("b", "a"))])],
    );
}

/// Engine bug (fixed): the right chmods `b` while the left renames it to
/// `a`; the engine replays the rename on the right before the report of
/// the chmod reaches it. That report (of `b`, from before the replay) was
/// taken for a new directory `b` on the right, made on the left, and the
/// right's `a` kept its new mode alone. The helper's answer to the move
/// gives the time it was made (the moved entry's ctime): a report at or
/// below its source from before is taken where the entry went, and what
/// the move took along is compared with the index there.
#[test]
fn a_change_reported_after_the_batch_moved_it_away_follows_the_move() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("b")),
            Settle,
            L(Mv("b", "a")),
            R(Chmod("b")),
            Deliver(Side::Left),
            SyncEarly,
        ],
    );
}

/// As above, below a moved directory: the report of a file written in it
/// before the replay names the old place.
#[test]
fn a_write_reported_after_the_batch_moved_its_directory_follows_the_move() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("b")),
            L(Create("b/c")),
            Settle,
            L(Mv("b", "a")),
            R(Write("b/c")),
            Deliver(Side::Left),
            SyncEarly,
        ],
    );
}

/// Engine bug (fixed): the left chmods directory `a` while the right
/// removes it; the engine trashes it on the left before the report of the
/// chmod reaches it. That report was taken for a new directory on the
/// left, made again on the right. The helper's answer to the trash gives
/// the time it was made: a report at or below the path from before is of
/// what is in the trash now.
#[test]
fn a_change_reported_after_the_batch_trashed_it_is_not_made_again() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("a")),
            Settle,
            L(Chmod("a")),
            R(RmDir("a")),
            Deliver(Side::Right),
            SyncEarly,
        ],
    );
}

/// Engine bug (fixed): the right chmods directory `a`; while the batch
/// sets that mode on the left, the left's user sets the old mode back.
/// The report of that (the old mode, which a directory's state cannot
/// tell from the one before our write) was dropped as the state before
/// the batch's write, and the replicas kept different modes. A report of
/// a directory the batch writes now waits for the time of that write.
/// (A lazy filter: both reports, taken after the chmod back, show it.)
#[test]
fn a_directory_mode_set_back_while_the_batch_sets_it_is_synced() {
    case_in(
        World::new(false, true, true),
        STRICT,
        &[
            L(Mkdir("a")),
            Settle,
            R(Chmod("a")),
            SyncAt(vec![(1, Side::Left, Chmod("a"))]),
        ],
    );
}

/// Engine bug (fixed): a file tied on the left (other bytes, the same size
/// and mtime) is renamed while its copy to the right runs; the copy finds
/// its source gone, and the index goes back to the old version. The
/// rename, reported before the copy was, was taken for a rename of that
/// indexed version (its new stamp the rename's): replayed on the right,
/// with the old bytes, and never copied.
#[test]
fn a_tied_file_renamed_while_it_is_copied_is_synced() {
    case(
        Mode::Races,
        STRICT,
        &[
            R(Create("b")),
            Settle,
            L(Tie("b")),
            SyncAt(vec![(0, Side::Left, Mv("b", "c"))]),
        ],
    );
}

/// Engine bug (found by the first fix of late reports after a move): the
/// batch replays the left's move `b` -> `a` on the right and copies the
/// left's new version over `a`; meanwhile, after the move, the right's
/// user creates `b`. The copy's answer at `a` was taken for the move's,
/// whose time then was the copy's: the user's `b`, made before it, was
/// taken for a late report of the moved entry and dropped.
#[test]
fn a_file_made_where_a_replayed_move_left_is_synced() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("b")),
            Settle,
            L(Mv("b", "a")),
            L(Write("a")),
            SyncAt(vec![(1, Side::Right, Create("b"))]),
        ],
    );
}

/// Engine bug (fixed): the right loses a conflict at `a` (its version is
/// kept as a conflict copy) and writes `a` again just before the batch
/// renames it: the copy of the conflict copy to the left reads that newer
/// version. The index then did not take the right's stamp of it (the
/// source may have changed after the copy read it), although it was the
/// one the batch's own rename reported, before the copy ran. The left's
/// user removes the conflict copy at once; at the next listing (an
/// overflow, which loses the reports queued), the
/// right's copy, of an unknown stamp, looked changed, and the modification
/// won over the deletion: the conflict copy came back.
#[test]
fn a_conflict_copy_written_before_the_batch_renames_it_stays_deleted() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Create("a"));
    w.settle().unwrap();
    w.act(Side::Right, Write("a"));
    w.act(Side::Left, Write("a"));
    w.sync_at(&[(0, Side::Right, Write("a"))]);
    let kept = w
        .tree(Side::Left)
        .keys()
        .find(|k| k.to_string().contains("conflict"))
        .cloned()
        .unwrap_or_else(|| panic!("{}", w.report("no conflict copy")));
    let entry = World::index_of(&w.listed(Side::Left, |n| !n.is_dir()), &kept);
    w.user(Side::Left, &Action::Rm { entry });
    w.overflow(Side::Left, 0);
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (fixed): the right makes a directory `c` and renames it to
/// `b`; before the reports reach the engine, it makes the left's symlink
/// `b` on the right (`Op::Symlink` replaces what is there). The rename's
/// report, taken after the batch, made `b` a new directory of the right,
/// which replaced the symlink on the left. A rename onto a path the batch
/// wrote later (by the time of its write) only removes its source.
#[test]
fn a_rename_onto_a_path_then_replaced_by_a_symlink_copy_converges() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Symlink("b")),
            Deliver(Side::Left),
            R(Mkdir("c")),
            R(Mv("c", "b")),
            SyncEarly,
        ],
    );
}

/// Engine bug (fixed): the right renames directory `c` to `a` while the
/// batch makes `c/b` there (its helper makes the missing `c` again). The
/// rename, taken in before the batch's answer, carried `c/b` in the
/// engine's view of the right: its replay on the left put the left's
/// `c/b` in `a`, which the right's `a` lacks. What the batch installed
/// below the source after the rename (by its time) is now taken as left
/// where it is.
#[test]
fn a_directory_renamed_while_the_batch_writes_in_it_converges() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("c")),
            Settle,
            L(Mkdir("c/b")),
            SyncAt(vec![(0, Side::Right, Mv("c", "a"))]),
        ],
    );
}

/// As above, with a file copied into the renamed directory.
#[test]
fn a_directory_renamed_while_a_file_is_copied_into_it_converges() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("c")),
            Settle,
            R(Create("c/a")),
            SyncAt(vec![(0, Side::Left, Mv("c", "b"))]),
        ],
    );
}

/// Engine bug (fixed): a file copied from the left whose directory the
/// left renames while the copy runs, the rename reported only after the
/// batch: the copy found no source, and nothing was left pending, so the
/// file at its new place was never copied (the rename's replay moved a
/// directory where the index had nothing below). The version planned is
/// kept until the rename's report, which takes it along as the source's
/// change (a removal's report drops it; not planned before either, so a
/// batch cut short does not retry it in a loop).
#[test]
fn a_file_whose_directory_is_renamed_while_it_is_copied_is_synced() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Mkdir("a"));
    w.settle().unwrap();
    w.act(Side::Left, Create("a/a"));
    w.sync(
        true,
        &[(0, During::Named(Side::Left, Mv("a", "b")))],
        Echoes::AfterComplete,
        true,
    );
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (fixed): the copy of a conflict copy (the right's `b`, kept
/// as `b.conflict-…-right`) into the left is refused (the left's user made
/// a file of that name meanwhile, then removes it). The right's version
/// was queued again as it was before the batch's own rename of it, with
/// the stamp from before that rename: the index kept a stale stamp of the
/// right's conflict copy (a later write or deletion there would be refused
/// and merged again). It is queued as the rename left it.
#[test]
fn a_refused_conflict_copy_keeps_the_stamp_of_the_rename() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Right, Create("b"));
    w.act(Side::Left, Symlink("b"));
    // The first path the batch writes: its copy of the right's conflict
    // copy into the left.
    let made = During::Hit {
        target: 0,
        hit: Hit::Rewrite(How::New),
    };
    w.sync(true, &[(0, made)], Echoes::BeforeComplete, true);
    let kept = w
        .tree(Side::Left)
        .keys()
        .find(|k| k.to_string().contains("conflict"))
        .cloned()
        .unwrap_or_else(|| panic!("{}", w.report("no file where the conflict copy goes")));
    let entry = World::index_of(&w.listed(Side::Left, |n| !n.is_dir()), &kept);
    w.user(Side::Left, &Action::Rm { entry });
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (fixed): the right makes a file `a` (its report not taken in
/// yet) where the batch makes the left's symlink `a`; the left then
/// removes its symlink. `Op::Symlink` replaced what was there (the file was
/// lost), and the report of the right's file, taken in while the batch
/// ran, counted as a change after the symlink: modification won over the
/// left's removal, and the copy of a file that was gone left the right's
/// symlink in place, unknown to the index. A report at a path the batch
/// writes now waits for its answer; `Op::Symlink` now expects what the
/// index has there (here nothing), and is refused: the right's file is
/// kept, and merged with the left's removal.
#[test]
fn a_report_older_than_a_symlink_made_over_it_is_dropped() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Symlink("a"));
    w.deliver_all();
    w.act(Side::Right, Create("a"));
    w.sync(
        false,
        &[(1, During::Named(Side::Left, Rm("a")))],
        Echoes::BeforeComplete,
        true,
    );
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (fixed): the right renames its new file `b` to `a` and back
/// while the engine plans to make the left's new directory `a` there. The
/// reports of both renames, taken after the batch, moved the directory the
/// batch had made at `a` (in the engine's view) to `b`: its replay removed
/// the left's `a`. A rename from a path the batch wrote later (by the time
/// of its write) is of another entry, new at its destination.
#[test]
fn a_rename_from_a_path_the_batch_then_wrote_is_of_another_entry() {
    case(
        Mode::Races,
        STRICT,
        &[
            R(Create("b")),
            L(Mkdir("a")),
            Deliver(Side::Left),
            R(Mv("b", "a")),
            R(Mv("a", "b")),
            SyncEarly,
        ],
    );
}

/// Engine bug (fixed): the left renames directory `b` (with a new `b/a`
/// whose report an overflow lost) to `a` while a rescan is under way; the
/// listing has `a` and `a/a`, and the rename's report comes after it. It
/// was taken as a rename of a new entry, which dropped what the listing
/// had queued below `a`: `a/a` was never made on the right. A rename whose
/// destination the side already reported with the rename's own stamp, and
/// whose source it reported gone, was taken in already.
#[test]
fn a_rename_reported_after_a_listing_that_has_it_is_dropped() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Mkdir("b"));
    w.settle().unwrap();
    w.act(Side::Left, Mkdir("b/a"));
    w.overflow(Side::Left, 0);
    w.sync(
        true,
        &[(0, During::Named(Side::Left, Mv("b", "a")))],
        Echoes::AfterComplete,
        true,
    );
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (reported, not fixed; rare in the calm schedules too, and
/// already in `main`): a file renamed and touched (a chmod to its own mode:
/// a new ctime only) on the left is taken as maybe another version (the
/// same size and mtime, another stamp); its bytes are to be compared with
/// the right's once the rename is replayed there, but the right's user
/// removes it first: nothing is left to compare with, the removal loses to
/// a change that was none, and the file comes back. A fix needs the index
/// to keep each version's digest (EXACTNESS.md, 6.1), so that a file is
/// compared with the index on its own side.
#[test]
#[ignore = "engine bug: a renamed, touched file removed on the other side before its bytes are compared comes back (needs digests in the index)"]
fn a_file_renamed_and_touched_then_removed_on_the_other_side_stays_removed() {
    let mut w = World::new(false, false, false);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Create("a"));
    w.settle().unwrap();
    w.act(Side::Left, Mv("a", "b"));
    // chmod to the mode it has.
    let entry = World::index_of(&w.listed(Side::Left, |n| !n.is_dir()), &"b".into());
    w.user(Side::Left, &Action::Chmod { entry, mode: 0 });
    // One batch (the rename replayed), then the right removes `b`.
    w.sync(true, &[], Echoes::BeforeComplete, true);
    w.act(Side::Right, Rm("b"));
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (fixed): the left makes and removes a file `a` while the
/// engine makes the right's symlink `a` there, before the reports of both
/// reach it. The report of the file, older than the symlink, was dropped,
/// but the removal's report was then taken for a removal of the symlink:
/// the right's symlink was trashed although the left has it. A removal
/// reported right after a report older than our write there is of that
/// older entry.
#[test]
fn a_file_made_and_removed_before_a_symlink_copy_lands_keeps_the_symlink() {
    case(
        Mode::Races,
        STRICT,
        &[
            R(Symlink("a")),
            Deliver(Side::Right),
            L(Create("a")),
            L(Rm("a")),
            SyncEarly,
        ],
    );
}

/// Engine bug (found by the first fix of late renames onto written paths):
/// the right renames directory `a` over the empty `b` while the batch sets
/// the mode of `b` there (in place, on what is now the renamed `a`). The
/// rename's report, older than the batch's write at `b`, was taken as a
/// rename onto something our write then replaced, and reduced to a removal
/// of `a`: the left's `a` was trashed and its `a/a` lost on the right. Only
/// a write that put another inode there replaces what was renamed.
#[test]
fn a_directory_renamed_over_one_whose_mode_the_batch_sets_converges() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("a")),
            L(Mkdir("a/a")),
            L(Mkdir("b")),
            Settle,
            L(Chmod("b")),
            Deliver(Side::Left),
            R(Mv("a", "b")),
            SyncEarly,
        ],
    );
}

/// Engine bug (fixed): the left makes and removes a file `a` while the
/// engine makes the right's symlink `a` there; the left's filter is lazy (it
/// lstats a path when its report is taken), so the report of the user's
/// file describes the symlink (an echo), and the removal's report that
/// follows was taken for a removal of the symlink: it was trashed on the
/// right. The helper's symlinks (and replayed moves) are made by a rename
/// into place that the filter never reports: a report showing exactly what
/// one left is of a user's change made before it, and a removal reported
/// next is of that older entry. (The same with a directory the batch
/// renames there: the fixed seed's racing schedules found it past 256
/// cases.)
#[test]
fn a_file_made_and_removed_before_a_symlink_copy_lands_keeps_it_with_a_lazy_filter() {
    case_in(
        World::new(false, true, true),
        STRICT,
        &[
            R(Symlink("a")),
            Deliver(Side::Right),
            L(Create("a")),
            L(Rm("a")),
            SyncEarly,
        ],
    );
}

/// Engine bug (found by the first fix of removals after older reports): the
/// right chmods `a` while the batch replays the left's rename of it to `b`;
/// the chmod's late report (of `a`, older than the replay) is taken at `b`
/// and dropped. The right's user then removes `b`: that removal was taken
/// for one of the older entry and dropped, and `b` stayed on the left. Only
/// a report of another inode than ours marks an older entry.
#[test]
fn a_directory_removed_after_a_late_report_of_its_rename_stays_removed() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("a")),
            Settle,
            L(Mv("a", "b")),
            Deliver(Side::Left),
            R(Chmod("a")),
            SyncEarly,
            R(RmDir("b")),
        ],
    );
}

/// Engine bug (found by the fix of late renames through fences): the right
/// renames `b` over its file `a` while the batch keeps the right's `a` as a
/// conflict copy (renaming it). The rename's late report, taken where the
/// batch's rename took the entry, brought its stamp from before that
/// rename: the index kept a stale stamp of the right's conflict copy. The
/// batch's rename answered with the entry's state; only the source's
/// removal is news.
#[test]
fn a_rename_onto_a_conflict_loser_keeps_the_stamp_of_the_conflict_copy() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Right, Create("a"));
    w.act(Side::Left, Mkdir("a"));
    w.act(Side::Right, Create("b"));
    w.deliver(Side::Left, usize::MAX);
    // The right's `a`, not yet its `b`.
    w.deliver(Side::Right, 1);
    w.act(Side::Right, Mv("b", "a"));
    w.sync(false, &[], Echoes::BeforeComplete, true);
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (found by the fix of renames reported after a listing): the
/// left makes `a` and `a/a` and renames `a` to `b` while a rescan is under
/// way; the report of `a/a` comes after the listing (which has `b` and
/// `b/a`), then the rename's. The rename, already listed, was dropped, and
/// the late report of `a/a` made `a` and `a/a` on the right, which the left
/// does not have. Late reports below the source go along with the rename.
#[test]
fn a_late_report_below_a_rename_already_listed_follows_it() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.overflow(Side::Left, 0);
    w.act(Side::Left, Mkdir("a"));
    w.act(Side::Left, Mkdir("a/a"));
    // The overflow's rescan and `a`'s report are taken in; `a/a`'s and the
    // rename's reports come after the listing.
    w.deliver(Side::Left, 2);
    w.sync(
        false,
        &[(0, During::Named(Side::Left, Mv("a", "b")))],
        Echoes::AfterComplete,
        true,
    );
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (fixed): the right ties `c` (other bytes, the same size and
/// mtime) just before the batch replays the left's rename of it to `a`.
/// The rename's answer (same size and mtime) was taken for the indexed
/// version with the rename's stamp, and the tie's late report, older than
/// the rename, was dropped: the right kept other bytes than the left for
/// good. A late report of that very file from before our write now has its
/// bytes compared again.
#[test]
fn a_tie_made_just_before_the_batch_renames_the_file_is_synced() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("c")),
            Settle,
            L(Mv("c", "a")),
            Deliver(Side::Left),
            R(Tie("c")),
            SyncEarly,
        ],
    );
}

/// Known bug (fixed: `Op::Symlink` carries an `Expect`): the right makes a
/// file `a` (its report not taken in yet) where the batch makes the left's
/// symlink `a`; the symlink replaced the file, which was lost, and when the
/// right's user then removed what they took for their file, the removal
/// was dropped as one of an entry older than the symlink (the left kept
/// it, the right did not). The symlink is now refused there: the file is
/// kept and merged as a conflict.
#[test]
fn a_file_made_where_a_symlink_copy_goes_is_kept() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Symlink("a"));
    w.deliver_all();
    w.act(Side::Right, Create("a"));
    w.sync(
        false,
        &[(1, During::Named(Side::Right, Rm("a")))],
        Echoes::BeforeComplete,
        true,
    );
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// Engine bug (fixed; found by the calm schedules): both sides change `a`
/// to the same bytes with other modes (a chmod, a `cp -p` restore), and an
/// overflow makes the next plan a rescan. The mode to align, decided by the
/// comparison right before that plan, was kept across the rescan and set
/// by a later batch, after the left had written `a` again: the right's
/// version, just renamed to its conflict name by the same batch, had
/// another mode than the copy of it planned (the copy found its source
/// changed). A listing supersedes what a comparison before it decided.
#[test]
fn attributes_compared_before_a_rescan_are_not_set_after_it() {
    let mut w = World::new(false, false, false);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Create("a"));
    w.settle().unwrap();
    w.overflow(Side::Left, 0);
    w.act(Side::Left, Chmod("a"));
    w.act(Side::Right, Restore("a", true));
    // The comparison, then a plan that is only the rescan.
    w.sync(true, &[], Echoes::BeforeComplete, true);
    w.act(Side::Left, Write("a"));
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}

/// As above, with the right's directory `c` that the batch renames to `b`
/// on the left, where the left's user made and removed a file just before
/// (the fixed seed's racing schedules, past 256 cases).
#[test]
fn a_file_made_and_removed_before_a_move_is_replayed_there_keeps_the_move() {
    case_in(
        World::new(false, true, true),
        STRICT,
        &[
            R(Mkdir("c")),
            Settle,
            R(Mv("c", "b")),
            Deliver(Side::Right),
            L(Create("b")),
            L(Rm("b")),
            SyncEarly,
        ],
    );
}

/// Engine and helper bug (fixed): the left renames `c` over `b`; the right
/// removes `b` just before the batch replays the rename there. The helper's
/// move, expecting the version of `b` it was to replace, went ahead when it
/// found nothing, and the right's removal, reported after, was taken for a
/// removal of what the move put there: it was trashed on the left. A move
/// that expects a version refuses when it is gone (a full merge sorts it
/// out), as a trash or an install does.
#[test]
fn a_rename_over_a_file_the_other_side_just_removed_converges() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("b")),
            L(Create("c")),
            Settle,
            L(Mv("c", "b")),
            Deliver(Side::Left),
            R(Rm("b")),
            SyncEarly,
        ],
    );
}

/// Engine bug (fixed): the right makes `c/a`; the left makes a file `c`
/// (its report not taken in yet) where the batch makes directory `c`: the
/// `Mkdir` is refused, and the copy of `c/a` fails. The left then removes
/// its file: `c` is made again, but `c/a` was left as it was, to be copied
/// at the next change (there was none). A copy missed below a refused
/// directory waits for the merge of that directory, as the source's change.
#[test]
fn a_file_below_a_refused_directory_is_copied_once_it_is_made() {
    case(
        Mode::Races,
        STRICT,
        &[
            R(Mkdir("c")),
            R(Create("c/a")),
            Deliver(Side::Right),
            L(Create("c")),
            SyncEarly,
            L(Rm("c")),
        ],
    );
}

/// Engine bug (found by the fix of lazy reports of unreported writes): the
/// batch replays the right's rename `a` -> `b` on the left, then sets the
/// mode the right gave it (a reported write); the report of that mode was
/// taken for a late report of a user's change before the rename, and the
/// left's user's `rm -r b` that followed was dropped as the removal of an
/// older entry. Only the batch's last write at a path, if unreported,
/// counts.
#[test]
fn a_directory_removed_after_its_replayed_rename_and_chmod_stays_removed() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("a")),
            Settle,
            R(Chmod("a")),
            R(Mv("a", "b")),
            SyncWhile(vec![]),
            L(RmDir("b")),
        ],
    );
}

/// Engine bug (found once the random schedules stopped avoiding ties with
/// renames): both sides tie `a/a` (other bytes, the same size and mtime),
/// and the left renames `a` to `b`. The comparison before the plan looked
/// at `a/a`, which the left no longer has; the rename's replay brought both
/// to `b/a`, taken as the same on both sides, and the replicas kept other
/// bytes. Same-looking files a replayed move brings together wait for the
/// next plan's comparison.
#[test]
fn ties_on_both_sides_below_a_renamed_directory_are_compared() {
    calm(&[
        L(Mkdir("a")),
        L(Create("a/a")),
        Settle,
        R(Tie("a/a")),
        L(Tie("a/a")),
        L(Mv("a", "b")),
    ]);
}

/// Engine bug (fixed): the right renames its new directory `a` (with `a/a`)
/// to `b` just before the batch copies the left's new file `a` there. The
/// rename, older than the copy at `a`, is of the user's directory, new at
/// `b`; but the report of `a/a`, taken before it, stayed at `a/a`, where
/// nothing is: `b/a` never reached the left. Reports below a renamed
/// entry older than our write at its old path go along with the rename.
#[test]
fn a_directory_renamed_just_before_a_copy_lands_at_its_name_keeps_its_contents() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Create("a"));
    w.act(Side::Right, Mkdir("a"));
    w.act(Side::Right, Create("a/a"));
    w.deliver(Side::Left, usize::MAX);
    w.sync(
        false,
        &[(0, During::Named(Side::Right, Mv("a", "b")))],
        Echoes::BeforeComplete,
        true,
    );
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}
