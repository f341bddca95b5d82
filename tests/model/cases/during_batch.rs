//! Users acting on what a running batch writes: copy destinations,
//! trashes, refused operations and what they found there.

use twinsync::side::Side;

use super::case;
use super::T::{Deliver, Settle, SyncAt, SyncEarly, SyncWhile, L, R};
use super::U::{Chmod, Create, Mkdir, Mv, Restore, Rm, RmDir, Symlink, Tie, Write};
use crate::actions::{Action, During, Hit, How};
use crate::schedules::{Echoes, Mode};
use crate::world::{World, STRICT};

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
/// (Since the rename of a conflict's loser expects the loser's version,
/// that rename is refused and the conflict merged again with the newer
/// write: the conflict copy is then made once things settle.)
#[test]
fn a_conflict_copy_written_before_the_batch_renames_it_stays_deleted() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.act(Side::Left, Create("a"));
    w.settle().unwrap();
    w.act(Side::Right, Write("a"));
    w.act(Side::Left, Write("a"));
    w.sync_at(&[(0, Side::Right, Write("a"))]);
    if let Err(e) = w.settle() {
        panic!("{}", w.report(&e));
    }
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

/// Engine bug (fixed; a random hunt): the left chmods its directory `a`
/// while the right renames its `a` (with a symlink in it) to `b`, before
/// the batch that carries the chmod: the batch's mkdir made a new, empty
/// `a` there, the rename's report was taken for a new directory `b` alone,
/// and the symlink stayed at `a/a` on the left and `b/a` on the right. A
/// directory the index has on both sides only gets its attributes set: gone,
/// the batch fails there and both sides are listed again.
#[test]
fn a_chmod_of_a_directory_the_other_side_renames_meanwhile_is_not_a_mkdir() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("a")),
            L(Symlink("a/a")),
            Settle,
            L(Chmod("a")),
            Deliver(Side::Left),
            R(Mv("a", "b")),
            SyncEarly,
        ],
    );
}

/// Engine bug (fixed): the copy of the right's change of `b/a` finds no
/// source (the right's user renamed `b` to `a` while the batch ran). The
/// change was queued as a removal of `b/a` on the right, which the
/// rename's report then took along: the left got the rename, the change
/// was never copied, and the replicas differed at `a/a` for good. The
/// version planned is now queued as the right's change where the rename
/// took it.
#[test]
fn a_change_whose_directory_is_renamed_before_its_copy_follows_the_rename() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("b")),
            Settle,
            L(Create("b/a")),
            SyncAt(vec![(1, Side::Right, Write("b/a"))]),
            SyncAt(vec![(0, Side::Right, Mv("b", "a"))]),
        ],
    );
}

/// The left's symlink `b` loses a conflict, and the left's user renames
/// the file `c` onto `b` just before the batch sets the loser aside. The
/// rename aside expects the loser's version (it took whatever was at `b`
/// before, and the index could record the symlink under the conflict
/// copy's name while a file was there: found by a random hunt with a
/// listing in between): refused, the conflict is merged again with the
/// file, and both versions are kept.
#[test]
fn a_conflict_loser_replaced_just_before_it_is_set_aside_converges() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Create("c")),
            Settle,
            L(Symlink("b")),
            R(Symlink("b")),
            SyncAt(vec![(0, Side::Left, Mv("c", "b"))]),
        ],
    );
}

/// Engine bug (fixed): the right renames `c` onto the empty directory `b`;
/// the left's user removes `b` just before the batch replays that rename
/// there. The replay expected any entry at `b` and went ahead onto nothing;
/// the removal, reported after, was then taken for one of what the replay
/// put there: the right's `b` was trashed and the left kept it. The replay
/// now expects a directory there: refused, the rename and the removal are
/// merged again.
#[test]
fn a_directory_removed_just_before_a_rename_onto_it_is_replayed_is_not_lost_on_one_side() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("b")),
            L(Mkdir("c")),
            Settle,
            R(Mv("c", "b")),
            SyncAt(vec![(0, Side::Left, RmDir("b"))]),
        ],
    );
}

/// Engine bug (fixed): while the batch makes the left's symlink `c` on the
/// right (and the right's new directory `a` on the left), the right's user
/// renames `a` to `c` and removes it, just before the symlink is made
/// there. The rename, older than the symlink, was taken as `a` gone; the
/// removal of `c` reported next was then taken for one of the symlink, and
/// the left's `c` was trashed while the right kept it. A rename older than
/// our write at its destination now marks the removal that follows it there
/// as older too.
#[test]
fn a_removal_of_a_renamed_entry_before_a_symlink_is_made_there_is_not_the_symlinks() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Symlink("c")),
            R(Mkdir("a")),
            SyncAt(vec![
                (1, Side::Right, Mv("a", "c")),
                (1, Side::Right, RmDir("c")),
            ]),
        ],
    );
}

/// Engine bug (fixed): the right's chmod of the directory `c/a` is
/// replayed on the left, whose user has just renamed `c/a` (with `c/a/b`)
/// to `a` and made a symlink `c/a`. The chmod went to the symlink; the
/// rename, reported after and older than what the chmod answered, was then
/// taken for a new directory without what it holds, and `a/b` never
/// reached the right. An attribute change now expects the kind of entry
/// the index has: refused, the rename and the symlink are merged again.
#[test]
fn a_chmod_of_a_directory_replaced_by_a_symlink_meanwhile_is_refused() {
    case(
        Mode::Races,
        STRICT,
        &[
            L(Mkdir("c")),
            L(Mkdir("c/a")),
            L(Create("c/a/b")),
            Settle,
            R(Chmod("c/a")),
            SyncAt(vec![
                (0, Side::Left, Mv("c/a", "a")),
                (0, Side::Left, Symlink("c/a")),
            ]),
        ],
    );
}
