//! The filter: watches one replica and turns kernel events into protocol
//! [`Event`]s, and walks the tree for scans.
//!
//! The kernel's API is behind a seam ([`backend`]: one file per API, today
//! inotify on Linux); the walker ([`Watcher`]) and the translator
//! ([`EventLoop`]) are shared by every backend. What the filter promises:
//! - recursive: watches are placed on a new directory *before* it is scanned,
//!   so nothing created inside a fresh `mkdir -p a/b/c` is missed;
//! - moves are paired into one [`Event::Moved`] (directories too); a move into
//!   or out of the tree becomes a create or a remove;
//! - excluded paths get no watches at all; the tool's own names (the
//!   `.twinsync/` directory, ignore-suffix names) are never reported;
//! - a kernel queue overflow is reported as [`Event::RescanNeeded`], never
//!   dropped; the root going away (deleted, moved, unmounted, or its
//!   `.twinsync/` removed, which `rm -rf ROOT` does early) is reported as
//!   [`Event::RootGone`].
#![deny(missing_docs)]

pub mod backend;
mod excludes;
mod sig;
mod translate;
mod watcher;
pub mod xattr;

pub use excludes::{is_ignore_name, Excludes, IGNORE_SUFFIX, STATE_DIR};
pub use sig::{lstat_sig, sig_at, sig_of};
pub use translate::EventLoop;
use twinsync_proto::RelPath;
pub use twinsync_proto::{Entry, Event};
pub use watcher::{Watcher, Watching};

/// Errors that stop a filter.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The per-user inotify watch limit is exhausted.
    #[error(
        "cannot watch {path}: the inotify watch limit (fs.inotify.max_user_watches = {limit}) \
         is reached. Raise it, e.g. `sudo sysctl fs.inotify.max_user_watches=1048576` \
         (and make it permanent in /etc/sysctl.d/), or exclude large trees with --exclude"
    )]
    WatchLimit {
        /// The directory that could not be watched.
        path: RelPath,
        /// The current limit.
        limit: String,
    },
    /// The root cannot be used.
    #[error("replica root {root}: {source}")]
    Root {
        /// The root.
        root: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: RelPath,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
