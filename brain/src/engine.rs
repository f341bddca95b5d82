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
//!   Events after a pending move are judged against the *view* of that side:
//!   the index with the side's pending moves applied (an overlay: the moves
//!   are undone on the path looked up, not applied to a copy of the index),
//!   which is also what the other side will have once they are replayed.
//! - `inflight[side]`: for each path the running batch overwrites, the state
//!   it had before; a report of that old state while the write is in flight
//!   is not a change either.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use twinsync_filter::Excludes;
use twinsync_proto::{Entry, Event, Expect, Kind, Op, RelPath, Sig, Stamp};

use crate::conflict::conflict_name;
pub use crate::index::Known;

mod compare;
mod complete;
mod events;
mod hardlinks;
mod marks;
mod plan;
mod scan;

pub use crate::side::Side;

/// What the engine decided about one event or path, with its reason: the
/// material of `--dry-run` traces and debug logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The side the event came from, or the side acted on.
    pub side: Side,
    /// The path.
    pub path: RelPath,
    /// What was decided.
    pub verdict: Verdict,
    /// Why, in words (borrowed for the fixed ones: no allocation per
    /// event), e.g. `the indexed version: what we wrote or already synced`.
    pub reason: std::borrow::Cow<'static, str>,
}

/// What the engine decided about a report or a path: the runner counts and
/// logs it, tests compare it (never its wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The report shows the brain's own write (or the synced state): dropped.
    Echo,
    /// Dropped for another reason (excluded, stale, not synced).
    Dropped,
    /// Kept until the running batch's answers tell what it reports.
    Held,
    /// A change queued for the next plan.
    Queued,
    /// Merged into a change already queued.
    Coalesced,
    /// A fact noted: a mark, a rescan needed, an error, the root gone.
    Noted,
    /// An action of a planned batch (a copy, a move, a conflict).
    Planned,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Echo => "dropped: echo",
            Verdict::Dropped => "dropped",
            Verdict::Held => "held",
            Verdict::Queued => "queued",
            Verdict::Coalesced => "coalesced",
            Verdict::Noted => "noted",
            Verdict::Planned => "planned",
        })
    }
}

impl std::fmt::Display for Trace {
    /// The decision as the log shows it: `held: while the running batch
    /// writes there`; a planned action is its reason alone.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.verdict {
            Verdict::Planned => f.write_str(&self.reason),
            v => write!(f, "{v}: {}", self.reason),
        }
    }
}

impl Trace {
    /// A decision about `path` on `side`.
    #[must_use]
    pub fn new(
        side: Side,
        path: &RelPath,
        verdict: Verdict,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Trace {
        Trace {
            side,
            path: path.clone(),
            verdict,
            reason: reason.into(),
        }
    }

    /// True when the event was dropped as an echo of the brain's own write.
    #[must_use]
    pub fn is_echo(&self) -> bool {
        self.verdict == Verdict::Echo
    }
}

impl Batch {
    /// Record a decision, when tracing (the text is only built then).
    fn trace(&mut self, on: bool, side: Side, path: &RelPath, decision: impl FnOnce() -> String) {
        if on {
            self.traces
                .push(Trace::new(side, path, Verdict::Planned, decision()));
        }
    }
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
    /// Whether the copy installed something (a newer version of the source
    /// than planned); if not, what the destination holds is not the
    /// batch's.
    pub installed: bool,
}

/// One planned content copy into a side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The path.
    pub path: RelPath,
    /// The source's version to copy.
    pub sig: Sig,
    /// What the destination must hold right before the copy replaces it.
    pub expect: Expect,
}

/// How one conditional operation of a batch ended, as the destination's
/// helper reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Done: what the path holds now (its lstat right after).
    Done(RelPath, Option<Sig>),
    /// Refused: the path did not hold the expected version (someone changed
    /// it meanwhile); `found` is what it holds.
    Refused(RelPath, Option<Sig>),
    /// Moved to the trash: the entry's lstat there right after (the rename
    /// gave it the time of the removal as ctime), `None` when nothing was
    /// there.
    Removed(RelPath, Option<Sig>),
}

