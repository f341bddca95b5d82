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
    let want = RelPath::from("e/f");
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Changed { path, sig }) if path == want => {
                assert_eq!(sig.size, 4);
                return;
            }
            Ok(e) => seen.push(format!("{e:?}")),
            Err(_) => panic!("e/f never reported; events: {seen:#?}"),
        }
    }
}
