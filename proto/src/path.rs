//! `RelPath`: a path relative to a replica root, kept as raw bytes so that
//! names that are not UTF-8 travel unchanged.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A path relative to a replica root: `/`-separated components, no leading
/// or trailing slash, never `.` or `..` (see [`RelPath::is_safe`]). The empty
/// path is the root itself.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RelPath(#[serde(with = "serde_bytes")] Vec<u8>);

impl RelPath {
    /// The root.
    #[must_use]
    pub fn root() -> Self {
        RelPath(Vec::new())
    }

    /// From raw bytes (not checked; see [`RelPath::is_safe`]).
    #[must_use]
    pub fn from_bytes(b: impl Into<Vec<u8>>) -> Self {
        RelPath(b.into())
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for the root.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// As a relative `Path`.
    #[must_use]
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// `root/self`.
    #[must_use]
    pub fn under(&self, root: &Path) -> PathBuf {
        if self.0.is_empty() {
            root.to_path_buf()
        } else {
            root.join(self.as_path())
        }
    }

    /// `self/name`.
    #[must_use]
    pub fn join(&self, name: &[u8]) -> RelPath {
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        if !v.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        RelPath(v)
    }

    /// The parent (the root's parent is `None`).
    #[must_use]
    pub fn parent(&self) -> Option<RelPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => RelPath(self.0[..i].to_vec()),
            None => RelPath::root(),
        })
    }

    /// The last component.
    #[must_use]
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// True when `self` is `dir` or lies below it.
    #[must_use]
    pub fn is_within(&self, dir: &RelPath) -> bool {
        if dir.0.is_empty() {
            return true;
        }
        self.0.starts_with(&dir.0) && (self.0.len() == dir.0.len() || self.0[dir.0.len()] == b'/')
    }

    /// If `self` is within `from`, the same path with that prefix replaced by `to`.
    #[must_use]
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> Option<RelPath> {
        if !self.is_within(from) {
            return None;
        }
        let rest = &self.0[from.0.len()..];
        if to.0.is_empty() {
            return Some(RelPath(rest.strip_prefix(b"/").unwrap_or(rest).to_vec()));
        }
        let mut v = to.0.clone();
        if from.0.is_empty() && !rest.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(rest);
        Some(RelPath(v))
    }

    /// The first key after every path within `self` in byte order, for range
    /// queries over sorted maps: paths within `d` are `d` itself and the keys in
    /// `[d/, d0)`.
    #[must_use]
    pub fn children_range(&self) -> (RelPath, RelPath) {
        let mut lo = self.0.clone();
        lo.push(b'/');
        let mut hi = self.0.clone();
        hi.push(b'/' + 1);
        (RelPath(lo), RelPath(hi))
    }

    /// Number of components.
    #[must_use]
    pub fn depth(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            self.0.iter().filter(|&&b| b == b'/').count() + 1
        }
    }

    /// True when the path cannot escape its root: relative, no empty, `.` or
    /// `..` components, no NUL bytes.
    #[must_use]
    pub fn is_safe(&self) -> bool {
        if self.0.is_empty() {
            return true;
        }
        if self.0.contains(&0) {
            return false;
        }
        self.0
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
    }
}

impl fmt::Display for RelPath {
    /// Shows the path with non-UTF-8 bytes and control characters escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl From<&str> for RelPath {
    fn from(s: &str) -> Self {
        RelPath(s.as_bytes().to_vec())
    }
}
