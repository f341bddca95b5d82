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
