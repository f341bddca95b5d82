//! The `sparse` scenario: a 1 GiB file holding 1 MiB of data (two runs of
//! 512 KiB, far apart) written on the left of a live pair; the time until
//! the right has it (its length and mtime, then checked by content), the
//! space it takes there (`st_blocks`), and over ssh about how many KiB
//! crossed the loopback. `rsync -aS` of the same file into an empty
//! directory, one way, beside it (locally, and over the same sshd). The
//! target: tens of milliseconds, and bytes about the data.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{io_ctx, Failure, Res};
use crate::fsops::{self, TempRoot, Wait};
use crate::procs::{self, Tool};
use crate::scenarios;

/// The file's length.
pub const LEN: u64 = 1 << 30;
/// Its data: two runs of this many bytes.
const RUN: usize = 512 << 10;
/// Where the runs start.
const AT: [u64; 2] = [3 << 20, 700 << 20];
/// Longest the file may take to arrive.
const LIMIT: Duration = Duration::from_secs(60);
/// The file's name.
const NAME: &str = "sparse.img";

/// One copy of the file.
#[derive(Debug, Clone)]
pub struct SparseRun {
    /// From the start of the write (twinsync) or of the command (rsync)
    /// until the file was complete on the right.
    pub secs: f64,
    /// Bytes the right's copy takes on disk.
    pub allocated: u64,
    /// Over ssh: KiB that crossed the loopback (both directions, ssh
    /// overhead included; noisy).
    pub net_kib: Option<f64>,
}

/// Everything the scenario measured.
#[derive(Debug)]
pub struct SparseBench {
    pub local: Res<SparseRun>,
    /// `None`: sshd not available (the reason is in the notes).
    pub ssh: Option<Res<SparseRun>>,
    /// `None`: rsync not installed.
    pub rsync_local: Option<Res<SparseRun>>,
    pub rsync_ssh: Option<Res<SparseRun>>,
    pub notes: Vec<String>,
}

/// Byte `i` of the data (never 0, so a hole is never taken for data).
fn byte(run: usize, i: usize) -> u8 {
    (((i * 31) ^ (run * 97)) % 251 + 1) as u8
}

/// Write the file at `path`: its length, then the two runs.
fn make(path: &Path) -> Res<()> {
    let f = io_ctx(File::create(path), path.display())?;
    io_ctx(f.set_len(LEN), path.display())?;
    for (run, &at) in AT.iter().enumerate() {
        let data: Vec<u8> = (0..RUN).map(|i| byte(run, i)).collect();
        io_ctx(f.write_all_at(&data, at), path.display())?;
    }
    Ok(())
}

/// Whether `path` holds what [`make`] wrote: the runs, a hole between.
fn check(path: &Path) -> Res<bool> {
    let f = io_ctx(File::open(path), path.display())?;
    if io_ctx(f.metadata(), path.display())?.len() != LEN {
        return Ok(false);
    }
    let mut buf = vec![0u8; RUN];
    for (run, &at) in AT.iter().enumerate() {
        io_ctx(f.read_exact_at(&mut buf, at), path.display())?;
        if buf.iter().enumerate().any(|(i, &b)| b != byte(run, i)) {
            return Ok(false);
        }
    }
    io_ctx(f.read_exact_at(&mut buf, 300 << 20), path.display())?;
    Ok(buf.iter().all(|&b| b == 0))
}

/// Whether `to` has the length and mtime of `from` (the copy is done).
fn arrived(from: &Path, to: &Path) -> bool {
    let (Ok(a), Ok(b)) = (fs::metadata(from), fs::metadata(to)) else {
        return false;
    };
    b.len() == LEN && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()
}

/// The right's copy, checked; its figures.
fn finish(to: &Path, took: Duration, net_kib: Option<f64>) -> Res<SparseRun> {
    if !check(to)? {
        return Err(Failure::Other(format!(
            "{} arrived with other bytes",
            to.display()
        )));
    }
    Ok(SparseRun {
        secs: took.as_secs_f64(),
        allocated: io_ctx(fs::metadata(to), to.display())?.blocks() * 512,
        net_kib,
    })
}

