//! The campaign's black-box harness: the real `twinsync` binary driven
//! through its command line, its `status --json`, trees read from disk, and
//! the process table read from `/proc`. Every wait is bounded and waits on a
//! condition (never a sleep to show that nothing happens).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub use twinsync_testkit::procs::{processes, Proc};
use twinsync_testkit::tree::{self, Walk};
pub use twinsync_testkit::wait::Stopped;
use twinsync_testkit::wait::{self, poll_until, Wait};

/// The binary under test: `$TWINSYNC_BIN`, else the one cargo built.
pub fn bin() -> String {
    std::env::var("TWINSYNC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_twinsync").to_string())
}

/// Poll `f` every 10 ms until it returns true or `bound` passes; false then.
pub fn wait_for(bound: Duration, f: impl FnMut() -> bool) -> bool {
    wait::wait_for(bound, Duration::from_millis(10), f)
}

/// One entry of a tree, as compared between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File {
        mode: u32,
        mtime_ns: i128,
        data: Vec<u8>,
    },
    Dir {
        mode: u32,
    },
    Link {
        target: Vec<u8>,
    },
    Other,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::File {
                mode,
                mtime_ns,
                data,
            } => write!(
                f,
                "file {mode:o} mtime={mtime_ns} len={} {:?}",
                data.len(),
                short(data)
            ),
            Entry::Dir { mode } => write!(f, "dir {mode:o}"),
            Entry::Link { target } => write!(f, "link -> {:?}", String::from_utf8_lossy(target)),
            Entry::Other => write!(f, "special"),
        }
    }
}

/// The first bytes of some content, for messages.
pub fn short(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(&data[..data.len().min(24)]).into_owned();
    if data.len() > 24 {
        format!("{s}…")
    } else {
        s
    }
}

pub type Tree = BTreeMap<Vec<u8>, Entry>;

/// Every entry below `root` (relative path → entry); at the top level,
/// `.twinsync` is left out when `skip_state` is set. Entries that vanish
/// while we look are just not listed.
pub fn tree(root: &Path, skip_state: bool) -> Tree {
    let how = Walk {
        skip_state,
        strict: false,
    };
    let tree = tree::walk(root, how, |p, md| {
        let mode = md.mode() & 0o7777;
        Some(if md.file_type().is_symlink() {
            Entry::Link {
                target: fs::read_link(p)
                    .unwrap_or_default()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            }
        } else if md.is_dir() {
            Entry::Dir { mode }
        } else if md.is_file() {
            Entry::File {
                mode,
                mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
                data: fs::read(p).ok()?,
            }
        } else {
            Entry::Other
        })
    });
    tree.unwrap_or_default()
}

