//! The polling backend, end to end through the shared translator: what a
//! user does to a tree is reported as the kernel's events would report it
//! (renames paired, new directories listed, marks after what came before).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use twinsync_filter::{Event, Watching};
use twinsync_proto::RelPath;

const EVERY: Duration = Duration::from_millis(20);

fn watched(root: &std::path::Path) -> Receiver<Event> {
    let (watcher, event_loop) = common::listed_with(root, Watching::Poll(EVERY));
    let marks = root.join(".twinsync/mark");
    fs::create_dir_all(&marks).unwrap();
    assert!(watcher.watch_marks(&marks).unwrap());
    let w = std::sync::Arc::clone(&watcher);
    let rx = common::forward(watcher, event_loop, |_| false);
    MARKER.with(|m| *m.borrow_mut() = Some(w));
    rx
}

thread_local! {
    static MARKER: std::cell::RefCell<Option<std::sync::Arc<twinsync_filter::Watcher>>> =
        const { std::cell::RefCell::new(None) };
}

/// Make mark `n` (as the helper does: the file made and removed at once).
fn mark(root: &std::path::Path, n: u64) {
    let f = root.join(format!(".twinsync/mark/{n}"));
    fs::write(&f, b"").unwrap();
    fs::remove_file(&f).unwrap();
    MARKER.with(|m| m.borrow().as_ref().unwrap().mark_made(n));
}

/// The events up to mark `n`.
fn until_mark(rx: &Receiver<Event>, n: u64) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Mark { n: m }) if m == n => return seen,
            Ok(e) => seen.push(e),
            Err(_) => panic!("mark {n} never reported; events: {seen:#?}"),
        }
    }
}

fn changed(events: &[Event]) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Changed { path, .. } => Some(path.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn writes_attributes_and_removals_are_reported_before_the_next_mark() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path();
    fs::write(root.join("old"), b"1").unwrap();
    fs::write(root.join("gone"), b"1").unwrap();
    let rx = watched(root);
    fs::write(root.join("new"), b"abc").unwrap();
    fs::write(root.join("old"), b"22").unwrap();
    fs::remove_file(root.join("gone")).unwrap();
    mark(root, 1);
    let ev = until_mark(&rx, 1);
    assert_eq!(changed(&ev), ["new", "old"], "{ev:?}");
    assert!(ev.contains(&Event::Removed {
        path: "gone".into()
    }));
    fs::set_permissions(root.join("old"), fs::Permissions::from_mode(0o600)).unwrap();
    mark(root, 2);
    let ev = until_mark(&rx, 2);
    match &ev[..] {
        [Event::Changed { path, sig }] => {
            assert_eq!(*path, RelPath::from("old"));
            assert_eq!(sig.mode & 0o777, 0o600);
        }
        _ => panic!("{ev:?}"),
    }
}

#[test]
fn renames_are_moves_and_a_renamed_directory_is_followed() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path();
    fs::create_dir_all(root.join("a/d")).unwrap();
    fs::create_dir_all(root.join("b")).unwrap();
    fs::write(root.join("a/f"), b"data").unwrap();
    fs::write(root.join("a/d/x"), b"x").unwrap();
    let rx = watched(root);
    fs::rename(root.join("a/f"), root.join("b/g")).unwrap();
    fs::rename(root.join("a/d"), root.join("b/e")).unwrap();
    mark(root, 1);
    let ev = until_mark(&rx, 1);
    for (from, to) in [("a/f", "b/g"), ("a/d", "b/e")] {
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Moved { from: f, to: t, .. }
                if *f == RelPath::from(from) && *t == RelPath::from(to))),
            "{from} -> {to}: {ev:?}"
        );
    }
    assert!(changed(&ev).is_empty(), "nothing sent again: {ev:?}");
    // The directory is listed at its new place from now on.
    fs::write(root.join("b/e/x"), b"longer").unwrap();
    mark(root, 2);
    assert_eq!(changed(&until_mark(&rx, 2)), ["b/e/x"]);
}

#[test]
fn a_new_tree_is_listed_whole() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path();
    let rx = watched(root);
    fs::create_dir_all(root.join("p/q/r")).unwrap();
    fs::write(root.join("p/q/r/f"), b"deep").unwrap();
    mark(root, 1);
    assert_eq!(
        changed(&until_mark(&rx, 1)),
        ["p", "p/q", "p/q/r", "p/q/r/f"]
    );
    // And watched: a change deep inside is seen.
    fs::write(root.join("p/q/r/g"), b"later").unwrap();
    mark(root, 2);
    assert_eq!(changed(&until_mark(&rx, 2)), ["p/q/r/g"]);
}

#[test]
fn a_removed_directory_is_one_removal_and_a_removed_root_is_reported() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("r");
    fs::create_dir_all(root.join("d/e")).unwrap();
    fs::write(root.join("d/e/f"), b"1").unwrap();
    let rx = watched(&root);
    fs::remove_dir_all(root.join("d")).unwrap();
    mark(&root, 1);
    let ev = until_mark(&rx, 1);
    assert_eq!(ev, [Event::Removed { path: "d".into() }]);
    fs::remove_dir_all(&root).unwrap();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::RootGone) => break,
            Ok(_) => {}
            Err(_) => panic!("the root's removal was never reported"),
        }
    }
}
