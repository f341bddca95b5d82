//! Finding 5 (check-then-use races): a racer swaps a directory of the
//! replica with a symlink to a directory outside it (`renameat2`
//! `RENAME_EXCHANGE`, in a loop) while the helpers read, hash, write,
//! chmod, move, trash and mkdir below that directory. Nothing outside the
//! root may be read, changed or created: 0 escapes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use twinsync_helpers::Replica;
use twinsync_proto::{Expect, Extent, FileData, Kind, RelPath, Sig};

/// Per resolution method (openat2, then the no-follow walk).
const RUN: Duration = Duration::from_millis(1500);

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32, i64, i64)> {
    let mut v: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let md = fs::symlink_metadata(&p).unwrap();
            (
                p.strip_prefix(dir).unwrap().display().to_string(),
                if md.is_file() {
                    fs::read(&p).unwrap()
                } else {
                    Vec::new()
                },
                md.mode(),
                md.mtime(),
                // Owners and extended attributes: any change moves it.
                md.ctime_nsec() + md.ctime() * 1_000_000_000,
            )
        })
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn a_symlink_swapping_racer_never_gets_an_operation_outside_the_root() {
    race(true);
    // The fallback for kernels without openat2 holds as well.
    race(false);
}

fn race(openat2: bool) {
    twinsync_helpers::beneath::use_openat2(openat2);
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let outside = d.path().join("outside");
    fs::create_dir_all(root.join("d")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    // The outside holds the same names the helpers act on.
    for n in ["f", "g", "a", "x"] {
        fs::write(outside.join(n), b"outside").unwrap();
        fs::set_permissions(outside.join(n), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let before = snapshot(&outside);
    std::os::unix::fs::symlink(&outside, root.join("s")).unwrap();
    let r = Replica::open(root.clone()).unwrap();
    r.prepare().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let racer = {
        let (stop, swaps, root) = (Arc::clone(&stop), Arc::clone(&swaps), root.clone());
        std::thread::spawn(move || {
            let dir = rustix::fs::open(
                &root,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(&dir, "d", &dir, "s", rustix::fs::RenameFlags::EXCHANGE)
                    .unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let sig = |size| Sig {
        kind: Kind::File,
        size,
        mtime_ns: 1_000_000_000,
        mode: 0o4777,
        ino: 0,
        ctime_ns: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: Default::default(),
    };
    // Attributes are set through the same resolution as everything else.
    let xattrs = twinsync_proto::Xattrs {
        scope: twinsync_proto::XattrScope::Owner,
        list: vec![twinsync_proto::Xattr {
            name: serde_bytes::ByteBuf::from(b"user.pwn".to_vec()),
            value: serde_bytes::ByteBuf::from(b"1".to_vec()),
        }],
    };
    let (mut ops, mut refused, mut read_outside) = (0u64, 0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < RUN {
        let p = |s: &str| RelPath::from(s);
        let file = FileData {
            path: p("d/f"),
            extents: Extent::dense(b"pwn".to_vec()),
            sig: sig(3),
            xattrs: xattrs.clone(),
            expect: Expect::Any,
        };
        let results = [
            r.write_file(&file).err(),
            r.set_attr(
                &p("d/g"),
                Some(0o4777),
                Some(0),
                Some((0, 0)),
                Some(&xattrs),
            )
            .err(),
            r.mkdir(&p("d/new"), 0o777, Some((0, 0)), Some(&xattrs))
                .err(),
            r.move_entry(&p("d/a"), &p("d/b"), Expect::Any, Expect::Any)
                .err(),
            r.trash(&p("d/x")).err(),
            r.symlink(
                &p("d/l"),
                b"/etc/shadow",
                0,
                Some((0, 0)),
                &twinsync_proto::Xattrs::default(),
                Expect::Any,
            )
            .err(),
        ];
        ops += results.len() as u64;
        refused += results.iter().filter(|e| e.is_some()).count() as u64;
        for rel in ["d/f", "d/g", "d/a", "d/x"] {
            if let Ok(f) = r.read_file(&p(rel), twinsync_proto::XattrScope::Owner) {
                read_outside += u64::from(
                    f.extents.first().map(|e| e.data.as_slice()) == Some(&b"outside"[..]),
                );
            }
            ops += 1;
        }
        // Put back what the next round acts on, inside the real directory
        // wherever the racer has it now (opened without following: the
        // test must not race itself out of the root).
        for dir in ["d", "s"] {
            let Ok(q) = rustix::fs::openat(
                rustix::fs::CWD,
                root.join(dir).as_path(),
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::NOFOLLOW,
                rustix::fs::Mode::empty(),
            ) else {
                continue;
            };
            for n in ["a", "x", "g"] {
                if let Ok(f) = rustix::fs::openat(
                    &q,
                    n,
                    rustix::fs::OFlags::WRONLY
                        | rustix::fs::OFlags::CREATE
                        | rustix::fs::OFlags::TRUNC
                        | rustix::fs::OFlags::NOFOLLOW,
                    rustix::fs::Mode::from_raw_mode(0o644),
                ) {
                    let _ = std::io::Write::write_all(&mut fs::File::from(f), b"inside");
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();

    let swaps = swaps.load(Ordering::Relaxed);
    assert!(swaps > 1000, "the racer swapped only {swaps} times");
    assert!(refused > 0, "no operation ever met the swapped link");
    assert_eq!(read_outside, 0, "read a file outside the root");
    assert_eq!(
        snapshot(&outside),
        before,
        "something outside the root changed"
    );
    eprintln!(
        "openat2 {openat2}: {ops} operations against {swaps} swaps, {refused} refused, 0 escapes"
    );
}
