//! Programs on `$PATH`.

use std::path::PathBuf;

/// The first `name` on `$PATH` that is a regular file.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
