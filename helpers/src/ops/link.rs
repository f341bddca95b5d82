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
    /// ignore-suffix name and renamed into place, so it appears whole or
    /// not at all. What it replaces is kept as an install keeps it (see
    /// `place`): a file is linked into the trash first, and if a writer
    /// changed it between the check and the rename it is put back and the
    /// link refused (a conflict for the brain, not a version lost); a
    /// directory in the way (expected) goes to the trash.
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
        let dir = self.parent_made(rel, "creating parents of")?;
        let name = rel.file_name();
        let found = beneath::sig_at(dir.as_fd(), name).map_err(io_err("looking at", rel))?;
        if found.is_some_and(|f| f.kind == Kind::File && f.ino == ino) {
            // Already a name of it (a rename onto another name of the
            // same inode would do nothing and leave the temporary name).
            return Ok(());
        }
        let backup = self.make_room(rel, dir.as_fd(), name, found, expect)?;
        let tmp = Self::ignore_name(name);
        let noreplace = expect == Expect::Absent;
        let done = rustix::fs::linkat(
            &edir,
            std::ffi::OsStr::from_bytes(ename),
            &dir,
            std::ffi::OsStr::from_bytes(&tmp),
            AtFlags::empty(),
        )
        .map_err(std::io::Error::from)
        .and_then(|()| beneath::rename(dir.as_fd(), &tmp, dir.as_fd(), name, noreplace));
        if let Err(e) = done {
            let _ = rustix::fs::unlinkat(&dir, std::ffi::OsStr::from_bytes(&tmp), AtFlags::empty());
            if noreplace && e.raw_os_error() == Some(libc::EEXIST) {
                // Made meanwhile: refused, not replaced.
                return Err(OpError::Refused {
                    path: rel.clone(),
                    found: super::sig_in(dir.as_fd(), name),
                });
            }
            return Err(io_err("linking", rel)(e));
        }
        if let (Some(old), Some((bdir, bname))) = (found.filter(|o| o.kind == Kind::File), backup) {
            let linked =
                super::sig_in(dir.as_fd(), name).ok_or_else(|| OpError::Missing(rel.clone()))?;
            if let Some(refused) = self.undo_if_written(
                rel,
                (dir.as_fd(), name),
                (bdir.as_fd(), &bname),
                &old,
                &linked,
            ) {
                return Err(refused);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn replica() -> (tempfile::TempDir, Replica) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("root")).unwrap();
        let r = Replica::open(d.path().join("root")).unwrap();
        r.prepare().unwrap();
        (d, r)
    }

    fn want(r: &Replica, rel: &str) -> Sig {
        r.stat(&rel.into()).unwrap().unwrap()
    }

    #[test]
    fn a_link_is_a_new_name_of_the_same_inode_and_replaces_only_what_is_expected() {
        let (d, r) = replica();
        let root = d.path().join("root");
        fs::write(root.join("a"), b"data").unwrap();
        let w = want(&r, "a");
        r.link(&"a".into(), &"sub/b".into(), Expect::Absent, &w)
            .unwrap();
        let ino = fs::metadata(root.join("a")).unwrap().ino();
        assert_eq!(fs::metadata(root.join("sub/b")).unwrap().ino(), ino);
        // Linking again is nothing to do (no name left behind).
        r.link(&"a".into(), &"sub/b".into(), Expect::Any, &w)
            .unwrap();
        assert_eq!(fs::read_dir(root.join("sub")).unwrap().count(), 1);
        fs::write(root.join("c"), b"other").unwrap();
        let refused = r.link(&"a".into(), &"c".into(), Expect::Absent, &w);
        assert!(matches!(refused, Err(OpError::Refused { .. })));
        assert_eq!(fs::read(root.join("c")).unwrap(), b"other");
        // Another version at `existing`: not linked.
        fs::write(root.join("a"), b"changed").unwrap();
        assert!(r
            .link(&"a".into(), &"d".into(), Expect::Absent, &w)
            .is_err());
        assert!(!root.join("d").exists());
    }

    /// The files in the replica's trash, by content.
    fn trashed(root: &std::path::Path) -> Vec<Vec<u8>> {
        fn walk(d: &std::path::Path, out: &mut Vec<Vec<u8>>) {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(fs::read(&p).unwrap());
                }
            }
        }
        let mut out = Vec::new();
        walk(&root.join(".twinsync/trash"), &mut out);
        out
    }

    /// A link over another file (the version the brain expects there) keeps
    /// that file in the trash, as an install over it does: the user's only
    /// copy of it was replaced without a trace before.
    #[test]
    fn a_link_over_another_file_keeps_it_in_the_trash() {
        let (d, r) = replica();
        let root = d.path().join("root");
        fs::write(root.join("a"), b"group").unwrap();
        fs::write(root.join("c"), b"the user's own").unwrap();
        let w = want(&r, "a");
        let c = want(&r, "c");
        r.link(&"a".into(), &"c".into(), Expect::Version(c.stamp()), &w)
            .unwrap();
        assert_eq!(
            fs::metadata(root.join("c")).unwrap().ino(),
            fs::metadata(root.join("a")).unwrap().ino()
        );
        assert_eq!(trashed(&root), vec![b"the user's own".to_vec()]);
        // A directory in the way, expected: trashed too.
        fs::create_dir(root.join("e")).unwrap();
        fs::write(root.join("e/inside"), b"in e").unwrap();
        let e = want(&r, "e");
        r.link(&"a".into(), &"e".into(), Expect::Version(e.stamp()), &w)
            .unwrap();
        assert!(root.join("e").is_file());
        assert!(trashed(&root).contains(&b"in e".to_vec()));
    }

    /// A hostile peer cannot make a name inside the replica for a file
    /// outside it, nor a name outside for a file inside, nor go through a
    /// symlinked directory or link a symlink to a file outside.
    #[test]
    fn links_to_or_from_outside_the_root_are_refused() {
        let (d, r) = replica();
        let root = d.path().join("root");
        fs::write(d.path().join("secret"), b"outside").unwrap();
        fs::write(root.join("f"), b"inside").unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("sl")).unwrap();
        let inside = want(&r, "f");
        let outside = Sig { size: 7, ..inside };
        for (existing, path, w) in [
            ("../secret", "x", outside),
            ("up/secret", "x", outside),
            ("sl", "x", outside),
            ("f", "../x", inside),
            ("f", "up/x", inside),
            ("f", ".twinsync/x", inside),
            (".twinsync/lock", "x", inside),
        ] {
            assert!(
                r.link(&existing.into(), &path.into(), Expect::Any, &w)
                    .is_err(),
                "{existing} -> {path} was linked"
            );
        }
        assert!(!root.join("x").exists());
        assert!(!d.path().join("x").exists());
        assert_eq!(fs::metadata(d.path().join("secret")).unwrap().nlink(), 1);
        assert_eq!(fs::metadata(root.join("f")).unwrap().nlink(), 1);
    }
}
