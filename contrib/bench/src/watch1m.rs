//! The `watch1m` scenario (only with `--only watch1m`): twinsync live on a
//! pair of identical trees of 1,000,000 empty files in 10,000 directories;
//! its memory and inotify watches once live.
//!
//! Both trees come from the same generator (same names, sizes, modes, and
//! one fixed mtime for every file and directory), so they are identical
//! without sharing inodes. Once twinsync is live (a probe went each way,
//! within 10 minutes), the brain's and the agents' `VmRSS`/`VmHWM` are
//! read, and the watches each agent holds are counted (`inotify wd:` lines
//! of `/proc/PID/fdinfo/*`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{io_ctx, Failure, Res};
use crate::fsops::{self, TempRoot, TreeSpec};
use crate::procs::{self, Tool};
use crate::scenarios::{self, Resources};

/// The trees: 100 empty files in each of 10,000 directories.
pub const SPEC: TreeSpec = TreeSpec {
    dirs: 10_000,
    per_dir: 100,
    content: false,
    // 2020-09-13: any fixed time will do.
    mtime: Some(1_600_000_000),
};

/// Longest twinsync may take to become live.
const LIVE_LIMIT: Duration = Duration::from_secs(10 * 60);
/// Files whose inodes are checked for survival on each side.
const SAMPLE: usize = 1000;

/// Memory of one process, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Mem {
    fn of(pid: u32) -> Option<Mem> {
        Some(Mem {
            rss_kib: procs::status_kib(pid, "VmRSS")?,
            hwm_kib: procs::status_kib(pid, "VmHWM")?,
        })
    }
}

/// One agent once live.
#[derive(Debug, Clone, Copy)]
pub struct Agent {
    pub mem: Mem,
    /// inotify watches it holds; `None` if unreadable.
    pub watches: Option<usize>,
}

/// What the scenario measured.
#[derive(Debug, Clone)]
pub struct Watch1m {
    pub files: usize,
    pub dirs: usize,
    /// `fs.inotify.max_user_watches`, if readable.
    pub max_user_watches: Option<u64>,
    /// Generating both trees.
    pub generate_secs: f64,
    /// From start until a probe had gone both ways.
    pub live_secs: f64,
    pub brain: Mem,
    pub agents: Vec<Agent>,
    /// Idle CPU after going live (and the same peaks, in MiB).
    pub idle: Res<Resources>,
    /// Sampled files whose inode survived, (left, right), of `sampled`.
    pub inodes_kept: (usize, usize),
    pub sampled: usize,
    pub notes: Vec<String>,
}

impl Watch1m {
    /// Brain + agents, KiB, of `VmHWM` (`hwm`) or `VmRSS`.
    pub fn total_kib(&self, hwm: bool) -> u64 {
        let pick = |m: &Mem| if hwm { m.hwm_kib } else { m.rss_kib };
        pick(&self.brain) + self.agents.iter().map(|a| pick(&a.mem)).sum::<u64>()
    }
}

/// `fs.inotify.max_user_watches`.
fn max_user_watches() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The inodes of `SAMPLE` files spread over a tree made from `SPEC`.
fn sample_inodes(root: &Path, paths: &[PathBuf]) -> Res<Vec<u64>> {
    paths
        .iter()
        .map(|p| {
            let path = root.join(p);
            io_ctx(std::fs::symlink_metadata(&path), path.display()).map(|m| m.ino())
        })
        .collect()
}

/// How many of `before` are still the inodes at `paths`.
fn still_there(root: &Path, paths: &[PathBuf], before: &[u64]) -> usize {
    paths
        .iter()
        .zip(before)
        .filter(|(p, &ino)| std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.ino() == ino))
        .count()
}

/// The run: check the watch limit, generate both trees, start twinsync,
/// wait until live, read its memory and watches, stop it.
pub fn run(root: &TempRoot, tool: &Tool) -> Res<Watch1m> {
    let spec = SPEC;
    let mut notes = Vec::new();
    let max_watches = max_user_watches();
    // Each agent watches every directory, and the root.
    let needed = 2 * (spec.dirs as u64 + 1);
    match max_watches {
        Some(m) if m < needed => {
            let msg = format!(
                "fs.inotify.max_user_watches is {m}, below the {needed} the two agents need \
                 for {} directories each (sysctl -w fs.inotify.max_user_watches=…)",
                spec.dirs
            );
            eprintln!("[bench] watch1m: {msg}");
            notes.push(msg);
        }
        Some(_) => {}
        None => notes.push("cannot read fs.inotify.max_user_watches".into()),
    }
    let pair = root.pair("watch1m")?;
    eprintln!(
        "[bench] watch1m: generating 2 × {} empty files in {} directories ...",
        spec.files(),
        spec.dirs
    );
    let generate_secs = (fsops::make_tree(&pair.left, &spec)?
        + fsops::make_tree(&pair.right, &spec)?)
    .as_secs_f64();
    let step = (spec.files() / SAMPLE).max(1);
    let paths: Vec<PathBuf> = (0..spec.files())
        .step_by(step)
        .map(|i| spec.file_path(i))
        .collect();
    let (left_ino, right_ino) = (
        sample_inodes(&pair.left, &paths)?,
        sample_inodes(&pair.right, &paths)?,
    );
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };

    eprintln!("[bench] watch1m: starting twinsync, waiting until live ...");
    let mut running = tool.start(&pair)?;
    let log = running.log_path().to_path_buf();
    let since = std::time::Instant::now();
    let r = (|| {
        for (from, to, tag) in [
            (&pair.left, &pair.right, "lr"),
            (&pair.right, &pair.left, "rl"),
        ] {
            scenarios::wait_probe_within(from, to, tag, LIVE_LIMIT, || running.exited())
                .map_err(|f| running.explain(f))?;
        }
        let live_secs = since.elapsed().as_secs_f64();
        let brain_pid = running.pid();
        let brain = Mem::of(brain_pid)
            .ok_or_else(|| Failure::Other(format!("no memory figures for pid {brain_pid}")))?;
        let agents = procs::children_fast(brain_pid)
            .into_iter()
            .filter(|&p| procs::is_agent(p))
            .filter_map(|p| {
                Some(Agent {
                    mem: Mem::of(p)?,
                    watches: procs::inotify_watches(p),
                })
            })
            .collect();
        let idle = scenarios::resources(&mut running);
        if let Err(Failure::Interrupted) = idle {
            return Err(Failure::Interrupted);
        }
        Ok::<_, Failure>((live_secs, brain, agents, idle))
    })();
    drop(running);
    let (lines, total) = scenarios::log_trouble(&log, 5);
    if total > 0 {
        notes.push(format!(
            "{total} warning/error line(s) in {}: {}",
            log.display(),
            lines.join(" | ")
        ));
    }
    let (live_secs, brain, agents, idle) = r?;
    let inodes_kept = (
        still_there(&pair.left, &paths, &left_ino),
        still_there(&pair.right, &paths, &right_ino),
    );
    eprintln!("[bench] watch1m: removing the trees ...");
    drop(pair);
    Ok(Watch1m {
        files: spec.files(),
        dirs: spec.dirs,
        max_user_watches: max_watches,
        generate_secs,
        live_secs,
        brain,
        agents,
        idle,
        inodes_kept,
        sampled: paths.len(),
        notes,
    })
}
