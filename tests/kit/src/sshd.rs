//! A throwaway OpenSSH server on 127.0.0.1 (never any other address), for
//! the e2e tests, the campaign and the bench's `ssh-*` scenarios.
//!
//! [`Sshd::start_in`] makes, in a directory, a fresh ed25519 host key and
//! client key, an `authorized_keys` with the client key, an `sshd_config`
//! and a client `ssh_config` (`ssh -F ssh_config HOST` logs in), then runs
//! `/usr/sbin/sshd -D -e` on a free port and waits until `ssh … HOST true`
//! works. [`Sshd::start`] does that in a temp dir for a test. Every test
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
//! Dropping an `Sshd` kills its connections (with
//! [`Options::kill_sessions_on_drop`], everything that descends from the
//! listener: the sessions and whatever runs in them) and then the listener.
//! Sessions that outlived a restart are orphans by then (no longer children
//! of the listener), so neither `kill_connections` nor `Drop` reaches them;
//! they end when their client does.
//!
//! What sshd needs here: an absolute binary path (it re-execs itself), the
//! privilege separation dir `/run/sshd` when run as root, host keys no more
//! open than 0600 (ssh-keygen's default), and `StrictModes no` because the
//! temp dir is not owned the way sshd wants.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::procs;
use crate::tools::find_in_path;
use crate::wait::{poll_until, wait_for, Stopped, Wait};

/// Where Debian's OpenSSH server lives; absolute, since sshd re-execs itself.
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long sshd may take to accept logins.
const READY: Duration = Duration::from_secs(10);

/// How long processes may take to die after a signal.
const DIE: Duration = Duration::from_secs(5);

/// What is missing to run a server here, if anything: the program and the
/// Debian package that provides it.
pub fn missing() -> Option<(&'static str, &'static str)> {
    if !Path::new(SSHD).exists() {
        return Some(("sshd", "openssh-server"));
    }
    ["ssh", "ssh-keygen"]
        .into_iter()
        .find(|prog| find_in_path(prog).is_none())
        .map(|prog| (prog, "openssh-client"))
}

/// How [`Sshd::start_in`] runs the server.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The `Host` alias in the client config.
    pub host: &'static str,
    /// Start sshd in its own process group, so that a Ctrl-C at the
    /// terminal reaches only the caller, which then stops sshd itself.
    pub own_process_group: bool,
    /// On drop, SIGKILL every process descending from the listener, not
    /// only the connections' sshd processes.
    pub kill_sessions_on_drop: bool,
    /// Checked while waiting for sshd: true ends the wait with
    /// [`Error::Cancelled`].
    pub cancelled: fn() -> bool,
}

impl Options {
    /// A server in the caller's process group, for host alias `host`.
    pub fn new(host: &'static str) -> Options {
        Options {
            host,
            own_process_group: false,
            kill_sessions_on_drop: false,
            cancelled: || false,
        }
    }
}

