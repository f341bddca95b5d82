//! The inotify backend (Linux).
//!
//! A [`Watcher`] owns the watch table and is shared between the thread that
//! answers scan requests and the [`EventLoop`] thread that reads the kernel
//! queue. Watches are placed on each directory before it is listed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use twinsync_proto::{Entry, Event, Kind, RelPath, Sig};

use crate::{lstat_sig, sig_at, Excludes, FilterError, STATE_DIR};

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::EXCL_UNLINK);

/// Entries per scan chunk handed to the sink.
const CHUNK: usize = 4096;

#[derive(Default)]
struct Table {
    by_wd: HashMap<WatchDescriptor, RelPath>,
    by_path: BTreeMap<RelPath, WatchDescriptor>,
    /// Directories found by a scan under a new name while still watched under
    /// the old one: their unpaired `MOVED_FROM` is not a removal.
    moved_away: HashSet<RelPath>,
    /// Paths whose events found nothing there (latest last, bounded): an
    /// entry written in a directory just before the directory was renamed
    /// is reported under the old path and looked at under it in vain.
    vanished: std::collections::VecDeque<RelPath>,
}

/// How many vanished paths are remembered (see [`Table::vanished`]).
const VANISHED_MAX: usize = 1024;

impl Table {
    fn insert(&mut self, wd: WatchDescriptor, path: RelPath) {
        if let Some(old) = self.by_wd.insert(wd.clone(), path.clone()) {
            if old != path {
                self.by_path.remove(&old);
            }
        }
        self.by_path.insert(path, wd);
    }

