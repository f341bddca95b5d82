//! In-place operations on one replica.
//!
//! Moves and trashing go through the ignore-suffix rename dance: the entry is
//! first renamed to `NAME.<id>.twinsync.ignore` in its own directory, then to
//! its destination. The filter reports neither step, so the brain never sees
//! its own moves and deletes come back as events.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use std::os::unix::fs::OpenOptionsExt;
use twinsync_filter::{lstat_sig, IGNORE_SUFFIX, STATE_DIR};

use twinsync_proto::{Expect, FileData, Kind, Op, OpFail, OpResult, RelPath, Sig};

/// Largest file carried inline in one frame (below the protocol's limit).
const INLINE_LIMIT: u64 = (twinsync_proto::MAX_FRAME as u64) * 3 / 4;

/// Longest file name the kernel accepts.
const NAME_MAX: usize = 255;

/// One replica root and the helpers that act on it.
#[derive(Debug)]
pub struct Replica {
    root: PathBuf,
    seq: AtomicU64,
    /// Whether installs are recorded in `.twinsync/installed`.
    record: std::sync::atomic::AtomicBool,
}

/// An error of a helper operation, with the path.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The path could leave the root.
    #[error("refused path {0}: it is absolute, contains `..` or passes through a symlink")]
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

fn io_err<'a>(what: &'static str, path: &'a RelPath) -> impl FnOnce(io::Error) -> OpError + 'a {
    move |source| OpError::Io {
        what,
        path: path.clone(),
        source,
    }
}