/// Why a server did not come up.
#[derive(Debug)]
pub enum Error {
    /// Keys, configs, the user name or sshd itself could not be made or
    /// started: what failed and why.
    Setup(String),
    /// sshd exited on its own (e.g. the port was taken); its log.
    Exited {
        /// sshd's exit status.
        status: ExitStatus,
        /// The sshd log.
        log: String,
    },
    /// sshd runs but logins did not work in time.
    NotReady {
        /// The last ssh error.
        last: String,
        /// The sshd log.
        log: String,
    },
    /// [`Options::cancelled`] said so.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Setup(what) => f.write_str(what),
            Error::Exited { status, log } => {
                write!(f, "sshd exited with {status} at startup; sshd log:\n{log}")
            }
            Error::NotReady { last, log } => write!(
                f,
                "sshd not accepting logins after {} s; last ssh error: {last}; sshd log:\n{log}",
                READY.as_secs()
            ),
            Error::Cancelled => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for Error {}

/// A running sshd on 127.0.0.1 and a client config that logs into it.
pub struct Sshd {
    /// The port sshd listens on, on 127.0.0.1.
    pub port: u16,
    /// Holds the keys, configs, `authorized_keys`, pid file and `sshd.log`.
    pub dir: PathBuf,
    /// The client config: pass it as `ssh -F <ssh_config>` and log into `host`.
    pub ssh_config: PathBuf,
    /// The `Host` alias in `ssh_config`.
    pub host: String,
    /// The user ssh logs in as: the current user.
    pub user: String,
    opts: Options,
    /// The listening sshd (`-D`, so it is this process itself).
    child: Child,
    /// The temp dir `dir` is, when [`Sshd::start`] made it; removed last.
    _temp: Option<tempfile::TempDir>,
}

impl Sshd {
    /// For tests: start a fresh server in a temp dir (host alias
    /// "twinsync-test") and wait until `ssh` can log into it.
    ///
    /// Returns `None`, after a loud message on stderr, if OpenSSH is not
    /// installed; panics instead if `$CI` is set, so CI cannot skip.
    /// Panics with the sshd log if the server does not come up in 10 s.
    pub fn start() -> Option<Sshd> {
        if let Some((program, package)) = missing() {
            let missing = format!("{program} missing: .ci/run must apt-get install {package}");
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
        let temp = tempfile::Builder::new()
            .prefix("twinsync-sshd-")
            .tempdir()
            .expect("create sshd temp dir");
        let mut sshd =
            Sshd::start_in(temp.path(), Options::new("twinsync-test")).unwrap_or_else(|e| {
                panic!("{e}");
            });
        sshd._temp = Some(temp);
        Some(sshd)
    }

    /// Generate keys and configs in `dir` (created if needed), start sshd
    /// on a free port and wait until a login works.
    pub fn start_in(dir: &Path, opts: Options) -> Result<Sshd, Error> {
        let setup = |what: &str, e: &dyn fmt::Display| Error::Setup(format!("{what}: {e}"));
        // sshd running as root refuses to start without it; as another user
        // it neither needs it nor may create it, so a failure is not fatal.
        let _ = fs::create_dir_all("/run/sshd");
        fs::create_dir_all(dir).map_err(|e| setup(&dir.display().to_string(), &e))?;
        for key in ["host_key", "client_key"] {
            keygen(&dir.join(key), opts.host)?;
        }
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .map_err(|e| setup("write authorized_keys", &e))?;
        let user = current_user().ok_or_else(|| {
            Error::Setup("cannot tell the current user: `id -un` failed and $USER is unset".into())
        })?;
        let mut sshd = None;
        // The free port may be taken by someone else before sshd binds it:
        // then sshd exits at once, and we try again with another port.
        for attempt in 1..=3 {
            let port = free_port().map_err(|e| setup("bind 127.0.0.1:0", &e))?;
            write_configs(dir, port, &user, opts.host)
                .map_err(|e| setup(&dir.display().to_string(), &e))?;
            match launch(dir, port, opts) {
                Ok(child) => {
                    sshd = Some((port, child));
                    break;
                }
                Err(Error::Exited { .. }) if attempt < 3 => continue,
                Err(e) => return Err(e),
            }
        }
        let (port, child) = sshd.expect("the last attempt returns");
        Ok(Sshd {
            port,
            dir: dir.to_path_buf(),
            ssh_config: dir.join("ssh_config"),
            host: opts.host.to_string(),
            user,
            opts,
            child,
            _temp: None,
        })
    }

    /// A `ssh -F <ssh_config> <host> <cmd>` command, ready to run or spawn
    /// (stdin is null unless set otherwise).
    pub fn command(&self, cmd: &str) -> Command {
        ssh_command(&self.ssh_config, &self.host, cmd)
    }

    /// For tests: run `cmd` on the server through ssh and return its output.
    pub fn ssh(&self, cmd: &str) -> Output {
        self.command(cmd).output().expect("run ssh")
    }

    /// The contents of the sshd log (stderr of every sshd started so far).
    pub fn log(&self) -> String {
        log_text(&self.dir)
    }

    /// For tests: drop every open connection to this server: SIGKILL the
    /// sshd processes descending from the listening sshd (and only those),
    /// and wait until they are gone. The listener keeps accepting logins.
    pub fn kill_connections(&self) {
        // The listener is only reaped by `stop`, after which `restart` puts
        // a live child in its place (or panics): a live `child` pid is ours.
        let pid = self.child.id() as i32;
        if procs::running(pid) {
            let survivors = procs::kill_descendants(pid, DIE, is_sshd);
            assert!(
                survivors.is_empty(),
                "sshd pids {survivors:?} survived SIGKILL"
            );
        }
    }

    /// For tests: stop the listening sshd and start it again on the same
    /// port with the same keys, waiting until it accepts logins (panics
    /// with the sshd log if it does not). Open connections are not
    /// touched, as with a real sshd restart.
    pub fn restart(&mut self) {
        self.stop();
        match launch(&self.dir, self.port, self.opts) {
            Ok(child) => self.child = child,
            Err(e) => panic!("{e}"),
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
            let child = &mut self.child;
            if !wait_for(DIE, Duration::from_millis(5), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Connections first: once the listener is gone they are orphans
        // and can no longer be told apart from other servers' connections.
        if let Some(pid) = self.listener_pid() {
            if self.opts.kill_sessions_on_drop {
                procs::kill_descendants(pid, DIE, |_| true);
            } else {
                procs::kill_descendants(pid, DIE, is_sshd);
            }
        }
        self.stop();
    }
}

/// Whether `p` is one of sshd's own processes (a connection's sshd).
fn is_sshd(p: &procs::Proc) -> bool {
    p.comm.starts_with("sshd")
}

/// Start sshd with `dir/sshd_config`, appending its stderr to `dir/sshd.log`,
/// and wait until a login works. On failure sshd is stopped and reaped.
fn launch(dir: &Path, port: u16, opts: Options) -> Result<Child, Error> {
    let log_path = dir.join("sshd.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::Setup(format!("{}: {e}", log_path.display())))?;
    let mut cmd = Command::new(SSHD);
    cmd.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if opts.own_process_group {
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Setup(format!("cannot start {SSHD}: {e}")))?;
    let ssh_config = dir.join("ssh_config");
    let mut last = String::new();
    let up = poll_until(Wait::new(READY, Duration::from_millis(20)), || {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_text(dir);
            return Err(Error::Exited { status, log });
        }
        if (opts.cancelled)() {
            return Err(Error::Cancelled);
        }
        match try_login(port, &ssh_config, opts.host) {
            Ok(None) => Ok(true),
            Ok(Some(why)) => {
                last = why;
                Ok(false)
            }
            Err(e) => Err(Error::Setup(format!("cannot run ssh: {e}"))),
        }
    });
    let e = match up {
        Ok(_) => return Ok(child),
        Err(Stopped::Failed(e @ Error::Exited { .. })) => return Err(e),
        Err(Stopped::Failed(e)) => e,
        Err(Stopped::TimedOut) => Error::NotReady {
            last,
            log: log_text(dir),
        },
    };
    let _ = child.kill();
    let _ = child.wait();
    Err(e)
}

/// The sshd log in `dir`.
fn log_text(dir: &Path) -> String {
    fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
}

/// An ed25519 key pair without passphrase at `path` and `path.pub`; the
/// error carries ssh-keygen's message.
fn keygen(path: &Path, comment: &str) -> Result<(), Error> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Setup(format!("cannot run ssh-keygen: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Write `dir/sshd_config` (127.0.0.1 only, keys in `dir`) and
/// `dir/ssh_config` (`ssh -F dir/ssh_config HOST` logs in) for `port`.
fn write_configs(dir: &Path, port: u16, user: &str, host: &str) -> io::Result<()> {
    let d = dir.display();
    let sshd_config = format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {d}/host_key\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PidFile {d}/sshd.pid\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin yes\n\
         LogLevel ERROR\n\
         MaxSessions 50\n\
         MaxStartups 50\n"
    );
    let ssh_config = format!(
        "Host {host}\n\
         \x20   HostName 127.0.0.1\n\
         \x20   Port {port}\n\
         \x20   User {user}\n\
         \x20   IdentityFile {d}/client_key\n\
         \x20   IdentitiesOnly yes\n\
         \x20   StrictHostKeyChecking no\n\
         \x20   UserKnownHostsFile /dev/null\n\
         \x20   GlobalKnownHostsFile /dev/null\n\
         \x20   ConnectTimeout 10\n\
         \x20   LogLevel ERROR\n\
         \x20   BatchMode yes\n"
    );
    fs::write(dir.join("sshd_config"), sshd_config)?;
    fs::write(dir.join("ssh_config"), ssh_config)
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// The current user name, from `id -un`, else `$USER`.
fn current_user() -> Option<String> {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

/// `ssh -F <ssh_config> <host> <cmd>`, stdin null.
fn ssh_command(ssh_config: &Path, host: &str, cmd: &str) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(ssh_config)
        .arg(host)
        .arg(cmd)
        .stdin(Stdio::null());
    c
}

/// One try at logging in on `port`: `Ok(None)` when `ssh … true` worked,
/// `Ok(Some(why))` when not yet (nothing listening, or ssh's complaint), an
/// error when ssh cannot be run at all.
fn try_login(port: u16, ssh_config: &Path, host: &str) -> io::Result<Option<String>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        return Ok(Some("(no connection to the port)".into()));
    }
    let out = ssh_command(ssh_config, host, "true").output()?;
    if out.status.success() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
