//! Content transfer: one rsync per batch and direction, fed the batch's
//! paths NUL-separated on stdin (`--files-from=- --from0`). rsync never
//! writes into the tree: it stages the files below the destination's
//! `.twinsync/stage/` (with the tree itself as the delta basis,
//! `--copy-dest`), and the destination's helper installs each one only if
//! the destination still holds the version the engine planned against
//! (compare-and-swap; see `execute.rs`). `--ignore-times`: a file the engine
//! decided to copy is always copied, even when its size and mtime equal
//! what is there (a `cp -p` restore, a same-mtime tie), which rsync's quick
//! check would skip.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use twinsync_proto::RelPath;

use crate::progress::Progress;

/// Lists of at least this many paths are split between two rsyncs run side
/// by side: rsync reads its list one byte per syscall, which otherwise makes a
/// first merge of a big tree half again slower than a plain `rsync -a`.
const SPLIT_MIN: usize = 10_000;

/// Like [`copy`], split between two concurrent rsyncs when the list is long.
/// The halves are disjoint; rsync's temporaries have unique names and
/// implied directories tolerate being made twice.
///
/// # Errors
/// When rsync cannot be started.
pub async fn copy_split(
    opts: &RsyncOptions,
    src: &End,
    dst: &End,
    paths: &[&RelPath],
    progress: Option<&Progress>,
) -> Result<RsyncOutcome> {
    if paths.len() < SPLIT_MIN {
        return copy(opts, src, dst, paths, progress).await;
    }
    let (a, b) = paths.split_at(paths.len() / 2);
    let (ra, rb) = tokio::join!(
        copy(opts, src, dst, a, progress),
        copy(opts, src, dst, b, progress)
    );
    let (mut ra, mut rb) = (ra?, rb?);
    let stderr = [ra.stderr.as_str(), rb.stderr.as_str()]
        .iter()
        .filter(|e| !e.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    let exit = match (ra.exit.take(), rb.exit.take()) {
        (None, None) => None,
        (ea, eb) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (ca, cb) = (ra.code, rb.code);
            tokio::spawn(async move {
                let (ca, sa) = match ea {
                    Some(e) => e.await.unwrap_or((None, String::new())),
                    None => (ca, String::new()),
                };
                let (cb, sb) = match eb {
                    Some(e) => e.await.unwrap_or((None, String::new())),
                    None => (cb, String::new()),
                };
                let _ = tx.send((worse(ca, cb), format!("{sa}{sb}")));
            });
            Some(rx)
        }
    };
    Ok(RsyncOutcome {
        code: worse(ra.code, rb.code),
        stderr,
        exit,
    })
}