/// What happened to a batch, for [`Engine::complete`].
#[derive(Debug, Default)]
pub struct Report {
    /// Per side: the outcome of each conditional write, install, move,
    /// attribute change or trash made there.
    pub applied: [Vec<Applied>; 2],
    /// Per destination side: copies that did not arrive as planned.
    pub missed: [Vec<Copied>; 2],
    /// Some helper operation failed (the index cannot be trusted: both
    /// sides are rescanned).
    pub ops_failed: bool,
    /// Replayed moves that were refused (something unexpected where they
    /// go), as (from, to): the index changes at and below both ends are
    /// undone and both sides rescanned.
    pub refused_moves: Vec<(RelPath, RelPath)>,
}

/// The work of one batch. `ops[s]` run on side `s` in order before any
/// content moves; then `copies[s]` are copied *into* side `s` from the other
/// side (one rsync per direction).
#[derive(Debug, Default)]
pub struct Batch {
    /// Helper operations per destination side. Their `SetAttr` and `Mkdir`
    /// carry no extended attributes: the executor reads them from the other
    /// side, as they are when the batch runs (this stays pure).
    pub ops: [Vec<Op>; 2],
    /// Content copies per destination side, with the source signature
    /// expected to arrive and what the destination must hold.
    pub copies: [Vec<Copy>; 2],
    /// Hard links ([`Op::Link`]) per destination side, made after the
    /// copies: new names of files the side holds or got from the copies.
    pub links: [Vec<Op>; 2],
    /// Conflicts resolved in this batch.
    pub conflicts: Vec<Conflict>,
    /// One line per action with its reason.
    pub traces: Vec<Trace>,
    /// Both replicas must be rescanned and reconciled before going on.
    pub rescan: bool,
    /// The batch was cut at its size limit: what is left stays pending.
    pub more: bool,
    /// Paths found going back and forth with no change in between: the
    /// engine stopped acting on them (an error to report).
    pub loops: Vec<RelPath>,
}

impl Batch {
    /// True when nothing is to be done.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.iter().all(Vec::is_empty)
            && self.copies.iter().all(Vec::is_empty)
            && self.links.iter().all(Vec::is_empty)
            && !self.rescan
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// The moves of indexed entries, to replay on the other side in this
    /// order. Composed as they come in (see [`Engine::compose_move`]): a
    /// move never needs a parent directory that a later one moves away.
    moves: Vec<(RelPath, RelPath)>,
    state: BTreeMap<RelPath, Option<Sig>>,
    /// Pending files whose size, mtime and mode are the index's but whose
    /// stamp is not, and whose content was found to differ from the other
    /// side's: real changes (a `cp -p` restore, a same-mtime tie).
    forced: BTreeSet<RelPath>,
    /// Pending files compared equal in content to the other side's while
    /// their stamp, mode or both changed: attributes only.
    verified: BTreeSet<RelPath>,
    /// Files renamed with no change reported before: their new stamp is
    /// the rename's; the move's replay takes it.
    renamed: BTreeMap<RelPath, ()>,
    rescan: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.state.is_empty() && !self.rescan
    }

    /// Where the entry at `path` in this side's view (the index with this
    /// side's pending moves applied) is in the index: the moves undone, last
    /// first. `None` when the entry there was moved away (the view has
    /// nothing at `path`). Costs one step per pending move of the side.
    fn origin<'a>(&self, path: &'a RelPath) -> Option<Cow<'a, RelPath>> {
        let mut cur = Cow::Borrowed(path);
        for (from, to) in self.moves.iter().rev() {
            if let Some(back) = cur.rebase(to, from) {
                cur = Cow::Owned(back);
            } else if cur.is_within(from) {
                return None;
            }
        }
        Some(cur)
    }
}

/// A side's listing being merged with the index as it streams in.
#[derive(Debug, Default)]
struct Scanning {
    /// The last path taken in: the entries come in ascending order.
    last: Option<RelPath>,
    /// Paths the agent could not read.
    unreadable: Vec<RelPath>,
    /// Entries taken in.
    count: usize,
    /// Size of the side's pending map when last rebuilt compact.
    compacted_at: usize,
}

impl Scanning {
    /// True when the listing says nothing of `path` (it is at or below an
    /// unreadable path).
    fn protects(&self, path: &RelPath) -> bool {
        self.unreadable.iter().any(|u| path.is_within(u))
    }
}

/// Rebuild `map` with full nodes. Filled in ascending order (a listing, a
/// merge), a B-tree's nodes are left half full: this halves its size.
fn compact<K: Ord, V>(map: &mut BTreeMap<K, V>) {
    let mut old = std::mem::take(map);
    let Some((k, v)) = old.pop_first() else {
        return;
    };
    // `append` into a non-empty map rebuilds it from both maps' sorted
    // iterators with full nodes, freeing the old nodes as it goes (no
    // intermediate copy, unlike `collect`).
    map.insert(k, v);
    map.append(&mut old);
}

