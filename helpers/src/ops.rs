//! In-place operations on one replica.
//!
//! Moves and trashing go through the ignore-suffix rename dance: the entry is
//! first renamed to `NAME.<id>.twinsync.ignore` in its own directory, then to
//! its destination. The filter reports neither step, so the brain never sees
//! its own moves and deletes come back as events.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use twinsync_filter::{IGNORE_SUFFIX, STATE_DIR};

use twinsync_proto::{Expect, Extent, FileData, Kind, Op, OpFail, OpResult, RelPath, Sig};

use crate::beneath::{self, kind_of};

mod link;
use crate::xattr::{self, Target};
use twinsync_proto::{XattrDigest, XattrScope, Xattrs};

/// Most bytes of data (holes not counted) of a file carried inline in one
/// frame (below the protocol's limit).
const INLINE_LIMIT: u64 = (twinsync_proto::MAX_FRAME as u64) * 3 / 4;

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

/// How many times a file that keeps changing while it is read is read
/// again before the copy is given up (until its next change is reported).
const COPY_ATTEMPTS: usize = 3;

/// True when the file open as `f` is no longer the version `before` was a
/// stat of (written, truncated or its attributes changed since).
fn changed_since(f: &fs::File, before: &rustix::fs::Stat) -> bool {
    rustix::fs::fstat(f).map_or(true, |now| {
        (
            now.st_size,
            now.st_mtime,
            now.st_mtime_nsec,
            now.st_ctime,
            now.st_ctime_nsec,
        ) != (
            before.st_size,
            before.st_mtime,
            before.st_mtime_nsec,
            before.st_ctime,
            before.st_ctime_nsec,
        )
    })
}

/// The error of a file that kept changing while it was read.
fn changing(rel: &RelPath) -> OpError {
    OpError::Io {
        what: "copying",
        path: rel.clone(),
        source: io::Error::other(
            "it kept changing while it was read; it is copied once its writer pauses",
        ),
    }
}

/// Open the state dir and check it is this user's and writable by no one
/// else (anyone else could swap what is inside it).
fn open_state(root: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = beneath::open_dir(root, STATE_DIR.as_bytes())?;
    let st = rustix::fs::fstat(&fd)?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me || st.st_mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{STATE_DIR}/ is owned by uid {} with mode {:o}: it must belong to this user \
                 (uid {me}) and be writable by no one else; remove it (a fresh one is made)",
                st.st_uid,
                st.st_mode & 0o7777
            ),
        ));
    }
    Ok(fd)
}

/// The folder `sub` of `root`'s `.twinsync/` (made if missing), opened with
/// no symlink followed on the way, and `.twinsync/` checked to be this
/// user's and writable by no one else: for the brain's own files in the
/// left replica (index, conflicts log), which a replica's user must not be
/// able to aim elsewhere. `sub` empty: `.twinsync/` itself.
///
/// # Errors
/// A missing root or `.twinsync/`, a link on the way, a `.twinsync/` that is
/// not this user's.
pub fn open_state_dir(root: &Path, sub: &[u8]) -> io::Result<OwnedFd> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let state = open_state(root_fd.as_fd())?;
    beneath::make_dirs(state.as_fd(), sub)
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