/// The worse of two rsync exit codes (a failure over a partial transfer over
/// success).
fn worse(a: Option<i32>, b: Option<i32>) -> Option<i32> {
    let rank = |c: Option<i32>| match c {
        Some(0) => 0,
        Some(23 | 24) => 1,
        _ => 2,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

/// Lists of at least this many paths go to rsync through a file.
const LIST_FILE_MIN: usize = 1000;

/// How rsync is run.
#[derive(Debug, Clone)]
pub struct RsyncOptions {
    /// The rsync program.
    pub program: String,
    /// Extra arguments from the user (`-x/--rsync-extra`).
    pub extra: Vec<String>,
    /// Whether the program was found on `PATH`.
    pub available: bool,
    /// `--bwlimit`, bytes per second.
    pub bwlimit: Option<u64>,
}

impl Default for RsyncOptions {
    fn default() -> Self {
        RsyncOptions {
            program: "rsync".into(),
            extra: Vec::new(),
            available: true,
            bwlimit: None,
        }
    }
}

/// Whether `program` is an executable on `PATH` (or a path to one), by
/// the rule of which(1) that the tests share.
#[must_use]
pub fn on_path(program: &str) -> bool {
    which::which(program).is_ok()
}

/// What one rsync run said.
#[derive(Debug)]
pub struct RsyncOutcome {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard error.
    pub stderr: String,
    /// Set when rsync reported every file but has not exited yet: resolves
    /// to its final code and stderr.
    pub exit: Option<tokio::sync::oneshot::Receiver<(Option<i32>, String)>>,
}

impl RsyncOutcome {
    /// 0, or 23/24 (some files failed or vanished: the caller checks which).
    #[must_use]
    pub fn usable(&self) -> bool {
        matches!(self.code, Some(0 | 23 | 24))
    }
}

/// One end of a transfer: a local directory, or a directory on a remote
/// host reached through an existing ssh control socket.
#[derive(Debug, Clone)]
pub enum End {
    /// A local root.
    Local(std::path::PathBuf),
    /// `host:path` over the ssh connection whose control socket is `ctl`.
    Remote {
        /// `[user@]host`.
        host: String,
        /// The root on that host.
        path: std::path::PathBuf,
        /// The ssh control socket of the open connection.
        ctl: std::path::PathBuf,
        /// An ssh config file to use (`--ssh-config`).
        config: Option<std::path::PathBuf>,
        /// The twinsync binary on that host (`--remote-path`): it runs the
        /// rsync server there, confined to the root.
        program: String,
    },
}

impl End {
    fn arg(&self) -> std::ffi::OsString {
        let mut a = match self {
            End::Local(p) => p.as_os_str().to_owned(),
            End::Remote { host, path, .. } => {
                let mut a = std::ffi::OsString::from(format!("{host}:"));
                a.push(path);
                a
            }
        };
        a.push("/");
        a
    }
}

/// The staging folder of the local replica `root`, opened beneath it with
/// no symlink followed (an `O_PATH` descriptor, closed on exec).
fn open_stage(root: &Path) -> Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let root_fd: std::os::fd::OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)
        .with_context(|| format!("cannot open the replica root {}", root.display()))?
        .into();
    let rel = format!(
        "{}/{}",
        twinsync_filter::STATE_DIR,
        twinsync_helpers::STAGE_DIR
    );
    twinsync_helpers::beneath::open_dir(root_fd.as_fd(), rel.as_bytes()).with_context(|| {
        format!(
            "{}/{rel} is missing or not a plain directory (a symlink on the way is never \
             followed); restart twinsync, whose agent makes it again",
            root.display()
        )
    })
}

/// Quoted for a POSIX shell (the remote login shell reads rsync's remote
/// command line).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Warn once that rsync runs unconfined (a kernel without Landlock).
fn unconfined_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            "this kernel has no Landlock: rsync runs unconfined, and a replica's user who \
             swaps a directory for a symlink while a file is copied could make it read \
             outside the root (Linux >= 5.13 with Landlock enabled confines it)"
        );
    });
}

/// The Landlock jail of a local rsync: it reads beneath the local root (the
/// source, or the destination's delta basis), writes beneath the local
/// stage only, and reads the system's programs and libraries, the file
/// list, the ssh config and the rsync program.
fn jail_for(
    opts: &RsyncOptions,
    src: &End,
    dst: &End,
    stage: Option<&std::os::fd::OwnedFd>,
    list_file: Option<&Path>,
) -> Result<Option<twinsync_helpers::confine::Jail>> {
    use twinsync_helpers::confine::{Jail, Rooms};
    let mut roots = Vec::new();
    let mut read_paths: Vec<std::path::PathBuf> = Vec::new();
    for end in [src, dst] {
        match end {
            End::Local(root) => roots.push(
                twinsync_helpers::confine::PathFd::new(root)
                    .with_context(|| format!("cannot open the replica root {}", root.display()))?,
            ),
            End::Remote {
                config: Some(c), ..
            } => read_paths.push(c.clone()),
            End::Remote { .. } => {}
        }
    }
    if opts.program.contains('/') {
        read_paths.push(opts.program.clone().into());
    }
    read_paths.extend(list_file.map(Path::to_path_buf));
    let rooms = Rooms {
        read: roots.iter().map(std::os::fd::AsFd::as_fd).collect(),
        write: stage.iter().map(|s| s.as_fd()).collect(),
        read_paths: read_paths.iter().map(std::path::PathBuf::as_path).collect(),
    };
    let jail = Jail::new(&rooms).context("cannot build rsync's Landlock jail")?;
    if jail.is_none() {
        unconfined_once();
    }
    Ok(jail)
}

