//! A real OpenSSH server for integration tests, bound to 127.0.0.1 only.
//!
//! [`Sshd::start`] makes a temp dir holding a fresh ed25519 host key and
//! client key, an `authorized_keys` with the client key, an `sshd_config` and
//! a client `ssh_config`, then runs `/usr/sbin/sshd -D -e` on a free port and
//! waits until `ssh -F <ssh_config> twinsync-test true` succeeds. Every test
//! gets its own server, so tests can run in parallel.
//!
//! Faults to inject:
//! - [`Sshd::kill_connections`] SIGKILLs this server's per-connection sshd
//!   processes, which drops every open link at once (the remote commands
//!   are left orphaned and see EOF, as after a real link loss);
//! - [`Sshd::restart`] stops the listening sshd and starts it again on the
//!   same port with the same keys. Like a real `systemctl restart ssh`, open
//!   connections survive; only new ones wait for the new listener.
//!
//! Dropping an `Sshd` kills its connections and then the listener. Sessions
//! that outlived a restart are orphans by then (no longer children of the
//! listener), so neither `kill_connections` nor `Drop` reaches them; they
//! end when their client does.
//!
//! What sshd needs here: an absolute binary path (it re-execs itself), the
//! privilege separation dir `/run/sshd` when run as root, host keys no more
//! open than 0600 (ssh-keygen's default), and `StrictModes no` because the
//! temp dir is not owned the way sshd wants. If sshd is not installed,
//! `start` returns `None` (and panics when `$CI` is set, so CI cannot skip).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The sshd binary; it must be an absolute path, since sshd re-execs itself.
#[path = "../support/sshd_setup.rs"]
mod setup;
use setup::SSHD;

/// The `Host` alias in the client config.
const HOST: &str = "twinsync-test";

/// How long to wait for sshd to accept logins.
const READY: Duration = Duration::from_secs(10);

/// How long to wait for processes to die after a signal.
const DIE: Duration = Duration::from_secs(5);

/// A running sshd on 127.0.0.1 and a client config that logs into it.
pub struct Sshd {
    /// The port sshd listens on, on 127.0.0.1.
    pub port: u16,
    /// Holds the keys, configs, `authorized_keys`, pid file and `sshd.log`.
    pub dir: tempfile::TempDir,
    /// The client config: pass it as `ssh -F <ssh_config>` and log into `host`.
    pub ssh_config: PathBuf,
    /// The `Host` alias in `ssh_config`: "twinsync-test".
    pub host: String,
    /// The user ssh logs in as: the current user.
    pub user: String,
    /// The listening sshd (`-D`, so it is this process itself).
    child: Child,
}

impl Sshd {
    /// Start a fresh server and wait until `ssh` can log into it.
    ///
    /// Returns `None`, after a loud message on stderr, if OpenSSH is not
    /// installed; panics instead if `$CI` is set. Panics with the sshd log if
    /// the server does not come up within 10 s.
    pub fn start() -> Option<Sshd> {
        let missing = if !Path::new(SSHD).exists() {
            Some("sshd missing: .ci/run must apt-get install openssh-server")
        } else if !twinsync::rsync::on_path("ssh") || !twinsync::rsync::on_path("ssh-keygen") {
            Some("ssh or ssh-keygen missing: .ci/run must apt-get install openssh-client")
        } else {
            None
        };
        if let Some(missing) = missing {
            if std::env::var_os("CI").is_some() {
                panic!("{missing}");
            }
            eprintln!(
                "\n{bar}\n!!! SKIPPING SSH TEST: {missing}\n\
                 !!! (apt-get install -y openssh-server openssh-client)\n{bar}\n",
                bar = "!".repeat(76)
            );
            return None;
        }
        // sshd running as root refuses to start without it; as another user
        // it neither needs it nor may create it, so a failure is not fatal.
        let _ = fs::create_dir_all("/run/sshd");

        let dir = tempfile::Builder::new()
            .prefix("twinsync-sshd-")
            .tempdir()
            .expect("create sshd temp dir");
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            setup::keygen(&d.join(key), HOST).unwrap_or_else(|e| panic!("{e}"));
        }
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("write authorized_keys");
        let user = setup::current_user()
            .expect("cannot tell the current user: `id -un` failed and $USER is unset");
        let ssh_config = d.join("ssh_config");

