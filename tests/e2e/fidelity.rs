//! Fidelity (issue 12): what a replica carries besides names and bytes.
//! Sparse files arrive with their holes, locally, over ssh and at a merge.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::harness::{eventually, Pair};
use crate::sshd::Sshd;

/// 256 MiB long, 1 MiB of data in two places.
const LEN: u64 = 256 << 20;

fn make_sparse(path: &Path) {
    let f = File::create(path).unwrap();
    f.set_len(LEN).unwrap();
    f.write_all_at(&[0x5a; 1 << 19], 3 << 20).unwrap();
    f.write_all_at(&[0xa5; 1 << 19], 200 << 20).unwrap();
    f.sync_all().unwrap();
}

/// Same length and data as [`make_sparse`] wrote, and few blocks allocated.
fn is_sparse_copy(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    let md = f.metadata().unwrap();
    if md.len() != LEN {
        return false;
    }
    let mut buf = vec![0u8; 1 << 19];
    let same = |at: u64, byte: u8, buf: &mut Vec<u8>| {
        f.read_exact_at(buf, at).is_ok() && buf.iter().all(|&b| b == byte)
    };
    same(3 << 20, 0x5a, &mut buf) && same(200 << 20, 0xa5, &mut buf) && same(100 << 20, 0, &mut buf)
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn check(p: &Pair, name: &str) {
    let dst = p.right.path(name);
    eventually(&format!("{} to arrive", dst.display()), || {
        is_sparse_copy(&dst)
    });
    assert!(
        allocated(&dst) <= 4 << 20,
        "{}: {} bytes allocated for 1 MiB of data",
        dst.display(),
        allocated(&dst)
    );
}

#[test]
fn a_sparse_file_arrives_sparse_live_and_at_a_merge() {
    let mut p = Pair::new();
    make_sparse(&p.left.path("before.img"));
    p.start(&[]);
    check(&p, "before.img");
    make_sparse(&p.left.path("live.img"));
    check(&p, "live.img");
}

#[test]
fn a_sparse_file_arrives_sparse_over_ssh() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    p.right_arg = Some(format!("{}:{}", sshd.host, p.right.root.display()));
    make_sparse(&p.left.path("before.img"));
    let cfg = sshd.ssh_config.display().to_string();
    p.start(&["--ssh-config", &cfg, "--remote-path", crate::harness::bin()]);
    check(&p, "before.img");
    make_sparse(&p.left.path("live.img"));
    check(&p, "live.img");
}

fn owner(path: &Path) -> Option<(u32, u32)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.uid(), m.gid()))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn eventually_owned(path: &Path, want: (u32, u32)) {
    eventually(&format!("{} owned by {want:?}", path.display()), || {
        owner(path) == Some(want)
    });
}

fn assert_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "owners can be carried by root only: run the suite as root (CI does)"
    );
}

/// Numeric owners and groups, of files, directories and symlinks: carried
/// at the first merge, then live both ways; a chown moves no content (the
/// destination keeps its inode).
fn owners_are_carried(p: &mut Pair, extra: &[&str]) {
    p.left.write("f", b"data");
    p.left.write("d/g", b"in d");
    std::os::unix::fs::symlink("f", p.left.path("l")).unwrap();
    chown(&p.left.path("f"), 1234, 2345);
    chown(&p.left.path("d"), 3456, 4567);
    chown(&p.left.path("l"), 5678, 6789);
    p.start(extra);
    eventually_owned(&p.right.path("f"), (1234, 2345));
    eventually_owned(&p.right.path("d"), (3456, 4567));
    eventually_owned(&p.right.path("l"), (5678, 6789));
    let ino = p.right.ino("f");
    chown(&p.left.path("f"), 1111, 2222);
    eventually_owned(&p.right.path("f"), (1111, 2222));
    assert_eq!(p.right.ino("f"), ino, "a chown sent the content again");
    chown(&p.right.path("d"), 3333, 4444);
    eventually_owned(&p.left.path("d"), (3333, 4444));
    p.right.write("d/new", b"made on the right");
    chown(&p.right.path("d/new"), 7777, 8888);
    p.left.eventually_has("d/new", b"made on the right");
    eventually_owned(&p.left.path("d/new"), (7777, 8888));
    p.eventually_equal();
}

#[test]
fn owners_and_groups_are_carried_locally() {
    assert_root();
    let mut p = Pair::new();
    owners_are_carried(&mut p, &[]);
}

#[test]
fn owners_and_groups_are_carried_over_ssh() {
    assert_root();
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    p.right_arg = Some(format!("{}:{}", sshd.host, p.right.root.display()));
    let cfg = sshd.ssh_config.display().to_string();
    owners_are_carried(
        &mut p,
        &["--ssh-config", &cfg, "--remote-path", crate::harness::bin()],
    );
}

fn mknod(path: &Path, kind: libc::mode_t, mode: libc::mode_t, dev: libc::dev_t) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), kind | mode, dev) },
        0,
        "mknod"
    );
}

/// Kind, device numbers, mode and owner of a special file.
fn special(path: &Path) -> Option<(u32, u64, u32, u32)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.mode(), m.rdev(), m.uid(), m.gid()))
}

/// Fifos and devices (as a container's `/dev` holds) are made on the other
/// side with `mknod` — never opened — at the first merge and live both
/// ways, with their device numbers, mode and owner; a removal travels too.
#[test]
fn fifos_and_devices_are_carried() {
    assert_root();
    let mut p = Pair::new();
    mknod(
        &p.left.path("null"),
        libc::S_IFCHR,
        0o666,
        libc::makedev(1, 3),
    );
    mknod(
        &p.left.path("loop9"),
        libc::S_IFBLK,
        0o660,
        libc::makedev(7, 9),
    );
    mknod(&p.left.path("pipe"), libc::S_IFIFO, 0o640, 0);
    chown(&p.left.path("loop9"), 0, 6);
    p.start(&[]);
    for name in ["null", "loop9", "pipe"] {
        let want = special(&p.left.path(name));
        eventually(&format!("{name} made on the right"), || {
            special(&p.right.path(name)) == want
        });
    }
    mknod(
        &p.right.path("zero"),
        libc::S_IFCHR,
        0o666,
        libc::makedev(1, 5),
    );
    mknod(&p.right.path("fifo2"), libc::S_IFIFO, 0o600, 0);
    for name in ["zero", "fifo2"] {
        let want = special(&p.right.path(name));
        eventually(&format!("{name} made on the left"), || {
            special(&p.left.path(name)) == want
        });
    }
    std::fs::remove_file(p.left.path("loop9")).unwrap();
    p.right.eventually_gone("loop9");
    std::fs::set_permissions(
        p.right.path("pipe"),
        std::os::unix::fs::PermissionsExt::from_mode(0o604),
    )
    .unwrap();
    eventually("the fifo's mode on the left", || {
        special(&p.left.path("pipe")).is_some_and(|s| s.0 & 0o7777 == 0o604)
    });
    p.eventually_equal();
    assert!(p.stop().success());
}
