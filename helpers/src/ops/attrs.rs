//! Looking at entries and setting their attributes: lstat, extended
//! attributes, directories made with theirs, owner, mode and mtime.

use std::os::unix::ffi::OsStrExt;

use rustix::fd::AsFd;
use rustix::fs::Mode;
use twinsync_proto::{Kind, RelPath, Sig, XattrScope, Xattrs};

use super::{io_err, set_xattrs, sig_in, OpError, Replica};
use crate::beneath::{self, kind_of};
use crate::xattr;

impl Replica {
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
