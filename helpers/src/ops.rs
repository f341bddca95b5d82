//! In-place operations on one replica: the [`Replica`] and its errors, the
//! checks every path goes through, and [`Replica::apply`], which dispatches a
//! protocol operation to the part that does it.
//!
//! Moves and trashing go through the ignore-suffix rename dance: the entry is
//! first renamed to `NAME.<id>.twinsync.ignore` in its own directory, then to
//! its destination. The filter reports neither step, so the brain never sees
//! its own moves and deletes come back as events.
//!
//! The parts: `state` (the replica's own `.twinsync/`), `content` (regular
//! files' data), `trash` (moves and removals), `attrs` (lstat, directories,
//! attributes), `special` (symlinks, fifos, devices), `link` (hard links).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use twinsync_filter::STATE_DIR;
use twinsync_proto::{Op, OpFail, OpResult, RelPath, Sig, Xattrs};

use crate::beneath;
use crate::xattr;

mod attrs;
mod content;
mod link;
mod special;
mod state;
mod trash;

pub use state::{clean_trash, open_state_dir};

/// Longest file name the kernel accepts.
const NAME_MAX: usize = 255;

/// One replica root and the helpers that act on it.
///
/// The root is held open: every path is resolved beneath it by the kernel
/// (see [`crate::beneath`]) and acted on through its parent's descriptor,
/// and so is the replica's own `.twinsync/`, which requests can never name.
#[derive(Debug)]
pub struct Replica {
    root: PathBuf,
    root_fd: OwnedFd,
    /// `.twinsync/`, once opened and found to be ours.
    state: OnceLock<OwnedFd>,
    /// Whether installs are recorded in `.twinsync/installed`.
    record: AtomicBool,
    /// Whether files made here get their source's owner and group.
    owners: AtomicBool,
    /// The last mark made (see [`Replica::mark`]).
    marks: std::sync::atomic::AtomicU64,
    /// `.twinsync/installed`, held open for appending once an install was
    /// recorded (one `openat` and `close` less per file installed);
    /// dropped when the record is emptied (unlinked).
    installed_fd: std::sync::Mutex<Option<std::fs::File>>,
}

/// An error of a helper operation, with the path.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The path could leave the root, or names the replica's `.twinsync/`.
    #[error(
        "refused path {0}: it is absolute, contains `..`, passes through a symlink or names \
         .twinsync/"
    )]
    Unsafe(RelPath),
    /// The entry to act on does not exist.
    #[error("{0}: no such file or directory")]
    Missing(RelPath),
    /// The destination did not hold the version the brain expected: it
    /// changed since the brain saw it, and the operation did not act.
    #[error("{path}: changed meanwhile; not replaced")]
    Refused {
        /// The path.
        path: RelPath,
        /// What it holds.
        found: Option<Sig>,
    },
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: RelPath,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl From<OpError> for OpFail {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Refused { found, .. } => OpFail::Refused { found },
            e => OpFail::Failed(e.to_string()),
        }
    }
}

/// Directory below the state dir where rsync stages files before the
/// helper installs them conditionally.
pub const STAGE_DIR: &str = "stage";

/// The folder below `.twinsync/` where the helper makes its marks (see
/// [`Replica::mark`]).
const MARK_DIR: &str = "mark";

fn io_err<'a>(what: &'static str, path: &'a RelPath) -> impl FnOnce(io::Error) -> OpError + 'a {
    move |source| OpError::Io {
        what,
        path: path.clone(),
        source,
    }
}

fn parent_bytes(rel: &RelPath) -> &[u8] {
    let b = rel.as_bytes();
    match b.iter().rposition(|&c| c == b'/') {
        Some(i) => &b[..i],
        None => &[],
    }
}

/// True when `rel` is `.twinsync` or below it.
#[must_use]
pub fn in_state_dir(rel: &RelPath) -> bool {
    rel.as_bytes().split(|&b| b == b'/').next() == Some(STATE_DIR.as_bytes())
}

/// The signature of the entry `name` in `dir`, if it is there and can be
/// looked at.
fn sig_in(dir: BorrowedFd<'_>, name: &[u8]) -> Option<Sig> {
    beneath::sig_at(dir, name).ok().flatten()
}

/// Give the entry `name` in `dir` (never followed if a symlink) the
/// extended attributes `x` (see [`xattr::apply`]).
fn set_xattrs(dir: BorrowedFd<'_>, name: &[u8], x: &Xattrs) -> io::Result<()> {
    beneath::with_xattrs_of(dir, name, |t, _| xattr::apply(t, x))?
        .ok_or_else(|| io::Error::from(rustix::io::Errno::NOENT))
}

