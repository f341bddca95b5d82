//! The filter reports a replica root taken away (deleted, moved) as
//! `RootGone`, also while something holds a file open inside the root (the
//! brain keeps its index journal open in the left root's `.twinsync/`).

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

mod common;

use twinsync_filter::{Event, STATE_DIR};

/// Watch `root` (listed once, as the agent does) and hand its events over a
/// channel; the loop ends at the first `RootGone`.
fn watch(root: &Path) -> mpsc::Receiver<Event> {
    let (watcher, event_loop) = common::listed(root);
    common::forward(watcher, event_loop, |e| matches!(e, Event::RootGone))
}

fn expect_root_gone(rx: &mpsc::Receiver<Event>) {
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::RootGone) => return,
            Ok(_) => {}
            Err(e) => panic!("no RootGone: {e}"),
        }
    }
}

/// A root like the left one: files, and `.twinsync/index/` with a file held
/// open (which keeps the root's directory entry pinned in the kernel).
fn held_root(base: &Path) -> (std::path::PathBuf, fs::File) {
    let root = base.join("left");
    fs::create_dir_all(root.join("d/e")).unwrap();
    fs::write(root.join("d/e/f"), b"x").unwrap();
    fs::write(root.join("g"), b"y").unwrap();
    let index = root.join(STATE_DIR).join("index");
    fs::create_dir_all(&index).unwrap();
    let held = fs::File::create(index.join("pair.journal")).unwrap();
    (root, held)
}

#[test]
fn rm_rf_of_a_root_holding_an_open_file_is_root_gone() {
    let base = tempfile::tempdir().unwrap();
    let (root, _held) = held_root(base.path());
    let rx = watch(&root);
    fs::remove_dir_all(&root).unwrap();
    expect_root_gone(&rx);
}

#[test]
fn a_root_moved_away_is_root_gone() {
    let base = tempfile::tempdir().unwrap();
    let (root, _held) = held_root(base.path());
    let rx = watch(&root);
    fs::rename(&root, base.path().join("elsewhere")).unwrap();
    expect_root_gone(&rx);
}

#[test]
fn a_deleted_root_without_state_folder_is_root_gone() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("right");
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/c"), b"z").unwrap();
    let rx = watch(&root);
    fs::remove_dir_all(&root).unwrap();
    expect_root_gone(&rx);
}
