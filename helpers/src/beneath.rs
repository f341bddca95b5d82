//! Paths resolved beneath a directory descriptor by the kernel, and the
//! `*at` system calls that act on what they name.
//!
//! Every directory on the way to an entry is opened with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` (or, on a
//! kernel without it, one `openat(O_NOFOLLOW)` per component). The entry is
//! then named by its parent's descriptor and its own name: swapping any
//! directory on the way for a symlink, even in the middle of an operation,
//! cannot send it outside the tree it was resolved beneath.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;
use twinsync_filter::xattr;
use twinsync_proto::{Kind, Sig, XattrDigest};

/// Set once `openat2` is found missing (older kernel, seccomp filter).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Use `openat2` when the kernel has it (`true`, the default), or always the
/// component-by-component walk (to test the fallback).
pub fn use_openat2(on: bool) {
    NO_OPENAT2.store(!on, Ordering::Relaxed);
}

const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn components(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

fn checked_component(c: &[u8]) -> io::Result<&OsStr> {
    if c == b"." || c == b".." || c.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    Ok(OsStr::from_bytes(c))
}

/// Open the directory `rel` (`/`-separated, no `.` or `..`) beneath `dir`,
/// never through a symlink (`ELOOP` when one is on the way, `ENOTDIR` when a
/// non-directory is). The descriptor is an `O_PATH` one: good as the `dirfd`
/// of `*at` calls, not for reading.
///
/// # Errors
/// Resolution errors of the kernel.
pub fn open_dir(dir: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    if components(rel).next().is_none() {
        return Ok(rustix::fs::openat(dir, c".", DIR_FLAGS, Mode::empty())?);
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(dir, OsStr::from_bytes(rel), DIR_FLAGS, Mode::empty(), how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOSYS | Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // A rename elsewhere raced the lookup, or something on the way
            // is not a directory (a symlink last is opened itself, O_PATH):
            // the walk below decides, and tells a symlink from a file.
            Err(Errno::AGAIN | Errno::NOTDIR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut cur: Option<OwnedFd> = None;
    for c in components(rel) {
        let name = checked_component(c)?;
        let at = cur.as_ref().map_or(dir, AsFd::as_fd);
        let next = match rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR) => {
                // Tell a symlink (unsafe) from a file (not a directory).
                let st = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                    return Err(Errno::LOOP.into());
                }
                return Err(Errno::NOTDIR.into());
            }
            Err(e) => return Err(e.into()),
        };
        cur = Some(next);
    }
    Ok(cur.expect("at least one component"))
}

/// Like [`open_dir`], creating the missing directories (mode `0o777` less
/// the umask, as `mkdir -p`).
///
/// # Errors
/// A symlink or a non-directory on the way, failing `mkdirat`.
pub fn make_dirs(dir: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    match open_dir(dir, rel) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        r => return r,
    }
    let mut cur = rustix::fs::openat(dir, c".", DIR_FLAGS, Mode::empty())?;
    for c in components(rel) {
        let name = checked_component(c)?;
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        cur = open_dir(cur.as_fd(), c)?;
    }
    Ok(cur)
}

/// The kind of entry a `stat` result is of.
#[must_use]
pub fn kind_of(st: &Stat) -> Kind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => Kind::Symlink,
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        FileType::Fifo => Kind::Fifo,
        FileType::CharacterDevice => Kind::CharDev,
        FileType::BlockDevice => Kind::BlockDev,
        _ => Kind::Other,
    }
}

/// The signature of a `stat` result and the digests of the entry's
/// extended attributes (as [`twinsync_filter::sig_of`]).
#[must_use]
// The stat field types differ between architectures: the casts are needed on some.
#[allow(
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::unnecessary_cast
)]
pub fn sig_of_stat(st: &Stat, xattrs: XattrDigest) -> Sig {
    let kind = kind_of(st);
    Sig {
        kind,
        size: if kind == Kind::Dir {
            0
        } else {
            st.st_size as u64
        },
        mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        mode: st.st_mode & 0o7777,
        ino: st.st_ino as u64,
        ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: if kind.is_special() { st.st_rdev } else { 0 },
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        allocated: if kind == Kind::File {
            st.st_blocks as u64 * 512
        } else {
            0
        },
        xattrs,
    }
}

