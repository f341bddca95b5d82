//! The translator shared by every backend: the backend's [`Notice`]s read
//! by an [`EventLoop`] and turned into protocol [`Event`]s (renames paired,
//! directories that appear listed, excluded and own names hidden, the root
//! going away reported, changes of one path coalesced).

use std::collections::HashMap;
use std::sync::Arc;

use twinsync_proto::{Event, Kind, RelPath};

use crate::backend::{Notice, Queue, WatchId, What};
use crate::{lstat_sig, sig_at, FilterError, Watcher, STATE_DIR};

/// The thread side of a [`Watcher`]: reads the backend's queue.
pub struct EventLoop {
    queue: Box<dyn Queue>,
    watcher: Arc<Watcher>,
}

impl EventLoop {
    pub(crate) fn new(queue: Box<dyn Queue>, watcher: Arc<Watcher>) -> EventLoop {
        EventLoop { queue, watcher }
    }

    /// Read the backend's notices until `sink` returns false or a fatal
    /// error.
    ///
    /// # Errors
    /// Fatal errors: reading the queue, the watch limit.
    pub fn run(mut self, sink: &mut dyn FnMut(Vec<Event>) -> bool) -> Result<(), FilterError> {
        let mut pending: Vec<Notice> = Vec::new();
        let read_error = |source| FilterError::Io {
            what: "reading change notifications under",
            path: RelPath::root(),
            source,
        };
        loop {
            self.queue.read(&mut pending, -1).map_err(read_error)?;
            // A MOVED_FROM at the end may have its MOVED_TO still on its way:
            // the kernel queues both in one rename, so a short wait settles it.
            if pending
                .last()
                .is_some_and(|r| r.what.contains(What::MOVED_FROM))
            {
                self.queue.read(&mut pending, 2).map_err(read_error)?;
            }
            let notices = std::mem::take(&mut pending);
            let events = self.translate(notices)?;
            if !events.is_empty() && !sink(events) {
                return Ok(());
            }
        }
    }

    fn path_of(&self, wd: WatchId) -> Option<RelPath> {
        self.watcher
            .table
            .lock()
            .expect("watch table")
            .by_wd
            .get(&wd)
            .cloned()
    }

    pub(crate) fn translate(&self, raws: Vec<Notice>) -> Result<Vec<Event>, FilterError> {
        let w = &*self.watcher;
        let mut out = Vec::new();
        let mut i = 0;
        while i < raws.len() {
            let r = &raws[i];
            i += 1;
            if r.what.contains(What::OVERFLOW) {
                out.push(Event::RescanNeeded {
                    reason: "change notifications lost (queue overflow)".into(),
                });
                continue;
            }
            if self.watcher.marks.lock().expect("marks").as_ref() == Some(&r.watch) {
                let n = r
                    .name
                    .as_deref()
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
                if let (Some(n), true) = (n, r.what.contains(What::CREATED)) {
                    out.push(Event::Mark { n });
                }
                continue;
            }
            let Some(dir) = self.path_of(r.watch) else {
                continue;
            };
            if r.what.contains(What::IGNORED) {
                let mut t = w.table.lock().expect("watch table");
                if t.by_wd.remove(&r.watch).is_some() {
                    t.by_path.remove(&dir);
                }
                drop(t);
                if dir.is_root() {
                    out.push(Event::RootGone);
                }
                continue;
            }
            if r.what.contains(What::SELF_GONE) {
                if dir.is_root() {
                    out.push(Event::RootGone);
                }
                continue;
            }
            let Some(name) = &r.name else { continue };
            if dir.is_root()
                && name.as_slice() == STATE_DIR.as_bytes()
                && r.what.intersects(What::DELETED | What::MOVED_FROM)
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
            let is_dir = r.what.contains(What::IS_DIR);

            if r.what.contains(What::MOVED_FROM) {
                let partner = raws
                    .get(i)
                    .filter(|n| n.what.contains(What::MOVED_TO) && n.cookie == r.cookie);
                let to = partner.and_then(|n| {
                    let d = self.path_of(n.watch)?;
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
            if r.what.contains(What::MOVED_TO) {
                // Moved in from outside the tree.
                self.created(&path, &mut out)?;
            } else if r.what.contains(What::CREATED) {
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
                && r.what.contains(What::ATTRIB)
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
            } else if r.what.intersects(What::WRITTEN | What::ATTRIB) {
                match lstat_sig(&path.under(&w.root)) {
                    Ok(Some(sig)) => out.push(Event::Changed { path, sig }),
                    Ok(None) => w.table.lock().expect("watch table").vanished(path),
                    Err(e) => out.push(Event::Error {
                        path,
                        message: e.to_string(),
                    }),
                }
            } else if r.what.contains(What::DELETED) {
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

#[cfg(test)]
mod tests;
