//! The fidelity scenarios (issue 12): what a replica carries besides names
//! and bytes, timed. Each runs twinsync alone (with rsync one way beside
//! it where rsync can do the same work) and has a table section of its
//! own:
//!
//! * **attr-latency** ([`attrs`]) — on a live pair, a chmod, a chown and a
//!   setfattr of a synced file, each timed until the right side shows it,
//!   beside a small file's content latency in the same run;
//! * **sparse** ([`sparse`]) — a 1 GiB file holding 1 MiB of data written
//!   on the left of a live pair, locally and over ssh: time until it is on
//!   the right, the space it takes there, and about how many bytes crossed
//!   the loopback; `rsync -aS` one way beside it;
//! * **rootfs-merge** ([`rootfs`]) — the first `--sync-only` merge of a
//!   Debian root file system (unpacked from real packages, plus what a
//!   container's root holds) into an empty right side, beside
//!   `rsync -aHAXS --numeric-ids` one way; then what
//!   `rsync -aHAXS --checksum --dry-run --itemize-changes` still finds.

pub mod attrs;
pub mod rootfs;
pub mod sparse;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use crate::error::{io_ctx, Failure, Res};

/// Whether this process runs as root (owners, devices, `security.*`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn c_path(path: &Path) -> Res<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Failure::Other(format!("{}: NUL in path", path.display())))
}

/// `lsetxattr(path, name, value)`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Res<()> {
    let p = c_path(path)?;
    let n = CString::new(name).map_err(|_| Failure::Other("NUL in name".into()))?;
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()`.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        io_ctx(
            Err(std::io::Error::last_os_error()),
            format!("setxattr {name} on {}", path.display()),
        )
    }
}

/// The value of the attribute `name` of `path` (`None`: not there).
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = c_path(path).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of `buf.len()`.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let len = usize::try_from(r).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Run `sh -ec script` in `dir` to completion; its stderr in the failure.
pub fn sh(dir: &Path, script: &str) -> Res<()> {
    let out = io_ctx(
        Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .output(),
        "sh",
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::Other(format!(
            "sh -ec in {}: {}: {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// What `rsync -aHAXS --numeric-ids --checksum --dry-run --itemize-changes`
/// would still change to make `to` like `from` (`.twinsync/` and the roots
/// themselves left out), one line each.
pub fn rsync_differences(rsync: &Path, from: &Path, to: &Path) -> Res<Vec<String>> {
    let (mut f, mut t) = (from.as_os_str().to_owned(), to.as_os_str().to_owned());
    f.push("/");
    t.push("/");
    let out = io_ctx(
        Command::new(rsync)
            .args([
                "-aHAXS",
                "--numeric-ids",
                "--checksum",
                "--dry-run",
                "--itemize-changes",
                "--exclude=/.twinsync",
            ])
            .arg(f)
            .arg(t)
            .output(),
        "rsync --dry-run",
    )?;
    if !out.status.success() {
        return Err(Failure::Other(format!(
            "rsync --dry-run: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.ends_with(" ./"))
        .map(str::to_owned)
        .collect())
}