/// True when one of `a` and `b` is within the other.
fn nested(a: &RelPath, b: &RelPath) -> bool {
    a.is_within(b) || b.is_within(a)
}

/// True when the moves `a` and `b` can be replayed in either order: neither
/// touches what the other moves or replaces.
fn independent(a: &(RelPath, RelPath), b: &(RelPath, RelPath)) -> bool {
    !(nested(&a.0, &b.0) || nested(&a.0, &b.1) || nested(&a.1, &b.0) || nested(&a.1, &b.1))
}

/// `p` itself when `and_self`, then its ancestors, deepest first (the root
/// excluded).
fn ancestors(p: &RelPath, and_self: bool) -> impl Iterator<Item = RelPath> {
    let first = if and_self {
        Some(p.clone())
    } else {
        p.parent()
    };
    std::iter::successors(first, RelPath::parent).take_while(|a| !a.is_root())
}

/// Tunables of the decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Which side wins a conflict when both mtimes are equal.
    pub prefer: Side,
    /// Keep a conflict's loser beside the file as
    /// `NAME.conflict-DATE-SIDE.EXT` on both sides (true, the default), or in
    /// the losing replica's `.twinsync/conflicts/` (false).
    pub conflicts_beside: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            prefer: Side::Left,
            conflicts_beside: true,
        }
    }
}

