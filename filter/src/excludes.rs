//! Which paths the filter never watches or reports.

use regex::bytes::Regex;
use twinsync_proto::RelPath;

/// The directory in each root that holds twinsync's own files.
pub const STATE_DIR: &str = ".twinsync";
/// Names ending in this suffix are helpers' in-flight renames: never reported.
pub const IGNORE_SUFFIX: &[u8] = b".twinsync.ignore";

/// True for a name produced by the helpers' ignore-suffix rename dance.
#[must_use]
pub fn is_ignore_name(name: &[u8]) -> bool {
    name.ends_with(IGNORE_SUFFIX)
}

/// Exclude rules: the built-in ones plus user regexes matched against the
/// path relative to the root (unanchored, like psync's `-e`).
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    user: Vec<Regex>,
}

impl Excludes {
    /// Compile user patterns.
    ///
    /// # Errors
    /// The first pattern that is not a valid regex, with the reason.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let user = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("bad exclude pattern {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Excludes { user })
    }

    /// True when `path` must be neither watched nor synced.
    #[must_use]
    pub fn excluded(&self, path: &RelPath) -> bool {
        let b = path.as_bytes();
        if b == STATE_DIR.as_bytes()
            || (b.starts_with(STATE_DIR.as_bytes()) && b.get(STATE_DIR.len()) == Some(&b'/'))
        {
            return true;
        }
        if is_ignore_name(path.file_name()) {
            return true;
        }
        self.user.iter().any(|r| r.is_match(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_and_ignore_names_are_always_excluded() {
        let e = Excludes::new(&["\\.swp$".into()]).unwrap();
        assert!(e.excluded(&".twinsync".into()));
        assert!(e.excluded(&".twinsync/trash/x".into()));
        assert!(!e.excluded(&".twinsyncx".into()));
        assert!(!e.excluded(&"a/.twinsync".into()));
        assert!(e.excluded(&"a/b.1f.twinsync.ignore".into()));
        assert!(e.excluded(&"a/.b.swp".into()));
        assert!(!e.excluded(&"a/b".into()));
    }

    #[test]
    fn bad_regex_names_the_pattern() {
        let err = Excludes::new(&["(".into()]).unwrap_err();
        assert!(err.contains("\"(\""), "{err}");
    }
}
