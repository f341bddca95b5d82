//! The watch table and the tree walker of one replica, shared by every
//! backend: a [`Watcher`] is shared between the thread that answers scan
//! requests and the [`EventLoop`](crate::EventLoop) thread that reads the
//! backend's queue; watches are placed on each directory before it is
//! listed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use twinsync_proto::{Entry, Kind, RelPath, Sig};

use crate::backend::{Backend, Queue, WatchId};
use crate::{sig_at, EventLoop, Excludes, FilterError};

/// Entries per scan chunk handed to the sink.
const CHUNK: usize = 4096;

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) by_wd: HashMap<WatchId, RelPath>,
    pub(crate) by_path: BTreeMap<RelPath, WatchId>,
    /// Directories found by a scan under a new name while still watched under
    /// the old one: their unpaired `MOVED_FROM` is not a removal.
    pub(crate) moved_away: HashSet<RelPath>,
    /// Paths whose events found nothing there (latest last, bounded): an
    /// entry written in a directory just before the directory was renamed
    /// is reported under the old path and looked at under it in vain.
    vanished: std::collections::VecDeque<RelPath>,
}

/// How many vanished paths are remembered (see [`Table::vanished`]).
const VANISHED_MAX: usize = 1024;

impl Table {
    pub(crate) fn insert(&mut self, wd: WatchId, path: RelPath) {
        if let Some(old) = self.by_wd.insert(wd, path.clone()) {
            if old != path {
                self.by_path.remove(&old);
            }
        }
        self.by_path.insert(path, wd);
    }

    /// Forget every watch at or below `dir`, returning their descriptors.
    pub(crate) fn remove_tree(&mut self, dir: &RelPath) -> Vec<WatchId> {
        let keys = self.keys_within(dir);
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(wd) = self.by_path.remove(&k) {
                self.by_wd.remove(&wd);
                out.push(wd);
            }
        }
        out
    }

    /// An event's entry was not found at `path`.
    pub(crate) fn vanished(&mut self, path: RelPath) {
        if self.vanished.len() >= VANISHED_MAX {
            self.vanished.pop_front();
        }
        self.vanished.push_back(path);
    }

    /// True when an entry at or below `dir` vanished (those are forgotten).
    pub(crate) fn take_vanished_within(&mut self, dir: &RelPath) -> bool {
        let before = self.vanished.len();
        self.vanished.retain(|v| !v.is_within(dir));
        self.vanished.len() != before
    }

    fn keys_within(&self, dir: &RelPath) -> Vec<RelPath> {
        let mut keys: Vec<RelPath> = Vec::new();
        if self.by_path.contains_key(dir) {
            keys.push(dir.clone());
        }
        if dir.is_root() {
            keys.extend(self.by_path.keys().filter(|k| !k.is_root()).cloned());
        } else {
            let (lo, hi) = dir.children_range();
            keys.extend(self.by_path.range(lo..hi).map(|(k, _)| k.clone()));
        }
        keys
    }

    /// Re-key every watch at or below `from` to lie below `to` instead.
    pub(crate) fn rename_tree(&mut self, from: &RelPath, to: &RelPath) {
        for k in self.keys_within(from) {
            if let Some(wd) = self.by_path.remove(&k) {
                let nk = k.rebase(from, to).expect("key is within from");
                self.by_wd.insert(wd, nk.clone());
                self.by_path.insert(nk, wd);
            }
        }
    }
}

/// How a [`Watcher`] sees changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watching {
    /// The kernel's events (inotify).
    Events,
    /// A listing of every watched directory per interval.
    Poll(std::time::Duration),
}

impl Watching {
    /// How an agent told to `watch` (or not), polling every `poll_ms`
    /// milliseconds (or not), sees changes: the agent opens its watcher so,
    /// and the brain reports the backend in use from the same options
    /// (metrics, `twinsync status`). `None`: it only walks.
    #[must_use]
    pub fn chosen(watch: bool, poll_ms: Option<u32>) -> Option<Watching> {
        watch.then_some(match poll_ms {
            Some(ms) => Watching::Poll(std::time::Duration::from_millis(u64::from(ms))),
            None => Watching::Events,
        })
    }
}

/// The watch table and tree walker of one replica.
pub struct Watcher {
    pub(crate) root: PathBuf,
    pub(crate) excludes: Excludes,
    /// `None`: walking only (one-shot merges).
    backend: Option<Arc<dyn Backend>>,
    pub(crate) table: Mutex<Table>,
    /// The watch of the marks' folder (see [`Watcher::watch_marks`]).
    pub(crate) marks: Mutex<Option<WatchId>>,
}

impl Watcher {
    /// A watcher of `root`. With `watch` false it only walks (for one-shot
    /// merges) and no event loop is returned; else it watches through the
    /// kernel's events (inotify).
    ///
    /// # Errors
    /// When the kernel's notification API cannot be initialised.
    pub fn new(
        root: PathBuf,
        excludes: Excludes,
        watch: bool,
    ) -> Result<(Arc<Watcher>, Option<EventLoop>), FilterError> {
        Watcher::open(root, excludes, watch.then_some(Watching::Events))
    }

