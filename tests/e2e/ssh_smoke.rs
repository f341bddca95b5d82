//! Smoke tests of the `sshd` harness: logins work, and both faults it can
//! inject (dropped links, sshd restarts) behave as documented.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::sshd::Sshd;

/// Wait for `child` to exit, for at most `limit`.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ssh still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Spawn `ssh … 'echo ready; <rest>'` and return once the remote side
/// has printed "ready", i.e. the session is up.
fn spawn_session(
    s: &Sshd,
    rest: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = s
        .command(&format!("echo ready; {rest}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Keeps "Connection … closed by remote host." out of the test output.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "sshd log:\n{}", s.log());
    (child, out)
}

#[test]
fn ssh_runs_a_command() {
    let Some(s) = Sshd::start() else { return };
    assert_ne!(s.port, 0);
    assert_eq!(s.host, "twinsync-test");
    assert!(!s.user.is_empty());
    assert!(s.ssh_config.starts_with(&s.dir));
    let out = s.ssh("echo hi");
    assert!(out.status.success(), "{out:?}\nsshd log:\n{}", s.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi");
}

#[test]
fn kill_connections_drops_open_links() {
    let Some(s) = Sshd::start() else { return };
    let (mut child, _out) = spawn_session(&s, "sleep 30");
    s.kill_connections();
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert!(!status.success(), "ssh exited with {status}");
    // The listener is untouched: new logins work.
    assert!(s.ssh("true").status.success(), "sshd log:\n{}", s.log());
}

#[test]
fn restart_keeps_serving() {
    let Some(mut s) = Sshd::start() else { return };
    let port = s.port;
    // Like a real sshd restart, open sessions survive it.
    let (mut child, mut out) = spawn_session(&s, "sleep 1; echo still");
    s.restart();
    assert_eq!(s.port, port);
    let out2 = s.ssh("echo hi");
    assert!(out2.status.success(), "{out2:?}\nsshd log:\n{}", s.log());
    assert_eq!(String::from_utf8_lossy(&out2.stdout).trim(), "hi");
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "still\n");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}