/// The decision engine.
#[derive(Debug)]
pub struct Engine {
    known: BTreeMap<RelPath, Known>,
    pending: [Pending; 2],
    /// For each path the running batch writes on a side, what the index
    /// had there before it.
    inflight: [HashMap<RelPath, Option<Known>>; 2],
    /// Events of a side held while a batch runs, from the first one that
    /// could be the report of the batch's own write there (its stamp is only
    /// known once the helper answers) on: taken in, in order, by
    /// [`Engine::complete`].
    deferred: [Vec<Event>; 2],
    /// Per path, the recent copies (time, destination side), to tell a path
    /// going back and forth (a bug) from real changes.
    flips: HashMap<RelPath, Flips>,
    /// Paths found looping: not acted on again until a rescan.
    stuck: BTreeSet<RelPath>,
    /// Copies of a batch interrupted by a crash, per path: (destination
    /// side index, the version copied). Used by the next listings only.
    intents: HashMap<RelPath, (usize, Sig, Stamp)>,
    /// What each side's helper recorded installing (path: stamp right
    /// after), read at start-up: a copy of an interrupted batch found with
    /// that stamp is the batch's for sure.
    installed: [HashMap<RelPath, Stamp>; 2],
    /// Paths whose index entry was taken from such a copy (until the next
    /// plan).
    adopted: BTreeSet<RelPath>,
    excludes: Excludes,
    policy: Policy,
    /// Index keys changed since the last [`Engine::take_delta`].
    changed: std::collections::BTreeSet<RelPath>,
    /// Whether to record a [`Trace`] per decision (dry runs, debug logs).
    pub tracing: bool,
    /// Attributes to give one side for files found equal by content.
    attr_fixes: Vec<(Side, RelPath, Sig)>,
    /// Rescans in a row caused by failed helper operations (at most one, so
    /// a lasting failure such as a permission error does not loop).
    failed_ops_rescans: u32,
    /// Previous values of the index entries the current batch changed, to
    /// undo it when it could not be carried out (a link lost mid-batch).
    undo: Vec<Undo>,
    /// The index changed too much for a journal delta (a big directory
    /// moved): the runner saves a full snapshot instead.
    snapshot_due: bool,
    /// Listings being taken in, per side.
    scanning: [Option<Scanning>; 2],
    /// A side's listing taken in whole since the last plan (what it did
    /// not list, it lacks).
    listed: [Option<Scanning>; 2],
    /// A batch ends after `max(min_batch, pending / 8)` actions, so a merge
    /// of a big tree runs in a few batches and the copy lists, the undo log
    /// and the journal delta of each stay small. [`MIN_BATCH`] by default;
    /// `usize::MAX` plans everything in one batch (a dry run shows it all);
    /// tests set less.
    pub min_batch: usize,
    /// Entries below a moved directory past which the move is recorded as
    /// one ([`BIG_MOVE`]; tests set less).
    pub big_move: usize,
    /// The time of the batch being planned (seconds).
    now: i64,
    /// Paths the batch being planned moves an entry to, per side: their
    /// stamp there is only known once the move is done.
    moved_here: [BTreeSet<RelPath>; 2],
    /// Paths the running batch moves away (a replayed move's source, a
    /// conflict's loser) or trashes, per side: a report at or below one may
    /// describe what was there before (held until the batch is done).
    leaving: [BTreeSet<RelPath>; 2],
    /// The moves the running batch makes, per side: destination -> source.
    moving: [HashMap<RelPath, RelPath>; 2],
    /// What the batches moved away or trashed, per side, oldest first (see
    /// [`Fence`]).
    fences: [Vec<Fence>; 2],
    /// Copies whose source vanished before the report of why reached the
    /// engine, per source side: the version planned, still to copy if a
    /// rename took it (its report brings it along), dropped on a removal.
    vanished: [BTreeMap<RelPath, Sig>; 2],
    /// The ctime of what the batches installed, per side and path: a
    /// report of an older state there (taken before the install, handled
    /// after it, even a batch later) is stale. Forgotten once a newer state
    /// is reported, and at a listing.
    installed_ctime: [HashMap<RelPath, (i64, u64)>; 2],
    /// The stamps of the files the batches' operations left, per side
    /// (bounded: cleared when full). A report with one of them and the
    /// indexed content shows a state our own writes made (the first of two
    /// operations on one inode, under either of its names): an echo, since
    /// no user can make a ctime ours.
    produced: [HashSet<Stamp>; 2],
    /// Paths whose last report, older than our write there, was dropped,
    /// per side: a removal reported next is of that older entry (gone
    /// before our write, which expected nothing or its own version there),
    /// with that entry's inode: its rename away is its departure instead.
    older_gone: [BTreeMap<RelPath, u64>; 2],
    /// What the batches' unreported writes (replayed moves, symlinks) left
    /// at a path, per side: its stamp right after.
    quiet: [HashMap<RelPath, Stamp>; 2],
    /// Paths the running batch writes without a report (the destinations
    /// of replayed moves, symlinks), per side.
    unreported: [BTreeSet<RelPath>; 2],
    /// Paths whose bytes the last batch copied to the other side, per
    /// source side (read after its own operations there).
    copied_out: [BTreeSet<RelPath>; 2],
    /// Counts calls that may have put in the pending maps a state equal to
    /// the index's (events, listings, index changes from outside).
    epoch: u64,
    /// [`Engine::epoch`] at the end of the last plan: when unchanged, what
    /// that plan left pending was already checked against the index.
    planned_epoch: u64,
    /// The names of each side's inodes that have more than one.
    groups: [hardlinks::Groups; 2],
    /// The links the running batch makes, per side: new name -> existing.
    linking: [HashMap<RelPath, RelPath>; 2],
    /// Each side's reports ordered against the batches' writes there.
    marks: [marks::Marks; 2],
    /// Whether marks are asked for (live: reports come), see
    /// [`Engine::set_ordered`].
    ordered: bool,
    /// The versions of files the batch being planned renames, per side (a
    /// replayed move): their other names there change with them.
    renaming: [std::collections::HashSet<Stamp>; 2],
    /// Files a merge found equal on both sides whose inode has other names
    /// on a side: a group there may be separate inodes on the other.
    relink: hardlinks::Relink,
}

/// An entry the brain moved away from `at` (to `to`) or trashed (`to` is
/// `None`) on a side, and the ctime the rename gave it (the time it left):
/// a report of a path at or below `at` with an older ctime was taken
/// before it left. It describes the entry now at `to` (the report is taken
/// there), or one in the trash (dropped). Anything put at `at` since has a
/// later ctime (a rename, a link, a creation all set it). `ino` is the
/// entry's inode: a user's older renames of it only led it to `at`.
#[derive(Debug, Clone)]
struct Fence {
    at: RelPath,
    to: Option<RelPath>,
    ctime_ns: i64,
    ino: u64,
}

/// Fences kept per side: stale reports come within moments of the batch.
const FENCES: usize = 1024;

/// A directory move with more indexed entries below it than this is
/// recorded as one move (undo) and saved by a snapshot.
pub const BIG_MOVE: usize = 1024;

