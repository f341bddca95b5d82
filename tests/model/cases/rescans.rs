//! Rescans, listings and overflows: what a listing supersedes, and the
//! reports that come after it.

use twinsync::side::Side;

use super::calm;
use super::T::{Settle, SyncAt, L, R};
use super::U::{Chmod, Create, Mkdir, Mv, Restore, Symlink, Write};
use crate::actions::{Action, During};
use crate::schedules::Echoes;
use crate::world::{World, STRICT};

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

/// Engine bug (fixed; found by a random hunt): the right's user touches
/// directory `b` (a chmod to its own mode) just before a batch moves it
/// aside as a conflict copy, and a rescan lists both replicas before that
/// chmod's report comes. The listing had dropped the batch's fences, so
/// the late report was taken as a change of the symlink the batch had put
/// at `b`: a later plan trashed the left's `b` and the right's conflict
/// copy, and the replicas differed. Fences, which go by ctime, outlive a
/// listing.
#[test]
fn a_report_older_than_a_conflict_move_and_a_listing_is_taken_through_the_move() {
    let mut w = World::new(false, false, true);
    w.avoid_known_bugs = false;
    w.overflow(Side::Left, 0);
    w.act(Side::Left, Create("a"));
    w.sync(
        true,
        &[(0, During::Named(Side::Right, Mkdir("b")))],
        Echoes::BeforeComplete,
        true,
    );
    w.act(Side::Left, Symlink("b"));
    w.deliver(Side::Left, usize::MAX);
    let entry = World::index_of(&w.listed(Side::Right, |_| true), &"b".into());
    w.user(Side::Right, &Action::Chmod { entry, mode: 0 });
    w.sync(false, &[], Echoes::AfterComplete, true);
    if let Err(e) = w.settle_and_check(STRICT) {
        panic!("{}", w.report(&e));
    }
}
