//! The replica's own `.twinsync/`: opening it and checking it is ours,
//! preparing its working folders, the marks, the record of installs, and
//! the cleaning of old trash.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use twinsync_filter::STATE_DIR;
use twinsync_proto::{RelPath, Sig};

use super::{Replica, MARK_DIR, STAGE_DIR};
use crate::beneath;

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

impl Replica {
    /// `root/.twinsync`, for messages.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// The state dir, opened without following a symlink and checked.
    pub(super) fn state(&self) -> io::Result<BorrowedFd<'_>> {
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
    pub(super) fn note_installed(&self, rel: &RelPath, sig: &Sig) {
        if !self.record.load(Ordering::Relaxed) {
            return;
        }
        let frame = twinsync_proto::encode(&(rel, sig.stamp()));
        let mut held = self
            .installed_fd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.is_none() {
            let Ok(state) = self.state() else { return };
            let Ok(fd) = rustix::fs::openat(
                state,
                "installed",
                OFlags::WRONLY
                    | OFlags::APPEND
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) else {
                return;
            };
            *held = Some(fs::File::from(fd));
        }
        if let Some(f) = held.as_mut() {
            if io::Write::write_all(f, &frame).is_err() {
                // Opened again at the next install.
                *held = None;
            }
        }
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
            // The held descriptor goes with the name: the next install
            // starts a new record.
            let mut held = self
                .installed_fd
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *held = None;
            rustix::fs::unlinkat(state, "installed", AtFlags::empty())?;
        }
        Ok(out)
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
