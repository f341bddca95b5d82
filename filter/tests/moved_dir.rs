//! The filter reports what was written inside a directory right before the
//! directory was renamed: the write's event names the old path, where
//! nothing is found any more, so the directory's new place is listed.

mod common;

use std::fs;
use std::time::Duration;

use twinsync_filter::Event;
use twinsync_proto::RelPath;

#[test]
fn a_file_written_just_before_its_directory_was_renamed_is_reported_at_the_new_place() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("r");
    fs::create_dir_all(root.join("d")).unwrap();
    let (watcher, event_loop) = common::listed(&root);
    // Both happen before the loop reads a single event: the write's
    // CLOSE_WRITE (named d/f) is read after `d` became `e`.
    fs::write(root.join("d/f"), b"data").unwrap();
    fs::rename(root.join("d"), root.join("e")).unwrap();
    let rx = common::forward(watcher, event_loop, |_| false);
    expect_changed(&rx, "e/f", 4);
}

/// Campaign seed 83000025: a file renamed into a directory that is renamed
/// right after. The file's rename names the directory's old path, where it
/// is not found any more: reported as removed from its old name, it must be
/// reported at the directory's new place too.
#[test]
fn a_file_renamed_into_a_directory_renamed_right_after_is_reported_at_the_new_place() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("r");
    fs::create_dir_all(root.join("a/d")).unwrap();
    fs::create_dir_all(root.join("b")).unwrap();
    fs::write(root.join("a/f"), b"data").unwrap();
    let (watcher, event_loop) = common::listed(&root);
    fs::rename(root.join("a/f"), root.join("a/d/r")).unwrap();
    fs::rename(root.join("a/d"), root.join("b/e")).unwrap();
    let rx = common::forward(watcher, event_loop, |_| false);
    expect_changed(&rx, "b/e/r", 4);
}

/// Wait for the report of `path` changed, with `size` bytes.
fn expect_changed(rx: &std::sync::mpsc::Receiver<Event>, path: &str, size: u64) {
    let want = RelPath::from(path);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Changed { path, sig }) if path == want => {
                assert_eq!(sig.size, size);
                return;
            }
            Ok(e) => seen.push(format!("{e:?}")),
            Err(_) => panic!("{want} never reported; events: {seen:#?}"),
        }
    }
}
