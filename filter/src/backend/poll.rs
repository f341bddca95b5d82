//! The polling backend: for filesystems whose changes the kernel does not
//! report (NFS, CIFS, FUSE mounts changed by other clients). Every watched
//! directory is listed again once per interval and compared with its last
//! listing; what differs becomes the notices an event API would have given.
//!
//! What it tells, and how:
//! - a new name is [`What::CREATED`] (and [`What::WRITTEN`] for a regular
//!   file: there is no close to wait for), a missing one [`What::DELETED`],
//!   a name whose inode changed both;
//! - a file whose size or mtime changed is [`What::WRITTEN`], one whose
//!   ctime alone changed [`What::ATTRIB`] (unless its link count changed
//!   too and nothing else, extended attributes included: a name made or
//!   removed elsewhere, which that name's notice tells); a directory is reported only for
//!   its own mode, owner, extended attributes or ACLs (its times change with
//!   every entry made inside, which the notices of those entries tell);
//! - a name gone from one place and an inode of the same device appearing
//!   under another name in the same pass are one rename
//!   ([`What::MOVED_FROM`] then [`What::MOVED_TO`], with one cookie), a
//!   watched directory's listing following it to its new place;
//! - the helper's marks ([`Backend::mark_made`]) are reported after the
//!   first pass that started after they were made, so that every change made
//!   before a mark is reported before it, as an event API orders them.
//!
//! A change undone within one interval is not seen (a file written and
//! removed, an attribute set and set back), and a rename that a pass
//! straddles (listing the old directory before it and the new one after)
//! is a creation then a removal. A pass costs a `readdir` of every watched
//! directory and an `lstat` of every entry.

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Backend, Notice, Queue, WatchId, What};

/// What a listing holds of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snap {
    dev: u64,
    ino: u64,
    is_dir: bool,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    /// The extended attributes and ACLs of a directory, and of a file of
    /// more than one name: their ctime also changes with entries made
    /// inside, or with a name made or removed elsewhere, so it cannot tell
    /// them.
    xattrs: Option<twinsync_proto::XattrDigest>,
}

impl Snap {
    fn of(abs: &Path, md: &std::fs::Metadata) -> Snap {
        let is_dir = md.file_type().is_dir();
        Snap {
            xattrs: (is_dir || md.nlink() > 1)
                .then(|| crate::xattr::digest(crate::xattr::Target::Link(abs)).ok())
                .flatten(),
            dev: md.dev(),
            ino: md.ino(),
            is_dir,
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            nlink: md.nlink(),
        }
    }

    /// What changed from `self` to `now`, one inode.
    fn change(&self, now: &Snap) -> What {
        if now.is_dir {
            if (self.mode, self.uid, self.gid, self.xattrs)
                != (now.mode, now.uid, now.gid, now.xattrs)
            {
                return What::ATTRIB | What::IS_DIR;
            }
            return What::empty();
        }
        if (self.size, self.mtime_ns) != (now.size, now.mtime_ns) {
            What::WRITTEN
        } else if self.ctime_ns != now.ctime_ns
            && ((self.mode, self.uid, self.gid, self.xattrs)
                != (now.mode, now.uid, now.gid, now.xattrs)
                || self.nlink == now.nlink)
        {
            // (A new ctime with only the link count changed is a link made
            // or removed under another name: what the kernel reports under
            // that name only, not this one.)
            What::ATTRIB
        } else {
            What::empty()
        }
    }
}

/// One watched directory.
#[derive(Debug)]
struct Dir {
    abs: PathBuf,
    /// Its own device and inode (it is followed by them through renames).
    at: (u64, u64),
    /// Only created names are told (the marks' folder).
    created_only: bool,
    entries: HashMap<Vec<u8>, Snap>,
}

/// A directory's own device and inode, and its entries by name.
type Listing = ((u64, u64), HashMap<Vec<u8>, Snap>);

/// The listing of `abs`.
fn list(abs: &Path) -> io::Result<Listing> {
    let md = std::fs::symlink_metadata(abs)?;
    if !md.file_type().is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    let mut entries = HashMap::new();
    for ent in std::fs::read_dir(abs)? {
        let Ok(ent) = ent else { continue };
        // Gone since the readdir: not there.
        let path = ent.path();
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            entries.insert(ent.file_name().as_bytes().to_vec(), Snap::of(&path, &m));
        }
    }
    Ok(((md.dev(), md.ino()), entries))
}

