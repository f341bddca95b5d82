//! Reports that reach the engine after the batch that wrote their path:
//! renames, chmods and removals older or newer than our writes.

use twinsync::side::Side;

use super::T::{Deliver, Settle, SyncAt, SyncEarly, SyncEarlyAt, SyncWhile, L, R};
use super::U::{Chmod, Create, Mkdir, Mv, Rm, RmDir, Symlink, Write};
use super::{case, case_in};
use crate::actions::During;
use crate::schedules::{Echoes, Mode};
use crate::world::{World, STRICT};

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

/// Engine bug (fixed; found by a random hunt): the right's user makes `a`
/// and renames it to `b` just before a batch copies the left's new `a`
/// there. The late report of the user's `a`, older than our write, marked
/// the next removal at `a` as that older entry's; but that entry had left
/// by the rename, and the user's later `rm a` of our copy was dropped: the
/// left kept `a` for good. The older entry's rename away is its departure.
#[test]
fn a_removal_after_the_older_entry_was_renamed_away_is_synced() {
    case(
        Mode::Races,
        STRICT,
        &[
            SyncWhile(vec![(Side::Left, Symlink("a"))]),
            R(Create("a")),
            R(Mv("a", "b")),
            SyncEarlyAt(vec![(0, Side::Right, Rm("b"))]),
            R(Rm("a")),
        ],
    );
}

/// Engine bug (fixed; a random hunt): the right rewrites `c`, whose report
/// the filter takes only after the batch put the left's symlink there (a
/// conflict: the right's file was kept aside), so it shows the symlink;
/// then the right's user removes the symlink. That removal, reported after
/// the mark that followed the batch, was dropped as the removal of the
/// file the symlink replaced, and the left kept the symlink for good. A
/// removal reported after that mark is of what the batch wrote.
#[test]
fn a_removal_after_the_mark_of_a_symlink_a_late_report_showed_is_synced() {
    let mut w = World::new(false, true, true);
    w.avoid_known_bugs = false;
    w.act(Side::Right, Create("c"));
    // The left's queue overflows: both sides are listed again.
    w.overflow(Side::Left, 0);
    w.act(Side::Left, Symlink("c"));
    w.sync(true, &[], Echoes::BeforeComplete, false);
    w.act(Side::Right, Write("c"));
    w.sync(false, &[], Echoes::BeforeComplete, false);
    w.act(Side::Right, Rm("c"));
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}
