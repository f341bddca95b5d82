//! A real root file system (issue 12): a small Debian root unpacked from
//! real packages (`apt-get download`, `dpkg-deb -x`), with what a
//! container's root holds besides (device nodes, a fifo, a file capability,
//! ACLs, extended attributes in several namespaces, odd numeric owners,
//! hard-link groups, a sparse disk image), replicated by `--sync-only` and
//! then live under attribute and content churn on both sides. Afterwards
//! `rsync -aHAXS --numeric-ids --checksum --dry-run --itemize-changes`
//! finds nothing to change either way, and the image takes the same space
//! on both sides. Locally and over ssh.
//!
//! The roots themselves are left out of the rsync comparison: the left's
//! index (`.twinsync/`) is written below its root after the last entry, and
//! `.twinsync/` itself differs (excluded).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fidelity::rsync_differences;
use crate::harness::{eventually_within, run_once, Pair};
use crate::sshd::Sshd;

/// Real packages: a shell, the core tools, zone data (many small files and
/// symlinks), ping (whose postinst gives it `cap_net_raw+ep`).
const PACKAGES: &[&str] = &[
    "base-files",
    "dash",
    "coreutils",
    "sed",
    "grep",
    "tzdata",
    "iputils-ping",
];

/// The sparse disk image: 64 MiB long, 1 MiB of data.
const IMAGE: &str = "var/lib/machines/disk.img";

fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): CI installs it (see .ci/run)"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `script` run by `sh -e` in `dir`.
fn sh(dir: &Path, script: &str) {
    run(
        &format!("sh -e in {}: {script}", dir.display()),
        Command::new("sh").arg("-ec").arg(script).current_dir(dir),
    );
}

/// Unpack the packages into `root` and add what a container's root holds.
fn debian_root(debs: &Path, root: &Path) {
    std::fs::create_dir_all(debs).unwrap();
    run(
        "apt-get download (apt and the Debian archive)",
        Command::new("apt-get")
            .arg("download")
            .args(PACKAGES)
            .current_dir(debs),
    );
    for deb in std::fs::read_dir(debs).unwrap() {
        run(
            "dpkg-deb -x",
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb.unwrap().path())
                .arg(root),
        );
    }
    sh(
        root,
        "mkdir -p dev run var/log var/lib/machines etc/app
         mknod -m 666 dev/null c 1 3
         mknod -m 666 dev/zero c 1 5
         mknod -m 660 dev/loop0 b 7 0
         chown 0:6 dev/loop0
         mkfifo -m 600 run/initctl
         setcap cap_net_raw+ep bin/ping
         setfacl -m u:nobody:r-x,g:adm:r-x var/log
         setfacl -d -m g:adm:r-x var/log
         setfacl -m u:nobody:r etc/app
         setfattr -n user.origin -v debian etc/debian_version
         setfattr -n trusted.overlay.opaque -v y etc/app
         setfattr -n security.selinux -v system_u:object_r:etc_t:s0 etc/issue
         chown -R 100:101 var/lib/machines
         chown 65534:65534 etc/app
         ln usr/share/zoneinfo/Europe/Paris usr/share/zoneinfo/Europe/Monaco-hl
         ln usr/share/zoneinfo/Europe/Paris etc/localtime-hl
         ln bin/dash bin/sh-hl
         truncate -s 64M var/lib/machines/disk.img
         dd if=/dev/urandom of=var/lib/machines/disk.img bs=64K count=8 seek=16 conv=notrunc status=none
         dd if=/dev/urandom of=var/lib/machines/disk.img bs=64K count=8 seek=800 conv=notrunc status=none",
    );
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn same(p: &Pair) -> bool {
    rsync_differences(&p.left.root, &p.right.root).is_empty()
        && rsync_differences(&p.right.root, &p.left.root).is_empty()
        && allocated(&p.left.path(IMAGE)) == allocated(&p.right.path(IMAGE))
}

