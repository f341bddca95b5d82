//! Regular files' content: reading, hashing, writing and copying whole
//! versions, installing what rsync staged, and putting a new version in
//! place over what it replaces (kept in the trash, put back if written).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode};
use twinsync_proto::{Expect, Extent, FileData, Kind, RelPath, Sig, XattrScope, Xattrs};

use super::{io_err, parent_bytes, sig_in, OpError, Replica, STAGE_DIR};
use crate::beneath;
use crate::xattr::{self, Target};

/// Most bytes of data (holes not counted) of a file carried inline in one
/// frame (below the protocol's limit).
const INLINE_LIMIT: u64 = (twinsync_proto::MAX_FRAME as u64) * 3 / 4;

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
    pub(super) fn place(
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

    /// Copy `rel` from another local replica `src` (its root opened once
    /// by the caller for a whole request, not once per file): streamed
    /// (copy_file_range where the kernel can; holes kept), with the
    /// source's owner (when carried), extended attributes of `scope`, mode
    /// and mtime, atomically as [`Replica::write_file`].
    ///
    /// # Errors
    /// Unsafe paths, an unreadable or vanished source, failing syscalls.
    pub fn copy_from(
        &self,
        src: &Replica,
        rel: &RelPath,
        expect: Expect,
        scope: XattrScope,
    ) -> Result<Sig, OpError> {
        for _ in 0..COPY_ATTEMPTS {
            let (from, st) = src.open_regular(rel, "reading")?;
            let (sig, xattrs) = read_version(&from, &st, scope).map_err(io_err("reading", rel))?;
            let torn = std::cell::Cell::new(false);
            let r = self.put_file(rel, &sig, &xattrs, expect, |out| {
                // The stat field's type differs between architectures.
                #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
                let blocks = st.st_blocks as u64;
                crate::sparse::copy_file(&from, out, sig.size, blocks)?;
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

    /// Before `dir/name` (`rel`), which holds `found`, is replaced:
    /// refused unless `found` is what `expect` names; a directory there
    /// goes to the trash, anything else is backed up (see
    /// [`Replica::backup`]) until the replacement is in place.
    pub(super) fn make_room(
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

    /// Keep a copy of a file about to be replaced: a hard link in the trash
    /// (`linkat` without `AT_SYMLINK_FOLLOW`: a symlink is linked itself),
    /// whose directory and name are returned.
    pub(super) fn backup(
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
    pub(super) fn undo_if_written(
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
}
