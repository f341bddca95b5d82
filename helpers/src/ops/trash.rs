//! Moves and removals through the ignore-suffix rename dance: moving,
//! trashing, keeping conflicts, and the dated places they are kept in.

use std::io;

use rustix::fd::{AsFd, OwnedFd};
use twinsync_filter::IGNORE_SUFFIX;
use twinsync_proto::{Expect, RelPath, Sig, XattrDigest};

use super::{io_err, parent_bytes, sig_in, OpError, Replica, NAME_MAX};
use crate::beneath;

impl Replica {
    /// Trash `rel` if it holds what is expected (a version changed since
    /// the brain saw it is refused: a modification wins over a deletion).
    ///
    /// # Errors
    /// See [`Replica::trash`]; [`OpError::Refused`].
    pub fn trash_if(&self, rel: &RelPath, expect: Expect) -> Result<Option<Sig>, OpError> {
        self.check_expect(rel, expect)?;
        self.stash_sig(rel, "trash")
    }

    /// `Ok` when `rel` holds what is expected.
    ///
    /// # Errors
    /// [`OpError::Refused`] with what is there; unsafe paths.
    pub fn check_expect(&self, rel: &RelPath, expect: Expect) -> Result<(), OpError> {
        if expect != Expect::Any {
            let found = self.stat(rel)?;
            if !expect.holds(found.as_ref()) {
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found,
                });
            }
        }
        Ok(())
    }

    /// A fresh, unpredictable ignore-suffix name for `name` (kept in it when
    /// it fits).
    pub(super) fn ignore_name(name: &[u8]) -> Vec<u8> {
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
    pub fn move_entry(
        &self,
        from: &RelPath,
        to: &RelPath,
        source: Expect,
        expect: Expect,
    ) -> Result<(), OpError> {
        let sdir = self
            .dir_of(from, false)?
            .ok_or_else(|| OpError::Missing(from.clone()))?;
        self.check(to)?;
        let sname = from.file_name();
        let src_md = beneath::lstat_at(sdir.as_fd(), sname)
            .ok()
            .flatten()
            .ok_or_else(|| OpError::Missing(from.clone()))?;
        if !source.holds(Some(&beneath::sig_of_stat(&src_md, XattrDigest::NONE))) {
            // A user changed the entry since the brain saw it: its report
            // is on its way, and carrying it to another name would pass it
            // off as the version moved.
            return Err(OpError::Refused {
                path: from.clone(),
                found: sig_in(sdir.as_fd(), sname),
            });
        }
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
        if !there && expect.wants_present() {
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
    pub(super) fn stash(&self, rel: &RelPath, into: &str) -> Result<bool, OpError> {
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

    /// A free place for `rel` in `.twinsync/<into>/YYYY-MM-DD/` (its parents
    /// created, none followed through a symlink): the same relative path,
    /// with `.1`, `.2`… when taken. Returns the directory and the name.
    pub(super) fn keep_place(&self, into: &str, rel: &RelPath) -> io::Result<(OwnedFd, Vec<u8>)> {
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
}