    /// A watcher of `root` that watches as `how` says (`None`: it only
    /// walks).
    ///
    /// # Errors
    /// When the kernel's notification API cannot be initialised.
    pub fn open(
        root: PathBuf,
        excludes: Excludes,
        how: Option<Watching>,
    ) -> Result<(Arc<Watcher>, Option<EventLoop>), FilterError> {
        let backend: Option<(Arc<dyn Backend>, Box<dyn Queue>)> = match how {
            None => None,
            Some(Watching::Events) => {
                let (backend, queue) =
                    crate::backend::inotify::new().map_err(|source| FilterError::Root {
                        root: root.display().to_string(),
                        source,
                    })?;
                Some((Arc::new(backend), Box::new(queue)))
            }
            Some(Watching::Poll(every)) => {
                let (backend, queue) = crate::backend::poll::new(every);
                Some((Arc::new(backend), Box::new(queue)))
            }
        };
        Ok(Watcher::with_backend(root, excludes, backend))
    }

    /// A watcher of `root` through `backend` (its watches and its queue);
    /// `None` only walks.
    #[must_use]
    pub fn with_backend(
        root: PathBuf,
        excludes: Excludes,
        backend: Option<(Arc<dyn Backend>, Box<dyn Queue>)>,
    ) -> (Arc<Watcher>, Option<EventLoop>) {
        let (backend, queue) = backend.unzip();
        let watcher = Arc::new(Watcher {
            root,
            excludes,
            backend,
            table: Mutex::new(Table::default()),
            marks: Mutex::new(None),
        });
        let event_loop = queue.map(|queue| EventLoop::new(queue, Arc::clone(&watcher)));
        (watcher, event_loop)
    }

    /// The replica root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The exclude rules.
    #[must_use]
    pub fn excludes(&self) -> &Excludes {
        &self.excludes
    }

    /// Watch the folder `dir` (outside the replica's tree, in its state
    /// folder) where the helper makes its marks: a file created there named
    /// by a number is reported as [`twinsync_proto::Event::Mark`], in the order of the
    /// kernel's queue, which is that of everything else reported. Returns
    /// false when not watching.
    ///
    /// # Errors
    /// When the folder cannot be watched.
    pub fn watch_marks(&self, dir: &Path) -> io::Result<bool> {
        let Some(backend) = &self.backend else {
            return Ok(false);
        };
        let wd = backend.watch_created(dir)?;
        *self.marks.lock().expect("marks") = Some(wd);
        Ok(true)
    }

    /// The helper made mark `n` (see [`Backend::mark_made`]).
    pub fn mark_made(&self, n: u64) {
        if let Some(backend) = &self.backend {
            backend.mark_made(n);
        }
    }

    /// True once [`Watcher::watch_marks`] placed its watch.
    #[must_use]
    pub fn marks_watched(&self) -> bool {
        self.marks.lock().expect("marks").is_some()
    }