/// The differences between two trees, one line each (at most `max`).
pub fn diff(l: &Tree, r: &Tree, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in l {
        match r.get(k) {
            Some(w) if w == v => {}
            Some(w) => out.push(format!("  {}: L {v} | R {w}", String::from_utf8_lossy(k))),
            None => out.push(format!(
                "  {}: L {v} | R (absent)",
                String::from_utf8_lossy(k)
            )),
        }
    }
    for (k, w) in r {
        if !l.contains_key(k) {
            out.push(format!(
                "  {}: L (absent) | R {w}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    let n = out.len();
    out.truncate(max);
    if n > max {
        out.push(format!("  … and {} more", n - max));
    }
    out
}

/// The contents of every regular file below `dir` (recursively).
pub fn contents_below(dir: &Path) -> Vec<Vec<u8>> {
    tree(dir, false)
        .into_values()
        .filter_map(|e| match e {
            Entry::File { data, .. } => Some(data),
            _ => None,
        })
        .collect()
}

/// A running (or stopped) brain: `twinsync -d 2 ARGS… LEFT RIGHT`, its log
/// in a file, its status socket in its own runtime dir.
pub struct Brain {
    pub args: Vec<OsString>,
    pub envs: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub log: PathBuf,
    pub runtime_dir: PathBuf,
    pub child: Option<Child>,
    /// Run it in its own process group.
    pub own_group: bool,
    /// Run it as another user (`setpriv` prefix), e.g. nobody.
    pub setpriv: Option<Vec<String>>,
    /// How many times it was started.
    pub starts: usize,
}

impl Brain {
    /// A brain over `args` (options, then LEFT and RIGHT), with its log,
    /// runtime dir and ssh control dir inside `dir`. `marker` goes into its
    /// environment (inherited by everything it starts) to find leftovers.
    pub fn new(dir: &Path, args: Vec<OsString>, marker: &str) -> Brain {
        let runtime_dir = dir.join("runtime");
        let state = dir.join("state");
        fs::create_dir_all(&runtime_dir).unwrap();
        fs::create_dir_all(&state).unwrap();
        Brain {
            args,
            envs: vec![
                ("TWINSYNC_RUNTIME_DIR".into(), runtime_dir.clone().into()),
                // openssh puts its control dir in $XDG_STATE_HOME.
                ("XDG_STATE_HOME".into(), state.into()),
                ("CAMPAIGN_MARKER".into(), marker.into()),
                ("NO_COLOR".into(), "1".into()),
            ],
            cwd: dir.to_path_buf(),
            log: dir.join("twinsync.log"),
            runtime_dir,
            child: None,
            own_group: false,
            setpriv: None,
            starts: 0,
        }
    }

    pub fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = match &self.setpriv {
            Some(prefix) => {
                let mut c = Command::new(&prefix[0]);
                c.args(&prefix[1..]).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        c.args(["-d", "2"])
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        if self.own_group {
            c.process_group(0);
        }
        self.child = Some(
            c.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin())),
        );
        self.starts += 1;
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The exit status if the process has exited (reaped; `child` cleared).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(st)
    }

    /// This instance's entry of `twinsync status --json` (by pid), as JSON.
    pub fn status(&self) -> Option<serde_json::Value> {
        let pid = self.pid()?;
        let out = Command::new(bin())
            .args(["status", "--json"])
            .env("TWINSYNC_RUNTIME_DIR", &self.runtime_dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["pid"].as_i64() == Some(i64::from(pid)))
    }

    /// Run `twinsync CMD INSTANCE` against this instance (pause, resume,
    /// flush) and wait for its answer; panics when it fails.
    pub fn control(&self, cmd: &str) {
        let instance = self.status().expect("a running instance")["instance"]
            .as_str()
            .expect("its name")
            .to_string();
        let out = Command::new(bin())
            .args([cmd, instance.as_str()])
            .env("TWINSYNC_RUNTIME_DIR", &self.runtime_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "twinsync {cmd}: {out:?}");
    }

    /// Live with nothing queued, by its status.
    pub fn settled(&self) -> bool {
        self.status()
            .is_some_and(|s| s["state"] == "live" && s["queue"].as_u64() == Some(0))
    }

    /// Wait (bounded) until its status says live; panics with the log if it
    /// exits first or never gets there.
    pub fn wait_live(&mut self, bound: Duration) {
        match self.until_live(bound) {
            Ok(()) => {}
            Err(Stopped::Failed(st)) => panic!(
                "twinsync exited with {st} before going live; log tail:\n{}",
                self.log_tail(40)
            ),
            Err(Stopped::TimedOut) => panic!(
                "twinsync not live after {bound:?}; log tail:\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// Wait (bounded) until its status says live; the exit status if it
    /// exits first.
    pub fn until_live(&mut self, bound: Duration) -> Result<(), Stopped<ExitStatus>> {
        poll_until(Wait::new(bound, Duration::from_millis(20)), || {
            match self.exited() {
                Some(st) => Err(st),
                None => Ok(self.status().is_some_and(|s| s["state"] == "live")),
            }
        })
        .map(|_| ())
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait (bounded) for the process to exit; None if it did not.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let mut st = None;
        wait_for(bound, || {
            st = self.exited();
            st.is_some()
        });
        st
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(15))
    }

    pub fn log_tail(&self, n: usize) -> String {
        let t = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Pids of its `twinsync agent` children.
    pub fn agent_pids(&self) -> Vec<i32> {
        let Some(me) = self.pid() else {
            return Vec::new();
        };
        processes()
            .into_iter()
            .filter(|p| p.ppid == me && p.has_arg(b"agent"))
            .map(|p| p.pid)
            .collect()
    }
}

impl Drop for Brain {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Processes left behind by a run: anything carrying `marker` in its
/// environment (the brain's agents, rsyncs, ssh masters), anything whose
/// command line names `dir`, and anything started by the sshd on `ssh_port`
/// (remote agents, remote rsyncs) but sshd's own processes.
pub fn leftovers(marker: &str, dir: &Path, ssh_port: Option<u16>) -> Vec<Proc> {
    let var = format!("CAMPAIGN_MARKER={marker}");
    let dir = dir.as_os_str().as_bytes();
    processes()
        .into_iter()
        .filter(|p| {
            let by_marker = p.env_has(var.as_bytes());
            let by_dir =
                p.cmdline.windows(dir.len()).any(|w| w == dir) && !p.comm.starts_with("sshd");
            let by_port = ssh_port.is_some_and(|port| {
                !p.comm.starts_with("sshd")
                    && p.env_get("SSH_CONNECTION").is_some_and(|c| {
                        c.rsplit(|&b| b == b' ').next() == Some(port.to_string().as_bytes())
                    })
            });
            by_marker || by_dir || by_port
        })
        .collect()
}

/// A fresh temp dir on disk (`base` None: the default temp dir) or on tmpfs.
pub fn temp_dir(prefix: &str, tmpfs: bool) -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    if tmpfs {
        b.tempdir_in("/dev/shm").expect("temp dir in /dev/shm")
    } else {
        b.tempdir().expect("temp dir")
    }
}

/// Arguments `ARGS… LEFT RIGHT` as OsStrings.
pub fn args(opts: &[&str], left: &Path, right: impl AsRef<OsStr>) -> Vec<OsString> {
    let mut v: Vec<OsString> = opts.iter().map(OsString::from).collect();
    v.push(left.as_os_str().to_owned());
    v.push(right.as_ref().to_owned());
    v
}

/// Set the mtime of an open file (before it is closed, so the close event
/// already carries it).
pub fn write_with_mtime(
    path: &Path,
    data: &[u8],
    mtime: std::time::SystemTime,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.set_modified(mtime)?;
    Ok(())
}
