//! The translator driven by synthetic notices (no kernel): a backend that
//! only hands out ids, and notices built by hand on a real tree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;
use crate::backend::Backend;
use crate::Excludes;

/// Ids per directory; what was unwatched; directories whose watch
/// fails as if they had just been moved away.
#[derive(Default)]
struct Fake {
    ids: Mutex<HashMap<PathBuf, WatchId>>,
    unwatched: Mutex<Vec<WatchId>>,
    gone: Mutex<Vec<PathBuf>>,
}

impl Fake {
    fn id(&self, abs: &Path) -> WatchId {
        let mut ids = self.ids.lock().unwrap();
        let next = ids.len() as WatchId + 1;
        *ids.entry(abs.to_path_buf()).or_insert(next)
    }
}

impl Backend for Fake {
    fn watch_dir(&self, abs: &Path) -> std::io::Result<WatchId> {
        if self.gone.lock().unwrap().iter().any(|g| g == abs) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(self.id(abs))
    }
    fn watch_created(&self, abs: &Path) -> std::io::Result<WatchId> {
        Ok(self.id(abs))
    }
    fn unwatch(&self, id: WatchId) {
        self.unwatched.lock().unwrap().push(id);
    }
}

struct NoQueue;

impl Queue for NoQueue {
    fn read(&mut self, _: &mut Vec<Notice>, _: i32) -> std::io::Result<bool> {
        Ok(false)
    }
}

struct Rig {
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    event_loop: EventLoop,
}

impl Rig {
    /// A tree of `dirs` and `files`, listed (so watched) with `excludes`.
    fn new(dirs: &[&str], files: &[&str], excludes: &[&str]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for f in files {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let fake = Arc::new(Fake::default());
        let ex: Vec<String> = excludes.iter().map(|s| (*s).to_string()).collect();
        let (watcher, event_loop) = Watcher::with_backend(
            dir.path().to_path_buf(),
            Excludes::new(&ex).unwrap(),
            Some((Arc::clone(&fake) as Arc<dyn Backend>, Box::new(NoQueue))),
        );
        watcher
            .scan(
                &RelPath::root(),
                &mut |_| {},
                &mut |p, e| panic!("{p}: {e}"),
                None,
            )
            .unwrap();
        Rig {
            dir,
            fake,
            event_loop: event_loop.unwrap(),
        }
    }

    fn abs(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.dir.path().to_path_buf()
        } else {
            self.dir.path().join(rel)
        }
    }

    /// A notice of `what` about `name` in the directory `dir`.
    fn notice(&self, dir: &str, what: What, name: Option<&str>, cookie: u32) -> Notice {
        Notice {
            watch: self.fake.id(&self.abs(dir)),
            what,
            cookie,
            name: name.map(|n| n.as_bytes().to_vec()),
        }
    }

    fn translate(&self, notices: Vec<Notice>) -> Vec<Event> {
        self.event_loop.translate(notices).unwrap()
    }
}

