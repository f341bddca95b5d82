//! Test harness: a replica pair in temp dirs, a real `twinsync` process
//! syncing them, and helpers that read like specs, with bounded waits.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use twinsync_testkit::procs;
pub use twinsync_testkit::procs::running;
use twinsync_testkit::tools::find_in_path;
use twinsync_testkit::tree::{self, Walk};
use twinsync_testkit::wait::{poll_until, wait_for, Stopped, Wait};

/// The default bound of every wait.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_twinsync")
}

/// The path of `program` on `$PATH`; panics naming the Debian `package`
/// that provides it (`.ci/run` installs it) when it is missing.
pub fn require_tool(program: &str, package: &str) -> PathBuf {
    find_in_path(program).unwrap_or_else(|| {
        panic!("{program} is missing: apt-get install {package} (.ci/run installs it)")
    })
}

/// Poll `f` until it returns true or `WAIT` passes.
pub fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(WAIT, what, f);
}

/// Poll `f` until it returns true or `bound` passes (for big workloads).
pub fn eventually_within(bound: Duration, what: &str, f: impl FnMut() -> bool) {
    assert!(
        wait_for(bound, Duration::from_millis(5), f),
        "timed out after {bound:?} waiting for: {what}"
    );
}

/// One replica root.
#[derive(Clone, Debug)]
pub struct Replica {
    pub root: PathBuf,
}

impl Replica {
    pub fn path(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel.as_ref()))
    }

    pub fn write(&self, rel: impl AsRef<[u8]>, data: &[u8]) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    pub fn read(&self, rel: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        fs::read(self.path(rel)).ok()
    }

    pub fn exists(&self, rel: impl AsRef<[u8]>) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }

    /// Give `rel` this modification time.
    pub fn set_mtime(&self, rel: impl AsRef<[u8]>, t: std::time::SystemTime) {
        fs::File::options()
            .write(true)
            .open(self.path(rel))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    pub fn ino(&self, rel: impl AsRef<[u8]>) -> u64 {
        fs::symlink_metadata(self.path(rel)).unwrap().ino()
    }

    pub fn eventually_has(&self, rel: impl AsRef<[u8]>, data: &[u8]) {
        let rel = rel.as_ref();
        eventually(
            &format!(
                "{} to hold {:?}",
                self.path(rel).display(),
                String::from_utf8_lossy(data)
            ),
            || self.read(rel).as_deref() == Some(data),
        );
    }

    pub fn eventually_gone(&self, rel: impl AsRef<[u8]>) {
        let rel = rel.as_ref();
        eventually(&format!("{} to be gone", self.path(rel).display()), || {
            !self.exists(rel)
        });
    }

    /// Every entry below the root except `.twinsync/`: path → description
    /// (kind, content or link target, mode; plus mtime for files).
    pub fn tree(&self) -> BTreeMap<Vec<u8>, String> {
        describe(&self.root)
    }

    /// Files in this replica's trash (relative names inside the day folders).
    pub fn trash_contents(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let t = self.root.join(".twinsync/trash");
        for (k, v) in describe(&t) {
            if !v.starts_with("dir") {
                out.push(fs::read(t.join(OsStr::from_bytes(&k))).unwrap_or_default());
            }
        }
        out
    }
}

/// Every entry below `root` but its `.twinsync/`, described: kind, content
/// or link target, mode; plus mtime for files, device and owner for others.
fn describe(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let how = Walk {
        skip_state: true,
        // The tree may change while we look (that is what eventually_* wait
        // for): what cannot be read this time is just not listed.
        strict: false,
    };
    let tree = tree::walk(root, how, |p, md| {
        let mode = md.mode() & 0o7777;
        Some(if md.file_type().is_symlink() {
            format!("link {:?}", fs::read_link(p).unwrap_or_default())
        } else if md.is_dir() {
            format!("dir {mode:o}")
        } else if !md.is_file() {
            // A fifo or a device: never opened (it could block).
            format!(
                "special {:o} {} {}:{}",
                md.mode(),
                md.rdev(),
                md.uid(),
                md.gid()
            )
        } else {
            let data = fs::read(p).unwrap_or_default();
            format!(
                "file {mode:o} {} {:?}",
                md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                String::from_utf8_lossy(&data)
            )
        })
    });
    tree.unwrap_or_default()
}

/// A running twinsync over a fresh pair of replicas.
pub struct Pair {
    pub dir: tempfile::TempDir,
    pub left: Replica,
    pub right: Replica,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// When set, the right replica is given as this (e.g. `host:/path`).
    pub right_arg: Option<String>,
    /// Extra environment for the twinsync process.
    pub envs: Vec<(String, PathBuf)>,
}

impl Pair {
    /// Serve the right replica through the loopback `sshd`: the right is
    /// given as `host:/path` from now on, which is returned.
    pub fn remote_right(&mut self, sshd: &crate::sshd::Sshd) -> String {
        let right = format!("{}:{}", sshd.host, self.right.root.display());
        self.right_arg = Some(right.clone());
        right
    }
}

impl Pair {
    /// Two empty replicas (not yet synced).
    pub fn new() -> Pair {
        let dir = tempfile::Builder::new()
            .prefix("twinsync-e2e")
            .tempdir()
            .unwrap();
        let left = Replica {
            root: dir.path().join("left"),
        };
        let right = Replica {
            root: dir.path().join("right"),
        };
        fs::create_dir(&left.root).unwrap();
        fs::create_dir(&right.root).unwrap();
        let log = dir.path().join("twinsync.log");
        Pair {
            dir,
            left,
            right,
            child: None,
            log,
            right_arg: None,
            envs: Vec::new(),
        }
    }

