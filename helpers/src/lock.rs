//! The replica lock: `.twinsync/lock` records which instance (host, pid)
//! serves a replica, so a second instance on the same replica is refused. A
//! lock left by a dead process on this host is taken over.

use std::fs;
use std::io::{self, Read, Write};
use std::sync::Arc;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};

/// A held lock; released (the file removed) when dropped.
#[derive(Debug)]
pub struct Lock {
    /// The state dir, held open: the lock file is named through it, never
    /// through a path a user could swap for a symlink.
    state: Arc<OwnedFd>,
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map_or_else(|_| "localhost".into(), |s| s.trim().to_string())
}

/// True when `pid` is a running process. A zombie is not: it has exited
/// (an agent killed with -9 after its brain, waiting for init to reap it),
/// and its lock is stale.
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    let exists = r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !zombie(pid)
}

/// True when `/proc/PID/stat` says the process has exited (state `Z` or
/// `X`): the state follows the command name, which is in parentheses and
/// may itself hold any byte, so it is read after the last `)`.
fn zombie(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.iter()
            .rposition(|&b| b == b')')
            .and_then(|i| stat.get(i + 2))
            .is_some_and(|&state| state == b'Z' || state == b'X')
    })
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The lock file's text (a regular file, not followed, at most 4 KiB).
fn read_lock(state: BorrowedFd<'_>) -> String {
    let mut text = String::new();
    if let Ok((f, _)) = crate::beneath::open_file(state, b"lock") {
        let _ = f.take(4096).read_to_string(&mut text);
    }
    text
}

/// How long an agent waits for an older agent of its own instance, still
/// holding the lock, to finish exiting.
const SAME_INSTANCE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Lock {
    /// Take the lock in the state dir `state` (shown as `state_path`) for
    /// `instance`.
    ///
    /// # Errors
    /// A message naming the holder when another live process holds it.
    pub fn take(
        state: OwnedFd,
        state_path: &std::path::Path,
        instance: &str,
    ) -> Result<Lock, String> {
        let path = state_path.join("lock");
        let me = format!(
            "instance={instance}\nhost={}\npid={}\n",
            hostname(),
            std::process::id()
        );
        for _ in 0..3 {
            match rustix::fs::openat(
                &state,
                "lock",
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    fs::File::from(fd)
                        .write_all(me.as_bytes())
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    return Ok(Lock {
                        state: Arc::new(state),
                    });
                }
                Err(rustix::io::Errno::EXIST) => {
                    let text = read_lock(state.as_fd());
                    let host = field(&text, "host").unwrap_or("?");
                    let pid: i32 = field(&text, "pid")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    let holder = field(&text, "instance").unwrap_or("?");
                    if host == hostname() && holder == instance && pid > 0 {
                        // An agent of this very instance: one its brain lost
                        // (killed, or its link cut) and replaced by us. It
                        // may still be exiting (its pipes closed before its
                        // lock was seen free): give it a moment to go.
                        let deadline = std::time::Instant::now() + SAME_INSTANCE_GRACE;
                        while alive(pid) && std::time::Instant::now() < deadline {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                    }
                    if host == hostname() && (pid <= 0 || !alive(pid)) {
                        tracing::warn!(
                            "taking over the stale lock of instance {holder} (pid {pid} is gone)"
                        );
                        let _ = rustix::fs::unlinkat(&state, "lock", AtFlags::empty());
                        continue;
                    }
                    return Err(format!(
                        "in use by twinsync instance {holder} (host {host}, pid {pid}); stop that \
                         instance first, or if that process is gone for good, remove {}",
                        path.display()
                    ));
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!("cannot take {}: it keeps changing", path.display()))
    }
}

impl Lock {
    /// Something that releases this lock from another thread, for a process
    /// about to exit without unwinding (`std::process::exit`).
    pub fn releaser(&self) -> impl Fn() + Send + 'static {
        let state = Arc::clone(&self.state);
        move || release(state.as_fd())
    }
}

/// Remove the lock file of the state dir `state` if this process holds it.
fn release(state: BorrowedFd<'_>) {
    let text = read_lock(state);
    if field(&text, "pid") == Some(std::process::id().to_string().as_str()) {
        let _ = rustix::fs::unlinkat(state, "lock", AtFlags::empty());
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        release(self.state.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that exited but was not reaped yet (a zombie) holds no
    /// lock: its lock is taken over, not reported in use.
    #[test]
    fn a_zombie_holder_is_not_alive() {
        assert!(alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped: it becomes a zombie once it has exited.
        let t = std::time::Instant::now();
        while !zombie(pid) {
            assert!(t.elapsed().as_secs() < 10, "the child never exited");
            std::thread::yield_now();
        }
        assert!(!alive(pid));
        child.wait().unwrap();
    }
}
