//! The replica lock: `.twinsync/lock` records which instance (host, pid)
//! serves a replica, so a second instance on the same replica is refused. A
//! lock left by a dead process on this host is taken over.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A held lock; released (the file removed) when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map_or_else(|_| "localhost".into(), |s| s.trim().to_string())
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

impl Lock {
    /// Take the lock in `state_dir` for `instance`.
    ///
    /// # Errors
    /// A message naming the holder when another live process holds it.
    pub fn take(state_dir: &Path, instance: &str) -> Result<Lock, String> {
        let path = state_dir.join("lock");
        let me = format!(
            "instance={instance}\nhost={}\npid={}\n",
            hostname(),
            std::process::id()
        );
        for _ in 0..3 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(me.as_bytes())
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    let host = field(&text, "host").unwrap_or("?");
                    let pid: i32 = field(&text, "pid")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    let holder = field(&text, "instance").unwrap_or("?");
                    if host == hostname() && (pid <= 0 || !alive(pid)) {
                        tracing::warn!(
                            "taking over the stale lock of instance {holder} (pid {pid} is gone)"
                        );
                        let _ = fs::remove_file(&path);
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
        let path = self.path.clone();
        move || release(&path)
    }
}

/// Remove the lock file at `path` if this process holds it.
fn release(path: &Path) {
    if let Ok(text) = fs::read_to_string(path) {
        if field(&text, "pid") == Some(std::process::id().to_string().as_str()) {
            let _ = fs::remove_file(path);
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        release(&self.path);
    }
}
