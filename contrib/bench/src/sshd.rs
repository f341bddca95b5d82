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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{interrupted, io_ctx, Failure, Res};
use crate::procs;

/// The sshd binary; absolute, since sshd re-execs itself.
#[path = "../../../tests/support/sshd_setup.rs"]
mod setup;
pub use setup::SSHD;

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
        for key in ["host_key", "client_key"] {
            setup::keygen(&dir.join(key), HOST).map_err(Failure::Other)?;
        }
        io_ctx(
            fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")),
            "write authorized_keys",
        )?;
        let user = setup::current_user()
            .ok_or_else(|| Failure::Other("cannot tell the current user (id -un, $USER)".into()))?;
        let client_config = dir.join("ssh_config");
        // The free port may be taken by someone else before sshd binds it:
        // then sshd exits at once, and we try another port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = io_ctx(setup::free_port(), "bind 127.0.0.1:0")?;
            io_ctx(setup::write_configs(dir, port, &user, HOST), dir.display())?;
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
    let mut child = setup::sshd_command(dir, log)
        // Its own process group: a Ctrl-C at the terminal reaches only the
        // bench, which then stops sshd itself.
        .process_group(0)
        .spawn()
        .map_err(|e| Launch::Failed(Failure::Other(format!("cannot start {SSHD}: {e}"))))?;
    let t = Instant::now();
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
        let last = match setup::try_login(port, client_config, HOST) {
            Ok(None) => return Ok(child),
            Ok(Some(why)) => why,
            Err(e) => {
                let f = Failure::Other(format!("cannot run ssh: {e}"));
                return Err(fail(&mut child, f));
            }
        };
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

/// The sshd log, on one line.
fn log_text(dir: &Path) -> String {
    fs::read_to_string(dir.join("sshd.log"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
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