/// Copy `paths` from `src` to `dst` with one rsync. A remote end is reached
/// over the already-open ssh connection (its control socket), never a new
/// login. Each file rsync reports done advances `progress`.
///
/// # Errors
/// When rsync cannot be started.
pub async fn copy(
    opts: &RsyncOptions,
    src: &End,
    dst: &End,
    paths: &[&RelPath],
    progress: Option<&Progress>,
) -> Result<RsyncOutcome> {
    let src_arg = src.arg();
    // A local stage is handed to rsync as a descriptor opened beneath the
    // root, never through a symlink: a replica's user who swaps the root's
    // `.twinsync/` for a link cannot aim root's rsync at another place.
    let stage_fd = match dst {
        End::Local(root) => Some(open_stage(root)?),
        End::Remote { .. } => None,
    };
    let dst_arg = match &stage_fd {
        Some(fd) => std::ffi::OsString::from(format!("/proc/self/fd/{}/", fd.as_raw_fd())),
        None => {
            let mut a = dst.arg();
            a.push(format!(
                "{}/{}/",
                twinsync_filter::STATE_DIR,
                twinsync_helpers::STAGE_DIR
            ));
            a
        }
    };
    let remote = [src, dst].into_iter().find_map(|e| match e {
        End::Remote {
            ctl,
            config,
            program,
            path,
            ..
        } => Some((ctl, config, program, path)),
        End::Local(_) => None,
    });
    let mut list = Vec::with_capacity(paths.iter().map(|p| p.as_bytes().len() + 1).sum());
    for p in paths {
        list.extend_from_slice(p.as_bytes());
        list.push(0);
    }
    // rsync reads its list one byte per read(2); from a pipe it also waits
    // in select(2) before each. A long list goes through a file instead,
    // which halves those syscalls; a short one through the pipe (no file).
    let list_file = if paths.len() >= LIST_FILE_MIN {
        let f = tempfile::Builder::new()
            .prefix("twinsync-list")
            .tempfile()
            .context("creating rsync's file list")?;
        std::fs::write(f.path(), &list).context("writing rsync's file list")?;
        Some(f)
    } else {
        None
    };
    let files_from = match &list_file {
        Some(f) => {
            let mut a = std::ffi::OsString::from("--files-from=");
            a.push(f.path());
            a
        }
        None => "--files-from=-".into(),
    };
    let jail = jail_for(
        opts,
        src,
        dst,
        stage_fd.as_ref(),
        list_file.as_ref().map(tempfile::NamedTempFile::path),
    )?;
    let mut cmd = Command::new(&opts.program);
    if let Some((ctl, config, program, root)) = remote {
        // ssh's own argument parsing, not a shell, reads this; paths with
        // spaces in the control socket are avoided by construction. The
        // session goes through the open master connection, which was set up
        // with the user's config: this client reads none but `--ssh-config`
        // (the jail lets it read nothing else).
        let mut rsh = format!("ssh -o ControlMaster=no -S {}", ctl.display());
        match config {
            Some(c) => rsh.push_str(&format!(" -F {}", c.display())),
            None => rsh.push_str(" -F none"),
        }
        cmd.arg("-e").arg(rsh).arg("--protect-args");
        // The remote rsync server runs under twinsync there, in a Landlock
        // jail of the same shape (`twinsync rsync-server`; also what an
        // agent behind a forced command runs for an rsync request).
        let root = root.to_string_lossy();
        cmd.arg(format!(
            "--rsync-path={} rsync-server --root {} -- rsync",
            sh_quote(program),
            sh_quote(&root)
        ));
    }
    cmd.arg("-a")
        // Holes stay holes (a sparse image arrives sparse).
        .arg("--sparse")
        .arg("--numeric-ids")
        .arg(&files_from)
        .arg("--from0")
        .arg("--ignore-times")
        // Relative to the stage: the replica root, the delta basis.
        .arg("--copy-dest=../..")
        .arg("--out-format=%i")
        // rsync's unit: KiB/s (no suffix, which rsync before 3.1 reads not).
        .args(
            opts.bwlimit
                .map(|b| format!("--bwlimit={}", b.div_ceil(1024))),
        )
        .args(&opts.extra)
        .arg("--")
        .arg(src_arg)
        .arg(dst_arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Out of the terminal's process group: a Ctrl-C lets the batch in flight
    // finish instead of killing its copies.
    crate::link::own_group(&mut cmd);
    if let Some(fd) = &stage_fd {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl(2) is async-signal-safe, as required between fork
        // and exec; `raw` stays open in the parent until rsync has started.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(raw, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if let Some(j) = &jail {
        // SAFETY: two syscalls with integer arguments (see `Jail::pre_exec`);
        // the jail lives until the spawn below has returned.
        unsafe { cmd.pre_exec(j.pre_exec()) };
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}: is rsync installed?", opts.program))?;
    let mut stdin = child.stdin.take().expect("piped");
    let pipe_list = if list_file.is_some() {
        Vec::new()
    } else {
        list
    };
    tokio::spawn(async move {
        let _ = stdin.write_all(&pipe_list).await;
    });
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).trim().to_string()
    });
    // rsync reports each file (`%i`: `>f…`) as it finishes it, but its
    // processes linger for a few tens of ms before exiting (they poll for
    // each other in 20 ms sleeps). Once every file is reported, the caller
    // checks the destination itself and need not wait for the exit, which
    // is reaped in the background.
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut reported = 0usize;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with(">f") || line.starts_with("cL") {
            reported += 1;
            if let Some(p) = progress {
                p.add(1);
            }
            if reported == paths.len() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let code = child.wait().await.ok().and_then(|s| s.code());
                    // The list file lives until rsync is gone.
                    drop(list_file);
                    let stderr = stderr_task.await.unwrap_or_default();
                    let _ = tx.send((code, stderr));
                });
                return Ok(RsyncOutcome {
                    code: Some(0),
                    stderr: String::new(),
                    exit: Some(rx),
                });
            }
        }
    }
    let status = child.wait().await.context("waiting for rsync")?;
    drop(list_file);
    Ok(RsyncOutcome {
        code: status.code(),
        stderr: stderr_task.await.unwrap_or_default(),
        exit: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica's user who swaps the root's `.twinsync/` (or its stage)
    /// for a symlink cannot aim root's rsync elsewhere: the stage is never
    /// reached through a link.
    #[test]
    fn a_stage_reached_through_a_symlink_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (root, elsewhere) = (d.path().join("r"), d.path().join("elsewhere"));
        std::fs::create_dir_all(root.join(".twinsync/stage")).unwrap();
        std::fs::create_dir_all(elsewhere.join("stage")).unwrap();
        let fd = open_stage(&root).unwrap();
        let via = std::fs::canonicalize(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(
            via,
            std::fs::canonicalize(root.join(".twinsync/stage")).unwrap()
        );

        // .twinsync swapped for a link to a folder holding `stage/`.
        std::fs::rename(root.join(".twinsync"), root.join(".old")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join(".twinsync")).unwrap();
        assert!(open_stage(&root).is_err());
        // The stage itself a link.
        std::fs::remove_file(root.join(".twinsync")).unwrap();
        std::fs::create_dir(root.join(".twinsync")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("stage"), root.join(".twinsync/stage")).unwrap();
        assert!(open_stage(&root).is_err());
    }

    /// rsync resolves its source paths by name: a replica's user who swaps
    /// a directory for a link to a root-only place between plan and copy
    /// gets nothing out of root's rsync (its Landlock jail reads beneath the
    /// source root only), while the rest of the batch is copied.
    #[tokio::test]
    async fn rsync_reads_nothing_through_a_link_planted_in_the_source() {
        assert!(
            twinsync_helpers::confine::available(),
            "this kernel has no Landlock: rsync cannot be confined"
        );
        let d = tempfile::tempdir().unwrap();
        let (src, dst, outside) = (d.path().join("s"), d.path().join("d"), d.path().join("o"));
        std::fs::create_dir_all(dst.join(".twinsync/stage")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(outside.join("secret"), "root only").unwrap();
        std::fs::write(src.join("mine"), "data").unwrap();
        std::os::unix::fs::symlink(&outside, src.join("sub")).unwrap();
        let paths: Vec<RelPath> = vec!["mine".into(), "sub/secret".into()];
        let refs: Vec<&RelPath> = paths.iter().collect();
        let progress = Progress::new("copying", Some(2));
        let out = copy(
            &RsyncOptions::default(),
            &End::Local(src.clone()),
            &End::Local(dst.clone()),
            &refs,
            Some(&progress),
        )
        .await
        .unwrap();
        if let Some(exit) = out.exit {
            let _ = exit.await;
        }
        let stage = dst.join(".twinsync/stage");
        assert_eq!(std::fs::read(stage.join("mine")).unwrap(), b"data");
        assert!(!stage.join("sub/secret").exists());
        // Each file rsync reported done moved the progress.
        assert_eq!(progress.done(), 1);
    }
}