    /// Watch `dir`. When the kernel hands back a descriptor we already hold
    /// under another path, the directory was moved there without us seeing
    /// the `MOVED_TO` (its new parent was not watched yet): the old path is
    /// returned and the table re-keyed.
    fn add_watch(&self, dir: &RelPath) -> Result<Option<RelPath>, FilterError> {
        let Some(backend) = &self.backend else {
            return Ok(None);
        };
        match backend.watch_dir(&dir.under(&self.root)) {
            Ok(wd) => {
                let mut t = self.table.lock().expect("watch table");
                if let Some(old) = t.by_wd.get(&wd).cloned() {
                    if &old != dir {
                        if dir.is_within(&old) || old.is_within(dir) {
                            t.insert(wd, dir.clone());
                            return Ok(None);
                        }
                        t.rename_tree(&old, dir);
                        t.moved_away.insert(old.clone());
                        return Ok(Some(old));
                    }
                    return Ok(None);
                }
                t.insert(wd, dir.clone());
                Ok(None)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(FilterError::WatchLimit {
                path: dir.clone(),
                limit: std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                    .map_or_else(|_| "?".into(), |s| s.trim().to_string()),
            }),
            // Gone, or not a directory any more: its removal is reported by
            // the parent. Or moved away with a directory above it since it
            // was seen (a `mkdir a/d` then `mv a b`: `a/d` reported, then not
            // found to watch): noted, so that the move of `a`, when its
            // report comes, lists `b` and watches `b/d` there (campaign seed
            // 89000025: a directory never watched, its contents never
            // reported until the verification).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                self.table
                    .lock()
                    .expect("watch table")
                    .vanished(dir.clone());
                Ok(None)
            }
            // Not readable by us: left unwatched. Listing it fails the same
            // way, which reports it as unreadable (and so leaves it alone);
            // once made readable, the attribute change seen on its parent
            // watches and lists it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                tracing::debug!(%dir, "not watched: {e}");
                Ok(None)
            }
            Err(source) => Err(FilterError::Io {
                what: "watching",
                path: dir.clone(),
                source,
            }),
        }
    }

    pub(crate) fn unwatch_tree(&self, dir: &RelPath) {
        let wds = self.table.lock().expect("watch table").remove_tree(dir);
        if let Some(backend) = &self.backend {
            for wd in wds {
                backend.unwatch(wd);
            }
        }
    }

    /// Walk `dir` (watching each directory before listing it) and hand every
    /// entry below it to `sink` in chunks, in ascending byte order of their
    /// paths (the order of [`RelPath`]'s `Ord`, which lets the brain merge a
    /// listing with its index as it streams in). Unreadable entries and
    /// directories are reported through `on_error` and skipped. Returns the
    /// number of entries.
    ///
    /// With `on_moved`, a directory found already watched under another path
    /// is reported as moved (and not descended into: its contents moved with
    /// it); without, it is listed like any other.
    ///
    /// # Errors
    /// Only fatal errors (watch limit).
    pub fn scan(
        &self,
        dir: &RelPath,
        sink: &mut dyn FnMut(Vec<Entry>),
        on_error: &mut dyn FnMut(RelPath, io::Error),
        mut on_moved: Option<&mut dyn FnMut(RelPath, RelPath, Sig)>,
    ) -> Result<u64, FilterError> {
        let mut count = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK);
        self.add_watch(dir)?;
        // A directory's entry sorts by its name, its contents by its name
        // followed by '/': `a` < `a.b` < `a/x`. So each directory's listing is
        // sorted with one item per child and one more per child directory
        // (its subtree), and the subtrees are expanded when reached. One
        // sorted listing per level of depth is held, remaining items reversed.
        let mut stack: Vec<Vec<Walk>> = vec![vec![Walk::Subtree(dir.clone())]];
        while let Some(level) = stack.last_mut() {
            let Some(item) = level.pop() else {
                stack.pop();
                continue;
            };
            let d = match item {
                Walk::Entry(e) => {
                    chunk.push(e);
                    count += 1;
                    if chunk.len() == CHUNK {
                        sink(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                    }
                    continue;
                }
                Walk::Subtree(d) => d,
            };
            let rd = match std::fs::read_dir(d.under(&self.root)) {
                Ok(rd) => rd,
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        on_error(d, e);
                    }
                    continue;
                }
            };
            let mut items = Vec::new();
            for ent in rd {
                let ent = match ent {
                    Ok(ent) => ent,
                    Err(e) => {
                        on_error(d.clone(), e);
                        continue;
                    }
                };
                let path = d.join(ent.file_name().as_bytes());
                if self.excludes.excluded(&path) {
                    continue;
                }
                let abs = ent.path();
                let sig = match std::fs::symlink_metadata(&abs).and_then(|md| sig_at(&abs, &md)) {
                    Ok(sig) => sig,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        on_error(path, e);
                        continue;
                    }
                };
                if sig.kind == Kind::Dir {
                    if let Some(old) = self.add_watch(&path)? {
                        if let Some(moved) = on_moved.as_mut() {
                            if !chunk.is_empty() {
                                sink(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                            }
                            moved(old, path, sig);
                            continue;
                        }
                    }
                    items.push(Walk::Subtree(path.clone()));
                }
                items.push(Walk::Entry(Entry { path, sig }));
            }
            // Descending, so that popping yields them in ascending order.
            items.sort_unstable_by(|a, b| b.key().cmp(a.key()));
            stack.push(items);
        }
        if !chunk.is_empty() {
            sink(chunk);
        }
        Ok(count)
    }
}

/// An item of a directory's sorted listing during [`Watcher::scan`].
enum Walk {
    Entry(Entry),
    Subtree(RelPath),
}

impl Walk {
    /// The sort key within its directory: the name, followed by `/` for a
    /// subtree.
    fn key(&self) -> impl Iterator<Item = u8> + Clone + '_ {
        let (path, slash) = match self {
            Walk::Entry(e) => (&e.path, None),
            Walk::Subtree(d) => (d, Some(b'/')),
        };
        path.file_name().iter().copied().chain(slash)
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    #[test]
    fn scan_lists_in_path_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["a", "a/x", "a-b", "b/c/d", "a.b", "é"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in [
            "a0", "a/x/y", "a/x.y", "a/x-", "b/c/d/e", "b/c.d", "é/é", "-n",
        ] {
            std::fs::write(r.join(f), b"x").unwrap();
        }
        let ex = Excludes::new(&[]).unwrap();
        for watch in [false, true] {
            let (w, _el) = Watcher::new(r.to_path_buf(), ex.clone(), watch).unwrap();
            let mut got = Vec::new();
            let n = w
                .scan(
                    &RelPath::root(),
                    &mut |c| got.extend(c.into_iter().map(|e| e.path)),
                    &mut |p, e| panic!("{p}: {e}"),
                    None,
                )
                .unwrap();
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(got, sorted, "watch: {watch}");
            assert_eq!(n as usize, got.len());
            assert_eq!(got.len(), 16, "{got:?}");
        }
    }
}