impl Replica {
    /// A replica rooted at `root` (a directory, held open from now on).
    ///
    /// # Errors
    /// When the root cannot be opened as a directory.
    pub fn open(root: PathBuf) -> io::Result<Self> {
        // The root itself is the administrator's choice and may be reached
        // through a symlink; nothing below it is.
        let root_fd = rustix::fs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Replica {
            root,
            root_fd,
            state: OnceLock::new(),
            record: AtomicBool::new(false),
            owners: AtomicBool::new(false),
            marks: std::sync::atomic::AtomicU64::new(0),
            installed_fd: std::sync::Mutex::new(None),
        })
    }

    /// The root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Give files made from now on their source's numeric owner and group
    /// (only root can; otherwise they are the agent's user's).
    pub fn set_owners(&self, on: bool) {
        self.owners.store(
            on && rustix::process::geteuid().is_root(),
            Ordering::Relaxed,
        );
    }

    /// Check that `rel` is a path a request may name: relative, no `..`,
    /// not the root, not in `.twinsync/`.
    ///
    /// # Errors
    /// [`OpError::Unsafe`].
    pub fn check(&self, rel: &RelPath) -> Result<(), OpError> {
        if !rel.is_safe() || rel.is_root() || in_state_dir(rel) {
            return Err(OpError::Unsafe(rel.clone()));
        }
        Ok(())
    }

    /// The directory `rel` goes in, made with its parents if missing; a
    /// failure to make them says `doing` `rel`.
    fn parent_made(&self, rel: &RelPath, doing: &'static str) -> Result<OwnedFd, OpError> {
        self.dir_of(rel, true)
            .map_err(|e| match e {
                OpError::Io { source, .. } => io_err(doing, rel)(source),
                e => e,
            })?
            .ok_or_else(|| OpError::Missing(rel.clone()))
    }

    /// The directory holding `rel`, resolved beneath the root (created when
    /// `create`); `None` when it does not exist.
    fn dir_of(&self, rel: &RelPath, create: bool) -> Result<Option<OwnedFd>, OpError> {
        self.check(rel)?;
        let parent = parent_bytes(rel);
        let r = if create {
            beneath::make_dirs(self.root_fd.as_fd(), parent)
        } else {
            beneath::open_dir(self.root_fd.as_fd(), parent)
        };
        match r {
            Ok(fd) => Ok(Some(fd)),
            Err(e) => match e.raw_os_error() {
                Some(libc::ELOOP | libc::EXDEV) => Err(OpError::Unsafe(rel.clone())),
                Some(libc::ENOENT | libc::ENOTDIR) if !create => Ok(None),
                _ => Err(io_err("resolving", rel)(e)),
            },
        }
    }

    /// Apply one operation.
    pub fn apply(&self, op: &Op) -> OpResult {
        // The entry made or changed, looked at after the operation: its
        // stamp is how the brain recognises the filter's report of it.
        let after = |rel: &RelPath| self.stat(rel);
        let r = match op {
            Op::Move {
                from,
                source,
                to,
                expect,
            } => self
                .move_entry(from, to, *source, *expect)
                .and_then(|()| after(to)),
            Op::Trash { path, expect } => self.trash_if(path, *expect),
            Op::KeepConflict { path } => self.stash(path, "conflicts").map(|_| None),
            Op::Mkdir {
                path,
                mode,
                owner,
                xattrs,
            } => self
                .mkdir(path, *mode, *owner, xattrs.as_ref())
                .and_then(|()| after(path)),
            Op::SetAttr {
                path,
                expect,
                mode,
                mtime_ns,
                owner,
                xattrs,
            } => self
                .check_expect(path, *expect)
                .and_then(|()| self.set_attr(path, *mode, *mtime_ns, *owner, xattrs.as_ref()))
                .and_then(|()| after(path)),
            Op::Symlink {
                path,
                target,
                mtime_ns,
                owner,
                xattrs,
                expect,
            } => self
                .symlink(path, target, *mtime_ns, *owner, xattrs, *expect)
                .and_then(|()| after(path)),
            Op::Mknod {
                path,
                kind,
                mode,
                rdev,
                mtime_ns,
                owner,
                xattrs,
            } => self
                .mknod(path, *kind, *mode, *rdev, *mtime_ns, *owner, xattrs)
                .and_then(|()| after(path)),
            Op::Install {
                staged,
                path,
                expect,
                xattrs,
                ..
            } => self.install(staged, path, *expect, xattrs).map(Some),
            Op::Link {
                existing,
                path,
                expect,
                want,
            } => self
                .link(existing, path, *expect, want)
                .and_then(|()| after(path)),
        };
        r.map_err(OpFail::from)
    }
}

#[cfg(test)]
mod tests;