/// The signature of the file open as `f` (of which `st` is an `fstat`) and
/// its extended attributes of `scope`, read in one go.
fn read_version(
    f: &fs::File,
    st: &rustix::fs::Stat,
    scope: XattrScope,
) -> io::Result<(Sig, Xattrs)> {
    let all = xattr::read(Target::Fd(f.as_fd()), XattrScope::Root)?;
    let sig = beneath::sig_of_stat(st, twinsync_filter::xattr::digest_of(&all));
    Ok((sig, all.within(scope)))
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
        })
    }

    /// The root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/.twinsync`, for messages.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// The state dir, opened without following a symlink and checked.
    fn state(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some(fd) = self.state.get() {
            return Ok(fd.as_fd());
        }
        let fd = open_state(self.root_fd.as_fd())?;
        Ok(self.state.get_or_init(|| fd).as_fd())
    }

    /// A descriptor of the state dir of its own (for a thread or a lock).
    ///
    /// # Errors
    /// When it is missing or not this user's.
    pub fn state_fd(&self) -> io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(self.state()?, 0)?)
    }

    /// True when the root's path still leads to the directory this replica
    /// holds open and its `.twinsync/` is there: false once the root was
    /// deleted, moved away, unmounted or its state dir swapped.
    #[must_use]
    pub fn intact(&self) -> bool {
        let Ok(now) = rustix::fs::stat(&self.root) else {
            return false;
        };
        let Ok(held) = rustix::fs::fstat(&self.root_fd) else {
            return false;
        };
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino) {
            return false;
        }
        match (open_state(self.root_fd.as_fd()), self.state.get()) {
            (Ok(fd), Some(ours)) => {
                let (a, b) = (rustix::fs::fstat(&fd), rustix::fs::fstat(ours));
                matches!((a, b), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
            }
            (Ok(_), None) => true,
            (Err(_), _) => false,
        }
    }

    /// Give files made from now on their source's numeric owner and group
    /// (only root can; otherwise they are the agent's user's).
    pub fn set_owners(&self, on: bool) {
        self.owners.store(
            on && rustix::process::geteuid().is_root(),
            Ordering::Relaxed,
        );
    }

    /// Create `.twinsync/` (this user's, writable by no one else) and its
    /// working folders.
    ///
    /// # Errors
    /// When they cannot be created, or a `.twinsync/` that is not this
    /// user's is in the way.
    pub fn prepare(&self) -> io::Result<()> {
        match rustix::fs::mkdirat(&self.root_fd, STATE_DIR, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // One of ours made by an older version with a loose umask: tightened.
        if let Some(st) = beneath::lstat_at(self.root_fd.as_fd(), STATE_DIR.as_bytes())? {
            let me = rustix::process::geteuid().as_raw();
            if st.st_uid == me && st.st_mode & 0o022 != 0 {
                beneath::chmod(
                    self.root_fd.as_fd(),
                    STATE_DIR.as_bytes(),
                    st.st_mode & 0o7755,
                )?;
            }
        }
        let state = self.state()?;
        // Staged files left by an interrupted batch are stale. Best effort:
        // the rsync of a brain killed a moment ago may still be writing
        // there (ENOTEMPTY); a brain installs only what its own rsync just
        // staged, and what is left goes at the next start.
        let _ = beneath::remove_tree(state, STAGE_DIR.as_bytes());
        self.record.store(true, Ordering::Relaxed);
        for sub in ["tmp", "trash", "conflicts", STAGE_DIR, MARK_DIR] {
            beneath::make_dirs(state, sub.as_bytes())?;
        }
        Ok(())
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

    /// The directory holding `rel`, resolved beneath the root (created when
    /// `create`); `None` when it does not exist.
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
            Op::Move { from, to, expect } => {
                self.move_entry(from, to, *expect).and_then(|()| after(to))
            }
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
                mode,
                mtime_ns,
                owner,
                xattrs,
            } => self
                .set_attr(path, *mode, *mtime_ns, *owner, xattrs.as_ref())
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

    /// The stage (`.twinsync/stage/`).
    fn stage(&self) -> io::Result<OwnedFd> {
        beneath::open_dir(self.state()?, STAGE_DIR.as_bytes())
    }

    /// lstat files staged below `.twinsync/stage/` (`None`: not there, or
    /// an unsafe path).
    #[must_use]
    pub fn stat_staged(&self, paths: &[RelPath]) -> Vec<Option<Sig>> {
        let Ok(stage) = self.stage() else {
            return vec![None; paths.len()];
        };
        paths
            .iter()
            .map(|p| {
                if !p.is_safe() || p.is_root() {
                    return None;
                }
                let d = beneath::open_dir(stage.as_fd(), parent_bytes(p)).ok()?;
                beneath::sig_at(d.as_fd(), p.file_name()).ok().flatten()
            })
            .collect()
    }

    /// Install the file rsync staged at `.twinsync/stage/STAGED` at `rel`,
    /// with the extended attributes `xattrs` (rsync carries none), if `rel`
    /// holds what is expected (what it replaces is kept in the trash).
    /// Returns the installed file's signature.
    ///
    /// # Errors
    /// Unsafe paths, a missing staged file, [`OpError::Refused`], failing
    /// attributes.
    pub fn install(
        &self,
        staged: &RelPath,
        rel: &RelPath,
        expect: Expect,
        xattrs: &Xattrs,
    ) -> Result<Sig, OpError> {
        if !staged.is_safe() || staged.is_root() {
            return Err(OpError::Unsafe(staged.clone()));
        }
        let stage = self.stage().map_err(|_| OpError::Missing(staged.clone()))?;
        let sdir = beneath::open_dir(stage.as_fd(), parent_bytes(staged))
            .map_err(|_| OpError::Missing(staged.clone()))?;
        let (f, _) = beneath::open_file(sdir.as_fd(), staged.file_name())
            .map_err(|_| OpError::Missing(staged.clone()))?;
        let r = xattr::apply(Target::Fd(f.as_fd()), xattrs)
            .map_err(io_err("setting extended attributes of", rel))
            .and_then(|()| self.place(rel, (sdir.as_fd(), staged.file_name()), &f, expect));
        if r.is_err() {
            let _ = rustix::fs::unlinkat(
                &sdir,
                std::ffi::OsStr::from_bytes(staged.file_name()),
                AtFlags::empty(),
            );
        }
        // Empty staging directories left behind go (a non-empty one stays).
        let mut dir = staged.parent();
        while let Some(d) = dir.filter(|d| !d.is_root()) {
            let Ok(p) = beneath::open_dir(stage.as_fd(), parent_bytes(&d)) else {
                break;
            };
            let name = std::ffi::OsStr::from_bytes(d.file_name());
            if rustix::fs::unlinkat(&p, name, AtFlags::REMOVEDIR).is_err() {
                break;
            }
            dir = d.parent();
        }
        r
    }

    /// Rename the prepared file `tmp` (a directory and a name in it, open
    /// as `f`) to `rel` if `rel` holds what is expected, keeping what it
    /// replaces in the trash; returns the installed file's signature, from
    /// its descriptor after the rename (rename changes its ctime): a user
    /// write after it shows as another version.
    fn place(
        &self,
        rel: &RelPath,
        tmp: (BorrowedFd<'_>, &[u8]),
        f: &fs::File,
        expect: Expect,
    ) -> Result<Sig, OpError> {
        let dir = self
            .dir_of(rel, true)?
            .ok_or_else(|| OpError::Missing(rel.clone()))?;
        let name = rel.file_name();
        let before = beneath::sig_of_file(f).map_err(io_err("installing", rel))?;
        let found = beneath::sig_at(dir.as_fd(), name).map_err(io_err("looking at", rel))?;
        let backup = self.make_room(rel, dir.as_fd(), name, found, expect)?;
        // Created meanwhile when nothing was expected: refused, not replaced.
        let noreplace = expect == Expect::Absent;
        if let Err(e) = beneath::rename(tmp.0, tmp.1, dir.as_fd(), name, noreplace) {
            if noreplace && e.raw_os_error() == Some(libc::EEXIST) {
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found: beneath::sig_at(dir.as_fd(), name).ok().flatten(),
                });
            }
            return Err(io_err("installing", rel)(e));
        }
        let after = beneath::sig_of_file(f).map_err(io_err("installing", rel))?;
        if let (Some(old), Some((bdir, bname))) = (found.filter(|o| o.kind == Kind::File), backup) {
            let at = (dir.as_fd(), name);
            if let Some(refused) =
                self.undo_if_written(rel, at, (bdir.as_fd(), &bname), &old, &after)
            {
                return Err(refused);
            }
        }
        if after.same_content(&before) {
            self.note_installed(rel, &after);
            Ok(after)
        } else {
            // Written into after the rename: what was installed is
            // `before`, and what is there now is a user's version, which
            // no stamp reported here must match (ctime 0 never is).
            Ok(Sig {
                ctime_ns: 0,
                ..before
            })
        }
    }

    /// Make the next mark: a file named by its number, created and removed
    /// in `.twinsync/mark/` (which the filter watches, see
    /// `Watcher::watch_marks`), after everything this helper did before.
    /// Returns its number.
    ///
    /// # Errors
    /// When the file cannot be made.
    pub fn mark(&self) -> io::Result<u64> {
        let n = self.marks.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("{MARK_DIR}/{n}");
        let fd = rustix::fs::openat(
            self.state()?,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        drop(fd);
        rustix::fs::unlinkat(self.state()?, name.as_str(), AtFlags::empty())?;
        Ok(n)
    }

    /// The folder of the marks, for the filter to watch: named through this
    /// process's descriptor of `.twinsync/` (never through the root's path,
    /// which a user of the replica could swap).
    ///
    /// # Errors
    /// When `.twinsync/` cannot be opened.
    pub fn mark_dir(&self) -> io::Result<PathBuf> {
        use std::os::fd::AsRawFd;
        Ok(PathBuf::from(format!(
            "/proc/self/fd/{}/{MARK_DIR}",
            self.state()?.as_raw_fd()
        )))
    }

    /// Append `rel` and its stamp to `.twinsync/installed` (written, not
    /// synced: it serves after a brain is killed, see
    /// [`Replica::installed`]). Best effort.
    fn note_installed(&self, rel: &RelPath, sig: &Sig) {
        if !self.record.load(Ordering::Relaxed) {
            return;
        }
        let frame = twinsync_proto::encode(&(rel, sig.stamp()));
        let Ok(state) = self.state() else { return };
        let _ = rustix::fs::openat(
            state,
            "installed",
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io::Error::from)
        .and_then(|fd| io::Write::write_all(&mut fs::File::from(fd), &frame));
    }

    /// The files installed since the record was last emptied, with their
    /// stamps right after (latest last); `forget` empties it.
    ///
    /// # Errors
    /// A record that exists but cannot be read or emptied.
    pub fn installed(&self, forget: bool) -> io::Result<Vec<(RelPath, twinsync_proto::Stamp)>> {
        let state = match self.state() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut f = match beneath::open_file(state, b"installed") {
            Ok((f, _)) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut data = Vec::new();
        io::Read::read_to_end(&mut f, &mut data)?;
        let mut out = Vec::new();
        let mut r = &data[..];
        // Up to a torn last record.
        while let Ok(x) = twinsync_proto::read_frame(&mut r) {
            out.push(x);
        }
        if forget {
            rustix::fs::unlinkat(state, "installed", AtFlags::empty())?;
        }
        Ok(out)
    }

    /// Trash `rel` if it holds what is expected (a version changed since
    /// the brain saw it is refused: a modification wins over a deletion).
    ///
    /// # Errors
    /// See [`Replica::trash`]; [`OpError::Refused`].
    pub fn trash_if(&self, rel: &RelPath, expect: Expect) -> Result<Option<Sig>, OpError> {
        if expect != Expect::Any {
            let found = self.stat(rel)?;
            if !expect.holds(found.as_ref()) {
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found,
                });
            }
        }
        self.stash_sig(rel, "trash")
    }

    /// lstat `rel`.
    ///
    /// # Errors
    /// Unsafe paths and errors other than "not found".
    pub fn stat(&self, rel: &RelPath) -> Result<Option<Sig>, OpError> {
        let Some(dir) = self.dir_of(rel, false)? else {
            return Ok(None);
        };
        beneath::sig_at(dir.as_fd(), rel.file_name()).map_err(io_err("stat", rel))
    }

    /// The extended attributes of `scope` of `rel` (never following a
    /// symlink); `None` when it is not there.
    ///
    /// # Errors
    /// Unsafe paths, failing reads.
    pub fn read_xattrs(&self, rel: &RelPath, scope: XattrScope) -> Result<Option<Xattrs>, OpError> {
        let Some(dir) = self.dir_of(rel, false)? else {
            return Ok(None);
        };
        match beneath::with_xattrs_of(dir.as_fd(), rel.file_name(), |t, _| xattr::read(t, scope)) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(Some(Xattrs {
                scope,
                list: Vec::new(),
            })),
            r => r.map_err(io_err("reading extended attributes of", rel)),
        }
    }

    /// The target of the symlink `rel` (`None`: missing, not a link, unsafe).
    #[must_use]
    pub fn read_link(&self, rel: &RelPath) -> Option<Vec<u8>> {
        let dir = self.dir_of(rel, false).ok()??;
        let t = rustix::fs::readlinkat(
            &dir,
            std::ffi::OsStr::from_bytes(rel.file_name()),
            Vec::new(),
        )
        .ok()?;
        Some(t.into_bytes())
    }

    /// A fresh, unpredictable ignore-suffix name for `name` (kept in it when
    /// it fits).
    fn ignore_name(name: &[u8]) -> Vec<u8> {
        let suffix = format!(".{}", &beneath::random_hex()[..16]);
        let mut n = Vec::with_capacity(name.len() + suffix.len() + IGNORE_SUFFIX.len());
        if name.len() + suffix.len() + IGNORE_SUFFIX.len() <= NAME_MAX {
            n.extend_from_slice(name);
        }
        n.extend_from_slice(suffix.as_bytes());
        n.extend_from_slice(IGNORE_SUFFIX);
        n
    }

    /// Rename `from` to `to` through the dance; an entry at `to` is trashed.
    ///
    /// # Errors
    /// Missing source, unsafe paths, failing renames.
    pub fn move_entry(&self, from: &RelPath, to: &RelPath, expect: Expect) -> Result<(), OpError> {
        let sdir = self
            .dir_of(from, false)?
            .ok_or_else(|| OpError::Missing(from.clone()))?;
        self.check(to)?;
        let sname = from.file_name();
        let src_md = beneath::lstat_at(sdir.as_fd(), sname)
            .ok()
            .flatten()
            .ok_or_else(|| OpError::Missing(from.clone()))?;
        let mut there = false;
        if let Some(d) = self.dir_of(to, false)? {
            if let Ok(Some(md)) = beneath::lstat_at(d.as_fd(), to.file_name()) {
                if md.st_ino == src_md.st_ino && md.st_dev == src_md.st_dev {
                    return Ok(());
                }
                let found = beneath::sig_of_stat(&md, XattrDigest::NONE);
                if !expect.holds(Some(&found)) {
                    return Err(OpError::Refused {
                        path: to.clone(),
                        found: sig_in(d.as_fd(), to.file_name()),
                    });
                }
                self.trash(to)?;
                there = true;
            }
        }
        if !there && matches!(expect, Expect::Version(_)) {
            // The version to replace is gone (a user removed it): the
            // brain cannot tell that removal from one of what it moves
            // there, so it is told.
            return Err(OpError::Refused {
                path: to.clone(),
                found: None,
            });
        }
        let ddir = self.parent_made(to, "creating parents of")?;
        let tmp = Self::ignore_name(sname);
        beneath::rename(sdir.as_fd(), sname, sdir.as_fd(), &tmp, true)
            .map_err(io_err("renaming", from))?;
        if let Err(e) = beneath::rename(sdir.as_fd(), &tmp, ddir.as_fd(), to.file_name(), false) {
            let _ = beneath::rename(sdir.as_fd(), &tmp, sdir.as_fd(), sname, true);
            return Err(io_err("renaming to", to)(e));
        }
        // The rename gave the entry a new ctime, so its stamp here: recorded
        // (as an install's is) so that a brain killed before it learns it
        // takes the entry found there for the batch's move, not for a
        // change (which a removal on the other side would have to keep).
        if let Ok(Some(md)) = beneath::lstat_at(ddir.as_fd(), to.file_name()) {
            let moved = beneath::sig_of_stat(&md, XattrDigest::NONE);
            let source = beneath::sig_of_stat(&src_md, XattrDigest::NONE);
            if md.st_ino == src_md.st_ino && moved.same_stat(&source) {
                self.note_installed(to, &moved);
            }
        }
        Ok(())
    }

    /// Move `rel` (and what is below it) into the trash; true when it existed.
    ///
    /// # Errors
    /// Unsafe paths and failing renames.
    pub fn trash(&self, rel: &RelPath) -> Result<bool, OpError> {
        self.stash(rel, "trash")
    }

    /// Move `rel` into `.twinsync/<into>/YYYY-MM-DD/` (the trash, or the
    /// conflicts folder), through the dance; true when it existed.
    fn stash(&self, rel: &RelPath, into: &str) -> Result<bool, OpError> {
        self.stash_sig(rel, into).map(|s| s.is_some())
    }

    /// [`Replica::stash`], returning the entry's lstat in its new place
    /// (`None`: nothing was there). The rename gave it the time of its
    /// removal as ctime: a report of the path taken before is older (the
    /// brain tells a late report of what it removed from a new entry by it).
    fn stash_sig(&self, rel: &RelPath, into: &str) -> Result<Option<Sig>, OpError> {
        let Some(sdir) = self.dir_of(rel, false)? else {
            return Ok(None);
        };
        let name = rel.file_name();
        let Ok(Some(before)) = beneath::lstat_at(sdir.as_fd(), name) else {
            return Ok(None);
        };
        let (kdir, kname) = self
            .keep_place(into, rel)
            .map_err(io_err("creating trash folder for", rel))?;
        let tmp = Self::ignore_name(name);
        beneath::rename(sdir.as_fd(), name, sdir.as_fd(), &tmp, true)
            .map_err(io_err("trashing", rel))?;
        if let Err(e) = beneath::rename(sdir.as_fd(), &tmp, kdir.as_fd(), &kname, true) {
            let _ = beneath::rename(sdir.as_fd(), &tmp, sdir.as_fd(), name, true);
            return Err(io_err("trashing", rel)(e));
        }
        let after = sig_in(kdir.as_fd(), &kname);
        Ok(Some(after.unwrap_or(beneath::sig_of_stat(
            &before,
            XattrDigest::NONE,
        ))))
    }

    /// Create directory `rel` (parents too) and give it its owner,
    /// extended attributes (when given) and `mode`.
    ///
    /// # Errors
    /// Unsafe paths, failing mkdir/chmod, or a non-directory in the way.
    pub fn mkdir(
        &self,
        rel: &RelPath,
        mode: u32,
        owner: Option<(u32, u32)>,
        xattrs: Option<&Xattrs>,
    ) -> Result<(), OpError> {
        let dir = self.parent_made(rel, "creating directory")?;
        let name = rel.file_name();
        let os = std::ffi::OsStr::from_bytes(name);
        let refuse = || OpError::Refused {
            path: rel.clone(),
            found: sig_in(dir.as_fd(), name),
        };
        match beneath::lstat_at(dir.as_fd(), name).map_err(io_err("looking at", rel))? {
            Some(st) if kind_of(&st) == Kind::Dir => {}
            // Not what the brain expected (it trashes what it expects there
            // first): someone made it meanwhile.
            Some(_) => return Err(refuse()),
            None => match rustix::fs::mkdirat(&dir, os, Mode::from_raw_mode(0o777)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    if let Ok(Some(st)) = beneath::lstat_at(dir.as_fd(), name) {
                        if kind_of(&st) != Kind::Dir {
                            return Err(refuse());
                        }
                    }
                }
                Err(e) => return Err(io_err("creating directory", rel)(e.into())),
            },
        }
        if let Some(owner) = owner {
            beneath::chown(dir.as_fd(), name, owner).map_err(io_err("setting owner of", rel))?;
        }
        if let Some(x) = xattrs {
            set_xattrs(dir.as_fd(), name, x)
                .map_err(io_err("setting extended attributes of", rel))?;
        }
        beneath::chmod(dir.as_fd(), name, mode).map_err(io_err("setting mode of", rel))
    }

    /// Open `rel` for reading: a regular file, never a symlink, never
    /// blocking (a fifo or device in its place is [`OpError::Missing`]).
    fn open_regular(
        &self,
        rel: &RelPath,
        what: &'static str,
    ) -> Result<(fs::File, rustix::fs::Stat), OpError> {
        let dir = self
            .dir_of(rel, false)?
            .ok_or_else(|| OpError::Missing(rel.clone()))?;
        match beneath::open_file(dir.as_fd(), rel.file_name()) {
            Ok(x) => Ok(x),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(OpError::Missing(rel.clone())),
            Err(e) => Err(io_err(what, rel)(e)),
        }
    }

    /// BLAKE3 digest of a regular file (never following a symlink).
    ///
    /// # Errors
    /// Unsafe paths, unreadable files, non-files.
    pub fn hash_file(&self, rel: &RelPath) -> Result<[u8; 32], OpError> {
        let (f, _) = self.open_regular(rel, "hashing")?;
        let mut h = blake3::Hasher::new();
        h.update_reader(f).map_err(io_err("hashing", rel))?;
        Ok(*h.finalize().as_bytes())
    }

    /// Read a whole regular file with its signature and its extended
    /// attributes of `scope`: its data segments only (`SEEK_DATA`/
    /// `SEEK_HOLE`: a sparse file's holes are neither read nor sent), at
    /// most `INLINE_LIMIT` bytes of them.
    ///
    /// # Errors
    /// Unsafe paths, missing or unreadable files, non-files, too much data.
    pub fn read_file(&self, rel: &RelPath, scope: XattrScope) -> Result<FileData, OpError> {
        let too_large = || OpError::Io {
            what: "reading",
            path: rel.clone(),
            source: io::Error::other(
                "too much data to carry in a frame: install rsync on both hosts",
            ),
        };
        for _ in 0..COPY_ATTEMPTS {
            let (f, st) = self.open_regular(rel, "reading")?;
            let (sig, xattrs) = read_version(&f, &st, scope).map_err(io_err("reading", rel))?;
            let segments =
                crate::sparse::data_segments(&f, sig.size).map_err(io_err("reading", rel))?;
            // Counted before anything is read: a large file with holes
            // costs a few seeks to refuse.
            if segments.iter().map(|s| s.1).sum::<u64>() > INLINE_LIMIT
                || segments.len() > twinsync_proto::MAX_ITEMS
            {
                return Err(too_large());
            }
            let mut extents = Vec::with_capacity(segments.len());
            let mut short = false;
            for (offset, n) in segments {
                let mut data = vec![0u8; usize::try_from(n).map_err(|_| too_large())?];
                match f.read_exact_at(&mut data, offset) {
                    Ok(()) => extents.push(Extent {
                        offset,
                        data: serde_bytes::ByteBuf::from(data),
                    }),
                    // Truncated meanwhile: read again.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        short = true;
                        break;
                    }
                    Err(e) => return Err(io_err("reading", rel)(e)),
                }
            }
            // One version, whole: the segments read are those of the
            // signature (a writer truncating or writing meanwhile changes
            // its size, mtime or ctime: read again).
            if !short && !changed_since(&f, &st) {
                return Ok(FileData {
                    path: rel.clone(),
                    extents,
                    sig,
                    xattrs,
                    // The brain sets what the destination must hold.
                    expect: Expect::Any,
                });
            }
        }
        Err(changing(rel))
    }

    /// Write a whole file atomically: temp file under `.twinsync/tmp` of
    /// the file's size with its data segments written at their offsets
    /// (holes stay holes), owner, extended attributes, mode and mtime set,
    /// what it replaces hard-linked into the trash, renamed into place.
    /// Returns the new signature.
    ///
    /// # Errors
    /// Unsafe paths, segments out of order or beyond the size, failing
    /// syscalls.
    pub fn write_file(&self, f: &FileData) -> Result<Sig, OpError> {
        if !f.extents_valid() {
            return Err(OpError::Io {
                what: "writing",
                path: f.path.clone(),
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data segments out of order, overlapping or beyond the file's size",
                ),
            });
        }
        self.put_file(&f.path, &f.sig, &f.xattrs, f.expect, |out| {
            crate::sparse::write_extents(out, f.sig.size, &f.extents)
        })
    }

    /// Copy `rel` from another local replica rooted at `src_root`:
    /// streamed (copy_file_range where the kernel can; holes kept), with
    /// the source's owner (when carried), extended attributes of `scope`,
    /// mode and mtime, atomically as [`Replica::write_file`].
    ///
    /// # Errors
    /// Unsafe paths, an unreadable or vanished source, failing syscalls.
    pub fn copy_from(
        &self,
        src_root: &Path,
        rel: &RelPath,
        expect: Expect,
        scope: XattrScope,
    ) -> Result<Sig, OpError> {
        let src = Replica::open(src_root.to_path_buf()).map_err(io_err("reading", rel))?;
        for _ in 0..COPY_ATTEMPTS {
            let (from, st) = src.open_regular(rel, "reading")?;
            let (sig, xattrs) = read_version(&from, &st, scope).map_err(io_err("reading", rel))?;
            let torn = std::cell::Cell::new(false);
            let r = self.put_file(rel, &sig, &xattrs, expect, |out| {
                crate::sparse::copy_file(&from, out, sig.size)?;
                // One version, whole: a copy of a file written meanwhile
                // (truncated, half written) is never installed.
                if changed_since(&from, &st) {
                    torn.set(true);
                    return Err(io::Error::other("changed while it was copied"));
                }
                Ok(())
            });
            if !torn.get() {
                return r;
            }
        }
        Err(changing(rel))
    }

    /// Write a file through a new temp file under `.twinsync/tmp` (a random
    /// name, created exclusively, filled by `fill`), give it the owner
    /// (when carried), extended attributes, mode and mtime of `src`, keep
    /// what it replaces in the trash, rename it into place, and return its
    /// new signature.
    fn put_file(
        &self,
        rel: &RelPath,
        src: &Sig,
        xattrs: &Xattrs,
        expect: Expect,
        fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> Result<Sig, OpError> {
        let (mode, mtime_ns) = (src.mode, src.mtime_ns);
        self.check(rel)?;
        let tmp_dir = self
            .state()
            .and_then(|s| beneath::make_dirs(s, b"tmp"))
            .map_err(io_err("writing", rel))?;
        let name = format!("w{}", beneath::random_hex()).into_bytes();
        let res = (|| -> io::Result<fs::File> {
            let mut out = beneath::create_file(tmp_dir.as_fd(), &name, 0o600)?;
            fill(&mut out)?;
            if self.owners.load(Ordering::Relaxed) {
                let (uid, gid) = (
                    rustix::fs::Uid::from_raw(src.uid),
                    rustix::fs::Gid::from_raw(src.gid),
                );
                rustix::fs::fchown(&out, Some(uid), Some(gid))?;
            }
            // After the content and the owner: both clear
            // `security.capability`.
            xattr::apply(Target::Fd(out.as_fd()), xattrs)?;
            rustix::fs::fchmod(&out, Mode::from_raw_mode(mode & 0o7777))?;
            beneath::set_mtime_fd(out.as_fd(), mtime_ns)?;
            Ok(out)
        })();
        let unlink = || {
            let _ = rustix::fs::unlinkat(
                &tmp_dir,
                std::ffi::OsStr::from_bytes(&name),
                AtFlags::empty(),
            );
        };
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                unlink();
                return Err(io_err("writing", rel)(e));
            }
        };
        let r = self.place(rel, (tmp_dir.as_fd(), &name), &out, expect);
        if r.is_err() {
            unlink();
        }
        r
    }

    /// Keep a copy of a file about to be replaced: a hard link in the trash
    /// (`linkat` without `AT_SYMLINK_FOLLOW`: a symlink is linked itself),
    /// whose directory and name are returned.
    /// Before `dir/name` (`rel`), which holds `found`, is replaced:
    /// refused unless `found` is what `expect` names; a directory there
    /// goes to the trash, anything else is backed up (see
    /// [`Replica::backup`]) until the replacement is in place.
    fn make_room(
        &self,
        rel: &RelPath,
        dir: BorrowedFd<'_>,
        name: &[u8],
        found: Option<Sig>,
        expect: Expect,
    ) -> Result<Option<(OwnedFd, Vec<u8>)>, OpError> {
        if !expect.holds(found.as_ref()) {
            return Err(OpError::Refused {
                path: rel.clone(),
                found,
            });
        }
        Ok(match found {
            Some(md) if md.kind == Kind::Dir => {
                self.trash(rel)?;
                None
            }
            Some(_) => self.backup(rel, dir, name),
            None => None,
        })
    }

    fn backup(
        &self,
        rel: &RelPath,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Option<(OwnedFd, Vec<u8>)> {
        let (kdir, kname) = self.keep_place("trash", rel).ok()?;
        rustix::fs::linkat(
            dir,
            std::ffi::OsStr::from_bytes(name),
            &kdir,
            std::ffi::OsStr::from_bytes(&kname),
            AtFlags::empty(),
        )
        .ok()?;
        Some((kdir, kname))
    }

    /// After `place` renamed its file over `old` (kept at `backup`): when
    /// the displaced file is no longer `old` — a writer opened it between
    /// the check and the rename (an `O_TRUNC` open, a write) — its writes
    /// would land in the trash, silently. It is put back at `at`, if that
    /// still holds what was installed (`installed`), and the install is
    /// refused with what is there, so the brain merges it like any other
    /// refusal (a conflict, not a loss). Link count changes move ctime, so
    /// only what a write moves is compared: inode, size, mtime, mode.
    fn undo_if_written(
        &self,
        rel: &RelPath,
        at: (BorrowedFd<'_>, &[u8]),
        backup: (BorrowedFd<'_>, &[u8]),
        old: &Sig,
        installed: &Sig,
    ) -> Option<OpError> {
        let sig_at = |(d, n): (BorrowedFd<'_>, &[u8])| sig_in(d, n);
        let now = sig_at(backup)?;
        let untouched = now.kind == old.kind
            && now.ino == old.ino
            && now.size == old.size
            && now.mtime_ns == old.mtime_ns
            && now.mode == old.mode;
        if untouched {
            return None;
        }
        let here = sig_at(at);
        if here.is_some_and(|h| h.ino == installed.ino) {
            let _ = beneath::rename(backup.0, backup.1, at.0, at.1, false);
        }
        Some(OpError::Refused {
            path: rel.clone(),
            found: sig_at(at),
        })
    }

    /// A free place for `rel` in `.twinsync/<into>/YYYY-MM-DD/` (its parents
    /// created, none followed through a symlink): the same relative path,
    /// with `.1`, `.2`… when taken. Returns the directory and the name.
    fn keep_place(&self, into: &str, rel: &RelPath) -> io::Result<(OwnedFd, Vec<u8>)> {
        let mut sub = format!("{into}/{}", crate::time::today()).into_bytes();
        let parent = parent_bytes(rel);
        if !parent.is_empty() {
            sub.push(b'/');
            sub.extend_from_slice(parent);
        }
        let dir = beneath::make_dirs(self.state()?, &sub)?;
        let mut name = rel.file_name().to_vec();
        let mut n = 1;
        while beneath::lstat_at(dir.as_fd(), &name)?.is_some() {
            name = rel.file_name().to_vec();
            name.extend_from_slice(format!(".{n}").as_bytes());
            if name.len() > NAME_MAX {
                name.drain(..name.len() - NAME_MAX);
            }
            n += 1;
        }
        Ok((dir, name))
    }

    /// Create or replace the symlink `rel` → `target` with its owner,
    /// extended attributes and mtime, if `rel` holds what `expect` says:
    /// see `Replica::make_entry` (private).
    ///
    /// # Errors
    /// Unsafe paths, failing syscalls, [`OpError::Refused`].
    pub fn symlink(
        &self,
        rel: &RelPath,
        target: &[u8],
        mtime_ns: i64,
        owner: Option<(u32, u32)>,
        xattrs: &Xattrs,
        expect: Expect,
    ) -> Result<(), OpError> {
        self.make_entry(rel, expect, "creating symlink", |dir, tmp| {
            rustix::fs::symlinkat(
                std::ffi::OsStr::from_bytes(target),
                dir,
                std::ffi::OsStr::from_bytes(tmp),
            )?;
            owner.map_or(Ok(()), |o| beneath::chown(dir, tmp, o))?;
            set_xattrs(dir, tmp, xattrs)?;
            beneath::set_mtime(dir, tmp, mtime_ns)
        })
    }

    /// Create or replace the fifo or device `rel`, with its mode, owner,
    /// extended attributes and mtime, never opening it: see
    /// `Replica::make_entry` (private).
    ///
    /// # Errors
    /// Unsafe paths, another kind, failing syscalls (a device made by
    /// anyone but root).
    #[allow(clippy::too_many_arguments)]
    pub fn mknod(
        &self,
        rel: &RelPath,
        kind: Kind,
        mode: u32,
        rdev: u64,
        mtime_ns: i64,
        owner: Option<(u32, u32)>,
        xattrs: &Xattrs,
    ) -> Result<(), OpError> {
        let file_type = match kind {
            Kind::Fifo => rustix::fs::FileType::Fifo,
            Kind::CharDev => rustix::fs::FileType::CharacterDevice,
            Kind::BlockDev => rustix::fs::FileType::BlockDevice,
            _ => {
                return Err(io_err("creating", rel)(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a fifo or a device",
                )))
            }
        };
        self.make_entry(rel, Expect::Any, "creating", |dir, tmp| {
            rustix::fs::mknodat(
                dir,
                std::ffi::OsStr::from_bytes(tmp),
                file_type,
                Mode::from_raw_mode(0o600),
                rdev,
            )?;
            owner.map_or(Ok(()), |o| beneath::chown(dir, tmp, o))?;
            set_xattrs(dir, tmp, xattrs)?;
            beneath::chmod(dir, tmp, mode)?;
            beneath::set_mtime(dir, tmp, mtime_ns)
        })
    }

    /// Make an entry that is not a regular file or a directory (a symlink,
    /// a fifo, a device) at `rel`, if `rel` holds what `expect` says (else
    /// [`OpError::Refused`]): `make` creates it, with its attributes, under
    /// an ignore-suffix name in its directory (the filter reports nothing,
    /// nothing half-made is ever visible), then it is renamed into place. A
    /// directory in the way (expected) goes to the trash; nothing expected
    /// there, the rename does not replace what was made meanwhile.
    fn make_entry(
        &self,
        rel: &RelPath,
        expect: Expect,
        what: &'static str,
        make: impl FnOnce(BorrowedFd<'_>, &[u8]) -> io::Result<()>,
    ) -> Result<(), OpError> {
        let name = rel.file_name();
        if let Some(d) = self.dir_of(rel, false)? {
            let found = beneath::sig_at(d.as_fd(), name).map_err(io_err("looking at", rel))?;
            if !expect.holds(found.as_ref()) {
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found,
                });
            }
            if found.is_some_and(|f| f.kind == Kind::Dir) {
                self.trash(rel)?;
            }
        }
        let dir = self.parent_made(rel, "creating parents of")?;
        let tmp = Self::ignore_name(name);
        let noreplace = expect == Expect::Absent;
        let done = make(dir.as_fd(), &tmp)
            .and_then(|()| beneath::rename(dir.as_fd(), &tmp, dir.as_fd(), name, noreplace));
        if let Err(e) = done {
            let _ = rustix::fs::unlinkat(&dir, std::ffi::OsStr::from_bytes(&tmp), AtFlags::empty());
            if noreplace && e.raw_os_error() == Some(libc::EEXIST) {
                // Made meanwhile: refused, not replaced.
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found: sig_in(dir.as_fd(), name),
                });
            }
            return Err(io_err(what, rel)(e));
        }
        Ok(())
    }

    /// Set the owner, extended attributes, mode and/or mtime of `rel`
    /// without following a symlink (the owner first: a chown clears the
    /// set-user-ID bit and `security.capability`).
    ///
    /// # Errors
    /// Unsafe paths, a missing entry, failing syscalls.
    pub fn set_attr(
        &self,
        rel: &RelPath,
        mode: Option<u32>,
        mtime_ns: Option<i64>,
        owner: Option<(u32, u32)>,
        xattrs: Option<&Xattrs>,
    ) -> Result<(), OpError> {
        let dir = self
            .dir_of(rel, false)?
            .ok_or_else(|| OpError::Missing(rel.clone()))?;
        let name = rel.file_name();
        let st = beneath::lstat_at(dir.as_fd(), name)
            .ok()
            .flatten()
            .ok_or_else(|| OpError::Missing(rel.clone()))?;
        let is_link = kind_of(&st) == Kind::Symlink;
        // What is already so is not set again: each call is a new ctime and
        // an event to tell from a user's (a chown to the same owner still
        // clears the set-user-ID bit and a capability).
        let mut now = st;
        if let Some(owner) = owner.filter(|&o| o != (st.st_uid, st.st_gid)) {
            beneath::chown(dir.as_fd(), name, owner).map_err(io_err("setting owner of", rel))?;
        }
        if let Some(x) = xattrs {
            set_xattrs(dir.as_fd(), name, x)
                .map_err(io_err("setting extended attributes of", rel))?;
        }
        if owner.is_some_and(|o| o != (st.st_uid, st.st_gid)) || xattrs.is_some() {
            // (A chown, or an access ACL set, may have changed the mode.)
            now = beneath::lstat_at(dir.as_fd(), name)
                .ok()
                .flatten()
                .ok_or_else(|| OpError::Missing(rel.clone()))?;
        }
        if let (Some(mode), false) = (mode, is_link) {
            if now.st_mode & 0o7777 != mode {
                beneath::chmod(dir.as_fd(), name, mode).map_err(io_err("setting mode of", rel))?;
            }
        }
        if let Some(ns) = mtime_ns {
            if now.st_mtime as i64 * 1_000_000_000 + now.st_mtime_nsec as i64 != ns {
                beneath::set_mtime(dir.as_fd(), name, ns)
                    .map_err(io_err("setting mtime of", rel))?;
            }
        }
        Ok(())
    }
}