fn assert_same(p: &Pair, when: &str) {
    let l = rsync_differences(&p.left.root, &p.right.root);
    let r = rsync_differences(&p.right.root, &p.left.root);
    assert!(
        l.is_empty() && r.is_empty(),
        "{when}: left -> right {l:#?}, right -> left {r:#?}"
    );
    assert_eq!(
        allocated(&p.left.path(IMAGE)),
        allocated(&p.right.path(IMAGE)),
        "{when}: the image's allocation"
    );
    assert!(
        allocated(&p.right.path(IMAGE)) < 8 << 20,
        "{when}: the image's holes"
    );
}

/// The whole test; `remote` names the right replica for twinsync (a local
/// path, or `host:path`), `extra` its ssh options.
fn root_filesystem(p: &mut Pair, remote: &OsStr, extra: &[&str]) {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "run the suite as root (CI does)"
    );
    let debs = p.dir.path().join("debs");
    debian_root(&debs, &p.left.root);
    let mut args: Vec<&OsStr> = vec![OsStr::new("--sync-only")];
    args.extend(extra.iter().map(OsStr::new));
    args.push(p.left.root.as_os_str());
    args.push(remote);
    let (st, err) = run_once(&args);
    assert!(st.success(), "{err}");
    assert_same(p, "after --sync-only");

    p.start(extra);
    let (l, r) = (p.left.root.clone(), p.right.root.clone());
    sh(
        &l,
        "chown 1234:1234 usr/share/doc/dash/copyright
         chmod 600 etc/issue.net
         setfattr -n user.churn -v 1 bin/dash
         setfacl -m u:nobody:rw usr/lib/os-release
         touch -d @1000000000 etc/debian_version
         printf 'more' >> usr/share/zoneinfo/Europe/Paris
         mkdir -p var/log/app
         echo started > var/log/app/log
         ln var/log/app/log var/log/app/log.1
         rm bin/sh-hl
         mv usr/share/zoneinfo/Europe/Monaco-hl usr/share/zoneinfo/Monaco-hl",
    );
    sh(
        &r,
        "chmod 4755 bin/grep
         setcap cap_net_admin+ep bin/ls
         setfattr -n trusted.churn -v 2 etc/app
         chown 0:4 var/log
         rm dev/zero
         mkfifo run/new.fifo
         dd if=/dev/urandom of=var/lib/machines/disk.img bs=64K count=4 seek=400 conv=notrunc status=none
         echo 'hello' > etc/motd-new",
    );
    eventually_within(
        Duration::from_secs(40),
        "the replicas to agree (rsync -aHAXS, du)",
        || same(p),
    );
    assert_same(p, "after the live churn");
    // What was removed or moved stays so (nothing came back).
    for gone in [
        "bin/sh-hl",
        "dev/zero",
        "usr/share/zoneinfo/Europe/Monaco-hl",
    ] {
        assert!(!p.left.exists(gone), "{gone} came back");
    }
    assert_eq!(
        std::fs::metadata(p.right.path("var/log"))
            .map(|m| (m.uid(), m.gid()))
            .unwrap(),
        (0, 4),
        "the right's chown of var/log"
    );
    assert!(p.stop().success());
    // No conflict (nobody changed the same thing on both sides) and nothing
    // the live sync missed (the verification's repairs).
    let log = p.log_text();
    assert!(
        !log.contains("conflict") && !log.contains("verification found differences"),
        "a conflict or a repair:\n{}",
        log.lines()
            .filter(|l| l.contains("conflict")
                || l.contains("verification")
                || l.contains("repair"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_debian_root_filesystem_is_replicated_exactly_locally() {
    let mut p = Pair::new();
    let right = p.right.root.clone();
    root_filesystem(&mut p, right.as_os_str(), &[]);
}

#[test]
fn a_debian_root_filesystem_is_replicated_exactly_over_ssh() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    let right = p.remote_right(&sshd);
    let cfg = sshd.ssh_config.display().to_string();
    root_filesystem(
        &mut p,
        OsStr::new(&right),
        &["--ssh-config", &cfg, "--remote-path", crate::harness::bin()],
    );
}
