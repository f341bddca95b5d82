//! The seam between a kernel's change-notification API and the shared
//! filter: the [`Backend`] a watcher places watches with, the [`Queue`] it
//! reads, and the kernel-neutral [`Notice`]s the shared translator
//! (`translate`) turns into protocol events.
//!
//! # The contract of a backend
//! A backend only watches directories and reads what happened in them; it
//! decides nothing. It must:
//! - place a watch on one directory, [`Backend::watch_dir`], returning a
//!   [`WatchId`] that stays the same for the same directory (a second watch
//!   of a directory already watched, maybe under another path after a
//!   rename, returns the id it has: the walker learns of moves it did not
//!   see that way), and errors as the kernel gives them (`ENOSPC` for a
//!   watch limit, `ENOENT`/`ENOTDIR` for a directory gone, `EACCES` for one
//!   it may not read);
//! - report, per watched directory, in the order they happened: an entry
//!   created ([`What::CREATED`]), a file closed after writing
//!   ([`What::WRITTEN`]), attributes changed ([`What::ATTRIB`], on the
//!   directory itself too, with no name), an entry deleted
//!   ([`What::DELETED`]), the two halves of a rename with one cookie
//!   ([`What::MOVED_FROM`], [`What::MOVED_TO`], queued next to each other
//!   when both directories are watched), the watched directory itself gone
//!   ([`What::SELF_GONE`]) and its watch dropped ([`What::IGNORED`]), with
//!   [`What::IS_DIR`] when the entry is a directory;
//! - report a lost notification as [`What::OVERFLOW`] (never drop one
//!   silently): the brain then lists the replica again.
//!
//! What the shared code does on top, for every backend: the walker
//! ([`crate::Watcher::scan`]) watches each directory before listing it, so
//! nothing made inside a fresh `mkdir -p a/b/c` is missed; the translator
//! pairs renames (directories too), lists directories that appear, applies
//! the exclude rules and hides the tool's own names (`.twinsync/`, the
//! helpers' rename dance), reports the root going away, and coalesces.
//!
//! The backends: [`inotify`] (Linux, the default) and [`poll`] (any
//! filesystem, changes seen once per interval).

#[cfg(target_os = "linux")]
pub mod inotify;
pub mod poll;

use std::io;
use std::path::Path;

/// A backend's handle of one watched directory.
pub type WatchId = u64;

/// What a [`Notice`] says happened (a set of these bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct What(u16);

impl What {
    /// An entry was created in the directory.
    pub const CREATED: What = What(1);
    /// A file was closed after being written.
    pub const WRITTEN: What = What(1 << 1);
    /// An entry's attributes (or the directory's own) changed.
    pub const ATTRIB: What = What(1 << 2);
    /// An entry was deleted.
    pub const DELETED: What = What(1 << 3);
    /// An entry was renamed away from the directory (first half).
    pub const MOVED_FROM: What = What(1 << 4);
    /// An entry was renamed into the directory (second half).
    pub const MOVED_TO: What = What(1 << 5);
    /// The watched directory itself was deleted, moved or unmounted.
    pub const SELF_GONE: What = What(1 << 6);
    /// The watch is gone (the kernel dropped it).
    pub const IGNORED: What = What(1 << 7);
    /// Notifications were lost.
    pub const OVERFLOW: What = What(1 << 8);
    /// The entry is a directory.
    pub const IS_DIR: What = What(1 << 9);

    /// The empty set.
    #[must_use]
    pub const fn empty() -> What {
        What(0)
    }

    /// Both sets.
    #[must_use]
    pub const fn union(self, other: What) -> What {
        What(self.0 | other.0)
    }

    /// True when every bit of `other` is set.
    #[must_use]
    pub const fn contains(self, other: What) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when some bit of `other` is set.
    #[must_use]
    pub const fn intersects(self, other: What) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for What {
    type Output = What;
    fn bitor(self, other: What) -> What {
        self.union(other)
    }
}

/// One notification, in kernel-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The watched directory it happened in.
    pub watch: WatchId,
    /// What happened.
    pub what: What,
    /// Pairs the two halves of one rename.
    pub cookie: u32,
    /// The entry's name in the directory (`None`: the directory itself).
    pub name: Option<Vec<u8>>,
}

/// Places and removes watches (shared by the walker and the event loop).
pub trait Backend: Send + Sync {
    /// Watch the directory at `abs` (see the module's contract).
    ///
    /// # Errors
    /// As the kernel gives them.
    fn watch_dir(&self, abs: &Path) -> io::Result<WatchId>;

    /// Watch the folder at `abs` for created entries only (the helper's
    /// marks).
    ///
    /// # Errors
    /// As the kernel gives them.
    fn watch_created(&self, abs: &Path) -> io::Result<WatchId>;

    /// Stop watching; a watch the kernel dropped already is no error.
    fn unwatch(&self, id: WatchId);

    /// The helper made mark `n` in the folder [`Backend::watch_created`]
    /// watches (and removed it at once). A backend that does not see it
    /// made tells it itself, after every change made before it.
    fn mark_made(&self, n: u64) {
        let _ = n;
    }
}

/// The queue of one backend's notices.
pub trait Queue: Send {
    /// Append the notices that are ready to `out`, after waiting up to
    /// `wait_ms` milliseconds for the first one (`-1`: forever, `0`: not at
    /// all). Returns false when none came within the wait.
    ///
    /// # Errors
    /// When the queue cannot be read (fatal for the filter).
    fn read(&mut self, out: &mut Vec<Notice>, wait_ms: i32) -> io::Result<bool>;
}
