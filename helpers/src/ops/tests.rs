//! Tests of the in-place operations on a replica.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use rustix::fd::AsFd;
use twinsync_proto::{Expect, Extent, FileData, Kind, XattrScope, Xattrs};

use super::*;
use std::os::unix::fs::MetadataExt;

fn replica() -> (tempfile::TempDir, Replica) {
    let d = tempfile::tempdir().unwrap();
    let r = Replica::open(d.path().to_path_buf()).unwrap();
    r.prepare().unwrap();
    (d, r)
}

/// A sparse file read for an inline copy is its data segments (the
/// frame about the size of the data), and written on the other side it
/// has the same bytes and keeps its holes; segments that do not fit
/// the size are refused before anything is written.
#[test]
fn a_sparse_file_travels_as_its_data_and_keeps_its_holes() {
    let (_d, src) = replica();
    let (_e, dst) = replica();
    let len = 1u64 << 30;
    let f = fs::File::create(src.root().join("img")).unwrap();
    f.set_len(len).unwrap();
    f.write_all_at(&[5u8; 300_000], 5 << 20).unwrap();
    f.write_all_at(b"the end", len - 7).unwrap();
    drop(f);
    let rel = RelPath::from("img");
    let read = src.read_file(&rel, XattrScope::Owner).unwrap();
    assert_eq!(read.sig.size, len);
    assert!(read.extents.len() >= 2 && read.extents_valid());
    assert!(read.data_len() < 1 << 20, "{} bytes read", read.data_len());
    let frame = twinsync_proto::encode(&read).len();
    assert!(frame < (1 << 20), "a frame of {frame} bytes");
    let sig = dst
        .write_file(&FileData {
            expect: Expect::Absent,
            ..read.clone()
        })
        .unwrap();
    assert_eq!(sig.size, len);
    let out = fs::File::open(dst.root().join("img")).unwrap();
    let md = out.metadata().unwrap();
    assert!(
        md.blocks() * 512 < 2 << 20,
        "{} bytes allocated",
        md.blocks() * 512
    );
    assert_eq!(sig.allocated, md.blocks() * 512);
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let src_file = fs::File::open(src.root().join("img")).unwrap();
    for at in [0, 5 << 20, 500 << 20, len - (1 << 20)] {
        src_file.read_exact_at(&mut a, at).unwrap();
        out.read_exact_at(&mut b, at).unwrap();
        assert!(a == b, "differ in the MiB at {at}");
    }
    let mut bad = read.clone();
    bad.path = "bad".into();
    bad.extents.reverse();
    assert!(dst.write_file(&bad).is_err());
    bad.extents = vec![Extent {
        offset: len,
        data: serde_bytes::ByteBuf::from(b"x".to_vec()),
    }];
    assert!(dst.write_file(&bad).is_err());
    assert!(!dst.root().join("bad").exists());
}

/// A writer that opened the file before the install renamed over it
/// and wrote after: its bytes are put back at the path and the install
/// is refused (a conflict for the brain, not a write lost in the trash).
#[test]
fn a_file_written_while_replaced_is_put_back_and_the_install_refused() {
    use std::io::Write;
    use twinsync_filter::lstat_sig;
    let (d, r) = replica();
    let abs = d.path().join("a");
    fs::write(&abs, b"old!").unwrap();
    let rel: RelPath = "a".into();
    let dir = r.dir_of(&rel, false).unwrap().unwrap();
    let at = (dir.as_fd(), &b"a"[..]);
    let old = lstat_sig(&abs).unwrap().unwrap();
    let mut writer = fs::OpenOptions::new().write(true).open(&abs).unwrap();
    let (bdir, bname) = r.backup(&rel, dir.as_fd(), b"a").unwrap();
    let tmp = d.path().join("new");
    fs::write(&tmp, b"theirs").unwrap();
    fs::rename(&tmp, &abs).unwrap();
    let installed = lstat_sig(&abs).unwrap().unwrap();
    writer.write_all(b"mine, written last").unwrap();
    drop(writer);
    let e = r.undo_if_written(&rel, at, (bdir.as_fd(), &bname), &old, &installed);
    assert!(matches!(e, Some(OpError::Refused { found: Some(_), .. })));
    assert_eq!(fs::read(&abs).unwrap(), b"mine, written last");

    // Untouched: nothing undone.
    let old = lstat_sig(&abs).unwrap().unwrap();
    let (bdir, bname) = r.backup(&rel, dir.as_fd(), b"a").unwrap();
    fs::write(&tmp, b"theirs").unwrap();
    fs::rename(&tmp, &abs).unwrap();
    let installed = lstat_sig(&abs).unwrap().unwrap();
    assert!(r
        .undo_if_written(&rel, at, (bdir.as_fd(), &bname), &old, &installed)
        .is_none());
    assert_eq!(fs::read(&abs).unwrap(), b"theirs");
}