/// An index change of the current batch, to undo it.
#[derive(Debug)]
enum Undo {
    /// The entry at a path was this (`None`: absent).
    Entry(RelPath, Option<Known>),
    /// Everything at or below `from` was moved below `to`, dropping what
    /// was there (`displaced`).
    Rekey {
        from: RelPath,
        to: RelPath,
        displaced: Vec<(RelPath, Known)>,
    },
}

/// Recent copies of one path.
#[derive(Debug, Default, Clone, Copy)]
struct Flips {
    /// Time of the first copy counted (seconds).
    since: i64,
    /// Direction changes counted since then.
    count: u32,
    /// Destination of the last copy.
    last: Option<Side>,
}

/// A path copied this many times in alternating directions within
/// [`LOOP_WINDOW`] seconds is looping.
pub const LOOP_FLIPS: u32 = 12;
/// See [`LOOP_FLIPS`].
pub const LOOP_WINDOW: i64 = 10;

/// How a side's report of an entry compares with the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    /// The indexed version, as observed (stamp equal, or not a file).
    Same,
    /// A file with the indexed size, mtime and mode but another stamp:
    /// maybe another version; its content decides.
    Suspect,
    /// Another version.
    Changed,
}

/// Compare `x`, seen on side index `p`, with the index's `k`.
fn judge(k: Option<&Known>, p: usize, x: &Sig) -> Judged {
    match k {
        Some(k) if k.same_content(x) => {
            if x.kind != Kind::File || k.stamps[p] == x.stamp() {
                Judged::Same
            } else {
                Judged::Suspect
            }
        }
        _ => Judged::Changed,
    }
}

/// True when `x`, seen on side index `p`, is a file with the indexed file's
/// size and mtime but another stamp: its bytes may or may not be the
/// indexed ones (a `cp -p` restore, a tie, a chmod), which only a comparison
/// with the other side tells.
fn needs_compare(k: Option<&Known>, p: usize, x: &Sig) -> bool {
    k.is_some_and(|k| {
        x.kind == Kind::File
            && k.kind == Kind::File
            && k.size == x.size
            && k.mtime_ns == x.mtime_ns
            && k.stamps[p] != x.stamp()
    })
}

/// The extended attributes to give an entry made or changed after `sig`
/// when `sig` says it has none of those carried: the empty list (nothing to
/// read on the source side, one round trip less for an attribute-only
/// change). `None`: the executor reads them from the source.
fn none_carried(sig: &Sig) -> Option<twinsync_proto::Xattrs> {
    let scope = twinsync_proto::XattrScope::current();
    (sig.xattrs.of(scope) == 0).then(|| twinsync_proto::Xattrs {
        scope,
        list: Vec::new(),
    })
}

/// A content digest (BLAKE3).
pub type Digest = [u8; 32];

/// A path's content on the left and on the right (`None`: not a readable
/// regular file there), for [`Engine::compared`].
pub type Compared = (RelPath, Option<Digest>, Option<Digest>);

/// The fewest actions a batch is cut at (see [`Engine::min_batch`]).
pub const MIN_BATCH: usize = 16_384;

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

/// [`rekey`] for a subtree that is a good part of `map`: the map is split
/// and joined again (a few sequential rebuilds, O(size of the map)) instead
/// of removing and inserting each moved key (O(moved × log size), with a
/// comparison of paths at each step).
fn rekey_bulk<V>(map: &mut BTreeMap<RelPath, V>, from: &RelPath, to: &RelPath) {
    if from == to {
        return;
    }
    let moved = take_within(map, from);
    drop(take_within(map, to));
    // Rebasing keeps their order: built at once, full nodes.
    let mut rebased: BTreeMap<RelPath, V> = moved
        .into_iter()
        .map(|(k, v)| (k.rebase(from, to).expect("within from"), v))
        .collect();
    map.append(&mut rebased);
}

/// Take out of `map` what is at or below `dir` (not the root).
fn take_within<V>(map: &mut BTreeMap<RelPath, V>, dir: &RelPath) -> BTreeMap<RelPath, V> {
    let (lo, hi) = dir.children_range();
    let own = map.remove_entry(dir);
    let mut out = map.split_off(&lo);
    let mut tail = out.split_off(&hi);
    map.append(&mut tail);
    if let Some((k, v)) = own {
        out.insert(k, v);
    }
    out
}

