//! The tools under test: how each is started on a directory pair, the guard
//! that stops its whole process group, and readers for `/proc`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use twinsync_testkit::procs::{self as table, pids};
use twinsync_testkit::tools::find_in_path;
use twinsync_testkit::wait::wait_for;

use crate::error::{interrupted, io_ctx, Failure, Res};
use crate::fsops::Pair;

/// Which program a [`Tool`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Twinsync,
    Lsyncd,
    Clsync,
}

/// A program under test and where its executable is.
#[derive(Debug, Clone)]
pub struct Tool {
    pub kind: Kind,
    pub program: PathBuf,
    /// Set for the `ssh-*` scenarios: the right side is reached over ssh.
    pub remote: Option<Remote>,
    /// twinsync's `-d` level (0 = warnings only).
    pub log_level: u8,
}

/// How to reach the right side over ssh: `ssh -F <client_config> <host>`,
/// the right root being the same absolute path there (same machine).
#[derive(Debug, Clone)]
pub struct Remote {
    pub client_config: PathBuf,
    pub host: &'static str,
}

impl Tool {
    /// Short name used in directory names and JSON keys.
    pub fn slug(&self) -> &'static str {
        match self.kind {
            Kind::Twinsync => "twinsync",
            Kind::Lsyncd => "lsyncd",
            Kind::Clsync => "clsync",
        }
    }

    /// Whether the tool also propagates right → left.
    pub fn two_way(&self) -> bool {
        self.kind == Kind::Twinsync
    }

    /// Whether the tool can reach the right side over ssh in the bench
    /// (clsync is measured locally only).
    pub fn over_ssh(&self) -> bool {
        self.kind != Kind::Clsync
    }

    /// Start the tool live on `pair` (left → right for lsyncd and clsync),
    /// the right side over ssh if [`Tool::remote`] is set. Output goes to
    /// `pair.dir/<slug>.log`.
    pub fn start(&self, pair: &Pair) -> Res<Running> {
        let mut cmd = match self.kind {
            Kind::Twinsync => self.twinsync_command(pair),
            Kind::Lsyncd => self.lsyncd_command(pair)?,
            Kind::Clsync => self.clsync_command(pair)?,
        };
        let log = pair.dir.join(format!("{}.log", self.slug()));
        let out = io_ctx(File::create(&log), log.display())?;
        let err = io_ctx(out.try_clone(), log.display())?;
        // Own process group, so that stopping it also gets the agents / the
        // rsync children, and a Ctrl-C at the terminal reaches only us.
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = io_ctx(
            cmd.spawn(),
            format!("cannot start {}", self.program.display()),
        )?;
        Ok(Running {
            child,
            name: self.slug(),
            log,
        })
    }

    fn twinsync_command(&self, pair: &Pair) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-d").arg(self.log_level.to_string());
        match &self.remote {
            None => {
                cmd.arg(&pair.left).arg(&pair.right);
            }
            Some(r) => {
                // The remote agent is this very binary, on the same machine.
                let mut right = std::ffi::OsString::from(format!("{}:", r.host));
                right.push(&pair.right);
                cmd.arg("--ssh-config")
                    .arg(&r.client_config)
                    .arg("--remote-path")
                    .arg(&self.program)
                    .arg(&pair.left)
                    .arg(right);
            }
        }
        cmd
    }

    fn lsyncd_command(&self, pair: &Pair) -> Res<Command> {
        let config = pair.dir.join("lsyncd.conf.lua");
        let status = match &self.remote {
            None => String::new(),
            Some(_) => format!(
                ", statusFile = {}",
                lua_string(&pair.dir.join("lsyncd.status"))
            ),
        };
        let settings = format!(
            "settings {{ nodaemon = true, logfile = {}{status} }}\n",
            lua_string(&pair.dir.join("lsyncd-file.log")),
        );
        let sync = match &self.remote {
            None => format!(
                "sync {{ default.rsync, source = {}, target = {}, delay = 0 }}\n",
                lua_string(&pair.left),
                lua_string(&pair.right),
            ),
            // lsyncd 2.2.3: `rsync.rsh` becomes rsync's --rsh, and
            // `ssh._extra` is added to its own `ssh HOST mv …` / `rm …`
            // calls (`ssh.options` would only make `-o KEY=VALUE` pairs).
            Some(r) => {
                let ssh = "/usr/bin/ssh";
                let cfg = r.client_config.to_string_lossy();
                format!(
                    "sync {{ default.rsyncssh, source = {}, host = {}, targetdir = {}, \
                     delay = 0,\n  rsync = {{ rsh = {} }},\n  \
                     ssh = {{ binary = {}, _extra = {{ \"-F\", {} }} }} }}\n",
                    lua_string(&pair.left),
                    lua_str(r.host),
                    lua_string(&pair.right),
                    lua_str(&format!("{ssh} -F {cfg}")),
                    lua_str(ssh),
                    lua_str(&cfg),
                )
            }
        };
        let text = format!("{settings}{sync}");
        io_ctx(fs::write(&config, text), config.display())?;
        let mut cmd = Command::new(&self.program);
        cmd.arg(&config);
        Ok(cmd)
    }
}