#[test]
fn a_move_expecting_a_version_that_is_gone_is_refused() {
    let (d, r) = replica();
    fs::write(d.path().join("a"), "A").unwrap();
    let gone = r.move_entry(
        &"a".into(),
        &"b".into(),
        Expect::Any,
        Expect::Version(twinsync_proto::Stamp(7)),
    );
    assert!(matches!(gone, Err(OpError::Refused { found: None, .. })));
    assert!(d.path().join("a").exists());
    r.move_entry(&"a".into(), &"b".into(), Expect::Any, Expect::Absent)
        .unwrap();
    assert_eq!(fs::read(d.path().join("b")).unwrap(), b"A");
}

/// A user rewrote the file (same size and mtime: a tie, or a `cp -p`
/// restore) after the brain saw it: carrying it to the new name would pass
/// the new bytes off as the version the other side renamed.
#[test]
fn a_move_of_a_file_changed_since_the_brain_saw_it_is_refused() {
    let (d, r) = replica();
    let abs = d.path().join("a");
    fs::write(&abs, "A").unwrap();
    let seen = r.stat(&"a".into()).unwrap().unwrap().stamp();
    let mtime = fs::metadata(&abs).unwrap().modified().unwrap();
    fs::write(&abs, "B").unwrap();
    fs::File::options()
        .write(true)
        .open(&abs)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let r1 = r.move_entry(
        &"a".into(),
        &"b".into(),
        Expect::Version(seen),
        Expect::Absent,
    );
    assert!(
        matches!(&r1, Err(OpError::Refused { path, found: Some(f) }) if *path == RelPath::from("a") && f.stamp() != seen),
        "{r1:?}"
    );
    assert_eq!(fs::read(&abs).unwrap(), b"B");
    assert!(!d.path().join("b").exists());
    let now = r.stat(&"a".into()).unwrap().unwrap().stamp();
    r.move_entry(
        &"a".into(),
        &"b".into(),
        Expect::Version(now),
        Expect::Absent,
    )
    .unwrap();
    assert_eq!(fs::read(d.path().join("b")).unwrap(), b"B");
}

#[test]
fn a_move_onto_a_directory_a_user_removed_or_replaced_is_refused() {
    let (d, r) = replica();
    fs::create_dir(d.path().join("c")).unwrap();
    fs::write(d.path().join("c/x"), "x").unwrap();
    // The brain saw a directory at `b`; its user removed it since.
    let r1 = r.move_entry(
        &"c".into(),
        &"b".into(),
        Expect::Any,
        Expect::Kind(Kind::Dir),
    );
    assert!(
        matches!(&r1, Err(OpError::Refused { path, found: None }) if *path == RelPath::from("b")),
        "{r1:?}"
    );
    assert!(d.path().join("c/x").exists());
    assert!(!d.path().join("b").exists());
    // ... or put a file there: not trashed as the directory expected.
    fs::write(d.path().join("b"), "user").unwrap();
    let r2 = r.move_entry(
        &"c".into(),
        &"b".into(),
        Expect::Any,
        Expect::Kind(Kind::Dir),
    );
    assert!(
        matches!(&r2, Err(OpError::Refused { found: Some(f), .. }) if f.kind == Kind::File),
        "{r2:?}"
    );
    assert_eq!(fs::read(d.path().join("b")).unwrap(), b"user");
    let r3 = r.trash_if(&"b".into(), Expect::Kind(Kind::Dir));
    assert!(matches!(&r3, Err(OpError::Refused { .. })), "{r3:?}");
    assert_eq!(fs::read(d.path().join("b")).unwrap(), b"user");
    // A directory there, as expected: replaced.
    fs::remove_file(d.path().join("b")).unwrap();
    fs::create_dir(d.path().join("b")).unwrap();
    r.move_entry(
        &"c".into(),
        &"b".into(),
        Expect::Any,
        Expect::Kind(Kind::Dir),
    )
    .unwrap();
    assert!(d.path().join("b/x").exists());
}

