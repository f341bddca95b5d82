//! Entries that are neither regular files nor directories: symlinks, fifos
//! and devices, each made under an ignore-suffix name and renamed into
//! place.

use std::io;
use std::os::unix::ffi::OsStrExt;

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Mode};
use twinsync_proto::{Expect, Kind, RelPath, Xattrs};

use super::{io_err, set_xattrs, sig_in, OpError, Replica};
use crate::beneath;

impl Replica {
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
}