/// Whether `/proc/self/fd` is there (checked once).
fn proc_fd() -> bool {
    static THERE: OnceLock<bool> = OnceLock::new();
    *THERE.get_or_init(|| std::path::Path::new("/proc/self/fd").is_dir())
}

/// Run `f` on the extended attributes of `name` in `dir` (never followed
/// if a symlink), with its `stat`; `Ok(None)` when it is not there. The
/// entry is pinned by an `O_PATH` descriptor and reached through
/// `/proc/self/fd` (no `*xattrat` call on older kernels): a rename on the
/// way cannot send the call elsewhere. Without `/proc`, a file or a
/// directory is opened read-only instead; other entries then have none
/// (`ENOTSUP`).
///
/// # Errors
/// Open and stat errors, and those of `f`.
pub fn with_xattrs_of<R>(
    dir: BorrowedFd<'_>,
    name: &[u8],
    f: impl FnOnce(xattr::Target<'_>, &Stat) -> io::Result<R>,
) -> io::Result<Option<R>> {
    let fd = match rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if proc_fd() {
        let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        return f(xattr::Target::Follow(std::path::Path::new(&proc)), &st).map(Some);
    }
    if !matches!(kind_of(&st), Kind::File | Kind::Dir) {
        return Err(Errno::NOTSUP.into());
    }
    let rd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let again = rustix::fs::fstat(&rd)?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Errno::AGAIN.into());
    }
    f(xattr::Target::Fd(rd.as_fd()), &st).map(Some)
}

/// The signature of `name` in `dir` (never followed if a symlink), its
/// extended attributes included; `Ok(None)` when it is not there.
///
/// # Errors
/// Any error but "not found".
pub fn sig_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Sig>> {
    match with_xattrs_of(dir, name, |t, st| Ok(sig_of_stat(st, xattr::digest(t)?))) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            Ok(lstat_at(dir, name)?.map(|st| sig_of_stat(&st, XattrDigest::NONE)))
        }
        r => r,
    }
}

/// The signature of an open file, its extended attributes included.
///
/// # Errors
/// `fstat` and `flistxattr` errors.
pub fn sig_of_file(f: &File) -> io::Result<Sig> {
    let st = rustix::fs::fstat(f)?;
    Ok(sig_of_stat(
        &st,
        xattr::digest(xattr::Target::Fd(f.as_fd()))?,
    ))
}

/// lstat `name` in `dir`; `Ok(None)` when it is not there.
///
/// # Errors
/// Any error but "not found".
pub fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// True when `st` is a regular file.
#[must_use]
pub fn is_file(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

/// Open the regular file `name` in `dir` for reading: never through a
/// symlink, never blocking (a fifo or a device is opened non-blocking, seen
/// by `fstat` and refused before anything is read). `EINVAL` for anything
/// that is not a regular file.
///
/// # Errors
/// Open errors, and `EINVAL` for a non-file.
pub fn open_file(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<(File, Stat)> {
    let fd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if !is_file(&st) {
        return Err(Errno::INVAL.into());
    }
    Ok((File::from(fd), st))
}

/// 128 bits from the kernel's random source, as hex.
#[must_use]
pub fn random_hex() -> String {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(_) => {
                // No getrandom(2): /dev/urandom.
                let n = urandom(&mut b[filled..]);
                assert!(n > 0, "no source of randomness");
                filled += n;
            }
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn urandom(buf: &mut [u8]) -> usize {
    use std::io::Read;
    File::open("/dev/urandom")
        .and_then(|mut f| f.read(buf))
        .unwrap_or(0)
}

/// Create a new file `name` in `dir` (never an existing one, never through
/// a symlink), open for reading and writing.
///
/// # Errors
/// `EEXIST` when the name is taken, other open errors.
pub fn create_file(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    Ok(File::from(fd))
}

/// `renameat2`, with `RENAME_NOREPLACE` when `noreplace` (on a file system
/// without it: a check, then the rename).
///
/// # Errors
/// `EEXIST` when `noreplace` and the destination exists; rename errors.
pub fn rename(
    from_dir: BorrowedFd<'_>,
    from: &[u8],
    to_dir: BorrowedFd<'_>,
    to: &[u8],
    noreplace: bool,
) -> io::Result<()> {
    let (f, t) = (OsStr::from_bytes(from), OsStr::from_bytes(to));
    if !noreplace {
        return Ok(rustix::fs::renameat(from_dir, f, to_dir, t)?);
    }
    match rustix::fs::renameat_with(from_dir, f, to_dir, t, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL) => {
            if lstat_at(to_dir, to)?.is_some() {
                return Err(Errno::EXIST.into());
            }
            Ok(rustix::fs::renameat(from_dir, f, to_dir, t)?)
        }
        Err(e) => Err(e.into()),
    }
}

fn mtime_only(ns: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000),
        },
    }
}