#[derive(Debug, Default)]
struct State {
    next_id: WatchId,
    dirs: HashMap<WatchId, Dir>,
    /// Marks made and not yet told.
    marks: Vec<u64>,
    next_cookie: u32,
}

/// The watches: the directories listed by each pass.
pub struct PollBackend {
    state: Arc<(Mutex<State>, Condvar)>,
}

/// The passes, one per interval.
pub struct PollQueue {
    state: Arc<(Mutex<State>, Condvar)>,
    interval: Duration,
    last: Instant,
}

/// A polling backend listing every watched directory each `interval`.
#[must_use]
pub fn new(interval: Duration) -> (PollBackend, PollQueue) {
    let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
    (
        PollBackend {
            state: Arc::clone(&state),
        },
        PollQueue {
            state,
            interval,
            last: Instant::now(),
        },
    )
}

impl PollBackend {
    fn add(&self, abs: &Path, created_only: bool) -> io::Result<WatchId> {
        let (at, entries) = list(abs)?;
        let mut st = self.state.0.lock().expect("poll state");
        if let Some((&id, d)) = st.dirs.iter_mut().find(|(_, d)| d.at == at) {
            // Watched already (under this path, or another one it was
            // renamed from): the same id, listed here from now on.
            d.abs = abs.to_path_buf();
            return Ok(id);
        }
        st.next_id += 1;
        let id = st.next_id;
        st.dirs.insert(
            id,
            Dir {
                abs: abs.to_path_buf(),
                at,
                created_only,
                entries,
            },
        );
        Ok(id)
    }
}

impl Backend for PollBackend {
    fn watch_dir(&self, abs: &Path) -> io::Result<WatchId> {
        self.add(abs, false)
    }

    fn watch_created(&self, abs: &Path) -> io::Result<WatchId> {
        // The marks are told by `mark_made`, not by listing the folder (the
        // helper removes each mark at once).
        let id = self.add(abs, true)?;
        self.state
            .0
            .lock()
            .expect("poll state")
            .dirs
            .get_mut(&id)
            .expect("just added")
            .entries
            .clear();
        Ok(id)
    }

    fn unwatch(&self, id: WatchId) {
        self.state.0.lock().expect("poll state").dirs.remove(&id);
    }

    fn mark_made(&self, n: u64) {
        let (lock, wake) = &*self.state;
        lock.lock().expect("poll state").marks.push(n);
        wake.notify_all();
    }
}

