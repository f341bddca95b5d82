//! Validated settings: what the rest of the brain sees (never clap's structs).

use std::path::{Path, PathBuf};

use crate::engine::Side;

/// Everything a sync run needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Left (local) root, absolute and canonical.
    pub left: PathBuf,
    /// Right root, absolute and canonical.
    pub right: PathBuf,
    /// Exclude regexes.
    pub excludes: Vec<String>,
    /// Trace events and decisions; change nothing.
    pub dry_run: bool,
    /// Merge once and exit.
    pub sync_only: bool,
    /// Start live mode without the initial merge.
    pub skip_initial_sync: bool,
    /// Exit 0 once a pass finds nothing to do.
    pub exit_on_no_events: bool,
    /// Which side wins a conflict on equal mtimes.
    pub prefer: Side,
    /// Extra rsync arguments.
    pub rsync_extra: Vec<String>,
    /// Log filter handed to agents.
    pub agent_log: Option<String>,
    /// Override the safety nets (mass deletion, emptied root, changed device).
    pub force: bool,
    /// Instance name (index file, lock, status).
    pub instance: String,
    /// A merge deleting more than this share of a side's entries is refused.
    pub max_delete_percent: u8,
    /// Days trash and conflict copies are kept.
    pub trash_days: u32,
    /// The right replica is on another host (`right` is then its path there).
    pub remote: Option<crate::remote::RemoteSpec>,
    /// The agent binary on the remote host.
    pub remote_path: String,
    /// An ssh config file to use instead of the user's.
    pub ssh_config: Option<PathBuf>,
}

/// The default instance name of a pair: stable for the same two roots.
#[must_use]
pub fn default_instance(left: &Path, right: &str) -> String {
    // FNV-1a: stable across runs and builds (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in left
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(right.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("pair-{h:016x}")
}

/// A usage error: bad roots or options. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Check one root: it must exist and be a directory. Returns its canonical form.
///
/// # Errors
/// A [`UsageError`] that names the root and says what to do.
pub fn check_root(which: &str, p: &Path) -> Result<PathBuf, UsageError> {
    match std::fs::metadata(p) {
        Ok(md) if md.is_dir() => p
            .canonicalize()
            .map_err(|e| UsageError(format!("{which} root {}: {e}", p.display()))),
        Ok(_) => Err(UsageError(format!(
            "{which} root {} is not a directory",
            p.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(UsageError(format!(
            "{which} root {} does not exist; create it first (twinsync never creates or \
             deletes a replica root)",
            p.display()
        ))),
        Err(e) => Err(UsageError(format!("{which} root {}: {e}", p.display()))),
    }
}

/// Check that two canonical roots are distinct and not nested.
///
/// # Errors
/// A [`UsageError`] naming both.
pub fn check_pair(left: &Path, right: &Path) -> Result<(), UsageError> {
    if left == right {
        return Err(UsageError(format!(
            "left and right are the same directory ({}); give two different folders",
            left.display()
        )));
    }
    if right.starts_with(left) || left.starts_with(right) {
        return Err(UsageError(format!(
            "one root is inside the other ({} and {}); a replica cannot contain its twin",
            left.display(),
            right.display()
        )));
    }
    Ok(())
}