/// twinsync live on a fresh pair (over ssh when the tool says so): write
/// the file on the left once both ways are live, time its arrival.
fn twinsync(root: &TempRoot, tool: &Tool, slug: &str) -> Res<SparseRun> {
    let pair = root.pair(slug)?;
    let mut running = tool.start(&pair)?;
    let r = (|| {
        scenarios::wait_ready(&pair, true, None)?;
        let (from, to) = (pair.left.join(NAME), pair.right.join(NAME));
        let lo_before = scenarios::lo_tx_bytes();
        let since = Instant::now();
        make(&from)?;
        let took = fsops::poll_until(
            Wait {
                since,
                limit: LIMIT,
                every: Duration::from_millis(1),
            },
            || Ok(arrived(&from, &to)),
            || format!("{} never arrived", to.display()),
        )?;
        let net = match (tool.remote.is_some(), lo_before) {
            (true, Some(b)) => scenarios::loopback_kib(b, since)?,
            _ => None,
        };
        finish(&to, took, net)
    })()
    .map_err(|f| running.explain(f));
    drop(running);
    r
}

/// `rsync -aS` of the file into an empty right side (over ssh with
/// `remote`: `-e "ssh -F CONFIG"` to `HOST:`).
fn rsync(
    root: &TempRoot,
    bin: &Path,
    remote: Option<&procs::Remote>,
    slug: &str,
) -> Res<SparseRun> {
    let pair = root.pair(slug)?;
    let (from, to) = (pair.left.join(NAME), pair.right.join(NAME));
    make(&from)?;
    let mut cmd = Command::new(bin);
    cmd.arg("-aS");
    let mut dst = pair.right.clone().into_os_string();
    dst.push("/");
    if let Some(r) = remote {
        cmd.arg("-e")
            .arg(format!("ssh -F {}", r.client_config.display()));
        let mut d = std::ffi::OsString::from(format!("{}:", r.host));
        d.push(dst);
        dst = d;
    }
    cmd.arg(&from).arg(dst);
    let lo_before = scenarios::lo_tx_bytes();
    let since = Instant::now();
    let t = procs::run_timed(&mut cmd, "rsync -aS", &pair.dir.join("rsync.log"), LIMIT)?;
    let net = match (remote.is_some(), lo_before) {
        (true, Some(b)) => scenarios::loopback_kib(b, since)?,
        _ => None,
    };
    finish(&to, Duration::from_secs_f64(t.secs), net)
}

/// Keep a result, except an interruption, which ends the scenario.
fn keep<T>(r: Res<T>) -> Res<Res<T>> {
    match r {
        Err(Failure::Interrupted) => Err(Failure::Interrupted),
        r => Ok(r),
    }
}

/// The runs: twinsync locally, then over ssh (`ssh`: the tool reaching
/// the right side through the bench's sshd, or why there is none), and
/// rsync beside each.
pub fn run(root: &TempRoot, tool: &Tool, ssh: Result<&Tool, String>) -> Res<SparseBench> {
    let mut notes = Vec::new();
    eprintln!("[bench] sparse: twinsync locally ...");
    let local = keep(twinsync(root, tool, "twinsync-sparse"))?;
    let rsync_bin = twinsync_testkit::tools::find_in_path("rsync");
    if rsync_bin.is_none() {
        notes.push("rsync not installed: no rsync -aS figures".into());
    }
    let rsync_local = match &rsync_bin {
        Some(bin) => {
            eprintln!("[bench] sparse: rsync -aS locally ...");
            Some(keep(rsync(root, bin, None, "rsync-sparse"))?)
        }
        None => None,
    };
    let (ssh_run, rsync_ssh) = match ssh {
        Ok(t) => {
            eprintln!("[bench] sparse: twinsync over ssh ...");
            let s = keep(twinsync(root, t, "twinsync-ssh-sparse"))?;
            let r = match (&rsync_bin, &t.remote) {
                (Some(bin), Some(remote)) => {
                    eprintln!("[bench] sparse: rsync -aS over ssh ...");
                    Some(keep(rsync(root, bin, Some(remote), "rsync-ssh-sparse"))?)
                }
                _ => None,
            };
            (Some(s), r)
        }
        Err(why) => {
            notes.push(format!("no ssh figures: {why}"));
            (None, None)
        }
    };
    Ok(SparseBench {
        local,
        ssh: ssh_run,
        rsync_local,
        rsync_ssh,
        notes,
    })
}