impl Tool {
    /// clsync 0.4.5 in `rsyncdirect` mode, left → right, every delay off:
    ///
    /// ```text
    /// clsync -H /NULL/ -l twinsync-bench -M rsyncdirect -S /usr/bin/rsync
    ///     -W L -D R -L <pair>/clsync-lists -t0 -T0 -w0 -x23 -x24
    ///     -u <uid> -g <gid> [-d1]
    /// ```
    ///
    /// * `-M rsyncdirect -S rsync`: clsync runs rsync itself (its default
    ///   arguments: `-aH --delete --exclude-from X --include-from I
    ///   --exclude='*' L/ R/`), no handler script in between;
    /// * `-t0 -T0 -w0`: no delay to collect events (ordinary and big files)
    ///   and none between syncs (defaults 30 s, 1800 s, 30 s);
    /// * `-L`: where it writes the include/exclude lists; it must be mode
    ///   0700 (else "Insecure: Others have access"), outside the watched tree;
    /// * `-x23 -x24`: rsync's "partial transfer" and "vanished files" exits
    ///   are not errors (as the manual recommends; with the default
    ///   `--retries 1` clsync would otherwise exit on the first one);
    /// * `-u/-g` our own ids: started as root, it otherwise drops to
    ///   `nobody`, which cannot write the lists or the right side;
    /// * `-H /NULL/`: read no config file; `-l`: the label it passes to
    ///   handlers. It stays in the foreground (no `-b`) and logs to stderr.
    fn clsync_command(&self, pair: &Pair) -> Res<Command> {
        use std::os::unix::fs::DirBuilderExt as _;
        let lists = pair.dir.join("clsync-lists");
        io_ctx(
            fs::DirBuilder::new().mode(0o700).create(&lists),
            lists.display(),
        )?;
        let rsync = find_in_path("rsync").unwrap_or_else(|| PathBuf::from("/usr/bin/rsync"));
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut cmd = Command::new(&self.program);
        cmd.args([
            "-H",
            "/NULL/",
            "-l",
            "twinsync-bench",
            "-M",
            "rsyncdirect",
            "-S",
        ])
        .arg(rsync)
        .arg("-W")
        .arg(&pair.left)
        .arg("-D")
        .arg(&pair.right)
        .arg("-L")
        .arg(&lists)
        .args(["-t0", "-T0", "-w0", "-x23", "-x24"])
        .arg(format!("-u{uid}"))
        .arg(format!("-g{gid}"));
        if self.log_level > 0 {
            cmd.arg("-d1");
        }
        Ok(cmd)
    }
}

/// A path as a double-quoted Lua string literal.
fn lua_string(path: &Path) -> String {
    lua_str(&path.to_string_lossy())
}

/// A double-quoted Lua string literal.
fn lua_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A started tool. Dropping it stops the whole process group: SIGTERM to
/// the leader, up to 5 s for it to exit, then SIGKILL to the group.
pub struct Running {
    child: Child,
    pub name: &'static str,
    log: PathBuf,
}