    /// Start `twinsync [args] LEFT RIGHT` (debug logs to a file) and wait
    /// until it is live both ways.
    pub fn start(&mut self, args: &[&str]) {
        self.spawn(args);
        self.wait_live();
    }

    pub fn spawn(&mut self, args: &[&str]) {
        self.spawn_with(args, |_| {});
    }

    /// [`Pair::spawn`], with `setup` applied to the command first (e.g. to
    /// start it in its own process group).
    pub fn spawn_with(&mut self, args: &[&str], setup: impl FnOnce(&mut Command)) {
        let log = fs::File::create(&self.log).unwrap();
        let mut cmd = Command::new(bin());
        setup(&mut cmd);
        let child = cmd
            .args(["-d", "2"])
            .args(args)
            .arg(&self.left.root)
            .arg(
                self.right_arg
                    .clone()
                    .map_or(self.right.root.clone().into_os_string(), Into::into),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("NO_COLOR", "1")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// A probe file both ways proves both filters and the loop are running.
    pub fn wait_live(&mut self) {
        for (a, b, name) in [
            (self.left.clone(), self.right.clone(), ".probe-l"),
            (self.right.clone(), self.left.clone(), ".probe-r"),
        ] {
            a.write(name, b"probe");
            let child = self.child.as_mut().unwrap();
            let live = poll_until(Wait::new(WAIT, Duration::from_millis(5)), || {
                if b.read(name).as_deref() == Some(b"probe") {
                    return Ok(true);
                }
                child.try_wait().unwrap().map_or(Ok(false), Err)
            });
            match live {
                Ok(_) => {}
                Err(Stopped::Failed(st)) => panic!(
                    "twinsync exited with {st} before going live:\n{}",
                    self.log_text()
                ),
                Err(Stopped::TimedOut) => panic!("not live:\n{}", self.log_text()),
            }
            fs::remove_file(a.path(name)).unwrap();
            b.eventually_gone(name);
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until both trees are equal (contents, modes, links, file mtimes).
    pub fn eventually_equal(&self) {
        let (mut l, mut r) = Default::default();
        if !wait_for(WAIT, Duration::from_millis(10), || {
            (l, r) = (self.left.tree(), self.right.tree());
            l == r
        }) {
            let diff: Vec<_> = l
                .iter()
                .filter(|(k, v)| r.get(*k) != Some(v))
                .map(|(k, v)| format!("L {} {v}", String::from_utf8_lossy(k)))
                .chain(
                    r.iter()
                        .filter(|(k, v)| l.get(*k) != Some(v))
                        .map(|(k, v)| format!("R {} {v}", String::from_utf8_lossy(k))),
                )
                .take(20)
                .collect();
            panic!(
                "trees differ:\n{}\nlog:\n{}",
                diff.join("\n"),
                self.log_tail()
            );
        }
    }

    pub fn log_tail(&self) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let mut st = None;
        let stopped = wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
            st = c.try_wait().unwrap();
            st.is_some()
        });
        assert!(stopped, "did not stop on SIGTERM");
        st.expect("it exited")
    }

    /// Wait for the process to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        let mut st = None;
        let exited = wait_for(WAIT, Duration::from_millis(10), || {
            st = c.try_wait().unwrap();
            st.is_some()
        });
        assert!(exited, "did not exit:\n{}", self.log_tail());
        self.child = None;
        st.expect("it exited")
    }

    /// Whether a replica still holds a `.twinsync/lock`.
    pub fn locked(&self) -> [bool; 2] {
        [&self.left, &self.right].map(|r| r.exists(".twinsync/lock"))
    }

    /// Pids of the agent children.
    pub fn agent_pids(&self) -> Vec<i32> {
        let me = self.child.as_ref().unwrap().id() as i32;
        procs::processes()
            .into_iter()
            .filter(|p| p.ppid == me && p.has_arg(b"agent"))
            .map(|p| p.pid)
            .collect()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- twinsync log tail ---\n{}", self.log_tail());
            // The whole log outlives the test's directory, for the post-mortem.
            let keep = std::env::temp_dir().join(format!(
                "twinsync-failed-{}-{}.log",
                std::process::id(),
                self.dir
                    .path()
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ));
            if fs::copy(&self.log, &keep).is_ok() {
                eprintln!("--- the whole log: {} ---", keep.display());
            }
        }
    }
}

impl Pair {
    /// `twinsync --sync-only EXTRA… LEFT RIGHT` to completion: (status, stderr).
    pub fn sync_only(&self, extra: &[&str]) -> (std::process::ExitStatus, String) {
        let mut args: Vec<&OsStr> = vec![OsStr::new("--sync-only")];
        args.extend(extra.iter().map(OsStr::new));
        args.push(self.left.root.as_os_str());
        args.push(self.right.root.as_os_str());
        run_once(&args)
    }
}

/// Run twinsync to completion with these args; returns (status, stderr).
pub fn run_once(args: &[&OsStr]) -> (std::process::ExitStatus, String) {
    let out = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Replica {
    pub fn eventually_has_dir(&self, rel: impl AsRef<[u8]>) {
        let rel = rel.as_ref();
        eventually(
            &format!("{} to be a directory", self.path(rel).display()),
            || self.path(rel).is_dir(),
        );
    }
}

/// Pids of the running processes (zombies do not count: nothing reaps them
/// in some containers) whose argument list satisfies `f`.
pub fn pids_where(mut f: impl FnMut(&[&[u8]]) -> bool) -> Vec<i32> {
    procs::processes()
        .into_iter()
        .filter(|p| {
            let args = p.args();
            !args.is_empty() && f(&args)
        })
        .map(|p| p.pid)
        .collect()
}
