//! Banned programs (`-b`): a scan of `/proc` for a running one.

use std::time::Duration;

/// How often `/proc` is scanned for a banned program while the sync runs: a
/// scan reads every process's name, cheap at this pace, and a banned program
/// that starts stops the sync within two seconds.
pub(super) const BANNED_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The first of `programs` that is running now (by process name).
pub(super) fn banned_running(programs: &[String]) -> Option<String> {
    if programs.is_empty() {
        return None;
    }
    let rd = std::fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
            let comm = comm.trim();
            if let Some(p) = programs.iter().find(|p| p.as_str() == comm) {
                return Some(p.clone());
            }
        }
    }
    None
}
