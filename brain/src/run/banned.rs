//! Banned programs (`-b`): a scan of `/proc` for a running one.

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
