//! The `delta-ssh` scenario: a file of real data (1 GiB unless
//! `--delta-mib` says otherwise) copied over ssh, then 1 MiB in its middle
//! rewritten in place; the time until the right has the update (its length
//! and mtime, then every byte checked) and about how many KiB crossed the
//! loopback meanwhile. twinsync live (the right agent under the bench's
//! sshd) beside `rsync -a` over the same sshd doing the same update, one
//! way. rsync's delta transfer should send about the changed blocks.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{arrived, check_same, keep, write_random};
use crate::error::{io_ctx, Failure, Res};
use crate::fsops::{self, TempRoot, Wait};
use crate::procs::{self, Tool};
use crate::scenarios;

/// What is rewritten in the middle.
pub const CHANGED: u64 = 1 << 20;
/// The file's name.
const NAME: &str = "big.img";
/// Seeds of the first version and of the rewritten middle.
const SEED: [u64; 2] = [0x16, 0x61];

/// One update of the file.
#[derive(Debug, Clone)]
pub struct DeltaRun {
    /// The first copy, not part of the figure: until the right had it.
    pub copy_secs: f64,
    /// From the rewrite (twinsync) or the command's start (rsync) until
    /// the right had the update.
    pub secs: f64,
    /// KiB that crossed the loopback for the update (both directions, ssh
    /// overhead included; noisy).
    pub net_kib: Option<f64>,
}

/// Everything the scenario measured.
#[derive(Debug)]
pub struct DeltaBench {
    /// The file's length.
    pub len: u64,
    pub twinsync: Res<DeltaRun>,
    /// `None`: rsync not installed (the note says so).
    pub rsync: Option<Res<DeltaRun>>,
    pub notes: Vec<String>,
}

/// How long a copy may take: 60 s, plus 10 s a GiB for the first copy.
fn limit(len: u64) -> Duration {
    Duration::from_secs(60 + 10 * (len >> 30))
}

/// Write the first version of the file at `path`.
fn make(path: &Path, len: u64) -> Res<()> {
    let f = io_ctx(File::create(path), path.display())?;
    write_random(&f, path, SEED[0], 0, len)
}

/// Rewrite [`CHANGED`] bytes in the middle of `path`, in place.
fn rewrite_middle(path: &Path, len: u64) -> Res<()> {
    let f = io_ctx(OpenOptions::new().write(true).open(path), path.display())?;
    let at = (len / 2).saturating_sub(CHANGED / 2);
    write_random(&f, path, SEED[1], at, CHANGED.min(len))
}

/// Wait until `to` has `from`'s length and mtime; the time since `since`.
fn wait_arrived(from: &Path, to: &Path, since: Instant, limit: Duration) -> Res<Duration> {
    fsops::poll_until(
        Wait {
            since,
            limit,
            every: Duration::from_millis(2),
        },
        || Ok(arrived(from, to)),
        || format!("{} never caught up with the left", to.display()),
    )
}

/// twinsync live over ssh: the file is on the left before it starts (its
/// first sync copies it), then rewritten.
fn twinsync(root: &TempRoot, tool: &Tool, len: u64) -> Res<DeltaRun> {
    let pair = root.pair("twinsync-delta-ssh")?;
    let (from, to) = (pair.left.join(NAME), pair.right.join(NAME));
    make(&from, len)?;
    let started = Instant::now();
    let mut running = tool.start(&pair)?;
    let r = (|| {
        scenarios::wait_ready(&pair, true, Some(limit(len)))?;
        let copy = wait_arrived(&from, &to, started, limit(len))?;
        let lo_before = scenarios::lo_tx_bytes();
        let since = Instant::now();
        rewrite_middle(&from, len)?;
        let took = wait_arrived(&from, &to, since, limit(0))?;
        let net_kib = match lo_before {
            Some(b) => scenarios::loopback_kib(b, since)?,
            None => None,
        };
        check_same(&from, &to)?;
        Ok(DeltaRun {
            copy_secs: copy.as_secs_f64(),
            secs: took.as_secs_f64(),
            net_kib,
        })
    })()
    .map_err(|f| running.explain(f));
    drop(running);
    r
}

/// `rsync -a -e "ssh -F CONFIG" L/ HOST:R/`: once for the first copy, once
/// (timed) after the rewrite.
fn rsync(root: &TempRoot, bin: &Path, remote: &procs::Remote, len: u64) -> Res<DeltaRun> {
    let pair = root.pair("rsync-delta-ssh")?;
    let (from, to) = (pair.left.join(NAME), pair.right.join(NAME));
    make(&from, len)?;
    let mut src = pair.left.clone().into_os_string();
    src.push("/");
    let mut dst = std::ffi::OsString::from(format!("{}:", remote.host));
    dst.push(&pair.right);
    dst.push("/");
    let command = || {
        let mut cmd = Command::new(bin);
        cmd.arg("-a")
            .arg("-e")
            .arg(format!("ssh -F {}", remote.client_config.display()))
            .arg(&src)
            .arg(&dst);
        cmd
    };
    let log = pair.dir.join("rsync.log");
    let copy = procs::run_timed(&mut command(), "rsync -a", &log, limit(len))?;
    rewrite_middle(&from, len)?;
    let lo_before = scenarios::lo_tx_bytes();
    let since = Instant::now();
    let t = procs::run_timed(&mut command(), "rsync -a", &log, limit(0))?;
    let net_kib = match lo_before {
        Some(b) => scenarios::loopback_kib(b, since)?,
        None => None,
    };
    if !arrived(&from, &to) {
        return Err(Failure::Other(format!(
            "rsync left {} without the left's length and mtime",
            to.display()
        )));
    }
    check_same(&from, &to)?;
    Ok(DeltaRun {
        copy_secs: copy.secs,
        secs: t.secs,
        net_kib,
    })
}

/// The runs: twinsync over ssh (`ssh`: twinsync reaching the right side
/// through the bench's sshd, or why there is none), then rsync.
pub fn run(root: &TempRoot, ssh: Result<&Tool, String>, len: u64) -> Res<DeltaBench> {
    let tool = ssh.map_err(|why| Failure::Other(format!("delta-ssh needs ssh: {why}")))?;
    let mut notes = Vec::new();
    eprintln!("[bench] delta-ssh: twinsync ({} MiB) ...", len >> 20);
    let twinsync = keep(twinsync(root, tool, len))?;
    let rsync = match (twinsync_testkit::tools::find_in_path("rsync"), &tool.remote) {
        (Some(bin), Some(remote)) => {
            eprintln!("[bench] delta-ssh: rsync -a ...");
            Some(keep(rsync(root, &bin, remote, len))?)
        }
        _ => {
            notes.push("rsync not installed: no rsync -a figures".into());
            None
        }
    };
    Ok(DeltaBench {
        len,
        twinsync,
        rsync,
        notes,
    })
}