/// Set the mtime of `name` in `dir` (never following a symlink; atime left).
///
/// # Errors
/// `utimensat` errors.
pub fn set_mtime(dir: BorrowedFd<'_>, name: &[u8], ns: i64) -> io::Result<()> {
    Ok(rustix::fs::utimensat(
        dir,
        OsStr::from_bytes(name),
        &mtime_only(ns),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Set the mtime of an open file.
///
/// # Errors
/// `futimens` errors.
pub fn set_mtime_fd(fd: BorrowedFd<'_>, ns: i64) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &mtime_only(ns))?)
}

/// Give `name` in `dir` the numeric owner and group `(uid, gid)` unless it
/// has them, never following a symlink (a link's own owner is changed).
///
/// # Errors
/// Missing entries, failing chown (not root).
pub fn chown(dir: BorrowedFd<'_>, name: &[u8], (uid, gid): (u32, u32)) -> io::Result<()> {
    // Already so: nothing done (a chown, even to the same owner, changes
    // the ctime and is reported, a state between ours and the next change).
    if let Some(st) = lstat_at(dir, name)? {
        if (st.st_uid, st.st_gid) == (uid, gid) {
            return Ok(());
        }
    }
    let (uid, gid) = (
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    );
    rustix::fs::chownat(
        dir,
        OsStr::from_bytes(name),
        Some(uid),
        Some(gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// chmod `name` in `dir`, never following a symlink (a symlink is left
/// alone): the entry is pinned by an `O_PATH` descriptor, then changed
/// through `/proc/self/fd` (or, without `/proc`, through a non-blocking
/// read-only descriptor).
///
/// # Errors
/// Missing entries, failing chmod.
pub fn chmod(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Ok(());
    }
    let mode = Mode::from_raw_mode(mode & 0o7777);
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    match rustix::fs::chmod(proc.as_str(), mode) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT) => {
            let rd = rustix::fs::openat(
                dir,
                OsStr::from_bytes(name),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
                Mode::empty(),
            )?;
            let again = rustix::fs::fstat(&rd)?;
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                return Err(Errno::AGAIN.into());
            }
            Ok(rustix::fs::fchmod(&rd, mode)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Remove `name` in `dir` and everything below it, never following a
/// symlink (one found is removed, not entered).
///
/// # Errors
/// The first failing removal.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let n = OsStr::from_bytes(name);
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, n, AtFlags::empty())?);
    }
    let sub = rustix::fs::openat(
        dir,
        n,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&sub)? {
        let e = e?;
        let b = e.file_name().to_bytes();
        if b != b"." && b != b".." {
            names.push(b.to_vec());
        }
    }
    for child in names {
        remove_tree(sub.as_fd(), &child)?;
    }
    Ok(rustix::fs::unlinkat(dir, n, AtFlags::REMOVEDIR)?)
}

/// The names in the directory `name` of `dir` (not followed if a symlink).
///
/// # Errors
/// Open and read errors.
pub fn list(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let sub = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&sub)? {
        let b = e?.file_name().to_bytes().to_vec();
        if b != b"." && b != b".." {
            names.push(b);
        }
    }
    Ok(names)
}
