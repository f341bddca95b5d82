//! Reading extended attributes (`listxattr(2)`, `getxattr(2)`) and their
//! digests, the part of an entry's [`Sig`](twinsync_proto::Sig) that
//! `stat` does not give.
//!
//! Cost: one `listxattr` per entry; values are read only when names exist
//! (most entries have none, and then nothing is allocated). A file system
//! without extended attributes (`ENOTSUP`) has none.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use twinsync_proto::{Xattr, XattrDigest, XattrScope, Xattrs};

/// How to reach the entry whose attributes are read or written.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A path, not followed when it names a symlink (`l*xattr`).
    Link(&'a Path),
    /// A path followed to its end: `/proc/self/fd/N` of an `O_PATH`
    /// descriptor, which leads to the entry the descriptor holds (a symlink
    /// too, itself) and nowhere else.
    Follow(&'a Path),
    /// An open file.
    Fd(BorrowedFd<'a>),
}

impl Target<'_> {
    fn list_into(self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Target::Link(p) => rustix::fs::llistxattr(p, buf),
            Target::Follow(p) => rustix::fs::listxattr(p, buf),
            Target::Fd(fd) => rustix::fs::flistxattr(fd, buf),
        }
    }

    fn list_size(self) -> rustix::io::Result<usize> {
        match self {
            Target::Link(p) => rustix::fs::llistxattr_query(p),
            Target::Follow(p) => rustix::fs::listxattr_query(p),
            Target::Fd(fd) => rustix::fs::flistxattr_query(fd),
        }
    }

    fn get_into(self, name: &[u8], buf: &mut [u8]) -> rustix::io::Result<usize> {
        let name = std::ffi::OsStr::from_bytes(name);
        match self {
            Target::Link(p) => rustix::fs::lgetxattr(p, name, buf),
            Target::Follow(p) => rustix::fs::getxattr(p, name, buf),
            Target::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
        }
    }

    fn get_size(self, name: &[u8]) -> rustix::io::Result<usize> {
        let name = std::ffi::OsStr::from_bytes(name);
        match self {
            Target::Link(p) => rustix::fs::lgetxattr_query(p, name),
            Target::Follow(p) => rustix::fs::getxattr_query(p, name),
            Target::Fd(fd) => rustix::fs::fgetxattr_query(fd, name),
        }
    }

    /// Set `name` to `value`.
    ///
    /// # Errors
    /// `setxattr` errors.
    pub fn set(self, name: &[u8], value: &[u8]) -> io::Result<()> {
        let name = std::ffi::OsStr::from_bytes(name);
        let flags = rustix::fs::XattrFlags::empty();
        Ok(match self {
            Target::Link(p) => rustix::fs::lsetxattr(p, name, value, flags),
            Target::Follow(p) => rustix::fs::setxattr(p, name, value, flags),
            Target::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, flags),
        }?)
    }

    /// Remove `name` (gone already: done).
    ///
    /// # Errors
    /// `removexattr` errors.
    pub fn remove(self, name: &[u8]) -> io::Result<()> {
        let name = std::ffi::OsStr::from_bytes(name);
        match match self {
            Target::Link(p) => rustix::fs::lremovexattr(p, name),
            Target::Follow(p) => rustix::fs::removexattr(p, name),
            Target::Fd(fd) => rustix::fs::fremovexattr(fd, name),
        } {
            Ok(()) | Err(Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The names of `t`'s attributes, NUL-terminated one after the other
/// (empty: none, or a file system without them).
fn names(t: Target<'_>) -> io::Result<Vec<u8>> {
    let mut small = [0u8; 512];
    match t.list_into(&mut small) {
        Ok(n) => return Ok(small[..n].to_vec()),
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e.into()),
    }
    // Longer lists: as long as the kernel says, again if they grew meanwhile.
    loop {
        let mut buf = vec![0u8; t.list_size()?];
        match t.list_into(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The value of `name` (`None`: removed since it was listed, or not
/// readable by this user: a `user.*` value needs read permission on the
/// file, which an agent not running as root may lack; it is then left out,
/// quietly, like the file's content).
fn value(t: Target<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match t.get_into(name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA | Errno::ACCESS | Errno::PERM) => return Ok(None),
            Err(Errno::RANGE) => buf.resize(t.get_size(name)?.max(buf.len() * 2), 0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The attributes of `t` that `scope` covers, with their values, in
/// ascending order of names.
///
/// # Errors
/// `listxattr`/`getxattr` errors (not `ENOTSUP`: none).
pub fn read(t: Target<'_>, scope: XattrScope) -> io::Result<Xattrs> {
    read_listed(t, &names(t)?, scope)
}

/// [`read`], of the names `listxattr` gave.
fn read_listed(t: Target<'_>, names: &[u8], scope: XattrScope) -> io::Result<Xattrs> {
    let mut list = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| scope.covers(n)) {
        if let Some(v) = value(t, name)? {
            list.push(Xattr {
                name: serde_bytes::ByteBuf::from(name.to_vec()),
                value: serde_bytes::ByteBuf::from(v),
            });
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Xattrs { scope, list })
}

/// The digests of `t`'s attributes, for both scopes.
///
/// # Errors
/// See [`read`].
pub fn digest(t: Target<'_>) -> io::Result<XattrDigest> {
    let names = names(t)?;
    if names.is_empty() {
        return Ok(XattrDigest::NONE);
    }
    Ok(digest_of(&read_listed(t, &names, XattrScope::Root)?))
}

/// The digests of a list of [`XattrScope::Root`] (see [`XattrDigest`]).
#[must_use]
pub fn digest_of(all: &Xattrs) -> XattrDigest {
    let of = |scope: XattrScope| {
        let mut h = blake3::Hasher::new();
        let mut any = false;
        for x in all.list.iter().filter(|x| scope.covers(&x.name)) {
            any = true;
            for part in [&x.name[..], &x.value[..]] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        if !any {
            return 0;
        }
        let b = h.finalize();
        u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes")).max(1)
    };
    XattrDigest {
        owner: of(XattrScope::Owner),
        root: of(XattrScope::Root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_in_order_and_digested_per_scope() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let t = Target::Link(&f);
        assert_eq!(digest(t).unwrap(), XattrDigest::NONE);
        t.set(b"user.b", b"2").unwrap();
        t.set(b"user.a", b"1").unwrap();
        let got = read(t, XattrScope::Owner).unwrap();
        let names: Vec<&[u8]> = got.list.iter().map(|x| &x.name[..]).collect();
        assert_eq!(names, [&b"user.a"[..], b"user.b"]);
        let one = digest(t).unwrap();
        assert_ne!(one.owner, 0);
        assert_eq!(one.owner, one.root);
        t.set(b"user.a", b"3").unwrap();
        assert_ne!(digest(t).unwrap(), one);
        t.remove(b"user.a").unwrap();
        t.remove(b"user.a").unwrap();
        t.remove(b"user.b").unwrap();
        assert_eq!(digest(t).unwrap(), XattrDigest::NONE);
    }
}
