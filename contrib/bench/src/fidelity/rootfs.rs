//! The `rootfs-merge` scenario: the first merge of a Debian root file
//! system into an empty right side, `twinsync --sync-only` beside
//! `rsync -aHAXS --numeric-ids` one way (the target: ≤ 1.2× rsync's
//! time), then what `rsync -aHAXS --checksum --dry-run --itemize-changes`
//! still finds after twinsync, both ways (the target: nothing).
//!
//! The tree is what `tests/e2e/rootfs.rs` builds, on a larger set of
//! packages (about a `debootstrap --variant=minbase`): real Debian
//! packages fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x`, plus what a container's root holds besides — device
//! nodes, a fifo, a file capability, ACLs, extended attributes in several
//! namespaces, odd numeric owners, hard-link groups, a sparse disk image.
//! Without apt (or its archive), a synthetic tree of as many small files
//! in as many directories stands in, with the same extras (its note says
//! so). Needs root (devices, owners, `security.*`). Generated once, then
//! `cp -a` into each tool's left side (not timed); page cache warmed and
//! writes flushed before each run, as in the merge scenario.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{is_root, rsync_differences, sh};
use crate::error::{io_ctx, Failure, Res};
use crate::fsops::{self, TempRoot};
use crate::merge::{self, TwinsyncMerge};
use crate::procs::{self, Timed};

/// About the packages of `debootstrap --variant=minbase bookworm`.
const PACKAGES: &[&str] = &[
    "base-files",
    "base-passwd",
    "bash",
    "coreutils",
    "dash",
    "debconf",
    "debianutils",
    "diffutils",
    "dpkg",
    "findutils",
    "grep",
    "gzip",
    "hostname",
    "init-system-helpers",
    "iputils-ping",
    "libc-bin",
    "libc6",
    "login",
    "mawk",
    "ncurses-base",
    "ncurses-bin",
    "passwd",
    "perl-base",
    "sed",
    "sysvinit-utils",
    "tar",
    "tzdata",
    "util-linux",
    "zlib1g",
];

/// The synthetic stand-in: this many directories of this many files.
const SYNTHETIC: (usize, usize) = (300, 20);

/// What a container's root holds besides its packages (run in the root).
const EXTRAS: &str = "mkdir -p dev run var/log var/lib/machines etc/app bin usr/share/zoneinfo/Europe
     mknod -m 666 dev/null c 1 3
     mknod -m 666 dev/zero c 1 5
     mknod -m 666 dev/random c 1 8
     mknod -m 666 dev/urandom c 1 9
     mknod -m 666 dev/tty c 5 0
     mknod -m 660 dev/loop0 b 7 0
     chown 0:6 dev/loop0
     mkfifo -m 600 run/initctl
     [ -e bin/ping ] || cp /bin/true bin/ping
     setcap cap_net_raw+ep bin/ping
     setfacl -m u:nobody:r-x,g:adm:r-x var/log
     setfacl -d -m g:adm:r-x var/log
     setfacl -m u:nobody:r etc/app
     touch etc/debian_version etc/issue
     setfattr -n user.origin -v debian etc/debian_version
     setfattr -n trusted.overlay.opaque -v y etc/app
     setfattr -n security.selinux -v system_u:object_r:etc_t:s0 etc/issue
     chown -R 100:101 var/lib/machines
     chown 65534:65534 etc/app
     [ -e usr/share/zoneinfo/Europe/Paris ] || echo paris > usr/share/zoneinfo/Europe/Paris
     ln usr/share/zoneinfo/Europe/Paris usr/share/zoneinfo/Europe/Monaco-hl
     ln usr/share/zoneinfo/Europe/Paris etc/localtime-hl
     [ -e bin/dash ] || cp /bin/true bin/dash
     ln bin/dash bin/sh-hl
     truncate -s 64M var/lib/machines/disk.img
     dd if=/dev/urandom of=var/lib/machines/disk.img bs=64K count=8 seek=16 conv=notrunc status=none
     dd if=/dev/urandom of=var/lib/machines/disk.img bs=64K count=8 seek=800 conv=notrunc status=none";

/// Longest one tool may take.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// Everything the scenario measured.
#[derive(Debug)]
pub struct RootfsBench {
    /// What the tree was made of ("29 Debian packages", or the synthetic
    /// stand-in).
    pub source: String,
    /// Entries in the tree (files, directories, links, nodes).
    pub entries: usize,
    /// `rsync -aHAXS --numeric-ids L/ R/`; `None`: not installed.
    pub rsync: Option<Res<Timed>>,
    pub twinsync: Res<TwinsyncMerge>,
    /// What rsync still finds after twinsync's merge: left to right, right
    /// to left (lines of `--itemize-changes`).
    pub differences: Option<Res<[Vec<String>; 2]>>,
    pub notes: Vec<String>,
}

impl RootfsBench {
    /// twinsync's time over rsync's.
    pub fn ratio(&self) -> Option<f64> {
        let r = self.rsync.as_ref()?.as_ref().ok()?;
        let t = self.twinsync.as_ref().ok()?;
        (r.secs > 0.0).then(|| t.run.secs / r.secs)
    }
}

