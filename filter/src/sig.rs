//! lstat signatures: an entry's state as the brain compares it (its
//! `lstat` and the digests of its extended attributes).

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use twinsync_proto::{Kind, Sig, XattrDigest};

use crate::xattr;

/// The signature of an entry from its (lstat) metadata and the digests of
/// its extended attributes.
#[must_use]
pub fn sig_of(md: &Metadata, xattrs: XattrDigest) -> Sig {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::CharDev
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else {
            Kind::Other
        }
    };
    Sig {
        kind,
        size: if kind == Kind::Dir { 0 } else { md.size() },
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        mode: md.mode() & 0o7777,
        ino: md.ino(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        uid: md.uid(),
        gid: md.gid(),
        rdev: if kind.is_special() { md.rdev() } else { 0 },
        nlink: u32::try_from(md.nlink()).unwrap_or(u32::MAX),
        allocated: if kind == Kind::File {
            md.blocks() * 512
        } else {
            0
        },
        xattrs,
    }
}

/// The signature of the entry at `path`, of which `md` is an lstat (its
/// extended attributes are read, never through a symlink).
///
/// # Errors
/// Reading the attributes.
pub fn sig_at(path: &Path, md: &Metadata) -> io::Result<Sig> {
    Ok(sig_of(md, xattr::digest(xattr::Target::Link(path))?))
}

/// lstat `path` (never following a symlink); `Ok(None)` when it is gone.
///
/// # Errors
/// Any error but "not found".
pub fn lstat_sig(path: &Path) -> io::Result<Option<Sig>> {
    match std::fs::symlink_metadata(path).and_then(|md| sig_at(path, &md)) {
        Ok(sig) => Ok(Some(sig)),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
