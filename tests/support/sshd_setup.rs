//! The parts of a throwaway loopback sshd shared by the end-to-end tests
//! (`tests/e2e/sshd.rs`) and the benchmark (`contrib/bench/src/sshd.rs`):
//! keys, configs, a free port, the user name, the sshd and ssh command lines
//! and the probe for a working login. Each includes this file with `#[path]`
//! and keeps its own error handling (tests panic, the bench reports) and
//! process management.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where Debian's OpenSSH server lives.
pub const SSHD: &str = "/usr/sbin/sshd";

/// An ed25519 key pair without passphrase at `path` and `path.pub`; the
/// error carries ssh-keygen's message.
pub fn keygen(path: &Path, comment: &str) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Write `dir/sshd_config` (127.0.0.1 only, keys in `dir`) and
/// `dir/ssh_config` (`ssh -F dir/ssh_config HOST` logs in) for `port`.
pub fn write_configs(dir: &Path, port: u16, user: &str, host: &str) -> io::Result<()> {
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
    std::fs::write(dir.join("sshd_config"), sshd_config)?;
    std::fs::write(dir.join("ssh_config"), ssh_config)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// The current user name, from `id -un`, else `$USER`.
pub fn current_user() -> Option<String> {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

/// sshd in the foreground with `dir/sshd_config`, its log (stderr) to `log`.
pub fn sshd_command(dir: &Path, log: File) -> Command {
    let mut c = Command::new(SSHD);
    c.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    c
}

/// `ssh -F <ssh_config> <host> <cmd>`, stdin null.
pub fn ssh_command(ssh_config: &Path, host: &str, cmd: &str) -> Command {
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
pub fn try_login(port: u16, ssh_config: &Path, host: &str) -> io::Result<Option<String>> {
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