    /// Forget every watch at or below `dir`, returning their descriptors.
    fn remove_tree(&mut self, dir: &RelPath) -> Vec<WatchDescriptor> {
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
    fn vanished(&mut self, path: RelPath) {
        if self.vanished.len() >= VANISHED_MAX {
            self.vanished.pop_front();
        }
        self.vanished.push_back(path);
    }

    /// True when an entry at or below `dir` vanished (those are forgotten).
    fn take_vanished_within(&mut self, dir: &RelPath) -> bool {
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
    fn rename_tree(&mut self, from: &RelPath, to: &RelPath) {
        for k in self.keys_within(from) {
            if let Some(wd) = self.by_path.remove(&k) {
                let nk = k.rebase(from, to).expect("key is within from");
                self.by_wd.insert(wd.clone(), nk.clone());
                self.by_path.insert(nk, wd);
            }
        }
    }
}

/// The watch table and tree walker of one replica.
pub struct Watcher {
    root: PathBuf,
    excludes: Excludes,
    watches: Option<Watches>,
    table: Mutex<Table>,
    /// The watch of the marks' folder (see [`Watcher::watch_marks`]).
    marks: Mutex<Option<WatchDescriptor>>,
}

/// The thread side of a [`Watcher`]: reads the kernel queue.
pub struct EventLoop {
    inotify: Inotify,
    watcher: Arc<Watcher>,
    buf: Vec<u8>,
}

/// One raw kernel event with an owned name.
struct Raw {
    wd: WatchDescriptor,
    mask: EventMask,
    cookie: u32,
    name: Option<Vec<u8>>,
}

impl Watcher {
    /// A watcher of `root`. With `watch` false it only walks (for one-shot
    /// merges) and no event loop is returned.
    ///
    /// # Errors
    /// When inotify cannot be initialised.
    pub fn new(
        root: PathBuf,
        excludes: Excludes,
        watch: bool,
    ) -> Result<(Arc<Watcher>, Option<EventLoop>), FilterError> {
        let inotify = if watch {
            Some(Inotify::init().map_err(|source| FilterError::Root {
                root: root.display().to_string(),
                source,
            })?)
        } else {
            None
        };
        let watcher = Arc::new(Watcher {
            root,
            excludes,
            watches: inotify.as_ref().map(Inotify::watches),
            table: Mutex::new(Table::default()),
            marks: Mutex::new(None),
        });
        let event_loop = inotify.map(|inotify| EventLoop {
            inotify,
            watcher: Arc::clone(&watcher),
            buf: vec![0; 256 * 1024],
        });
        Ok((watcher, event_loop))
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
    /// by a number is reported as [`Event::Mark`], in the order of the
    /// kernel's queue, which is that of everything else reported. Returns
    /// false when not watching.
    ///
    /// # Errors
    /// When the folder cannot be watched.
    pub fn watch_marks(&self, dir: &Path) -> io::Result<bool> {
        let Some(watches) = &self.watches else {
            return Ok(false);
        };
        let wd = watches.clone().add(
            dir,
            WatchMask::CREATE | WatchMask::DONT_FOLLOW | WatchMask::ONLYDIR,
        )?;
        *self.marks.lock().expect("marks") = Some(wd);
        Ok(true)
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
        let Some(watches) = &self.watches else {
            return Ok(None);
        };
        let mut w = watches.clone();
        match w.add(dir.under(&self.root), MASK) {
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
            // Gone, or not a directory any more: its removal is reported by the parent.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
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

    fn unwatch_tree(&self, dir: &RelPath) {
        let wds = self.table.lock().expect("watch table").remove_tree(dir);
        if let Some(watches) = &self.watches {
            let mut w = watches.clone();
            for wd in wds {
                // EINVAL when the kernel already dropped it: nothing to do.
                let _ = w.remove(wd);
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

impl EventLoop {
    /// Read kernel events until `sink` returns false or a fatal error.
    ///
    /// # Errors
    /// Fatal errors: reading the inotify descriptor, the watch limit.
    pub fn run(mut self, sink: &mut dyn FnMut(Vec<Event>) -> bool) -> Result<(), FilterError> {
        let mut pending: Vec<Raw> = Vec::new();
        loop {
            if pending.is_empty() {
                wait_readable(self.inotify.as_raw_fd(), -1);
            }
            self.read_into(&mut pending)?;
            // A MOVED_FROM at the end may have its MOVED_TO still on its way:
            // the kernel queues both in one rename, so a short wait settles it.
            if pending
                .last()
                .is_some_and(|r| r.mask.contains(EventMask::MOVED_FROM))
                && wait_readable(self.inotify.as_raw_fd(), 2)
            {
                self.read_into(&mut pending)?;
            }
            let raws = std::mem::take(&mut pending);
            let events = self.translate(raws)?;
            if !events.is_empty() && !sink(events) {
                return Ok(());
            }
        }
    }

    fn read_into(&mut self, out: &mut Vec<Raw>) -> Result<(), FilterError> {
        loop {
            match self.inotify.read_events(&mut self.buf) {
                Ok(evs) => {
                    let before = out.len();
                    out.extend(evs.map(|e| Raw {
                        wd: e.wd,
                        mask: e.mask,
                        cookie: e.cookie,
                        name: e.name.map(|n| n.as_bytes().to_vec()),
                    }));
                    if out.len() == before {
                        return Ok(());
                    }
                    // Keep draining while the queue has more, up to a bound.
                    if out.len() > 8192 {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FilterError::Io {
                        what: "reading inotify events under",
                        path: RelPath::root(),
                        source,
                    })
                }
            }
        }
    }

    fn path_of(&self, wd: &WatchDescriptor) -> Option<RelPath> {
        self.watcher
            .table
            .lock()
            .expect("watch table")
            .by_wd
            .get(wd)
            .cloned()
    }

    fn translate(&self, raws: Vec<Raw>) -> Result<Vec<Event>, FilterError> {
        let w = &*self.watcher;
        let mut out = Vec::new();
        let mut i = 0;
        while i < raws.len() {
            let r = &raws[i];
            i += 1;
            if r.mask.contains(EventMask::Q_OVERFLOW) {
                out.push(Event::RescanNeeded {
                    reason: "inotify queue overflow".into(),
                });
                continue;
            }
            if self.watcher.marks.lock().expect("marks").as_ref() == Some(&r.wd) {
                let n = r
                    .name
                    .as_deref()
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
                if let (Some(n), true) = (n, r.mask.contains(EventMask::CREATE)) {
                    out.push(Event::Mark { n });
                }
                continue;
            }
            let Some(dir) = self.path_of(&r.wd) else {
                continue;
            };
            if r.mask.contains(EventMask::IGNORED) {
                let mut t = w.table.lock().expect("watch table");
                if t.by_wd.remove(&r.wd).is_some() {
                    t.by_path.remove(&dir);
                }
                drop(t);
                if dir.is_root() {
                    out.push(Event::RootGone);
                }
                continue;
            }
            if r.mask
                .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT)
            {
                if dir.is_root() {
                    out.push(Event::RootGone);
                }
                continue;
            }
            let Some(name) = &r.name else { continue };
            if dir.is_root()
                && name.as_slice() == STATE_DIR.as_bytes()
                && r.mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM)
            {
                // `rm -rf ROOT` removes the tool's own folder along the way,
                // while the root's DELETE_SELF only comes once nothing holds
                // the root any more, and the left one is held: the brain
                // keeps its index journal open inside. Either way the replica
                // is being taken away.
                out.push(Event::RootGone);
                continue;
            }
            let path = dir.join(name);
            let ignored = crate::is_ignore_name(name);
            let excluded = w.excludes.excluded(&path);
            let is_dir = r.mask.contains(EventMask::ISDIR);

            if r.mask.contains(EventMask::MOVED_FROM) {
                let partner = raws
                    .get(i)
                    .filter(|n| n.mask.contains(EventMask::MOVED_TO) && n.cookie == r.cookie);
                let to = partner.and_then(|n| {
                    let d = self.path_of(&n.wd)?;
                    Some((d.join(n.name.as_deref().unwrap_or_default()), n))
                });
                if let Some((to, n)) = to {
                    i += 1;
                    let to_ignored = n.name.as_deref().is_some_and(crate::is_ignore_name);
                    let to_excluded = w.excludes.excluded(&to);
                    if is_dir {
                        w.table.lock().expect("watch table").rename_tree(&path, &to);
                    }
                    match (excluded || ignored, to_excluded || to_ignored) {
                        // A helper's rename dance, or a move between excluded names.
                        (true, true) => {
                            if to_excluded && !to_ignored && is_dir {
                                w.unwatch_tree(&to);
                            }
                        }
                        (false, true) => {
                            if to_ignored {
                                // First step of the dance: never reported.
                            } else {
                                out.push(Event::Removed { path });
                                if is_dir {
                                    w.unwatch_tree(&to);
                                }
                            }
                        }
                        (true, false) => {
                            if ignored {
                                // Last step of the dance: never reported.
                            } else {
                                self.created(&to, &mut out)?;
                            }
                        }
                        (false, false) => match lstat_sig(&to.under(&w.root)) {
                            Ok(Some(sig)) => {
                                let relist = is_dir
                                    && w.table
                                        .lock()
                                        .expect("watch table")
                                        .take_vanished_within(&path);
                                out.push(Event::Moved {
                                    from: path,
                                    to: to.clone(),
                                    sig,
                                });
                                if relist {
                                    // Entries written inside just before the
                                    // rename were looked for under the old
                                    // path in vain: the listing reports them.
                                    self.created(&to, &mut out)?;
                                }
                            }
                            Ok(None) => {
                                // Gone from its new name already, or its new
                                // directory was moved on (a rename into a
                                // directory renamed right after): a listing
                                // of where that directory went reports it.
                                w.table.lock().expect("watch table").vanished(to);
                                out.push(Event::Removed { path });
                            }
                            Err(e) => out.push(Event::Error {
                                path: to,
                                message: e.to_string(),
                            }),
                        },
                    }
                } else {
                    if is_dir
                        && w.table
                            .lock()
                            .expect("watch table")
                            .moved_away
                            .remove(&path)
                    {
                        // Already reported as moved by the scan that found it.
                        continue;
                    }
                    // Moved out of the tree.
                    if is_dir {
                        w.unwatch_tree(&path);
                    }
                    if !(excluded || ignored) {
                        out.push(Event::Removed { path });
                    }
                }
                continue;
            }
            if excluded || ignored {
                continue;
            }
            if r.mask.contains(EventMask::MOVED_TO) {
                // Moved in from outside the tree.
                self.created(&path, &mut out)?;
            } else if r.mask.contains(EventMask::CREATE) {
                if is_dir {
                    self.created(&path, &mut out)?;
                } else {
                    // A regular file is reported when closed after writing;
                    // anything else (symlink, hard link) now.
                    let abs = path.under(&w.root);
                    match std::fs::symlink_metadata(&abs)
                        .and_then(|md| Ok((sig_at(&abs, &md)?, md)))
                    {
                        Ok((sig, md)) => {
                            use std::os::unix::fs::MetadataExt;
                            if !md.file_type().is_file() || md.nlink() > 1 {
                                let ino = sig.ino;
                                let links = md.file_type().is_file() && md.nlink() > 1;
                                out.push(Event::Changed {
                                    path: path.clone(),
                                    sig,
                                });
                                if links {
                                    self.other_names(&path, ino, md.nlink(), &mut out);
                                }
                            }
                        }
                        Err(_) => w.table.lock().expect("watch table").vanished(path),
                    }
                }
            } else if is_dir
                && r.mask.contains(EventMask::ATTRIB)
                && !w
                    .table
                    .lock()
                    .expect("watch table")
                    .by_path
                    .contains_key(&path)
            {
                // A directory we could not read (so left unwatched) may
                // have been made readable: watch and list it now.
                self.created(&path, &mut out)?;
            } else if r
                .mask
                .intersects(EventMask::CLOSE_WRITE | EventMask::ATTRIB)
            {
                match lstat_sig(&path.under(&w.root)) {
                    Ok(Some(sig)) => out.push(Event::Changed { path, sig }),
                    Ok(None) => w.table.lock().expect("watch table").vanished(path),
                    Err(e) => out.push(Event::Error {
                        path,
                        message: e.to_string(),
                    }),
                }
            } else if r.mask.contains(EventMask::DELETE) {
                if is_dir {
                    w.unwatch_tree(&path);
                }
                out.push(Event::Removed { path });
            }
        }
        Ok(coalesce(out))
    }

    /// A hard link `path` to the file of inode `ino`, which has `nlink`
    /// names, was made: its other names are reported too (the link changed
    /// their ctime, which the kernel reports under none of them, and the
    /// brain learns that they are one file). They are looked for in the
    /// same directory first, then, if some are still missing, in the whole
    /// tree (directory entries only, no stat: a link across directories is
    /// rare, and a walk of the names is what finding them costs).
    fn other_names(&self, path: &RelPath, ino: u64, nlink: u64, out: &mut Vec<Event>) {
        let Some(dir) = path.parent() else { return };
        let mut found = vec![path.clone()];
        self.names_in(&dir, ino, &mut found, None);
        if (found.len() as u64) < nlink {
            self.names_in(&RelPath::root(), ino, &mut found, Some(nlink));
        }
        let w = &*self.watcher;
        for other in found.into_iter().skip(1) {
            if let Ok(Some(sig)) = lstat_sig(&other.under(&w.root)) {
                if sig.ino == ino {
                    out.push(Event::Changed { path: other, sig });
                }
            }
        }
    }

    /// Add to `found` the names of inode `ino` in `dir` (not excluded, not
    /// already there); with `walk`, below it too, until `walk` names are
    /// found.
    fn names_in(&self, dir: &RelPath, ino: u64, found: &mut Vec<RelPath>, walk: Option<u64>) {
        use std::os::unix::fs::DirEntryExt;
        let w = &*self.watcher;
        let mut todo = vec![dir.clone()];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(d.under(&w.root)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let child = d.join(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()));
                if w.excludes.excluded(&child) {
                    continue;
                }
                if e.ino() == ino && !found.contains(&child) {
                    found.push(child);
                    if walk.is_some_and(|n| found.len() as u64 >= n) {
                        return;
                    }
                } else if walk.is_some() && e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(child);
                }
            }
        }
    }

    /// An entry appeared at `path`: report it, and for a directory watch it
    /// and report everything already inside.
    fn created(&self, path: &RelPath, out: &mut Vec<Event>) -> Result<(), FilterError> {
        let w = &*self.watcher;
        match lstat_sig(&path.under(&w.root)) {
            Ok(Some(sig)) => {
                out.push(Event::Changed {
                    path: path.clone(),
                    sig,
                });
                if sig.kind == Kind::Dir {
                    let mut errors = Vec::new();
                    let found = std::cell::RefCell::new(Vec::new());
                    w.scan(
                        path,
                        &mut |entries| {
                            found.borrow_mut().extend(entries.into_iter().map(|e| {
                                Event::Changed {
                                    path: e.path,
                                    sig: e.sig,
                                }
                            }));
                        },
                        &mut |p, e| errors.push((p, e)),
                        Some(&mut |from, to, sig| {
                            found.borrow_mut().push(Event::Moved { from, to, sig });
                        }),
                    )?;
                    out.extend(found.into_inner());
                    out.extend(errors.into_iter().map(|(path, e)| Event::Error {
                        path,
                        message: e.to_string(),
                    }));
                }
            }
            Ok(None) => w.table.lock().expect("watch table").vanished(path.clone()),
            Err(e) => out.push(Event::Error {
                path: path.clone(),
                message: e.to_string(),
            }),
        }
        Ok(())
    }
}

/// Drop a `Changed` that is followed, in the same read, by another `Changed`
/// of the same path with nothing else about that path in between: the later
/// lstat already describes the final state.
fn coalesce(events: Vec<Event>) -> Vec<Event> {
    let mut last_changed: HashMap<RelPath, usize> = HashMap::new();
    let mut keep = vec![true; events.len()];
    for (i, ev) in events.iter().enumerate() {
        match ev {
            Event::Changed { path, .. } => {
                if let Some(j) = last_changed.insert(path.clone(), i) {
                    keep[j] = false;
                }
            }
            Event::Removed { path } | Event::Error { path, .. } => {
                last_changed.remove(path);
            }
            Event::Moved { from, to, .. } => {
                last_changed.remove(from);
                last_changed.remove(to);
            }
            Event::RescanNeeded { .. } | Event::RootGone | Event::Mark { .. } => {
                last_changed.clear();
            }
        }
    }
    events
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

/// poll(2) for readability; true when readable. `timeout_ms` -1 waits forever.
fn wait_readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) };
        if n >= 0 {
            return n > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
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