/// Remove day-folders (`.twinsync/{trash,conflicts}/YYYY-MM-DD`) older than
/// `days`, from the state dir `state` (held open: a symlink put in place of
/// a folder is removed, never followed, and nothing outside it is touched).
pub fn clean_trash(state: &OwnedFd, days: u32) {
    let cutoff = crate::time::now_secs() - i64::from(days) * 86_400;
    let (y, m, d, ..) = crate::time::civil(cutoff);
    let cutoff_name = format!("{y:04}-{m:02}-{d:02}");
    for folder in ["trash", "conflicts"] {
        let Ok(dir) = beneath::open_dir(state.as_fd(), folder.as_bytes()) else {
            continue;
        };
        let Ok(names) = beneath::list(dir.as_fd(), b".") else {
            continue;
        };
        for name in names {
            if name.len() == 10 && name.as_slice() < cutoff_name.as_bytes() {
                if let Err(err) = beneath::remove_tree(dir.as_fd(), &name) {
                    tracing::warn!(
                        "cannot clean {STATE_DIR}/{folder}/{}: {err}",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn replica() -> (tempfile::TempDir, Replica) {
        let d = tempfile::tempdir().unwrap();
        let r = Replica::open(d.path().to_path_buf()).unwrap();
        r.prepare().unwrap();
        (d, r)
    }

    /// A sparse file read for an inline copy is its data segments (the
    /// frame about the size of the data), and written on the other side it
    /// has the same bytes and keeps its holes; segments that do not fit
    /// the size are refused before anything is written.
    #[test]
    fn a_sparse_file_travels_as_its_data_and_keeps_its_holes() {
        let (_d, src) = replica();
        let (_e, dst) = replica();
        let len = 1u64 << 30;
        let f = fs::File::create(src.root().join("img")).unwrap();
        f.set_len(len).unwrap();
        f.write_all_at(&[5u8; 300_000], 5 << 20).unwrap();
        f.write_all_at(b"the end", len - 7).unwrap();
        drop(f);
        let rel = RelPath::from("img");
        let read = src.read_file(&rel, XattrScope::Owner).unwrap();
        assert_eq!(read.sig.size, len);
        assert!(read.extents.len() >= 2 && read.extents_valid());
        assert!(read.data_len() < 1 << 20, "{} bytes read", read.data_len());
        let frame = twinsync_proto::encode(&read).len();
        assert!(frame < (1 << 20), "a frame of {frame} bytes");
        let sig = dst
            .write_file(&FileData {
                expect: Expect::Absent,
                ..read.clone()
            })
            .unwrap();
        assert_eq!(sig.size, len);
        let out = fs::File::open(dst.root().join("img")).unwrap();
        let md = out.metadata().unwrap();
        assert!(
            md.blocks() * 512 < 2 << 20,
            "{} bytes allocated",
            md.blocks() * 512
        );
        assert_eq!(sig.allocated, md.blocks() * 512);
        let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        let src_file = fs::File::open(src.root().join("img")).unwrap();
        for at in [0, 5 << 20, 500 << 20, len - (1 << 20)] {
            src_file.read_exact_at(&mut a, at).unwrap();
            out.read_exact_at(&mut b, at).unwrap();
            assert!(a == b, "differ in the MiB at {at}");
        }
        let mut bad = read.clone();
        bad.path = "bad".into();
        bad.extents.reverse();
        assert!(dst.write_file(&bad).is_err());
        bad.extents = vec![Extent {
            offset: len,
            data: serde_bytes::ByteBuf::from(b"x".to_vec()),
        }];
        assert!(dst.write_file(&bad).is_err());
        assert!(!dst.root().join("bad").exists());
    }

    /// A writer that opened the file before the install renamed over it
    /// and wrote after: its bytes are put back at the path and the install
    /// is refused (a conflict for the brain, not a write lost in the trash).
    #[test]
    fn a_file_written_while_replaced_is_put_back_and_the_install_refused() {
        use std::io::Write;
        use twinsync_filter::lstat_sig;
        let (d, r) = replica();
        let abs = d.path().join("a");
        fs::write(&abs, b"old!").unwrap();
        let rel: RelPath = "a".into();
        let dir = r.dir_of(&rel, false).unwrap().unwrap();
        let at = (dir.as_fd(), &b"a"[..]);
        let old = lstat_sig(&abs).unwrap().unwrap();
        let mut writer = fs::OpenOptions::new().write(true).open(&abs).unwrap();
        let (bdir, bname) = r.backup(&rel, dir.as_fd(), b"a").unwrap();
        let tmp = d.path().join("new");
        fs::write(&tmp, b"theirs").unwrap();
        fs::rename(&tmp, &abs).unwrap();
        let installed = lstat_sig(&abs).unwrap().unwrap();
        writer.write_all(b"mine, written last").unwrap();
        drop(writer);
        let e = r.undo_if_written(&rel, at, (bdir.as_fd(), &bname), &old, &installed);
        assert!(matches!(e, Some(OpError::Refused { found: Some(_), .. })));
        assert_eq!(fs::read(&abs).unwrap(), b"mine, written last");

        // Untouched: nothing undone.
        let old = lstat_sig(&abs).unwrap().unwrap();
        let (bdir, bname) = r.backup(&rel, dir.as_fd(), b"a").unwrap();
        fs::write(&tmp, b"theirs").unwrap();
        fs::rename(&tmp, &abs).unwrap();
        let installed = lstat_sig(&abs).unwrap().unwrap();
        assert!(r
            .undo_if_written(&rel, at, (bdir.as_fd(), &bname), &old, &installed)
            .is_none());
        assert_eq!(fs::read(&abs).unwrap(), b"theirs");
    }

    #[test]
    fn a_move_expecting_a_version_that_is_gone_is_refused() {
        let (d, r) = replica();
        fs::write(d.path().join("a"), "A").unwrap();
        let gone = r.move_entry(
            &"a".into(),
            &"b".into(),
            Expect::Version(twinsync_proto::Stamp(7)),
        );
        assert!(matches!(gone, Err(OpError::Refused { found: None, .. })));
        assert!(d.path().join("a").exists());
        r.move_entry(&"a".into(), &"b".into(), Expect::Absent)
            .unwrap();
        assert_eq!(fs::read(d.path().join("b")).unwrap(), b"A");
    }

    #[test]
    fn a_symlink_replaces_only_what_is_expected() {
        let (d, r) = replica();
        fs::write(d.path().join("a"), "user").unwrap();
        let found = r.symlink(
            &"a".into(),
            b"t",
            0,
            None,
            &Xattrs::default(),
            Expect::Absent,
        );
        assert!(matches!(
            found,
            Err(OpError::Refused { found: Some(_), .. })
        ));
        assert_eq!(fs::read(d.path().join("a")).unwrap(), b"user");
        r.symlink(
            &"b".into(),
            b"t",
            0,
            None,
            &Xattrs::default(),
            Expect::Absent,
        )
        .unwrap();
        assert_eq!(fs::read_link(d.path().join("b")).unwrap().as_os_str(), "t");
        r.symlink(&"a".into(), b"u", 0, None, &Xattrs::default(), Expect::Any)
            .unwrap();
        assert_eq!(fs::read_link(d.path().join("a")).unwrap().as_os_str(), "u");
    }

    #[test]
    fn move_keeps_inode_and_trashes_what_was_at_the_destination() {
        use std::os::unix::fs::MetadataExt;
        let (d, r) = replica();
        fs::write(d.path().join("a"), "A").unwrap();
        fs::write(d.path().join("b"), "B").unwrap();
        let ino = fs::metadata(d.path().join("a")).unwrap().ino();
        r.move_entry(&"a".into(), &"x/y/b".into(), Expect::Any)
            .unwrap();
        assert_eq!(fs::metadata(d.path().join("x/y/b")).unwrap().ino(), ino);
        r.move_entry(&"x/y/b".into(), &"b".into(), Expect::Any)
            .unwrap();
        assert_eq!(fs::read(d.path().join("b")).unwrap(), b"A");
        let trash = d
            .path()
            .join(".twinsync/trash")
            .join(crate::time::today())
            .join("b");
        assert_eq!(fs::read(trash).unwrap(), b"B");
    }

    /// Campaign seed 79000037 (ssh, kills): a brain killed in the middle
    /// of a batch that moved `r8` to `d/r19` found `d/r19` with a stamp it
    /// never learnt, took it for a user's change, and kept the directories
    /// the other side had removed since. The move's result is recorded as
    /// an install's is, so the next brain knows it for the batch's.
    #[test]
    fn a_move_records_the_stamp_it_leaves() {
        let (d, r) = replica();
        fs::write(d.path().join("r8"), "A").unwrap();
        r.move_entry(&"r8".into(), &"d/r19".into(), Expect::Any)
            .unwrap();
        let now = twinsync_filter::lstat_sig(&d.path().join("d/r19"))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.installed(false).unwrap(),
            vec![(RelPath::from("d/r19"), now.stamp())]
        );
    }

    /// Attributes a file already has are not set again: no new ctime (which
    /// would be one more event to tell from a user's), and a chown to the
    /// same owner does not clear the set-user-ID bit. What differs is set.
    #[test]
    fn attributes_already_there_are_not_set_again() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (d, r) = replica();
        let f = d.path().join("f");
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).unwrap();
        let md = fs::metadata(&f).unwrap();
        let before = (md.ctime(), md.ctime_nsec());
        let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
        let owner = Some((md.uid(), md.gid()));
        r.set_attr(&"f".into(), Some(0o4755), Some(mtime), owner, None)
            .unwrap();
        let md = fs::metadata(&f).unwrap();
        assert_eq!((md.ctime(), md.ctime_nsec()), before, "nothing was set");
        assert_eq!(md.mode() & 0o7777, 0o4755);
        r.set_attr(&"f".into(), Some(0o640), Some(mtime - 1_000), owner, None)
            .unwrap();
        let md = fs::metadata(&f).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(md.mtime() * 1_000_000_000 + md.mtime_nsec(), mtime - 1_000);
    }

    #[test]
    fn escapes_are_refused() {
        let (d, r) = replica();
        std::os::unix::fs::symlink("/tmp", d.path().join("link")).unwrap();
        for bad in [
            "../x",
            "/etc/passwd",
            "link/x",
            "a/./b",
            ".twinsync/lock",
            ".twinsync",
        ] {
            assert!(
                matches!(r.stat(&bad.into()), Err(OpError::Unsafe(_))),
                "{bad}: {:?}",
                r.stat(&bad.into())
            );
        }
        assert!(r.trash(&"link/x".into()).is_err());
    }

    #[test]
    fn old_day_folders_are_cleaned_and_recent_ones_kept() {
        let (d, r) = replica();
        let old = d.path().join(".twinsync/trash/2001-01-01");
        let conflicts_old = d.path().join(".twinsync/conflicts/2001-01-01");
        fs::create_dir_all(old.join("x")).unwrap();
        fs::create_dir_all(&conflicts_old).unwrap();
        fs::write(d.path().join("f"), "x").unwrap();
        r.trash(&"f".into()).unwrap();
        clean_trash(&r.state_fd().unwrap(), 30);
        assert!(!old.exists() && !conflicts_old.exists());
        let today = d
            .path()
            .join(".twinsync/trash")
            .join(crate::time::today())
            .join("f");
        assert!(today.exists());
    }

    #[test]
    fn long_names_get_a_short_ignore_name() {
        let (d, r) = replica();
        let long = "n".repeat(255);
        fs::write(d.path().join(&long), "x").unwrap();
        r.move_entry(&long.as_str().into(), &"short".into(), Expect::Any)
            .unwrap();
        assert!(d.path().join("short").exists());
        fs::write(d.path().join(&long), "y").unwrap();
        assert!(r.trash(&long.as_str().into()).unwrap());
        assert!(r.trash(&long.as_str().into()).is_ok());
    }

    /// The brain's own files go through [`open_state_dir`]: a `.twinsync/`
    /// that is a link, not this user's, or writable by others is refused.
    #[test]
    fn the_state_dir_of_the_brains_files_must_be_ours_and_no_link() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (root, elsewhere) = (d.path().join("root"), d.path().join("elsewhere"));
        fs::create_dir_all(root.join(".twinsync")).unwrap();
        fs::create_dir_all(elsewhere.join("index")).unwrap();
        fs::set_permissions(root.join(".twinsync"), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(open_state_dir(&root, b"index").is_ok());
        assert!(root.join(".twinsync/index").is_dir());
        fs::set_permissions(root.join(".twinsync"), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_state_dir(&root, b"index").is_err());
        fs::remove_dir_all(root.join(".twinsync")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join(".twinsync")).unwrap();
        assert!(open_state_dir(&root, b"index").is_err());
        assert!(open_state_dir(&root, b"").is_err());
    }

    /// A file rewritten in a loop while it is copied (the destination's
    /// helper copying from the other root, and a read for an inline copy):
    /// what is installed or sent is always one whole version, with its own
    /// signature, never a truncated or half-written one.
    #[test]
    fn a_file_written_while_it_is_copied_is_copied_whole_or_not_at_all() {
        let (_d, src) = replica();
        let (_e, dst) = replica();
        dst.prepare().unwrap();
        let path = src.root().join("f");
        std::fs::write(&path, b"version 0").unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, path) = (std::sync::Arc::clone(&stop), path.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let v = format!("version {n} {}", "x".repeat((n % 5000) as usize));
                    std::fs::write(&path, v).unwrap();
                }
            })
        };
        let whole = |b: &[u8]| {
            let t = String::from_utf8_lossy(b);
            t.is_empty()
                || t.strip_prefix("version ").is_some_and(|r| {
                    let mut it = r.splitn(2, ' ');
                    let n: u64 = it.next().unwrap().parse().unwrap_or(u64::MAX);
                    n == 0 || it.next().is_some_and(|x| x.len() as u64 == n % 5000)
                })
        };
        let rel = RelPath::from("f");
        let (mut copied, mut read) = (0, 0);
        for _ in 0..300 {
            if let Ok(sig) = dst.copy_from(src.root(), &rel, Expect::Any, XattrScope::Owner) {
                let got = std::fs::read(dst.root().join("f")).unwrap();
                assert!(
                    whole(&got),
                    "installed a torn copy: {:?}",
                    String::from_utf8_lossy(&got)
                );
                assert_eq!(sig.size, got.len() as u64);
                copied += 1;
            }
            if let Ok(f) = src.read_file(&rel, XattrScope::Owner) {
                // Dense: one segment at 0 (none when empty).
                assert!(f.extents.len() <= 1 && f.extents.iter().all(|e| e.offset == 0));
                let data = f.extents.first().map_or(&[][..], |e| e.data.as_slice());
                assert!(whole(data), "read a torn version");
                assert_eq!(f.sig.size, f.data_len());
                read += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(copied > 0 && read > 0, "copied {copied}, read {read}");
    }
}
