//! Hard links on a replica: [`Op::Link`](twinsync_proto::Op::Link) makes a
//! new name of a file the replica already has, so a group of names of one
//! inode on one side is a group on the other, with no data sent.

use std::os::unix::ffi::OsStrExt;

use rustix::fd::AsFd;
use rustix::fs::AtFlags;
use twinsync_proto::{Expect, Kind, RelPath, Sig};

use super::{io_err, OpError, Replica};
use crate::beneath;

impl Replica {
    /// Make `rel` another name of the regular file `existing`, if `rel`
    /// holds what `expect` says (else [`OpError::Refused`]) and `existing`
    /// is a regular file of `want`'s size and mtime (else an error: the
    /// version to link is not there). Both are resolved beneath the root,
    /// through no symlink (`linkat` without `AT_SYMLINK_FOLLOW` never
    /// follows `existing` itself either); the link is made under an
    /// ignore-suffix name and renamed into place (see `make_entry`), so it
    /// appears whole or not at all. What it replaces is not kept: a link
    /// replaces a name of the version the group had before, whose content
    /// the brain copies once to one name of the group.
    ///
    /// # Errors
    /// Unsafe paths (`..`, a symlinked directory, `.twinsync/`), a missing
    /// or other `existing`, failing syscalls, [`OpError::Refused`].
    pub fn link(
        &self,
        existing: &RelPath,
        rel: &RelPath,
        expect: Expect,
        want: &Sig,
    ) -> Result<(), OpError> {
        self.check(rel)?;
        let edir = self
            .dir_of(existing, false)?
            .ok_or_else(|| OpError::Missing(existing.clone()))?;
        let ename = existing.file_name();
        let found = beneath::sig_at(edir.as_fd(), ename).map_err(io_err("looking at", existing))?;
        let ino = match found {
            Some(f)
                if f.kind == Kind::File && f.size == want.size && f.mtime_ns == want.mtime_ns =>
            {
                f.ino
            }
            Some(_) => {
                return Err(io_err("linking to", existing)(std::io::Error::other(
                    "not the version to link (it changed meanwhile); merged again",
                )))
            }
            None => return Err(OpError::Missing(existing.clone())),
        };
        if let Some(d) = self.dir_of(rel, false)? {
            if beneath::sig_at(d.as_fd(), rel.file_name())
                .map_err(io_err("looking at", rel))?
                .is_some_and(|f| f.kind == Kind::File && f.ino == ino)
            {
                // Already a name of it (a rename onto another name of the
                // same inode would do nothing and leave the temporary name).
                return Ok(());
            }
        }
        self.make_entry(rel, expect, "linking", |dir, tmp| {
            rustix::fs::linkat(
                &edir,
                std::ffi::OsStr::from_bytes(ename),
                dir,
                std::ffi::OsStr::from_bytes(tmp),
                AtFlags::empty(),
            )?;
            Ok(())
        })
    }
}