impl Running {
    /// Process id of the tool's main process (the brain for twinsync).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// If the tool has exited, a failure describing how (with its log's
    /// tail); `None` while it runs.
    pub fn exited(&mut self) -> Option<Failure> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(Failure::Other(format!(
                "{} exited ({status}); log tail: {}",
                self.name,
                self.log_tail(400)
            ))),
            Err(e) => Some(Failure::Other(format!("{}: wait: {e}", self.name))),
        }
    }

    /// Replace a failure by "the tool died" when that is the real cause.
    pub fn explain(&mut self, f: Failure) -> Failure {
        match f {
            Failure::Interrupted => f,
            _ => self.exited().unwrap_or(f),
        }
    }

    /// Where the tool's stdout/stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `max` bytes of the tool's stdout/stderr, on one line.
    pub fn log_tail(&self, max: u64) -> String {
        read_tail(&self.log, max)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn leader_gone(&self) -> bool {
        exited_unreaped(self.child.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // The leader is not reaped before the group is killed, so its pid
        // (= the group id) cannot have been reused by then.
        if !self.leader_gone() {
            // SAFETY: plain syscall on a pid we own.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
                self.leader_gone()
            });
        }
        // SAFETY: as above; the negative pid names the group we created.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Whether child `pid` has exited, without reaping it.
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid only writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the
    // child waitable for `Child::wait`.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: after a successful waitid, si_pid is set (0 if no child is
    // ready), which is what reading it assumes.
    rc != 0 || unsafe { info.si_pid() } != 0
}

fn read_tail(path: &Path, max: u64) -> io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// User plus system CPU time of `pid`, in clock ticks; `None` if it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    table::stat(pid as i32).map(|s| s.cpu_ticks)
}

/// Pids whose parent is `pid` (scanning `/proc/*/stat`).
pub fn children_of(pid: u32) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|&p| table::stat(p).is_some_and(|s| s.ppid == pid as i32))
        .map(|p| p as u32)
        .collect()
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&table::cmdline(pid as i32)).replace('\0', " ")
}

/// Peak resident set size (`VmHWM`) in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// A `KEY: N kB` line of `/proc/PID/status` (`VmHWM`, `VmRSS`), in KiB;
/// `None` if the process is gone or has no memory any more (a zombie).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Direct children of `pid`, from `/proc/PID/task/*/children` (a child
/// is listed under the thread that forked it), or by scanning `/proc`
/// when the kernel lacks those files.
pub fn children_fast(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        match fs::read_to_string(task.path().join("children")) {
            Ok(text) => out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return children_of(pid),
            Err(_) => {}
        }
    }
    out
}

/// Whether `pid` runs as a twinsync agent (an `agent` argument).
pub fn is_agent(pid: u32) -> bool {
    cmdline(pid).split(' ').any(|a| a == "agent")
}