fn changed(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Changed { path, .. } => Some(path.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn both_halves_of_a_rename_are_one_move_with_the_new_places_state() {
    let r = Rig::new(&["a", "b"], &["a/f"], &[]);
    std::fs::rename(r.abs("a/f"), r.abs("b/g")).unwrap();
    let ev = r.translate(vec![
        r.notice("a", What::MOVED_FROM, Some("f"), 7),
        r.notice("b", What::MOVED_TO, Some("g"), 7),
    ]);
    assert!(
        matches!(&ev[..], [Event::Moved { from, to, sig }]
            if *from == RelPath::from("a/f") && *to == RelPath::from("b/g") && sig.kind == Kind::File),
        "{ev:?}"
    );
}

#[test]
fn a_rename_out_of_the_tree_is_a_removal_and_into_it_a_creation() {
    let r = Rig::new(&["a"], &["a/f"], &[]);
    std::fs::remove_file(r.abs("a/f")).unwrap();
    let ev = r.translate(vec![r.notice("a", What::MOVED_FROM, Some("f"), 3)]);
    assert_eq!(ev, vec![Event::Removed { path: "a/f".into() }]);
    std::fs::write(r.abs("a/new"), b"y").unwrap();
    let ev = r.translate(vec![r.notice("a", What::MOVED_TO, Some("new"), 4)]);
    assert_eq!(changed(&ev), vec!["a/new"]);
}

#[test]
fn a_directory_moved_in_is_watched_and_listed() {
    let r = Rig::new(&["a"], &[], &[]);
    std::fs::create_dir_all(r.abs("a/d/e")).unwrap();
    std::fs::write(r.abs("a/d/e/f"), b"z").unwrap();
    let ev = r.translate(vec![r.notice(
        "a",
        What::CREATED | What::IS_DIR,
        Some("d"),
        0,
    )]);
    assert_eq!(changed(&ev), vec!["a/d", "a/d/e", "a/d/e/f"]);
    // Watched now: a notice there names its path.
    let ev = r.translate(vec![r.notice("a/d/e", What::WRITTEN, Some("f"), 0)]);
    assert_eq!(changed(&ev), vec!["a/d/e/f"]);
}

#[test]
fn the_helpers_rename_dance_is_never_reported() {
    let r = Rig::new(&["a"], &["a/f"], &[]);
    let hidden = "f.twinsync.ignore";
    std::fs::rename(r.abs("a/f"), r.abs(&format!("a/{hidden}"))).unwrap();
    std::fs::rename(r.abs(&format!("a/{hidden}")), r.abs("a/f")).unwrap();
    let ev = r.translate(vec![
        r.notice("a", What::MOVED_FROM, Some("f"), 1),
        r.notice("a", What::MOVED_TO, Some(hidden), 1),
        r.notice("a", What::MOVED_FROM, Some(hidden), 2),
        r.notice("a", What::MOVED_TO, Some("f"), 2),
    ]);
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn excluded_paths_are_not_reported() {
    let r = Rig::new(&[], &["keep", "skip.tmp"], &[r"\.tmp$"]);
    let ev = r.translate(vec![
        r.notice("", What::WRITTEN, Some("skip.tmp"), 0),
        r.notice("", What::WRITTEN, Some("keep"), 0),
    ]);
    assert_eq!(changed(&ev), vec!["keep"]);
}

#[test]
fn writes_and_attribute_changes_of_one_path_in_one_read_are_one_report() {
    let r = Rig::new(&[], &["f"], &[]);
    let ev = r.translate(vec![
        r.notice("", What::WRITTEN, Some("f"), 0),
        r.notice("", What::ATTRIB, Some("f"), 0),
        r.notice("", What::WRITTEN, Some("f"), 0),
    ]);
    assert_eq!(changed(&ev), vec!["f"]);
}

#[test]
fn an_overflow_asks_for_a_rescan() {
    let r = Rig::new(&[], &[], &[]);
    let ev = r.translate(vec![Notice {
        watch: u64::MAX,
        what: What::OVERFLOW,
        cookie: 0,
        name: None,
    }]);
    assert!(matches!(&ev[..], [Event::RescanNeeded { .. }]), "{ev:?}");
}

#[test]
fn the_root_going_away_is_reported() {
    let r = Rig::new(&[STATE_DIR], &[], &[]);
    let ev = r.translate(vec![r.notice(
        "",
        What::DELETED | What::IS_DIR,
        Some(STATE_DIR),
        0,
    )]);
    assert_eq!(ev, vec![Event::RootGone]);
    let ev = r.translate(vec![r.notice("", What::SELF_GONE, None, 0)]);
    assert_eq!(ev, vec![Event::RootGone]);
}

#[test]
fn a_deleted_directory_is_unwatched_with_everything_below() {
    let r = Rig::new(&["d/e"], &[], &[]);
    let (d, e) = (r.fake.id(&r.abs("d")), r.fake.id(&r.abs("d/e")));
    std::fs::remove_dir_all(r.abs("d")).unwrap();
    let ev = r.translate(vec![r.notice(
        "",
        What::DELETED | What::IS_DIR,
        Some("d"),
        0,
    )]);
    assert_eq!(ev, vec![Event::Removed { path: "d".into() }]);
    let mut gone = r.fake.unwatched.lock().unwrap().clone();
    gone.sort_unstable();
    assert_eq!(gone, vec![d.min(e), d.max(e)]);
}

/// `mkdir a/d` then `mv a b`, with the filter between the two: `a/d`
/// is seen, then not found to watch (moved away with `a`). The move of
/// `a`, reported next, lists `b`: `b/d` is watched and reported there
/// (campaign seed 89000025: it stayed unwatched, and what was made in
/// it was never reported).
#[test]
fn a_directory_moved_away_before_it_was_watched_is_watched_at_its_new_place() {
    let r = Rig::new(&["a/d"], &[], &[]);
    // (Listed with `a`, as the walker would not have seen it yet.)
    r.fake.unwatched.lock().unwrap().clear();
    let ad = r.abs("a/d");
    r.fake.ids.lock().unwrap().remove(&ad);
    r.fake.gone.lock().unwrap().push(ad.clone());
    let ev = r.translate(vec![r.notice(
        "a",
        What::CREATED | What::IS_DIR,
        Some("d"),
        0,
    )]);
    assert_eq!(changed(&ev), ["a/d"]);
    assert!(!r.fake.ids.lock().unwrap().contains_key(&ad), "not watched");
    std::fs::rename(r.abs("a"), r.abs("b")).unwrap();
    std::fs::write(r.abs("b/d/f"), b"made in it").unwrap();
    let ev = r.translate(vec![
        r.notice("", What::MOVED_FROM | What::IS_DIR, Some("a"), 9),
        r.notice("", What::MOVED_TO | What::IS_DIR, Some("b"), 9),
    ]);
    assert!(
        matches!(&ev[0], Event::Moved { from, to, .. }
            if *from == RelPath::from("a") && *to == RelPath::from("b")),
        "{ev:?}"
    );
    assert!(changed(&ev).contains(&"b/d/f".to_string()), "{ev:?}");
    assert!(
        r.fake.ids.lock().unwrap().contains_key(&r.abs("b/d")),
        "watched"
    );
}