impl Replica {
    /// A replica rooted at `root` (which must exist).
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Replica {
            root,
            seq: AtomicU64::new(0),
            record: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/.twinsync`.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// Create `.twinsync/` and its working folders.
    ///
    /// # Errors
    /// When they cannot be created.
    pub fn prepare(&self) -> io::Result<()> {
        // Staged files left by an interrupted batch are stale.
        let _ = fs::remove_dir_all(self.state_dir().join(STAGE_DIR));
        self.record.store(true, Ordering::Relaxed);
        for sub in ["tmp", "trash", "conflicts", STAGE_DIR] {
            fs::create_dir_all(self.state_dir().join(sub))?;
        }
        Ok(())
    }

    /// Absolute path of `rel`, after checking it cannot escape the root: no
    /// `..`, nothing absolute, and no symlink among its parents.
    ///
    /// # Errors
    /// [`OpError::Unsafe`] when it could escape.
    pub fn resolve(&self, rel: &RelPath) -> Result<PathBuf, OpError> {
        if !rel.is_safe() || rel.is_root() {
            return Err(OpError::Unsafe(rel.clone()));
        }
        let mut p = self.root.clone();
        let parent = rel.parent().unwrap_or_default();
        for comp in parent
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
        {
            p.push(OsStr::from_bytes(comp));
            match fs::symlink_metadata(&p) {
                Ok(md) if md.file_type().is_symlink() => return Err(OpError::Unsafe(rel.clone())),
                _ => {}
            }
        }
        p.push(OsStr::from_bytes(rel.file_name()));
        Ok(p)
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
            Op::Trash { path, expect } => self.trash_if(path, *expect).map(|_| None),
            Op::KeepConflict { path } => self.stash(path, "conflicts").map(|_| None),
            Op::Mkdir { path, mode } => self.mkdir(path, *mode).and_then(|()| after(path)),
            Op::SetAttr {
                path,
                mode,
                mtime_ns,
            } => self
                .set_attr(path, *mode, *mtime_ns)
                .and_then(|()| after(path)),
            Op::Symlink {
                path,
                target,
                mtime_ns,
            } => self
                .symlink(path, target, *mtime_ns)
                .and_then(|()| after(path)),
            Op::Install {
                staged,
                path,
                expect,
                ..
            } => self.install(staged, path, *expect).map(Some),
        };
        r.map_err(OpFail::from)
    }

    /// Install the file rsync staged at `.twinsync/stage/STAGED` at `rel`,
    /// if `rel` holds what is expected (what it replaces is kept in the
    /// trash). Returns the installed file's signature.
    ///
    /// # Errors
    /// Unsafe paths, a missing staged file, [`OpError::Refused`].
    pub fn install(&self, staged: &RelPath, rel: &RelPath, expect: Expect) -> Result<Sig, OpError> {
        if !staged.is_safe() || staged.is_root() {
            return Err(OpError::Unsafe(staged.clone()));
        }
        let stage_root = self.state_dir().join(STAGE_DIR);
        let src = stage_root.join(staged.as_path());
        let f = fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&src)
            .map_err(|_| OpError::Missing(staged.clone()))?;
        if !f.metadata().map_err(io_err("installing", rel))?.is_file() {
            return Err(OpError::Missing(staged.clone()));
        }
        let r = self.place(rel, &src, &f, expect);
        // Empty staging directories left behind go (a non-empty one stays).
        let mut dir = src.parent();
        while let Some(d) = dir.filter(|d| *d != stage_root) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        if r.is_err() {
            let _ = fs::remove_file(&src);
        }
        r
    }

    /// Rename the prepared file `tmp` (open as `f`) to `rel` if `rel` holds
    /// what is expected, keeping what it replaces in the trash; returns the
    /// installed file's signature, from its descriptor after the rename
    /// (rename changes its ctime): a user write after it shows as another
    /// version.
    fn place(
        &self,
        rel: &RelPath,
        tmp: &Path,
        f: &fs::File,
        expect: Expect,
    ) -> Result<Sig, OpError> {
        let p = self.resolve(rel)?;
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating parents of", rel))?;
        }
        let before = twinsync_filter::sig_of(&f.metadata().map_err(io_err("installing", rel))?);
        let found = lstat_sig(&p).map_err(io_err("looking at", rel))?;
        if !expect.holds(found.as_ref()) {
            return Err(OpError::Refused {
                path: rel.clone(),
                found,
            });
        }
        let backup = match found {
            Some(md) if md.kind == twinsync_proto::Kind::Dir => {
                self.trash(rel)?;
                None
            }
            Some(_) => self.backup(rel, &p),
            None => None,
        };
        if expect == Expect::Absent {
            // Created meanwhile: refused, not replaced.
            if let Err(e) = rename_noreplace(tmp, &p) {
                if e.raw_os_error() == Some(libc::EEXIST) {
                    return Err(OpError::Refused {
                        path: rel.clone(),
                        found: lstat_sig(&p).ok().flatten(),
                    });
                }
                return Err(io_err("installing", rel)(e));
            }
        } else {
            fs::rename(tmp, &p).map_err(io_err("installing", rel))?;
        }
        let after = twinsync_filter::sig_of(&f.metadata().map_err(io_err("installing", rel))?);
        if let (Some(old), Some(bk)) = (found.filter(|o| o.kind == Kind::File), backup) {
            if let Some(refused) = self.undo_if_written(rel, &p, &bk, &old, &after) {
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

    /// Append `rel` and its stamp to `.twinsync/installed` (written, not
    /// synced: it serves after a brain is killed, see
    /// [`Replica::installed`]). Best effort.
    fn note_installed(&self, rel: &RelPath, sig: &Sig) {
        if !self.record.load(Ordering::Relaxed) {
            return;
        }
        let frame = twinsync_proto::encode(&(rel, sig.stamp()));
        let _ = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir().join("installed"))
            .and_then(|mut f| io::Write::write_all(&mut f, &frame));
    }

    /// The files installed since the record was last emptied, with their
    /// stamps right after (latest last); `forget` empties it.
    ///
    /// # Errors
    /// A record that exists but cannot be read or emptied.
    pub fn installed(&self, forget: bool) -> io::Result<Vec<(RelPath, twinsync_proto::Stamp)>> {
        let p = self.state_dir().join("installed");
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut r = &data[..];
        // Up to a torn last record.
        while let Ok(x) = twinsync_proto::read_frame(&mut r) {
            out.push(x);
        }
        if forget {
            fs::remove_file(&p)?;
        }
        Ok(out)
    }

    /// Trash `rel` if it holds what is expected (a version changed since
    /// the brain saw it is refused: a modification wins over a deletion).
    ///
    /// # Errors
    /// See [`Replica::trash`]; [`OpError::Refused`].
    pub fn trash_if(&self, rel: &RelPath, expect: Expect) -> Result<bool, OpError> {
        if expect != Expect::Any {
            let found = self.stat(rel)?;
            if !expect.holds(found.as_ref()) {
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found,
                });
            }
        }
        self.trash(rel)
    }

    /// lstat `rel`.
    ///
    /// # Errors
    /// Unsafe paths and errors other than "not found".
    pub fn stat(&self, rel: &RelPath) -> Result<Option<Sig>, OpError> {
        let p = self.resolve(rel)?;
        lstat_sig(&p).map_err(io_err("stat", rel))
    }

    /// A fresh ignore-suffix name beside `abs` (its own name kept when it fits).
    fn ignore_name(&self, abs: &Path) -> PathBuf {
        let id = (u64::from(std::process::id()) << 24) ^ self.seq.fetch_add(1, Ordering::Relaxed);
        let name = abs.file_name().map_or(&[][..], OsStr::as_bytes);
        let suffix = format!(".{id:x}");
        let mut n = Vec::with_capacity(name.len() + suffix.len() + IGNORE_SUFFIX.len());
        if name.len() + suffix.len() + IGNORE_SUFFIX.len() <= NAME_MAX {
            n.extend_from_slice(name);
        }
        n.extend_from_slice(suffix.as_bytes());
        n.extend_from_slice(IGNORE_SUFFIX);
        abs.with_file_name(OsStr::from_bytes(&n))
    }

    /// Rename `from` to `to` through the dance; an entry at `to` is trashed.
    ///
    /// # Errors
    /// Missing source, unsafe paths, failing renames.
    pub fn move_entry(&self, from: &RelPath, to: &RelPath, expect: Expect) -> Result<(), OpError> {
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        let src_md = fs::symlink_metadata(&src).map_err(|_| OpError::Missing(from.clone()))?;
        if let Ok(md) = fs::symlink_metadata(&dst) {
            use std::os::unix::fs::MetadataExt;
            if md.ino() == src_md.ino() && md.dev() == src_md.dev() {
                return Ok(());
            }
            let found = twinsync_filter::sig_of(&md);
            if !expect.holds(Some(&found)) {
                return Err(OpError::Refused {
                    path: to.clone(),
                    found: Some(found),
                });
            }
            self.trash(to)?;
        }
        if let Some(parent) = to.parent() {
            if !parent.is_root() {
                let pabs = self.resolve(&parent)?;
                fs::create_dir_all(&pabs).map_err(io_err("creating parents of", to))?;
            }
        }
        let tmp = self.ignore_name(&src);
        fs::rename(&src, &tmp).map_err(io_err("renaming", from))?;
        if let Err(e) = fs::rename(&tmp, &dst) {
            let _ = fs::rename(&tmp, &src);
            return Err(io_err("renaming to", to)(e));
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
        let src = self.resolve(rel)?;
        if fs::symlink_metadata(&src).is_err() {
            return Ok(false);
        }
        let dst = self
            .keep_place(into, rel)
            .map_err(io_err("creating trash folder for", rel))?;
        let tmp = self.ignore_name(&src);
        fs::rename(&src, &tmp).map_err(io_err("trashing", rel))?;
        if let Err(e) = fs::rename(&tmp, &dst) {
            let _ = fs::rename(&tmp, &src);
            return Err(io_err("trashing", rel)(e));
        }
        Ok(true)
    }

    /// Create directory `rel` (parents too) and give it `mode`.
    ///
    /// # Errors
    /// Unsafe paths, failing mkdir/chmod, or a non-directory in the way.
    pub fn mkdir(&self, rel: &RelPath, mode: u32) -> Result<(), OpError> {
        let p = self.resolve(rel)?;
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => {}
            Ok(md) => {
                // Not what the brain expected (it trashes what it expects
                // there first): someone made it meanwhile.
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found: Some(twinsync_filter::sig_of(&md)),
                });
            }
            Err(_) => fs::create_dir_all(&p).map_err(io_err("creating directory", rel))?,
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .map_err(io_err("setting mode of", rel))
    }

    /// BLAKE3 digest of a regular file (never following a symlink).
    ///
    /// # Errors
    /// Unsafe paths, unreadable files, non-files.
    pub fn hash_file(&self, rel: &RelPath) -> Result<[u8; 32], OpError> {
        let p = self.resolve(rel)?;
        let f = fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .map_err(io_err("hashing", rel))?;
        if !f.metadata().map_err(io_err("hashing", rel))?.is_file() {
            return Err(OpError::Missing(rel.clone()));
        }
        let mut h = blake3::Hasher::new();
        h.update_reader(f).map_err(io_err("hashing", rel))?;
        Ok(*h.finalize().as_bytes())
    }

    /// Read a whole regular file with its signature.
    ///
    /// # Errors
    /// Unsafe paths, missing or unreadable files, non-files.
    pub fn read_file(&self, rel: &RelPath) -> Result<FileData, OpError> {
        use std::io::Read;
        let p = self.resolve(rel)?;
        let mut f = fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .map_err(io_err("reading", rel))?;
        let md = f.metadata().map_err(io_err("reading", rel))?;
        if !md.is_file() {
            return Err(OpError::Missing(rel.clone()));
        }
        if md.len() > INLINE_LIMIT {
            return Err(OpError::Io {
                what: "reading",
                path: rel.clone(),
                source: io::Error::other(
                    "too large to carry in a frame: install rsync on both hosts",
                ),
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(md.len()).unwrap_or(0));
        f.read_to_end(&mut data).map_err(io_err("reading", rel))?;
        Ok(FileData {
            path: rel.clone(),
            data: serde_bytes::ByteBuf::from(data),
            sig: twinsync_filter::sig_of(&md),
            // The brain sets what the destination must hold.
            expect: Expect::Any,
        })
    }

    /// Write a whole file atomically: temp file under `.twinsync/tmp`, mode
    /// and mtime set, what it replaces hard-linked into the trash, renamed
    /// into place. Returns the new signature.
    ///
    /// # Errors
    /// Unsafe paths, failing syscalls.
    pub fn write_file(&self, f: &FileData) -> Result<Sig, OpError> {
        use std::io::Write;
        self.put_file(&f.path, f.sig.mode, f.sig.mtime_ns, f.expect, |out| {
            out.write_all(&f.data)
        })
    }

    /// Copy `rel` from another local replica rooted at `src_root` (used
    /// when rsync is not installed): streamed (copy_file_range where the
    /// kernel can), with the source's mode and mtime, atomically as
    /// [`Replica::write_file`].
    ///
    /// # Errors
    /// Unsafe paths, an unreadable or vanished source, failing syscalls.
    pub fn copy_from(
        &self,
        src_root: &Path,
        rel: &RelPath,
        expect: Expect,
    ) -> Result<Sig, OpError> {
        let src = Replica::new(src_root.to_path_buf()).resolve(rel)?;
        let mut from = fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&src)
            .map_err(io_err("reading", rel))?;
        let md = from.metadata().map_err(io_err("reading", rel))?;
        if !md.is_file() {
            return Err(OpError::Missing(rel.clone()));
        }
        let sig = twinsync_filter::sig_of(&md);
        self.put_file(rel, sig.mode, sig.mtime_ns, expect, |out| {
            io::copy(&mut from, out).map(|_| ())
        })
    }

    /// Write a file through a temp file under `.twinsync/tmp` (filled by
    /// `fill`), give it `mode` and `mtime_ns`, keep what it replaces in the
    /// trash, rename it into place, and return its new signature.
    fn put_file(
        &self,
        rel: &RelPath,
        mode: u32,
        mtime_ns: i64,
        expect: Expect,
        fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> Result<Sig, OpError> {
        self.resolve(rel)?;
        let id = (u64::from(std::process::id()) << 24) ^ self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.state_dir().join("tmp").join(format!("w{id:x}"));
        let res = (|| -> io::Result<fs::File> {
            let mut out = fs::File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            fill(&mut out)?;
            out.set_permissions(fs::Permissions::from_mode(mode))?;
            set_mtime_nofollow(&tmp, mtime_ns)?;
            Ok(out)
        })();
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("writing", rel)(e));
            }
        };
        let r = self.place(rel, &tmp, &out, expect);
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    /// Keep a copy of a file about to be replaced: a hard link in the trash,
    /// whose path is returned.
    fn backup(&self, rel: &RelPath, abs: &Path) -> Option<PathBuf> {
        let dst = self.keep_place("trash", rel).ok()?;
        fs::hard_link(abs, &dst).ok().map(|()| dst)
    }

    /// After `place` renamed its file over `old` (kept at `backup`): when
    /// the displaced file is no longer `old` — a writer opened it between
    /// the check and the rename (an `O_TRUNC` open, a write) — its writes
    /// would land in the trash, silently. It is put back at `abs`, if that
    /// still holds what was installed (`installed`), and the install is
    /// refused with what is there, so the brain merges it like any other
    /// refusal (a conflict, not a loss). Link count changes move ctime, so
    /// only what a write moves is compared: inode, size, mtime, mode.
    fn undo_if_written(
        &self,
        rel: &RelPath,
        abs: &Path,
        backup: &Path,
        old: &Sig,
        installed: &Sig,
    ) -> Option<OpError> {
        let now = lstat_sig(backup).ok().flatten()?;
        let untouched = now.kind == old.kind
            && now.ino == old.ino
            && now.size == old.size
            && now.mtime_ns == old.mtime_ns
            && now.mode == old.mode;
        if untouched {
            return None;
        }
        let here = lstat_sig(abs).ok().flatten();
        if here.is_some_and(|h| h.ino == installed.ino) {
            let _ = fs::rename(backup, abs);
        }
        Some(OpError::Refused {
            path: rel.clone(),
            found: lstat_sig(abs).ok().flatten(),
        })
    }

    /// A free place for `rel` in `.twinsync/<into>/YYYY-MM-DD/` (its parents
    /// created): the same relative path, with `.1`, `.2`… when taken.
    fn keep_place(&self, into: &str, rel: &RelPath) -> io::Result<PathBuf> {
        let day = self.state_dir().join(into).join(crate::time::today());
        let mut dst = day.join(rel.as_path());
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut n = 1;
        while fs::symlink_metadata(&dst).is_ok() {
            let mut name = rel.file_name().to_vec();
            name.extend_from_slice(format!(".{n}").as_bytes());
            if name.len() > NAME_MAX {
                name.drain(..name.len() - NAME_MAX);
            }
            dst = dst.with_file_name(OsStr::from_bytes(&name));
            n += 1;
        }
        Ok(dst)
    }

    /// Create or replace the symlink `rel` → `target` with mtime `mtime_ns`:
    /// made under an ignore-suffix name, timed, then renamed into place, so
    /// the filter reports nothing and no half-made link is ever visible. A
    /// directory in the way goes to the trash.
    ///
    /// # Errors
    /// Unsafe paths, failing syscalls.
    pub fn symlink(&self, rel: &RelPath, target: &[u8], mtime_ns: i64) -> Result<(), OpError> {
        let p = self.resolve(rel)?;
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            self.trash(rel)?;
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating parents of", rel))?;
        }
        let tmp = self.ignore_name(&p);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &tmp)
            .map_err(io_err("creating symlink", rel))?;
        let done = set_mtime_nofollow(&tmp, mtime_ns).and_then(|()| fs::rename(&tmp, &p));
        if let Err(e) = done {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("creating symlink", rel)(e));
        }
        Ok(())
    }

    /// Set the mode and/or mtime of `rel` without following a symlink.
    ///
    /// # Errors
    /// Unsafe paths, a missing entry, failing syscalls.
    pub fn set_attr(
        &self,
        rel: &RelPath,
        mode: Option<u32>,
        mtime_ns: Option<i64>,
    ) -> Result<(), OpError> {
        let p = self.resolve(rel)?;
        let md = fs::symlink_metadata(&p).map_err(|_| OpError::Missing(rel.clone()))?;
        let is_link = md.file_type().is_symlink();
        if let (Some(mode), false) = (mode, is_link) {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                .map_err(io_err("setting mode of", rel))?;
        }
        if let Some(ns) = mtime_ns {
            set_mtime_nofollow(&p, ns).map_err(io_err("setting mtime of", rel))?;
        }
        Ok(())
    }
}

/// `rename(from, to)` that fails with `EEXIST` instead of replacing.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        // A file system without RENAME_NOREPLACE: check, then rename.
        if fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        return fs::rename(from, to);
    }
    Err(e)
}

/// Remove day-folders (`.twinsync/{trash,conflicts}/YYYY-MM-DD`) older than
/// `days`.
pub fn clean_trash(state_dir: &Path, days: u32) {
    let cutoff = crate::time::now_secs() - i64::from(days) * 86_400;
    let (y, m, d, ..) = crate::time::civil(cutoff);
    let cutoff_name = format!("{y:04}-{m:02}-{d:02}");
    for folder in ["trash", "conflicts"] {
        let Ok(rd) = fs::read_dir(state_dir.join(folder)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.len() == 10 && name.as_ref() < cutoff_name.as_str() {
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    tracing::warn!("cannot clean {}: {err}", e.path().display());
                }
            }
        }
    }
}

/// utimensat(AT_SYMLINK_NOFOLLOW), leaving atime alone.
fn set_mtime_nofollow(p: &Path, ns: i64) -> io::Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000),
        },
    ];
    // SAFETY: a valid C string and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> (tempfile::TempDir, Replica) {
        let d = tempfile::tempdir().unwrap();
        let r = Replica::new(d.path().to_path_buf());
        r.prepare().unwrap();
        (d, r)
    }

    /// A writer that opened the file before the install renamed over it
    /// and wrote after: its bytes are put back at the path and the install
    /// is refused (a conflict for the brain, not a write lost in the trash).
    #[test]
    fn a_file_written_while_replaced_is_put_back_and_the_install_refused() {
        use std::io::Write;
        let (d, r) = replica();
        let abs = d.path().join("a");
        fs::write(&abs, b"old!").unwrap();
        let old = lstat_sig(&abs).unwrap().unwrap();
        let mut writer = fs::OpenOptions::new().write(true).open(&abs).unwrap();
        let bk = r.backup(&"a".into(), &abs).unwrap();
        let tmp = d.path().join("new");
        fs::write(&tmp, b"theirs").unwrap();
        fs::rename(&tmp, &abs).unwrap();
        let installed = lstat_sig(&abs).unwrap().unwrap();
        writer.write_all(b"mine, written last").unwrap();
        drop(writer);
        let e = r.undo_if_written(&"a".into(), &abs, &bk, &old, &installed);
        assert!(matches!(e, Some(OpError::Refused { found: Some(_), .. })));
        assert_eq!(fs::read(&abs).unwrap(), b"mine, written last");

        // Untouched: nothing undone.
        let old = lstat_sig(&abs).unwrap().unwrap();
        let bk = r.backup(&"a".into(), &abs).unwrap();
        fs::write(&tmp, b"theirs").unwrap();
        fs::rename(&tmp, &abs).unwrap();
        let installed = lstat_sig(&abs).unwrap().unwrap();
        assert!(r
            .undo_if_written(&"a".into(), &abs, &bk, &old, &installed)
            .is_none());
        assert_eq!(fs::read(&abs).unwrap(), b"theirs");
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

    #[test]
    fn escapes_are_refused() {
        let (d, r) = replica();
        std::os::unix::fs::symlink("/tmp", d.path().join("link")).unwrap();
        for bad in ["../x", "/etc/passwd", "link/x", "a/./b"] {
            assert!(
                matches!(r.resolve(&bad.into()), Err(OpError::Unsafe(_))),
                "{bad}"
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
        clean_trash(&r.state_dir(), 30);
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
}