impl State {
    /// One pass over every watched directory: the notices, in order.
    fn pass(&mut self) -> Vec<Notice> {
        // The marks made before this pass began: told after its changes.
        let marks = std::mem::take(&mut self.marks);
        let mut listed: Vec<(WatchId, io::Result<Listing>)> = self
            .dirs
            .iter()
            .filter(|(_, d)| !d.created_only)
            .map(|(&id, d)| (id, list(&d.abs)))
            .collect();
        listed.sort_by_key(|(id, _)| *id);
        // Per directory: names gone, names new, names changed in place.
        let mut gone: Vec<(WatchId, Vec<u8>, Snap)> = Vec::new();
        let mut new: Vec<(WatchId, Vec<u8>, Snap)> = Vec::new();
        let mut out = Vec::new();
        let mut lost = Vec::new();
        for (id, res) in listed {
            let d = self.dirs.get_mut(&id).expect("listed");
            match res {
                Ok((at, entries)) if at == d.at => {
                    let old = std::mem::replace(&mut d.entries, entries);
                    for (name, was) in &old {
                        match d.entries.get(name) {
                            Some(now) if (now.dev, now.ino) == (was.dev, was.ino) => {
                                let what = was.change(now);
                                if what != What::empty() {
                                    out.push(notice(id, what, name));
                                }
                            }
                            // A file replaced by another (written to a
                            // temporary name and renamed over it): a new
                            // version at the name, not a removal.
                            Some(now) if !now.is_dir && !was.is_dir => {}
                            _ => gone.push((id, name.clone(), *was)),
                        }
                    }
                    for (name, now) in &d.entries {
                        let same = old
                            .get(name)
                            .is_some_and(|was| (was.dev, was.ino) == (now.dev, now.ino));
                        if !same {
                            new.push((id, name.clone(), *now));
                        }
                    }
                }
                _ => lost.push(id),
            }
        }
        // Renames: an inode gone from one name and new under another.
        let mut moved_in: HashMap<(u64, u64), usize> = HashMap::new();
        for (i, (_, _, s)) in new.iter().enumerate() {
            moved_in.insert((s.dev, s.ino), i);
        }
        let mut taken = vec![false; new.len()];
        for (id, name, was) in gone {
            let dir = if was.is_dir {
                What::IS_DIR
            } else {
                What::empty()
            };
            match moved_in.get(&(was.dev, was.ino)) {
                Some(&i) if !taken[i] => {
                    taken[i] = true;
                    let (to_id, to_name, now) = &new[i];
                    self.next_cookie = self.next_cookie.wrapping_add(1);
                    let cookie = self.next_cookie;
                    out.push(Notice {
                        cookie,
                        ..notice(id, What::MOVED_FROM | dir, &name)
                    });
                    out.push(Notice {
                        cookie,
                        ..notice(*to_id, What::MOVED_TO | dir, to_name)
                    });
                    if now.is_dir {
                        let (from, to) = (self.abs_of(id, &name), self.abs_of(*to_id, to_name));
                        self.follow(&from, &to);
                    }
                    // (A rename changes the ctime: the move's own report
                    // carries the entry's attributes; a write is told.)
                    if was.change(now) == What::WRITTEN {
                        out.push(notice(*to_id, What::WRITTEN, to_name));
                    }
                }
                _ => out.push(notice(id, What::DELETED | dir, &name)),
            }
        }
        for (i, (id, name, now)) in new.into_iter().enumerate() {
            if taken[i] {
                continue;
            }
            if now.is_dir {
                out.push(notice(id, What::CREATED | What::IS_DIR, &name));
            } else {
                out.push(notice(id, What::CREATED, &name));
                if now.mode & libc::S_IFMT == libc::S_IFREG {
                    out.push(notice(id, What::WRITTEN, &name));
                }
            }
        }
        // A watched directory no longer where it was, and not followed
        // to a new place: gone (its parent tells its removal).
        for id in lost {
            // (Its identity is enough: it is listed at the next pass.)
            let followed = self.dirs.get(&id).is_some_and(|d| {
                std::fs::symlink_metadata(&d.abs).is_ok_and(|m| (m.dev(), m.ino()) == d.at)
            });
            if !followed {
                out.push(notice_self(id, What::SELF_GONE));
                out.push(notice_self(id, What::IGNORED));
                self.dirs.remove(&id);
            }
        }
        if let Some((&mid, _)) = self.dirs.iter().find(|(_, d)| d.created_only) {
            for n in marks {
                out.push(notice(mid, What::CREATED, n.to_string().as_bytes()));
            }
        }
        out
    }

    fn abs_of(&self, id: WatchId, name: &[u8]) -> PathBuf {
        self.dirs
            .get(&id)
            .map(|d| d.abs.join(std::ffi::OsStr::from_bytes(name)))
            .unwrap_or_default()
    }

    /// The directory at `from` was renamed to `to`: the watched ones at or
    /// below it are listed from their new places.
    fn follow(&mut self, from: &Path, to: &Path) {
        for d in self.dirs.values_mut() {
            if let Ok(rest) = d.abs.strip_prefix(from) {
                d.abs = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }
}

fn notice(watch: WatchId, what: What, name: &[u8]) -> Notice {
    Notice {
        watch,
        what,
        cookie: 0,
        name: Some(name.to_vec()),
    }
}

fn notice_self(watch: WatchId, what: What) -> Notice {
    Notice {
        watch,
        what,
        cookie: 0,
        name: None,
    }
}

impl Queue for PollQueue {
    fn read(&mut self, out: &mut Vec<Notice>, wait_ms: i32) -> io::Result<bool> {
        // A rename's halves come from one pass: nothing to wait for.
        if (0..10).contains(&wait_ms) {
            return Ok(false);
        }
        let deadline =
            (wait_ms > 0).then(|| Instant::now() + Duration::from_millis(wait_ms as u64));
        loop {
            let due = self.last + self.interval;
            let now = Instant::now();
            if now < due {
                let until = deadline.map_or(due, |d| d.min(due));
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(false);
                }
                let (lock, wake) = &*self.state;
                let st = lock.lock().expect("poll state");
                // A mark wakes the queue: it is told after a pass that
                // begins after it was made.
                if st.marks.is_empty() {
                    drop(
                        wake.wait_timeout(st, until.saturating_duration_since(now))
                            .expect("poll state"),
                    );
                    continue;
                }
            }
            self.last = Instant::now();
            let notices = self.state.0.lock().expect("poll state").pass();
            if !notices.is_empty() {
                out.extend(notices);
                return Ok(true);
            }
        }
    }
}