/// Unpack real packages into `root`; `Err` says why they are not there.
fn debian(debs: &Path, root: &Path) -> Res<()> {
    fsops::mkdir(debs)?;
    let out = io_ctx(
        Command::new("apt-get")
            .arg("download")
            .args(PACKAGES)
            .current_dir(debs)
            .output(),
        "apt-get download",
    )?;
    if !out.status.success() {
        return Err(Failure::Other(format!(
            "apt-get download: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    for deb in io_ctx(std::fs::read_dir(debs), debs.display())? {
        let deb = io_ctx(deb, debs.display())?.path();
        merge::helper(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root),
            &format!("dpkg-deb -x {}", deb.display()),
        )?;
    }
    Ok(())
}

/// The stand-in tree: small files in directories, a few symlinks.
fn synthetic(root: &Path) -> Res<()> {
    let (dirs, per_dir) = SYNTHETIC;
    for d in 0..dirs {
        let dir = root.join(format!("usr/share/s{:02}/d{d:03}", d % 17));
        io_ctx(std::fs::create_dir_all(&dir), dir.display())?;
        for f in 0..per_dir {
            let i = d * per_dir + f;
            fsops::write(
                &dir.join(format!("f{f:02}")),
                &fsops::pseudo_random(i as u64, 64 + (i * 131) % 8000),
            )?;
        }
        io_ctx(
            std::os::unix::fs::symlink("f00", dir.join("link")),
            dir.display(),
        )?;
    }
    Ok(())
}

/// Entries below `root`, the root itself not counted.
fn count(root: &Path) -> Res<usize> {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in io_ctx(std::fs::read_dir(&d), d.display())? {
            let e = io_ctx(e, d.display())?;
            n += 1;
            if io_ctx(e.file_type(), e.path().display())?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(n)
}

/// Keep a result, except an interruption, which ends the scenario.
fn keep<T>(r: Res<T>) -> Res<Res<T>> {
    match r {
        Err(Failure::Interrupted) => Err(Failure::Interrupted),
        r => Ok(r),
    }
}

/// Build the tree, copy it for each tool, run rsync then twinsync, compare.
pub fn run(root: &TempRoot, twinsync: &Path) -> Res<RootfsBench> {
    if !is_root() {
        return Err(Failure::Other(
            "needs root (device nodes, owners, security.* attributes)".into(),
        ));
    }
    let mut notes = Vec::new();
    let pristine = root.path().join("rootfs-pristine");
    fsops::mkdir(&pristine)?;
    eprintln!("[bench] rootfs-merge: fetching and unpacking Debian packages ...");
    let source = match debian(&root.path().join("rootfs-debs"), &pristine) {
        Ok(()) => format!("{} Debian packages", PACKAGES.len()),
        Err(Failure::Interrupted) => return Err(Failure::Interrupted),
        Err(f) => {
            notes.push(format!(
                "no Debian packages ({f}): a synthetic tree of {} × {} files stands in",
                SYNTHETIC.0, SYNTHETIC.1
            ));
            synthetic(&pristine)?;
            "synthetic tree".to_string()
        }
    };
    sh(&pristine, EXTRAS)?;
    let entries = count(&pristine)?;
    let rsync_bin = twinsync_testkit::tools::find_in_path("rsync");
    let mut lefts = Vec::new();
    for tool in ["rsync", "twinsync"] {
        let pair = root.pair(&format!("rootfs-{tool}"))?;
        let mut src = pristine.clone().into_os_string();
        src.push("/.");
        merge::helper(
            Command::new("cp").arg("-a").arg(src).arg(&pair.left),
            &format!("cp -a {} {}", pristine.display(), pair.left.display()),
        )?;
        lefts.push(pair);
    }
    let mut find = Command::new("find");
    find.arg(&pristine);
    for p in &lefts {
        find.arg(&p.left);
    }
    merge::helper(&mut find, "find (warm-up)")?;
    let (rsync_pair, tw_pair) = (&lefts[0], &lefts[1]);
    let rsync = match &rsync_bin {
        Some(bin) => {
            eprintln!("[bench] rootfs-merge: rsync -aHAXS --numeric-ids ...");
            merge::sync_all();
            let mut src = rsync_pair.left.clone().into_os_string();
            src.push("/");
            let mut dst = rsync_pair.right.clone().into_os_string();
            dst.push("/");
            let mut cmd = Command::new(bin);
            cmd.args(["-aHAXS", "--numeric-ids"]).arg(src).arg(dst);
            Some(keep(procs::run_timed(
                &mut cmd,
                "rsync -aHAXS",
                &rsync_pair.dir.join("rsync.log"),
                RUN_LIMIT,
            ))?)
        }
        None => {
            notes.push("rsync not installed: no rsync figure, no comparison".into());
            None
        }
    };
    eprintln!("[bench] rootfs-merge: twinsync --sync-only ...");
    merge::sync_all();
    let twinsync = keep(merge::run_twinsync(
        twinsync,
        tw_pair,
        "twinsync.log",
        &mut notes,
    ))?;
    let differences = match (&rsync_bin, &twinsync) {
        (Some(bin), Ok(_)) => Some(keep((|| {
            Ok([
                rsync_differences(bin, &tw_pair.left, &tw_pair.right)?,
                rsync_differences(bin, &tw_pair.right, &tw_pair.left)?,
            ])
        })())?),
        _ => None,
    };
    Ok(RootfsBench {
        source,
        entries,
        rsync,
        twinsync,
        differences,
        notes,
    })
}
