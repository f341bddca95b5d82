//! A private OpenSSH server on 127.0.0.1 for the `ssh-*` scenarios (the
//! approach of `tests/e2e/sshd.rs`).
//!
//! [`SshServer::start`] makes, in a directory of the bench's temp root, a
//! fresh ed25519 host key and client key, an `authorized_keys` with the
//! client key, an `sshd_config` and a client `ssh_config` (host alias
//! [`HOST`]), then runs `/usr/sbin/sshd -D -e` on a free port of 127.0.0.1
//! (never any other address) and waits until `ssh -F ssh_config
//! twinsync-bench true` works. Dropping it kills every process that
//! descends from the listening sshd (the sessions and whatever runs in
//! them, e.g. twinsync's remote agents) and then the listener itself.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{interrupted, io_ctx, Failure, Res};
use crate::procs;

/// The sshd binary; absolute, since sshd re-execs itself.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The `Host` alias in the client config.
pub const HOST: &str = "twinsync-bench";

/// How long sshd may take to accept logins.
const READY: Duration = Duration::from_secs(10);

/// How long processes may take to die after SIGTERM / SIGKILL.
const DIE: Duration = Duration::from_secs(5);

/// Why the ssh scenarios cannot run here, if they cannot: the message to
/// print (and to show in place of the ssh section).
pub fn unavailable() -> Option<String> {
    if !Path::new(SSHD).exists() {
        return Some("sshd: not installed (apt-get install openssh-server)".into());
    }
    for prog in ["ssh", "ssh-keygen"] {
        if procs::find_in_path(prog).is_none() {
            return Some(format!(
                "{prog}: not installed (apt-get install openssh-client)"
            ));
        }
    }
    None
}

/// A running sshd on 127.0.0.1 and a client config that logs into it.
pub struct SshServer {
    /// The port sshd listens on, on 127.0.0.1.
    pub port: u16,
    /// Client config: `ssh -F <client_config> twinsync-bench` logs in.
    pub client_config: PathBuf,
    /// The listening sshd (`-D`, so it is this process itself).
    child: Child,
}

impl SshServer {
    /// Generate keys and configs in `dir` (created if needed), start sshd
    /// on a free port and wait until a login works.
    pub fn start(dir: &Path) -> Res<SshServer> {
        // sshd running as root refuses to start without it; as another user
        // it neither needs it nor may create it, so a failure is not fatal.
        let _ = fs::create_dir_all("/run/sshd");
        io_ctx(fs::create_dir_all(dir), dir.display())?;
        keygen(&dir.join("host_key"))?;
        keygen(&dir.join("client_key"))?;
        io_ctx(
            fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")),
            "write authorized_keys",
        )?;
        let user = current_user()?;
        let client_config = dir.join("ssh_config");
        // The free port may be taken by someone else before sshd binds it:
        // then sshd exits at once, and we try another port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            write_configs(dir, port, &user)?;
            match launch(dir, port, &client_config) {
                Ok(child) => {
                    return Ok(SshServer {
                        port,
                        client_config,
                        child,
                    })
                }
                Err(Launch::Exited(_)) if attempt < 3 => continue,
                Err(Launch::Exited(status)) => {
                    return Err(Failure::Other(format!(
                        "sshd exited with {status} at startup; sshd log: {}",
                        log_text(dir)
                    )))
                }
                Err(Launch::Failed(f)) => return Err(f),
            }
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Ok(None) = self.child.try_wait() {
            // The whole tree first: once the listener or a session is gone,
            // its children are orphans and can no longer be found as ours.
            let tree = descendants(pid);
            for &p in &tree {
                // SAFETY: kill(2) has no memory-safety preconditions; the
                // pids descend from our own, still unreaped, sshd.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            }
            // SAFETY: as above, on our own unreaped child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < DIE {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(5));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a launch did not give a working server.
enum Launch {
    /// sshd exited on its own (e.g. the port was taken).
    Exited(std::process::ExitStatus),
    /// Anything else; sshd has been stopped.
    Failed(Failure),
}

/// Start sshd with `dir/sshd_config`, appending its stderr to
/// `dir/sshd.log`, and wait until a login works. On failure sshd is stopped
/// and reaped.
fn launch(dir: &Path, port: u16, client_config: &Path) -> Result<Child, Launch> {
    let log_path = dir.join("sshd.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Launch::Failed(Failure::Other(format!("{}: {e}", log_path.display()))))?;
    let mut child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: a Ctrl-C at the terminal reaches only the
        // bench, which then stops sshd itself.
        .process_group(0)
        .spawn()
        .map_err(|e| Launch::Failed(Failure::Other(format!("cannot start {SSHD}: {e}"))))?;
    let t = Instant::now();
    let mut last = String::from("(no connection to the port)");
    let fail = |child: &mut Child, f: Failure| {
        let _ = child.kill();
        let _ = child.wait();
        Launch::Failed(f)
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Launch::Exited(status));
        }
        if interrupted() {
            return Err(fail(&mut child, Failure::Interrupted));
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            match ssh_command(client_config, "true").output() {
                Ok(out) if out.status.success() => return Ok(child),
                Ok(out) => {
                    last = format!(
                        "{}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Err(e) => {
                    let f = Failure::Other(format!("cannot run ssh: {e}"));
                    return Err(fail(&mut child, f));
                }
            }
        }
        if t.elapsed() > READY {
            let f = Failure::Other(format!(
                "sshd not accepting logins after {} s; last ssh error: {last}; sshd log: {}",
                READY.as_secs(),
                log_text(dir)
            ));
            return Err(fail(&mut child, f));
        }
        sleep(Duration::from_millis(20));
    }
}

/// `ssh -F <client_config> twinsync-bench <cmd>`, stdin null.
fn ssh_command(client_config: &Path, cmd: &str) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(client_config)
        .arg(HOST)
        .arg(cmd)
        .stdin(Stdio::null());
    c
}

/// The sshd log, on one line.
fn log_text(dir: &Path) -> String {
    fs::read_to_string(dir.join("sshd.log"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Write `dir/sshd_config` and `dir/ssh_config` for `port`.
fn write_configs(dir: &Path, port: u16, user: &str) -> Res<()> {
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
        "Host {HOST}\n\
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
    for (name, text) in [("sshd_config", sshd_config), ("ssh_config", ssh_config)] {
        let path = dir.join(name);
        io_ctx(fs::write(&path, text), path.display())?;
    }
    Ok(())
}

/// An ed25519 key pair without passphrase at `path` and `path.pub`.
fn keygen(path: &Path) -> Res<()> {
    let out = io_ctx(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "twinsync-bench",
                "-f",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .output(),
        "cannot run ssh-keygen",
    )?;
    if !out.status.success() {
        return Err(Failure::Other(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Res<u16> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port());
    io_ctx(port, "bind 127.0.0.1:0")
}

/// The current user name, from `id -un`, else `$USER`.
fn current_user() -> Res<String> {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .ok_or_else(|| Failure::Other("cannot tell the current user (id -un, $USER)".into()))
}

/// Every live process descending from `root` (children first found,
/// grandchildren after), from one scan of `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let table: Vec<(u32, u32)> = procs::all_pids()
        .into_iter()
        .filter_map(|p| procs::proc_stat(p).map(|s| (p, s.ppid)))
        .collect();
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(parent) = todo.pop() {
        for &(pid, ppid) in &table {
            if ppid == parent {
                out.push(pid);
                todo.push(pid);
            }
        }
    }
    out
}