/// The inotify watches `pid` holds: the `inotify wd:` lines of
/// `/proc/PID/fdinfo/*`. `None` if that cannot be read.
pub fn inotify_watches(pid: u32) -> Option<usize> {
    let fds = fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut n = 0;
    for fd in fds.flatten() {
        if let Ok(text) = fs::read_to_string(fd.path()) {
            n += text
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    Some(n)
}

/// Whether process group `pgid` has members other than `pgid` itself.
fn group_has_others(pgid: u32) -> bool {
    let pgid = pgid as i32;
    pids()
        .into_iter()
        .any(|p| p != pgid && table::stat(p).is_some_and(|s| s.pgrp == pgid))
}

/// A command run to completion by [`run_timed`].
#[derive(Debug, Clone)]
pub struct Timed {
    /// Wall time from spawn until the main process exited.
    pub secs: f64,
    /// `ru_maxrss` from `wait4`: the largest peak RSS of the process and
    /// of the descendants it waited for, KiB.
    pub rusage_maxrss_kib: u64,
    /// Highest `VmHWM` of the main process seen while it ran (sampled
    /// every [`SAMPLE_EVERY`]: growth in its last moments can be missed).
    pub main_hwm_kib: Option<u64>,
    /// The same for each child running as `agent`, in order of pid.
    pub agents_hwm_kib: Vec<u64>,
}

impl Timed {
    /// The main process's peak RSS: the sampled `VmHWM`, or, when it has
    /// no agents to be confused with, the larger of that and `ru_maxrss`.
    pub fn main_peak_kib(&self) -> u64 {
        let sampled = self.main_hwm_kib.unwrap_or(0);
        if self.agents_hwm_kib.is_empty() {
            sampled.max(self.rusage_maxrss_kib)
        } else {
            sampled
        }
    }
}

/// How often [`run_timed`] samples `/proc`.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The peaks seen by the sampler thread of [`run_timed`].
#[derive(Default)]
struct Peaks {
    main: Option<u64>,
    agents: BTreeMap<u32, u64>,
}

/// Sample the `VmHWM` of `pid` and of its `agent` children every
/// [`SAMPLE_EVERY`] until `stop`.
fn sample_peaks(pid: u32, stop: &AtomicBool) -> Peaks {
    let mut peaks = Peaks::default();
    loop {
        if let Some(h) = status_kib(pid, "VmHWM") {
            peaks.main = Some(peaks.main.unwrap_or(0).max(h));
        }
        for c in children_fast(pid) {
            // Not cached: between fork and exec a child still shows the
            // brain's command line.
            if peaks.agents.contains_key(&c) || is_agent(c) {
                if let Some(h) = status_kib(c, "VmHWM") {
                    let e = peaks.agents.entry(c).or_insert(0);
                    *e = (*e).max(h);
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            return peaks;
        }
        sleep(SAMPLE_EVERY);
    }
}

/// Run `cmd` (in its own process group, stdin from /dev/null, stdout and
/// stderr to `log`) to completion, at most `limit`; time it and sample the
/// memory of it and its agents. A non-zero exit is a failure with the
/// log's tail. After the main process exits, the rest of its group gets
/// up to 5 s to follow, then SIGKILL.
pub fn run_timed(cmd: &mut Command, name: &str, log: &Path, limit: Duration) -> Res<Timed> {
    let out = io_ctx(File::create(log), log.display())?;
    let err = io_ctx(out.try_clone(), log.display())?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let start = Instant::now();
    // Reaped below with wait4 (for its rusage), not through `Child`.
    let child = io_ctx(cmd.spawn(), format!("cannot start {name}"))?;
    let pid = child.id();
    drop(child);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || sample_peaks(pid, &stop))
    };
    let outcome = loop {
        if exited_unreaped(pid) {
            break Ok(start.elapsed());
        }
        if interrupted() {
            break Err(Failure::Interrupted);
        }
        if start.elapsed() > limit {
            break Err(Failure::Timeout(format!(
                "{name} still running after {} s",
                limit.as_secs()
            )));
        }
        sleep(Duration::from_millis(1));
    };
    stop.store(true, Ordering::SeqCst);
    let peaks = sampler.join().unwrap_or_default();
    let gpid = pid as libc::pid_t;
    if outcome.is_err() {
        // SAFETY: plain syscall on our unreaped child.
        unsafe { libc::kill(gpid, libc::SIGTERM) };
        wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
            exited_unreaped(pid)
        });
    }
    wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
        !group_has_others(pid)
    });
    // SAFETY: the leader is not reaped yet, so the group id is still ours.
    unsafe { libc::kill(-gpid, libc::SIGKILL) };
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 only writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        // SAFETY: valid pointers to writable locals; `pid` is our child.
        let rc = unsafe { libc::wait4(gpid, &mut status, 0, &mut usage) };
        if rc >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break rc;
        }
    };
    let elapsed = outcome?;
    if rc < 0 {
        return Err(Failure::Other(format!(
            "{name}: wait4: {}",
            io::Error::last_os_error()
        )));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let how = if libc::WIFEXITED(status) {
            format!("exit status {}", libc::WEXITSTATUS(status))
        } else {
            format!("signal {}", libc::WTERMSIG(status))
        };
        let tail = read_tail(log, 400)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        return Err(Failure::Other(format!(
            "{name} failed ({how}); log tail: {tail}"
        )));
    }
    Ok(Timed {
        secs: elapsed.as_secs_f64(),
        rusage_maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        main_hwm_kib: peaks.main,
        agents_hwm_kib: peaks.agents.into_values().collect(),
    })
}

/// Clock ticks per second (for `/proc/PID/stat` CPU times).
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
