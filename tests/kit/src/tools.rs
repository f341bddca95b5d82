//! Programs on `$PATH`.

use std::path::PathBuf;

/// The first executable `name` on `$PATH` (or `name` itself when it is a
/// path to one), by the rule of which(1) that the brain uses too.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}