#[test]
fn an_attribute_change_of_a_directory_replaced_by_a_symlink_is_refused() {
    let (d, r) = replica();
    fs::create_dir(d.path().join("t")).unwrap();
    std::os::unix::fs::symlink("t", d.path().join("a")).unwrap();
    let op = Op::SetAttr {
        path: "a".into(),
        expect: Expect::Kind(Kind::Dir),
        mode: Some(0o700),
        mtime_ns: None,
        owner: None,
        xattrs: None,
    };
    let got = r.apply(&op);
    assert!(
        matches!(&got, Err(twinsync_proto::OpFail::Refused { found: Some(f) }) if f.kind == Kind::Symlink),
        "{got:?}"
    );
    // The symlink's target keeps its mode.
    assert_ne!(
        fs::metadata(d.path().join("t")).unwrap().mode() & 0o777,
        0o700
    );
}

#[test]
fn a_symlink_replaces_only_what_is_expected() {
    let (d, r) = replica();
    fs::write(d.path().join("a"), "user").unwrap();
    let found = r.symlink(
        &"a".into(),
        b"t",
        0,
        None,
        &Xattrs::default(),
        Expect::Absent,
    );
    assert!(matches!(
        found,
        Err(OpError::Refused { found: Some(_), .. })
    ));
    assert_eq!(fs::read(d.path().join("a")).unwrap(), b"user");
    r.symlink(
        &"b".into(),
        b"t",
        0,
        None,
        &Xattrs::default(),
        Expect::Absent,
    )
    .unwrap();
    assert_eq!(fs::read_link(d.path().join("b")).unwrap().as_os_str(), "t");
    r.symlink(&"a".into(), b"u", 0, None, &Xattrs::default(), Expect::Any)
        .unwrap();
    assert_eq!(fs::read_link(d.path().join("a")).unwrap().as_os_str(), "u");
}

#[test]
fn move_keeps_inode_and_trashes_what_was_at_the_destination() {
    use std::os::unix::fs::MetadataExt;
    let (d, r) = replica();
    fs::write(d.path().join("a"), "A").unwrap();
    fs::write(d.path().join("b"), "B").unwrap();
    let ino = fs::metadata(d.path().join("a")).unwrap().ino();
    r.move_entry(&"a".into(), &"x/y/b".into(), Expect::Any, Expect::Any)
        .unwrap();
    assert_eq!(fs::metadata(d.path().join("x/y/b")).unwrap().ino(), ino);
    r.move_entry(&"x/y/b".into(), &"b".into(), Expect::Any, Expect::Any)
        .unwrap();
    assert_eq!(fs::read(d.path().join("b")).unwrap(), b"A");
    let trash = d
        .path()
        .join(".twinsync/trash")
        .join(crate::time::today())
        .join("b");
    assert_eq!(fs::read(trash).unwrap(), b"B");
}

/// Campaign seed 79000037 (ssh, kills): a brain killed in the middle
/// of a batch that moved `r8` to `d/r19` found `d/r19` with a stamp it
/// never learnt, took it for a user's change, and kept the directories
/// the other side had removed since. The move's result is recorded as
/// an install's is, so the next brain knows it for the batch's.
#[test]
fn a_move_records_the_stamp_it_leaves() {
    let (d, r) = replica();
    fs::write(d.path().join("r8"), "A").unwrap();
    r.move_entry(&"r8".into(), &"d/r19".into(), Expect::Any, Expect::Any)
        .unwrap();
    let now = twinsync_filter::lstat_sig(&d.path().join("d/r19"))
        .unwrap()
        .unwrap();
    assert_eq!(
        r.installed(false).unwrap(),
        vec![(RelPath::from("d/r19"), now.stamp())]
    );
}

/// Attributes a file already has are not set again: no new ctime (which
/// would be one more event to tell from a user's), and a chown to the
/// same owner does not clear the set-user-ID bit. What differs is set.
#[test]
fn attributes_already_there_are_not_set_again() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (d, r) = replica();
    let f = d.path().join("f");
    fs::write(&f, "x").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).unwrap();
    let md = fs::metadata(&f).unwrap();
    let before = (md.ctime(), md.ctime_nsec());
    let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
    let owner = Some((md.uid(), md.gid()));
    r.set_attr(&"f".into(), Some(0o4755), Some(mtime), owner, None)
        .unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.ctime(), md.ctime_nsec()), before, "nothing was set");
    assert_eq!(md.mode() & 0o7777, 0o4755);
    r.set_attr(&"f".into(), Some(0o640), Some(mtime - 1_000), owner, None)
        .unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.mtime() * 1_000_000_000 + md.mtime_nsec(), mtime - 1_000);
}