impl Engine {
    /// An engine with an empty index.
    #[must_use]
    pub fn new(excludes: Excludes, policy: Policy) -> Self {
        Engine {
            known: BTreeMap::new(),
            pending: Default::default(),
            inflight: Default::default(),
            deferred: Default::default(),
            flips: HashMap::new(),
            stuck: BTreeSet::new(),
            intents: HashMap::new(),
            adopted: BTreeSet::new(),
            installed: Default::default(),
            excludes,
            policy,
            changed: std::collections::BTreeSet::new(),
            undo: Vec::new(),
            snapshot_due: false,
            tracing: true,
            attr_fixes: Vec::new(),
            failed_ops_rescans: 0,
            scanning: Default::default(),
            listed: Default::default(),
            min_batch: MIN_BATCH,
            big_move: BIG_MOVE,
            epoch: 0,
            planned_epoch: u64::MAX,
            now: 0,
            moved_here: Default::default(),
            leaving: Default::default(),
            moving: Default::default(),
            fences: Default::default(),
            vanished: Default::default(),
            installed_ctime: Default::default(),
            produced: Default::default(),
            older_gone: Default::default(),
            copied_out: Default::default(),
            quiet: Default::default(),
            unreported: Default::default(),
            groups: Default::default(),
            linking: Default::default(),
            renaming: Default::default(),
            marks: Default::default(),
            ordered: false,
            relink: hardlinks::Relink::default(),
        }
    }

    /// Note the index change at `path`: for the journal, and to undo the
    /// batch (both bounded by the batch's size, see `MIN_BATCH`).
    fn k_record(&mut self, path: &RelPath) {
        self.undo
            .push(Undo::Entry(path.clone(), self.known.get(path).copied()));
        self.changed.insert(path.clone());
    }

    fn k_insert(&mut self, path: RelPath, k: Known) {
        self.k_record(&path);
        self.known.insert(path, k);
    }

    fn k_remove_within(&mut self, dir: &RelPath) {
        for k in keys_within(&self.known, dir) {
            self.k_record(&k);
            self.known.remove(&k);
        }
    }

    fn k_rekey(&mut self, from: &RelPath, to: &RelPath) {
        if range_within(&self.known, from).nth(self.big_move).is_some() {
            // A big directory: one undo record for the move rather than two
            // per entry, and a snapshot rather than a journal delta, so the
            // move is planned (and its `rename` sent) without that bookkeeping.
            let displaced = range_within(&self.known, to)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            self.undo.push(Undo::Rekey {
                from: from.clone(),
                to: to.clone(),
                displaced,
            });
            self.snapshot_due = true;
            if range_within(&self.known, from).count() * 8 > self.known.len() {
                rekey_bulk(&mut self.known, from, to);
            } else {
                rekey(&mut self.known, from, to);
            }
            return;
        }
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
        self.epoch += 1;
        while let Some(u) = self.undo.pop() {
            self.revert(u);
        }
        self.inflight = Default::default();
        self.leaving = Default::default();
        self.moving = Default::default();
        // A full rescan follows: what was held is superseded by it.
        self.deferred = Default::default();
    }

    /// Undo the current batch's index changes at and below the ends of
    /// `moves` (see [`Engine::complete`]).
    fn undo_within(&mut self, moves: &[(RelPath, RelPath)]) {
        let touched = |p: &RelPath| moves.iter().any(|(f, t)| p.is_within(f) || p.is_within(t));
        let undo = std::mem::take(&mut self.undo);
        let mut kept = Vec::new();
        for u in undo.into_iter().rev() {
            let mine = match &u {
                Undo::Entry(path, _) => touched(path),
                Undo::Rekey { from, to, .. } => moves.iter().any(|(f, t)| f == from && t == to),
            };
            if mine {
                self.revert(u);
            } else {
                kept.push(u);
            }
        }
        kept.reverse();
        self.undo = kept;
    }

    /// Put back what one undo record says the index held.
    fn revert(&mut self, u: Undo) {
        match u {
            Undo::Entry(path, old) => {
                match old {
                    Some(k) => self.known.insert(path.clone(), k),
                    None => self.known.remove(&path),
                };
                self.changed.insert(path);
            }
            Undo::Rekey {
                from,
                to,
                displaced,
            } => {
                rekey(&mut self.known, &to, &from);
                self.known.extend(displaced);
                self.snapshot_due = true;
            }
        }
    }

    /// The index changes since the last call: entries set, entries removed.
    pub fn take_delta(&mut self) -> (Vec<(RelPath, Known)>, Vec<RelPath>) {
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
        self.snapshot_due = false;
    }

