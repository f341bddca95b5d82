//! File-system helpers: the temp root and per-run directory pairs (removed on
//! drop), content generation, bounded polling, and tree snapshots.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{interrupted, io_ctx, Failure, Res};

/// Name of twinsync's own state directory at each root; never compared.
pub const STATE_DIR: &str = ".twinsync";

/// `/tmp/twinsync-bench-<pid>/`, removed with everything in it on drop
/// (unless kept, for looking at the logs afterwards).
pub struct TempRoot {
    path: PathBuf,
    keep: bool,
}

impl TempRoot {
    /// Create a fresh, empty temp root; `keep` leaves it (and every pair
    /// in it) in place at the end.
    pub fn create(keep: bool) -> Res<Self> {
        let path = std::env::temp_dir().join(format!("twinsync-bench-{}", std::process::id()));
        if path.exists() {
            io_ctx(fs::remove_dir_all(&path), path.display())?;
        }
        io_ctx(fs::create_dir_all(&path), path.display())?;
        // Absolute and free of symlinks: the ssh scenarios name the right
        // root by this path on the "remote" side.
        let path = io_ctx(path.canonicalize(), path.display())?;
        Ok(TempRoot { path, keep })
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh `NAME/{L,R}` pair under the root.
    pub fn pair(&self, name: &str) -> Res<Pair> {
        let dir = self.path.join(name);
        let left = dir.join("L");
        let right = dir.join("R");
        for d in [&left, &right] {
            io_ctx(fs::create_dir_all(d), d.display())?;
        }
        Ok(Pair {
            dir,
            left,
            right,
            keep: self.keep,
        })
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Two replica roots (`left`, `right`) and a place for logs and configs
/// (`dir`); the whole `dir` is removed on drop unless kept.
pub struct Pair {
    pub dir: PathBuf,
    pub left: PathBuf,
    pub right: PathBuf,
    keep: bool,
}

impl Drop for Pair {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Deterministic, incompressible-looking bytes (xorshift64*), so that no
/// tool can shortcut the copy and every file differs.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write a whole file, with the path in the error.
pub fn write(path: &Path, bytes: &[u8]) -> Res<()> {
    io_ctx(fs::write(path, bytes), path.display())
}

/// Create a directory, with the path in the error.
pub fn mkdir(path: &Path) -> Res<()> {
    io_ctx(fs::create_dir(path), path.display())
}

/// Whether `path` exists with exactly `expected` as content.
pub fn has_content(path: &Path, expected: &[u8]) -> Res<bool> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes == expected),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::Other(format!("{}: {e}", path.display()))),
    }
}

/// Whether anything (even a dangling symlink) exists at `path`.
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Regular files directly in `dir`: name → (size, inode). A missing `dir`
/// is empty.
pub fn list_files(dir: &Path) -> Res<BTreeMap<String, (u64, u64)>> {
    let mut out = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Failure::Other(format!("{}: {e}", dir.display()))),
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        // Entries can vanish between readdir and stat (temp files): skip.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            out.insert(name, (meta.len(), meta.ino()));
        }
    }
    Ok(out)
}

/// Count the `(name, size)` pairs of `want` present in `dir` with that size.
pub fn count_present(dir: &Path, want: &[(String, u64)]) -> Res<usize> {
    let have = list_files(dir)?;
    Ok(want
        .iter()
        .filter(|(name, size)| have.get(name).is_some_and(|(s, _)| s == size))
        .count())
}

/// How a bounded poll runs: deadline counted from `since`, which is also
/// where the returned duration starts.
pub struct Wait {
    pub since: Instant,
    pub limit: Duration,
    pub every: Duration,
}

/// Poll `done` every `w.every` until it says yes; returns the time since
/// `w.since`. On timeout the error text comes from `on_timeout` (called
/// once, so it can describe what is still missing).
pub fn poll_until(
    w: Wait,
    mut done: impl FnMut() -> Res<bool>,
    on_timeout: impl FnOnce() -> String,
) -> Res<Duration> {
    loop {
        if done()? {
            return Ok(w.since.elapsed());
        }
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        if w.since.elapsed() > w.limit {
            return Err(Failure::Timeout(on_timeout()));
        }
        sleep(w.every);
    }
}

/// What a tree entry is, for comparing two replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(u64),
    Link(PathBuf),
    Other,
}

/// Every entry under `root` (relative path → kind), skipping the root's
/// `.twinsync/`. Entries vanishing mid-walk are skipped.
pub fn snapshot(root: &Path) -> Res<BTreeMap<PathBuf, Kind>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = match fs::read_dir(root.join(&rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Failure::Other(format!(
                    "{}: {e}",
                    root.join(&rel).display()
                )))
            }
        };
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            if child.as_os_str() == STATE_DIR {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let kind = if meta.is_dir() {
                stack.push(child.clone());
                Kind::Dir
            } else if meta.is_file() {
                Kind::File(meta.len())
            } else if meta.file_type().is_symlink() {
                Kind::Link(fs::read_link(entry.path()).unwrap_or_default())
            } else {
                Kind::Other
            };
            out.insert(child, kind);
        }
    }
    Ok(out)
}

/// Differences between two snapshots, one line each (at most `max`), plus
/// the total count.
pub fn diff(
    a: &BTreeMap<PathBuf, Kind>,
    b: &BTreeMap<PathBuf, Kind>,
    max: usize,
) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut total = 0;
    let mut note = |line: String| {
        total += 1;
        if lines.len() < max {
            lines.push(line);
        }
    };
    for (path, ka) in a {
        match b.get(path) {
            None => note(format!(
                "{}: {ka:?} only on the source side",
                path.display()
            )),
            Some(kb) if kb != ka => note(format!("{}: {ka:?} vs {kb:?}", path.display())),
            Some(_) => {}
        }
    }
    for (path, kb) in b {
        if !a.contains_key(path) {
            note(format!(
                "{}: {kb:?} only on the destination side",
                path.display()
            ));
        }
    }
    (lines, total)
}

/// Regular files present on both sides (per `a`/`b` snapshots, same size)
/// whose bytes differ: one line each (at most `max`), plus the total count.
pub fn content_diff(
    root_a: &Path,
    root_b: &Path,
    a: &BTreeMap<PathBuf, Kind>,
    b: &BTreeMap<PathBuf, Kind>,
    max: usize,
) -> Res<(Vec<String>, usize)> {
    let mut lines = Vec::new();
    let mut total = 0;
    for (path, ka) in a {
        if !matches!(ka, Kind::File(_)) || b.get(path) != Some(ka) {
            continue;
        }
        let read = |root: &Path| match fs::read(root.join(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            // Gone in between: the tree comparison reports such changes.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::Other(format!(
                "{}: {e}",
                root.join(path).display()
            ))),
        };
        if let (Some(x), Some(y)) = (read(root_a)?, read(root_b)?) {
            if x != y {
                total += 1;
                if lines.len() < max {
                    lines.push(format!("{}: same size, different content", path.display()));
                }
            }
        }
    }
    Ok((lines, total))
}
