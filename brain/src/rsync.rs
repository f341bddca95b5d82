//! Content transfer: one rsync per batch and direction, fed the batch's
//! paths NUL-separated on stdin (`--files-from=- --from0`). rsync writes into
//! a temp dir under the destination's `.twinsync/` and renames into place, so
//! its temporaries never appear in the tree; a file it overwrites is kept in
//! the destination's trash (`--backup-dir`, a hard link: no data copied).

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use twinsync_proto::RelPath;

/// How rsync is run.
#[derive(Debug, Clone)]
pub struct RsyncOptions {
    /// The rsync program.
    pub program: String,
    /// Extra arguments from the user (`-x/--rsync-extra`).
    pub extra: Vec<String>,
}

impl Default for RsyncOptions {
    fn default() -> Self {
        RsyncOptions {
            program: "rsync".into(),
            extra: Vec::new(),
        }
    }
}

/// What one rsync run said.
#[derive(Debug)]
pub struct RsyncOutcome {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard error.
    pub stderr: String,
}

impl RsyncOutcome {
    /// 0, or 23/24 (some files failed or vanished: the caller checks which).
    #[must_use]
    pub fn usable(&self) -> bool {
        matches!(self.code, Some(0 | 23 | 24))
    }
}

/// Copy `paths` from `src_root` to `dst_root` (both local directories).
///
/// # Errors
/// When rsync cannot be started.
pub async fn copy(
    opts: &RsyncOptions,
    src_root: &Path,
    dst_root: &Path,
    paths: &[RelPath],
) -> Result<RsyncOutcome> {
    let state = dst_root.join(twinsync_filter::STATE_DIR);
    let (y, m, d, hh, mm, ss) = twinsync_helpers::time::civil(twinsync_helpers::time::now_secs());
    let mut temp_dir = std::ffi::OsString::from("--temp-dir=");
    temp_dir.push(state.join("tmp"));
    let mut backup_dir = std::ffi::OsString::from("--backup-dir=");
    backup_dir.push(state.join("trash").join(format!("{y:04}-{m:02}-{d:02}")));
    let mut src = src_root.as_os_str().to_owned();
    src.push("/");
    let mut dst = dst_root.as_os_str().to_owned();
    dst.push("/");
    let mut cmd = Command::new(&opts.program);
    cmd.arg("-a")
        .arg("--numeric-ids")
        .arg("--files-from=-")
        .arg("--from0")
        .arg(temp_dir)
        .arg("--backup")
        .arg(backup_dir)
        .arg(format!("--suffix=.{hh:02}{mm:02}{ss:02}"))
        .args(&opts.extra)
        .arg("--")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}: is rsync installed?", opts.program))?;
    let mut list = Vec::with_capacity(paths.iter().map(|p| p.as_bytes().len() + 1).sum());
    for p in paths {
        list.extend_from_slice(p.as_bytes());
        list.push(0);
    }
    let mut stdin = child.stdin.take().expect("piped");
    let writer = async move {
        let _ = stdin.write_all(&list).await;
        drop(stdin);
    };
    let (_, out) = tokio::join!(writer, child.wait_with_output());
    let out = out.context("waiting for rsync")?;
    Ok(RsyncOutcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}