    /// True when the index changed too much since the last save for a
    /// journal delta: save a full snapshot (see [`Engine::clear_delta`]).
    #[must_use]
    pub fn snapshot_due(&self) -> bool {
        self.snapshot_due
    }

    /// Replace the exclude rules (SIGHUP).
    pub fn set_excludes(&mut self, excludes: Excludes) {
        self.epoch += 1;
        self.excludes = excludes;
    }

    /// Rebuild the index's map with full nodes: entered in order (as a merge
    /// does), a B-tree's nodes are left half full.
    pub fn compact_known(&mut self) {
        compact(&mut self.known);
    }

    /// How many indexed entries planning what is pending would delete on
    /// each side: those missing on one side and unchanged on the other (for
    /// the mass-deletion safety net, before a merge's first batch).
    #[must_use]
    pub fn pending_deletions(&self) -> [usize; 2] {
        let mut out = [0; 2];
        for s in Side::BOTH {
            let t = s.other();
            out[t] = self.pending[s]
                .state
                .iter()
                .filter(|(k, v)| {
                    v.is_none()
                        && self.known.contains_key(*k)
                        && !self.pending[t].state.contains_key(*k)
                })
                .count();
        }
        out
    }

    /// How many indexed entries (all those below a removed directory
    /// included) the live changes pending would delete on each side: the
    /// removals of the other side, where this side did not change them.
    #[must_use]
    pub fn live_deletions(&self) -> [usize; 2] {
        let mut out = [0; 2];
        for s in Side::BOTH {
            let t = s.other();
            let mut n = 0;
            let mut last: Option<&RelPath> = None;
            for (k, v) in &self.pending[s].state {
                // The source of a pending move is no deletion: the move's
                // replay takes its entries along.
                if v.is_some()
                    || self.pending[t].state.contains_key(k)
                    || last.is_some_and(|l| k.is_within(l))
                    || self.pending[s]
                        .moves
                        .iter()
                        .any(|(from, _)| k.is_within(from))
                {
                    continue;
                }
                let below = range_within(&self.known, k).count();
                if below > 0 {
                    n += below;
                    last = Some(k);
                }
            }
            out[t] = n.min(self.known.len());
        }
        out
    }

    /// What `batch` is about to make, as the index will have it: its
    /// copies, the directories it makes, the attributes it sets and the
    /// entries its replayed moves put in place (written down before it runs:
    /// after a crash or a lost link, what is found made is the batch's, not
    /// a change; see [`Engine::set_intents`]).
    #[must_use]
    pub fn intents(&self, batch: &Batch) -> Vec<crate::index::Intent> {
        let known = &self.known;
        let mut intents: Vec<crate::index::Intent> = Vec::new();
        for t in Side::BOTH {
            for c in &batch.copies[t] {
                intents.push(crate::index::Intent {
                    path: c.path.clone(),
                    side: t.idx() as u8,
                    sig: c.sig,
                    moved_from: None,
                });
            }
            // A link stands for a copy of the version it links.
            for op in &batch.links[t] {
                if let twinsync_proto::Op::Link { path, want, .. } = op {
                    intents.push(crate::index::Intent {
                        path: path.clone(),
                        side: t.idx() as u8,
                        sig: *want,
                        moved_from: None,
                    });
                }
            }
            // Directories the batch makes, attributes it sets and entries
            // it moves, as the index will have them (a chmod found after a crash is the
            // batch's, not a change that would undo a deletion since).
            for op in &batch.ops[t] {
                if let twinsync_proto::Op::Mkdir { path, .. }
                | twinsync_proto::Op::SetAttr { path, .. } = op
                {
                    if let Some(k) = known.get(path) {
                        intents.push(crate::index::Intent {
                            path: path.clone(),
                            side: t.idx() as u8,
                            sig: k.sig,
                            moved_from: None,
                        });
                    }
                }
                // What a replayed move puts at its destination (a removal
                // of it made since on the other side must not bring it
                // back as new).
                // (Not a conflict's loser renamed aside: the other side
                // never had it, it is still to copy there.)
                if let twinsync_proto::Op::Move { from, to, .. } = op {
                    if batch.conflicts.iter().any(|c| c.kept_as == *to) {
                        continue;
                    }
                    if let Some(k) = known.get(to) {
                        intents.push(crate::index::Intent {
                            path: to.clone(),
                            side: t.idx() as u8,
                            sig: k.sig,
                            moved_from: Some(from.clone()),
                        });
                    }
                }
            }
        }
        intents
    }

