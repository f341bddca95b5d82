//! Marks come through the kernel's queue in order: every event of what was
//! done before a mark is reported before it, and what is done after, after
//! it (the brain's ordering of a side's reports against its own writes).

use std::fs;
use std::time::Duration;

mod common;

use twinsync_filter::{Event, STATE_DIR};
use twinsync_proto::RelPath;

#[test]
fn events_come_in_the_order_of_the_marks_made_between_them() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("replica");
    let marks = root.join(STATE_DIR).join("mark");
    fs::create_dir_all(&marks).unwrap();
    let (watcher, event_loop) = common::listed(&root);
    assert!(!watcher.marks_watched());
    assert!(watcher.watch_marks(&marks).unwrap());
    assert!(watcher.marks_watched());
    let mark = |n: u64| {
        let p = marks.join(n.to_string());
        fs::write(&p, b"").unwrap();
        fs::remove_file(&p).unwrap();
    };
    // Half of the writes queue before the loop runs, half while it runs.
    for i in 0..100 {
        fs::write(root.join(format!("before{i}")), b"x").unwrap();
    }
    let rx = common::forward(watcher, event_loop, |e| matches!(e, Event::Mark { n: 2 }));
    for i in 100..200 {
        fs::write(root.join(format!("before{i}")), b"x").unwrap();
    }
    mark(1);
    fs::write(root.join("after"), b"y").unwrap();
    mark(2);
    let mut seen = Vec::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no mark 2 after {seen:?}: {e}"));
        let last = matches!(e, Event::Mark { n: 2 });
        seen.push(e);
        if last {
            break;
        }
    }
    let at = |want: &dyn Fn(&Event) -> bool| seen.iter().position(want);
    let m1 = at(&|e| matches!(e, Event::Mark { n: 1 })).expect("mark 1 reported");
    let m2 = seen.len() - 1;
    let changed = |name: &str| {
        let p = RelPath::from(name);
        move |e: &Event| matches!(e, Event::Changed { path, .. } if *path == p)
    };
    for i in 0..200 {
        let name = format!("before{i}");
        let pos = at(&changed(&name)).unwrap_or_else(|| panic!("{name} not reported"));
        assert!(pos < m1, "{name} reported after mark 1");
    }
    let after = at(&changed("after")).expect("after reported");
    assert!(m1 < after && after < m2, "{seen:?}");
    // Nothing of the state folder is reported but the marks.
    assert!(
        !seen.iter().any(
            |e| matches!(e, Event::Changed { path, .. } | Event::Removed { path } if path.as_bytes().starts_with(STATE_DIR.as_bytes()))
        ),
        "{seen:?}"
    );
}