        // The free port may be taken by someone else before sshd binds it:
        // then sshd exits at once, and we try again with another port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = setup::free_port().expect("bind 127.0.0.1:0");
            setup::write_configs(d, port, &user, HOST).expect("write ssh configs");
            match launch(d, port, &ssh_config) {
                Ok(child) => {
                    return Some(Sshd {
                        port,
                        dir,
                        ssh_config,
                        host: HOST.to_string(),
                        user,
                        child,
                    })
                }
                Err(Failure::Exited(_)) if attempt < 3 => continue,
                Err(f) => f.panic(d),
            }
        }
    }

    /// A `ssh -F <ssh_config> <host> <cmd>` command, ready to run or spawn
    /// (stdin is null unless set otherwise).
    pub fn command(&self, cmd: &str) -> Command {
        setup::ssh_command(&self.ssh_config, HOST, cmd)
    }

    /// Run `cmd` on the server through ssh and return its output.
    pub fn ssh(&self, cmd: &str) -> Output {
        self.command(cmd).output().expect("run ssh")
    }

    /// The contents of the sshd log (stderr of every sshd started so far).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Drop every open connection to this server: SIGKILL the sshd
    /// processes descending from the listening sshd (and only those), and
    /// wait until they are gone. The listener keeps accepting new logins.
    pub fn kill_connections(&self) {
        // The listener is only reaped by `stop`, after which `restart` puts
        // a live child in its place (or panics): a live `child` pid is ours.
        let pid = self.child.id() as i32;
        if alive(pid) {
            let survivors = kill_sshd_descendants(pid);
            assert!(
                survivors.is_empty(),
                "sshd pids {survivors:?} survived SIGKILL"
            );
        }
    }

    /// Stop the listening sshd and start it again on the same port with the
    /// same keys, waiting until it accepts logins. Open connections are not
    /// touched, as with a real sshd restart.
    pub fn restart(&mut self) {
        self.stop();
        let d = self.dir.path();
        match launch(d, self.port, &self.ssh_config) {
            Ok(child) => self.child = child,
            Err(f) => f.panic(d),
        }
    }

    /// The pid of the listening sshd, if it still runs.
    fn listener_pid(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(None) => Some(self.child.id() as i32),
            _ => None,
        }
    }

    /// SIGTERM the listening sshd and reap it (SIGKILL if it lingers).
    fn stop(&mut self) {
        // `try_wait` remembers a reaped child, so this never signals a pid
        // that might have been reused.
        if let Some(pid) = self.listener_pid() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            terminate(&mut self.child);
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Connections first: once the listener is gone they are orphans
        // and can no longer be told apart from other servers' connections.
        if let Some(pid) = self.listener_pid() {
            kill_sshd_descendants(pid);
        }
        self.stop();
    }
}

/// Why sshd did not come up.
enum Failure {
    /// sshd exited on its own (e.g. the port was taken).
    Exited(std::process::ExitStatus),
    /// sshd runs but logins did not work in time; the last ssh error.
    NotReady(String),
}

impl Failure {
    fn panic(self, dir: &Path) -> ! {
        let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        match self {
            Failure::Exited(status) => {
                panic!("sshd exited with {status} at startup; sshd log:\n{log}")
            }
            Failure::NotReady(ssh) => panic!(
                "sshd not accepting logins after {READY:?}; \
                 last ssh error:\n{ssh}\nsshd log:\n{log}"
            ),
        }
    }
}

/// Start sshd with `dir/sshd_config`, appending its stderr to `dir/sshd.log`,
/// and wait until a login works. On failure sshd is stopped and reaped.
fn launch(dir: &Path, port: u16, ssh_config: &Path) -> Result<Child, Failure> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))
        .expect("open sshd.log");
    let mut child = setup::sshd_command(dir, log).spawn().expect("spawn sshd");
    let t = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::Exited(status));
        }
        let last = match setup::try_login(port, ssh_config, HOST).expect("run ssh") {
            None => return Ok(child),
            Some(why) => why,
        };
        if t.elapsed() > READY {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::NotReady(last));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM has been sent: reap `child`, SIGKILLing it if it lingers.
fn terminate(child: &mut Child) {
    let t = Instant::now();
    while t.elapsed() < DIE {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL the processes named sshd* descending from `root`, and wait
/// until they are gone. Returns the survivors (none, unless stuck in D state);
/// it does not panic, as it also runs in `Drop`.
fn kill_sshd_descendants(root: i32) -> Vec<i32> {
    let procs = processes();
    let mut todo = vec![root];
    let mut victims = Vec::new();
    while let Some(parent) = todo.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            todo.push(p.pid);
            if p.comm.starts_with("sshd") {
                victims.push(p.pid);
            }
        }
    }
    for &pid in &victims {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let t = Instant::now();
    loop {
        victims.retain(|&pid| alive(pid));
        if victims.is_empty() || t.elapsed() > DIE {
            return victims;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One line of the process table.
struct Proc {
    pid: i32,
    ppid: i32,
    comm: String,
}

/// A snapshot of all processes, from `/proc/*/stat`.
fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let (comm, state, ppid) = stat(pid)?;
            (state != 'Z').then_some(Proc { pid, ppid, comm })
        })
        .collect()
}

/// `(comm, state, ppid)` of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(String, char, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let mut rest = s.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// Whether `pid` exists and is not a zombie (an orphaned zombie may never
/// be reaped in a container whose init does not reap).
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(_, state, _)| state != 'Z')
}