    /// The copies a batch was making when the last run ended in a crash: a
    /// destination the next listing finds holding that version holds what
    /// the batch installed, not a change of its own.
    /// A move's record stands for everything indexed below its source,
    /// recognised below its destination with the destination side's stamps
    /// (call after [`Engine::set_known`]). A source that an earlier move of
    /// the batch made is followed back through it.
    pub fn set_intents(&mut self, intents: Vec<crate::index::Intent>) {
        self.intents.clear();
        let mut moves: Vec<(RelPath, RelPath)> = Vec::new();
        for i in intents {
            let t = usize::from(i.side.min(1));
            if let Some(from) = i.moved_from {
                let mut origin = from.clone();
                for (f, to) in moves.iter().rev() {
                    if let Some(back) = origin.rebase(to, f) {
                        origin = back;
                    }
                }
                for (k, v) in range_within(&self.known, &origin) {
                    if *k != origin {
                        let here = k.rebase(&origin, &i.path).expect("within origin");
                        self.intents.insert(here, (t, v.sig, v.stamps[t]));
                    }
                }
                moves.push((from, i.path.clone()));
            }
            self.intents.insert(i.path, (t, i.sig, Stamp::UNKNOWN));
        }
    }

    /// What side `side`'s helper recorded installing since the index was
    /// last saved whole (see [`Engine::set_intents`]).
    pub fn set_installed(&mut self, side: Side, installed: Vec<(RelPath, Stamp)>) {
        self.installed[side] = installed.into_iter().collect();
    }

    /// Replace the index (loaded from disk).
    pub fn set_known(&mut self, known: BTreeMap<RelPath, Known>) {
        self.epoch += 1;
        self.known = known;
    }

    /// The index.
    #[must_use]
    pub fn known(&self) -> &BTreeMap<RelPath, Known> {
        &self.known
    }

    /// Order reports against the batches' writes by marks (live runs; see
    /// [`Engine::marked`]).
    pub fn set_ordered(&mut self, on: bool) {
        self.ordered = on;
    }

    /// True when batches wrote files on `side` since its last mark was
    /// asked for: the runner asks its helper for one (see
    /// [`Engine::marked`]).
    #[must_use]
    pub fn wants_mark(&self, side: Side) -> bool {
        self.marks[side].wanted()
    }

    /// `side`'s helper made mark `n` after the batches' writes so far
    /// (`None`: it makes none). Once its filter reports it, a report of
    /// one of those files is a user's change even with the stamp written.
    pub fn marked(&mut self, side: Side, n: Option<u64>) {
        self.marks[side].asked(n);
    }

    /// True when something waits to be planned.
    #[must_use]
    pub fn has_work(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty()) || !self.attr_fixes.is_empty()
    }

    /// The paths with a change queued, per side (for logs).
    #[must_use]
    pub fn pending_paths(&self) -> Vec<(Side, RelPath)> {
        Side::BOTH
            .into_iter()
            .flat_map(|s| self.pending[s].state.keys().map(move |k| (s, k.clone())))
            .collect()
    }

    /// Number of queued changes (both sides).
    #[must_use]
    pub fn queue_depth(&self) -> usize {
        self.pending
            .iter()
            .map(|p| p.state.len() + p.moves.len())
            .sum()
    }

    /// `--skip-initial-sync`: after both full scans, take into the index
    /// what is already the same on both sides and forget the differences
    /// (they are synced when next changed).
    pub fn adopt_equal(&mut self) {
        self.epoch += 1;
        let [l, r] = std::mem::take(&mut self.pending);
        for (path, ls) in l.state {
            if let (Some(a), Some(Some(b))) = (ls, r.state.get(&path)) {
                if a.same_content(b) {
                    let k = Known {
                        sig: a,
                        stamps: [a.stamp(), b.stamp()],
                    };
                    self.k_insert(path, k);
                }
            }
        }
    }

    /// Forget what is pending (after a dry-run batch).
    pub fn discard_pending(&mut self) {
        self.epoch += 1;
        self.pending = Default::default();
    }

    /// A copy of the index, to restore after a dry run.
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<RelPath, Known> {
        self.known.clone()
    }
}

#[cfg(test)]
#[path = "engine_tests/mod.rs"]
mod tests;
