//! The config file: reading a TOML file (see `examples/twinsync.toml`) into
//! the same [`Options`] the flags fill, with errors that name the file, the
//! line and the key.
//!
//! [`load`] reads and checks the whole file before anything starts: every
//! error names the file, the 1-based line and the key, as
//! `twinsync.toml:3: debug: expected an integer from 0 to 3, found "high"`.
//! Unknown keys are errors, with a suggestion when a known key is close.
//!
//! The text is parsed into a `toml::de::DeTable`, which keeps the byte span
//! of every key, value and array element; serde then reads it into
//! [`Options`] (`deny_unknown_fields`, the readers of [`crate::options::de`]
//! saying what each key expects), and the span of a serde error gives the
//! line and the key. Keys are read in file order, so the error reported is
//! the first one in the file. Every key is optional; paths are kept as
//! written (not resolved, not checked for existence). Regexes are compiled
//! with the flags' by [`crate::excludes`], which reports a bad one at its
//! line through [`ConfigFile::error_at`].

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::options::{address, Options};

/// A configuration file read and checked.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text, to point at a line in later errors.
    text: String,
    /// What it sets.
    pub options: Options,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The key concerned; `syntax` for a TOML syntax error outside any
        /// known key.
        key: String,
        /// What is wrong, and what was expected.
        message: String,
    },
}

/// Read and check the configuration file at `path`.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read;
/// [`ConfigError::Invalid`] for the first problem in it (in file order).
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => parse(path, &text),
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count();
            Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                key: "syntax".into(),
                message: "the file is not valid UTF-8".into(),
            })
        }
    }
}

/// Check the configuration text `text`; `file` is only used in errors.
///
/// # Errors
/// [`ConfigError::Invalid`] for the first problem (in file order).
pub fn parse(file: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let cx = Cx { file, text };
    let doc = DeTable::parse(text).map_err(|e| cx.syntax(&e))?;
    // Each key's extent, from the key to the end of its value.
    let extents: Vec<(String, Range<usize>)> = doc
        .get_ref()
        .iter()
        .map(|(k, v)| {
            let (k, ks, vs) = (k.get_ref().to_string(), k.span(), v.span());
            (k, ks.start.min(vs.start)..ks.end.max(vs.end))
        })
        .collect();
    let options = Options::deserialize(toml::de::Deserializer::from(doc))
        .map_err(|e| cx.invalid(&extents, &e))?;
    let c = ConfigFile {
        path: file.to_path_buf(),
        text: text.to_string(),
        options,
    };
    if let (Some(_), Some(right)) = (&c.options.remote_host, &c.options.right) {
        let right = right.to_string_lossy();
        if address::remote_of(&right).is_some() {
            return Err(c.error_at(
                "remote_host",
                None,
                format!(
                    "right ({right:?}) already names a remote host; set either remote_host \
                     with a plain path in right, or a host:/path in right"
                ),
            ));
        }
    }
    Ok(c)
}

impl ConfigFile {
    /// An error about `key` (about its `element`th array element, from 0,
    /// when given) at its line in this file.
    #[must_use]
    pub fn error_at(&self, key: &str, element: Option<usize>, message: String) -> ConfigError {
        let cx = Cx {
            file: &self.path,
            text: &self.text,
        };
        let at = DeTable::parse(&self.text).ok().and_then(|doc| {
            let (k, v) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == key)?;
            Some(match (v.get_ref(), element) {
                (DeValue::Array(items), Some(i)) => items.get(i).map_or(v.span(), |e| e.span()),
                _ => k.span(),
            })
        });
        cx.err(at.map_or(0, |r| r.start), key, message)
    }
}

/// The known key closest to `unknown`, when it is at most 2 edits away
/// (ignoring case, and `-` for `_`).
fn suggest(unknown: &str) -> Option<&'static str> {
    let norm = unknown.to_lowercase().replace('-', "_");
    Options::keys()
        .iter()
        .map(|k| (edit_distance(&norm, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Parsing context: the file name and text, for building errors.
struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    /// 1-based line of byte `offset`.
    fn line(&self, offset: usize) -> usize {
        let b = self.text.as_bytes();
        1 + b[..offset.min(b.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
    }

    fn err(&self, at: usize, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(at),
            key: key.to_string(),
            message,
        }
    }

    /// A value serde refused: its line, and the key whose extent holds it
    /// (an unknown key when it is none of [`Options::keys`]).
    fn invalid(&self, extents: &[(String, Range<usize>)], e: &toml::de::Error) -> ConfigError {
        let at = e.span().map_or(0, |s| s.start);
        match extents.iter().find(|(_, r)| r.contains(&at)) {
            Some((key, _)) if !Options::keys().contains(&key.as_str()) => {
                let message = match suggest(key) {
                    Some(known) => format!("unknown key (did you mean `{known}`?)"),
                    None => "unknown key".to_string(),
                };
                self.err(at, key, message)
            }
            Some((key, _)) => self.err(at, key, e.message().to_string()),
            None => self.err(at, "syntax", e.message().to_string()),
        }
    }

    /// A TOML syntax error: its line, and the key it is in when one can be
    /// told (from a best-effort parse, else from the start of the line).
    fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let at = e.span().map_or(self.text.len(), |s| s.start);
        let at = at.min(self.text.len());
        let line_start = self.text.as_bytes()[..at]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |i| i + 1);
        let column = self
            .text
            .get(line_start..at)
            .map_or(at - line_start, |s| s.chars().count())
            + 1;
        let (partial, _) = DeTable::parse_recoverable(self.text);
        let within = partial.get_ref().iter().find_map(|(k, v)| {
            let (start, end) = (k.span().start, k.span().end.max(v.span().end));
            (!k.get_ref().is_empty() && start <= at && at <= end).then(|| k.get_ref().to_string())
        });
        let key = within
            .or_else(|| {
                let line = self.text[line_start..].lines().next().unwrap_or("");
                let word: String = line
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect();
                (!word.is_empty()).then_some(word)
            })
            .unwrap_or_else(|| "syntax".to_string());
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(at),
            key,
            message: format!("TOML syntax error at column {column}: {}", e.message()),
        }
    }
}

#[cfg(test)]
mod tests;
