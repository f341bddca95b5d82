//! Walking a replica into a map that two replicas are compared by: relative
//! path → what the caller records of each entry. The walk is shared; what is
//! recorded is the caller's, because the callers compare different things:
//! the e2e tests a description with contents, modes, file mtimes and device
//! numbers; the campaign typed entries with contents, modes and file mtimes;
//! the bench only kinds, sizes and link targets (its trees hold up to a
//! million files, whose contents it samples separately).

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Relative path (as bytes, `a/b`) → what was recorded of the entry.
pub type Tree<T> = BTreeMap<Vec<u8>, T>;

/// The name of twinsync's state directory at a replica's root.
pub const STATE_DIR: &str = ".twinsync";

/// How to walk.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// Leave out the root's `.twinsync/`.
    pub skip_state: bool,
    /// A directory that cannot be read (for another reason than being gone)
    /// is an error; otherwise it is listed without its contents.
    pub strict: bool,
}

/// Every entry below `root`, recorded by `record(path, metadata)` (the
/// metadata of the entry itself, links not followed); an entry for which it
/// returns `None` is left out. Entries that vanish while we look are just
/// not listed, nor is a missing `root`: trees are walked while they change.
pub fn walk<T>(
    root: &Path,
    how: Walk,
    mut record: impl FnMut(&Path, &Metadata) -> Option<T>,
) -> io::Result<Tree<T>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if how.strict && e.kind() != io::ErrorKind::NotFound => {
                return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
            }
            Err(_) => continue,
        };
        for e in entries.flatten() {
            let path = e.path();
            if how.skip_state && dir == root && e.file_name() == STATE_DIR {
                continue;
            }
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path
                .strip_prefix(root)
                .expect("below the root")
                .as_os_str()
                .as_bytes()
                .to_vec();
            if md.is_dir() {
                todo.push(path.clone());
            }
            if let Some(v) = record(&path, &md) {
                out.insert(rel, v);
            }
        }
    }
    Ok(out)
}
