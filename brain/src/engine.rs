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
use std::collections::{BTreeMap, BTreeSet, HashMap};

use twinsync_filter::Excludes;
use twinsync_proto::{Entry, Event, Expect, Kind, Op, RelPath, Sig, Stamp};

use crate::conflict::conflict_name;
pub use crate::index::Known;

mod hardlinks;
mod marks;

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
    renamed: BTreeSet<RelPath>,
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
    /// Paths whose last report, older than our write there, was dropped,
    /// per side: a removal reported next is of that older entry (gone
    /// before our write, which expected nothing or its own version there).
    older_gone: [BTreeSet<RelPath>; 2],
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
/// later ctime (a rename, a link, a creation all set it).
#[derive(Debug, Clone)]
struct Fence {
    at: RelPath,
    to: Option<RelPath>,
    ctime_ns: i64,
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

    /// The entry at `path` in side `p`'s view: the index with `p`'s pending
    /// moves applied.
    fn view_get(&self, p: usize, path: &RelPath) -> Option<Known> {
        let origin = self.pending[p].origin(path)?;
        self.known.get(origin.as_ref()).copied()
    }

    /// True when what side `p` has at `path` is new: neither in its view nor
    /// moved away from there by one of its pending moves.
    fn is_new(&self, p: usize, path: &RelPath) -> bool {
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
    fn view_any_within(&self, p: usize, path: &RelPath) -> bool {
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
    fn view_keys_within(&self, p: usize, path: &RelPath) -> Vec<RelPath> {
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
                if let Some(&(ct, ino)) = self.installed_ctime[p].get(&path) {
                    if sig.ctime_ns < ct {
                        if ino != sig.ino {
                            // Another entry, which ours replaced (or which
                            // was gone before ours came).
                            if self.older_gone[p].len() >= 4096 {
                                self.older_gone[p].clear();
                            }
                            self.older_gone[p].insert(path.clone());
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
                        self.older_gone[p].insert(path.clone());
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
                if self.older_gone[p].remove(&path) {
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
                    // the source is gone, and nothing of it is at `to`.
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
    fn through_fences(&self, p: usize, mut path: RelPath, ctime: Option<i64>) -> Option<RelPath> {
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

    /// Side `p`'s entry at `from` left it at `ctime` (see [`Fence`]).
    fn fence(&mut self, p: usize, at: RelPath, to: Option<RelPath>, ctime_ns: i64) {
        if self.fences[p].len() >= FENCES {
            self.fences[p].drain(..FENCES / 2);
        }
        self.fences[p].push(Fence { at, to, ctime_ns });
    }

    /// True when an event of side `p` reporting `sig` at `path` must wait
    /// for the running batch to end: once one is held, every later one of
    /// the side is (their order matters); and a report of what the batch
    /// writes at `path` can only be told from a user's same-size,
    /// same-mtime write by its stamp, known when the helper answers.
    fn holds(&self, p: usize, path: &RelPath, sig: &Sig) -> bool {
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
    fn on_moved(&mut self, p: usize, from: &RelPath, to: &RelPath, sig: Sig) -> (Verdict, String) {
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
        for k in gone_below {
            self.pending[p].state.entry(k).or_insert(None);
        }
        let decision = if from_known {
            // Renamed with no change reported before: only the rename gave
            // it a new stamp (its bytes are the indexed ones).
            let renamed_only = !self.pending[p].state.contains_key(to);
            self.compose_move(p, from, to);
            if renamed_only && sig.kind == Kind::File {
                self.pending[p].renamed.insert(to.clone());
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
    fn cancel_moves_into(&mut self, p: usize, path: &RelPath) {
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
    fn compose_move(&mut self, p: usize, from: &RelPath, to: &RelPath) {
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
        self.fences[p].clear();
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
    fn listing_passed(&self, p: usize, path: &RelPath) -> bool {
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
    fn missing_between(&mut self, p: usize, sc: &Scanning, upto: Option<&RelPath>) {
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

    fn plan_batch(&mut self, now: i64) -> Batch {
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
                if let Some(why) = self.move_conflict(&pend[t].state, &from, &to) {
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
                if let Some(k) = self.known.get(&from).filter(|k| k.kind == Kind::File) {
                    self.renaming[t].insert(k.stamps[t]);
                }
                b.ops[t].push(Op::Move {
                    from: from.clone(),
                    to: to.clone(),
                    expect,
                });
                self.k_rekey(&from, &to);
                rekey(&mut pend[t].state, &from, &to);
                // The rename gave the moved entry a new stamp on both sides:
                // the other's comes with the helper's answer; the mover's
                // is taken when nothing else changed it, else its report is
                // compared (it may also hold other bytes).
                if pend[s].renamed.remove(&to) {
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
    fn move_conflict(
        &self,
        t_state: &BTreeMap<RelPath, Option<Sig>>,
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
    fn propagate(
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
    fn remove_on(
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
    fn expect_on(&self, t: Side, path: &RelPath, k: Option<&Known>) -> Expect {
        if self.moved_here[t].contains(path) {
            // Moved there by this batch: its stamp there is not known yet.
            return Expect::Any;
        }
        match k {
            None => Expect::Absent,
            Some(k) if k.kind == Kind::File && k.stamps[t].is_known() => {
                Expect::Version(k.stamps[t])
            }
            Some(_) => Expect::Any,
        }
    }

    /// Count a copy of `path` into `t`; true when the path goes back and
    /// forth ([`LOOP_FLIPS`] changes of direction within [`LOOP_WINDOW`]
    /// seconds): it is then not acted on until the next rescan.
    fn flipped(&mut self, t: Side, path: &RelPath) -> bool {
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
    fn copy_to(
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
        let attr_only = !forced
            && base.is_some_and(|k| {
                k.kind == sig.kind
                    && k.kind != Kind::Dir
                    && k.size == sig.size
                    && k.mtime_ns == sig.mtime_ns
            });
        let mut expect = self.expect_on(t, path, base.as_ref());
        if sig.kind == Kind::Dir {
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
        } else if attr_only {
            b.ops[t].push(Op::SetAttr {
                path: path.clone(),
                mode: Some(sig.mode),
                mtime_ns: None,
                owner: sig.owner(),
                xattrs: none_carried(&sig),
            });
            b.trace(self.tracing, t, path, || {
                format!("chmod {:o} on {t}: {why}", sig.mode)
            });
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
    fn both_changed(
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
            b.ops[loser].push(Op::Move {
                from: path.clone(),
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
        for t in Side::BOTH {
            self.regroup(t.idx(), &applied[t]);
        }
        for t in Side::BOTH {
            let (ti, si) = (t.idx(), t.other().idx());
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
                        let later = applied[ti][i + 1..].iter().any(|b| {
                            matches!(b, Applied::Done(q, _) | Applied::Refused(q, _) if q == path)
                        });
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
                            let later = applied[ti][i + 1..].iter().any(|b| {
                                matches!(b, Applied::Done(q, _) | Applied::Refused(q, _) if q == path)
                            });
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
                            self.fence(ti, from, Some(path.clone()), sig.ctime_ns);
                            let rewritten = applied[ti][i + 1..].iter().any(
                                |b| matches!(b, Applied::Done(q, _) | Applied::Refused(q, _) if q == path),
                            );
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
                        self.fence(ti, path.clone(), None, sig.ctime_ns);
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
                        // (A newer report queued meanwhile stays.)
                        self.pending[ti].state.entry(path.clone()).or_insert(*found);
                        self.pending[ti].forced.insert(path.clone());
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
                        if above {
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
                        let mut now_at = c.path.clone();
                        for (f, t) in &self.pending[si].moves {
                            if let Some(p) = now_at.rebase(f, t) {
                                now_at = p;
                            }
                        }
                        let moved = now_at != c.path
                            || self.deferred[si].iter().any(|e| {
                                matches!(e, Event::Moved { from, .. } if c.path.is_within(from))
                            });
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
                        self.k_restore(&c.path, base);
                        if base.is_some() {
                            self.pending[si].state.insert(c.path.clone(), None);
                        }
                        // The source moved away (its move taken in): what
                        // it moved is the version planned, not the index's
                        // (restored) one: its bytes are compared, not taken
                        // for the index's with the rename's stamp.
                        let mut now_at = c.path.clone();
                        for (f, t) in &self.pending[si].moves {
                            if let Some(p) = now_at.rebase(f, t) {
                                now_at = p;
                            }
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

    fn k_restore(&mut self, path: &RelPath, base: Option<Known>) {
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

/// Content checks: what size, mtime and stamps cannot tell, the bytes do.
impl Engine {
    /// Files whose content must be compared (hashed on both sides) before
    /// the next plan:
    /// - a file pending on one side with the indexed size, mtime and mode
    ///   but another stamp (a `cp -p` restore, or the same bytes written
    ///   again): another version only if its bytes differ from the other
    ///   side's;
    /// - files of the same size changed on both sides: equal bytes are no
    ///   conflict (only attributes to align), and a same-mtime tie with
    ///   other bytes is one.
    #[must_use]
    pub fn to_compare(&self) -> Vec<RelPath> {
        let mut out = BTreeSet::new();
        // True when what side `i`'s view has at `path` is not the index's
        // entry there: a pending move brought it, or took that one away.
        let moved_here = |i: usize, path: &RelPath| {
            self.pending[i]
                .origin(path)
                .is_none_or(|o| o.as_ref() != path)
        };
        for p in 0..2 {
            let o = 1 - p;
            for (path, x) in &self.pending[p].state {
                let Some(x) = x else { continue };
                if x.kind != Kind::File || self.pending[p].forced.contains(path) {
                    continue;
                }
                match self.pending[o].state.get(path) {
                    Some(Some(y)) => {
                        // Not where a pending move goes: equal bytes would
                        // take the path into the index while the move's
                        // replay still puts the moved entry there on the
                        // other side (it conflicts with the change there:
                        // a full merge sorts it out).
                        if y.kind == Kind::File
                            && y.size == x.size
                            && !self.pending[o].forced.contains(path)
                            && !moved_here(p, path)
                            && !moved_here(o, path)
                        {
                            out.insert(path.clone());
                        }
                    }
                    Some(None) => {}
                    None => {
                        // An entry a pending move brought here has a new
                        // stamp from the rename; the move's replay takes it
                        // (the other side has nothing here to compare yet).
                        if !moved_here(p, path)
                            && !self.pending[p].verified.contains(path)
                            && needs_compare(self.view_get(p, path).as_ref(), p, x)
                        {
                            out.insert(path.clone());
                        }
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// The digests of [`Engine::to_compare`]'s paths on the left and on the
    /// right (`None`: not a readable file there). Equal bytes: a file
    /// changed on one side only keeps the indexed version (its new stamp is
    /// recorded); files changed on both sides are the same (in sync, or
    /// only their mtime and mode to align, without a conflict copy).
    /// Different bytes: a real change, even under an equal size and mtime.
    pub fn compared(&mut self, results: Vec<Compared>) {
        self.epoch += 1;
        for (path, hl, hr) in results {
            let equal = hl.is_some() && hl == hr;
            let l = self.pending[0].state.get(&path).copied();
            let r = self.pending[1].state.get(&path).copied();
            match (l, r) {
                (Some(Some(a)), Some(Some(c))) if equal => {
                    self.pending[0].state.remove(&path);
                    self.pending[1].state.remove(&path);
                    if a.same_content(&c) {
                        let k = Known {
                            sig: a,
                            stamps: [a.stamp(), c.stamp()],
                        };
                        self.relink.note(&path, a, c);
                        self.k_insert(path, k);
                    } else {
                        let winner = match a.mtime_ns.cmp(&c.mtime_ns) {
                            std::cmp::Ordering::Greater => Side::Left,
                            std::cmp::Ordering::Less => Side::Right,
                            std::cmp::Ordering::Equal => self.policy.prefer,
                        };
                        let w = if winner == Side::Left { a } else { c };
                        self.attr_fixes.push((winner.other(), path, w));
                    }
                }
                (Some(Some(_)), Some(Some(_))) => {
                    self.pending[0].forced.insert(path.clone());
                    self.pending[1].forced.insert(path);
                }
                (Some(Some(x)), None) | (None, Some(Some(x))) => {
                    let p = usize::from(l.is_none());
                    if equal {
                        // The bytes the other side holds: the same version,
                        // or only its attributes changed.
                        match self.known.get(&path).copied() {
                            Some(k) if k.same_content(&x) => {
                                self.pending[p].state.remove(&path);
                                self.k_insert(path, k.with_stamp(p, x.stamp()));
                            }
                            _ => {
                                self.pending[p].verified.insert(path);
                            }
                        }
                    } else {
                        self.pending[p].forced.insert(path);
                    }
                }
                _ => {}
            }
        }
    }

    /// Paths found looping since the last call, and forget them: a rescan
    /// reconciles them from scratch.
    pub fn take_stuck(&mut self) -> Vec<RelPath> {
        std::mem::take(&mut self.stuck).into_iter().collect()
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