#[test]
fn escapes_are_refused() {
    let (d, r) = replica();
    std::os::unix::fs::symlink("/tmp", d.path().join("link")).unwrap();
    for bad in [
        "../x",
        "/etc/passwd",
        "link/x",
        "a/./b",
        ".twinsync/lock",
        ".twinsync",
    ] {
        assert!(
            matches!(r.stat(&bad.into()), Err(OpError::Unsafe(_))),
            "{bad}: {:?}",
            r.stat(&bad.into())
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
    clean_trash(&r.state_fd().unwrap(), 30);
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
    r.move_entry(
        &long.as_str().into(),
        &"short".into(),
        Expect::Any,
        Expect::Any,
    )
    .unwrap();
    assert!(d.path().join("short").exists());
    fs::write(d.path().join(&long), "y").unwrap();
    assert!(r.trash(&long.as_str().into()).unwrap());
    assert!(r.trash(&long.as_str().into()).is_ok());
}

/// The brain's own files go through [`open_state_dir`]: a `.twinsync/`
/// that is a link, not this user's, or writable by others is refused.
#[test]
fn the_state_dir_of_the_brains_files_must_be_ours_and_no_link() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let (root, elsewhere) = (d.path().join("root"), d.path().join("elsewhere"));
    fs::create_dir_all(root.join(".twinsync")).unwrap();
    fs::create_dir_all(elsewhere.join("index")).unwrap();
    fs::set_permissions(root.join(".twinsync"), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(open_state_dir(&root, b"index").is_ok());
    assert!(root.join(".twinsync/index").is_dir());
    fs::set_permissions(root.join(".twinsync"), fs::Permissions::from_mode(0o777)).unwrap();
    assert!(open_state_dir(&root, b"index").is_err());
    fs::remove_dir_all(root.join(".twinsync")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join(".twinsync")).unwrap();
    assert!(open_state_dir(&root, b"index").is_err());
    assert!(open_state_dir(&root, b"").is_err());
}

/// A file rewritten in a loop while it is copied (the destination's
/// helper copying from the other root, and a read for an inline copy):
/// what is installed or sent is always one whole version, with its own
/// signature, never a truncated or half-written one.
#[test]
fn a_file_written_while_it_is_copied_is_copied_whole_or_not_at_all() {
    let (_d, src) = replica();
    let (_e, dst) = replica();
    dst.prepare().unwrap();
    let path = src.root().join("f");
    std::fs::write(&path, b"version 0").unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (std::sync::Arc::clone(&stop), path.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let v = format!("version {n} {}", "x".repeat((n % 5000) as usize));
                std::fs::write(&path, v).unwrap();
            }
        })
    };
    let whole = |b: &[u8]| {
        let t = String::from_utf8_lossy(b);
        t.is_empty()
            || t.strip_prefix("version ").is_some_and(|r| {
                let mut it = r.splitn(2, ' ');
                let n: u64 = it.next().unwrap().parse().unwrap_or(u64::MAX);
                n == 0 || it.next().is_some_and(|x| x.len() as u64 == n % 5000)
            })
    };
    let rel = RelPath::from("f");
    let (mut copied, mut read) = (0, 0);
    for _ in 0..300 {
        if let Ok(sig) = dst.copy_from(&src, &rel, Expect::Any, XattrScope::Owner) {
            let got = std::fs::read(dst.root().join("f")).unwrap();
            assert!(
                whole(&got),
                "installed a torn copy: {:?}",
                String::from_utf8_lossy(&got)
            );
            assert_eq!(sig.size, got.len() as u64);
            copied += 1;
        }
        if let Ok(f) = src.read_file(&rel, XattrScope::Owner) {
            // Dense: one segment at 0 (none when empty).
            assert!(f.extents.len() <= 1 && f.extents.iter().all(|e| e.offset == 0));
            let data = f.extents.first().map_or(&[][..], |e| e.data.as_slice());
            assert!(whole(data), "read a torn version");
            assert_eq!(f.sig.size, f.data_len());
            read += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(copied > 0 && read > 0, "copied {copied}, read {read}");
}
