//! The configuration file: a TOML file with one key for every command-line
//! option (see `examples/twinsync.toml`).
//!
//! [`load`] reads and checks the whole file before anything starts: every
//! error names the file, the 1-based line and the key, as
//! `twinsync.toml:3: debug: expected an integer from 0 to 3, found "high"`.
//! Unknown keys are errors, with a suggestion when a known key is close.
//!
//! Parsing uses `toml::de::DeTable` (toml 1.x, features `std` + `parse`, no
//! serde): it keeps the byte span of every key, value and array element, which
//! gives the line numbers; the typed checks are done here by hand so that each
//! message can say what was expected and what was found.
//!
//! Every key is optional: a [`FileConfig`] holds `None` for what the file does
//! not set, and the command line fills in or overrides the rest. Paths are kept
//! as written (not resolved, not checked for existence).

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::engine::Side;

/// Every key the file may hold, in the order of the example file.
pub const KEYS: &[&str] = &[
    "left",
    "right",
    "remote_host",
    "remote_path",
    "ssh_config",
    "exclude",
    "tempfiles",
    "rsync_excludes",
    "rsync_extra",
    "banned",
    "debug",
    "log_format",
    "dry_run",
    "sync_only",
    "skip_initial_sync",
    "force",
    "exit_on_no_events",
    "instance",
    "prefer",
    "trash_days",
    "conflict_dir",
    "max_delete_percent",
];

/// Days a deleted or overwritten file stays in the trash when `trash_days` is
/// not set.
pub const DEFAULT_TRASH_DAYS: u32 = 30;

/// The `max_delete_percent` used when the key is not set.
pub const DEFAULT_MAX_DELETE_PERCENT: u8 = 50;

/// Longest accepted `instance` name, in characters.
pub const MAX_INSTANCE_LEN: usize = 64;

/// Format of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`"text"`).
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

/// What a configuration file sets: `None` for every key it leaves out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    /// `left`: the left (local) replica root.
    pub left: Option<String>,
    /// `right`: the right root: a local path, or `host:/path`,
    /// `user@host:/path` or `ssh://[user@]host[:port]/path`. Checked for form
    /// only.
    pub right: Option<String>,
    /// `remote_host`: the host the right root is on (psync's `-r`).
    pub remote_host: Option<String>,
    /// `remote_path`: the path of the twinsync binary on the remote host.
    pub remote_path: Option<String>,
    /// `exclude`: regexes of paths (relative to the root) never synced; each
    /// one compiles.
    pub exclude: Option<Vec<String>>,
    /// `tempfiles`: regex of temporary file names; it compiles.
    pub tempfiles: Option<String>,
    /// `rsync_excludes`: a file of rsync exclude rules.
    pub rsync_excludes: Option<String>,
    /// `rsync_extra`: extra arguments passed to rsync.
    pub rsync_extra: Option<Vec<String>>,
    /// `banned`: names of programs whose changes are not synced.
    pub banned: Option<Vec<String>>,
    /// `debug`: log level, 0 (warnings) to 3 (trace).
    pub debug: Option<u8>,
    /// `log_format`: `"text"` or `"json"`.
    pub log_format: Option<LogFormat>,
    /// `dry_run`: trace events and decisions; change nothing.
    pub dry_run: Option<bool>,
    /// `sync_only`: merge once, then exit.
    pub sync_only: Option<bool>,
    /// `skip_initial_sync`: start live mode without the initial merge.
    pub skip_initial_sync: Option<bool>,
    /// `force`: go on past the safety checks.
    pub force: Option<bool>,
    /// `exit_on_no_events`: exit once a pass finds nothing to do.
    pub exit_on_no_events: Option<bool>,
    /// `instance`: a name for this pair; 1 to [`MAX_INSTANCE_LEN`] characters
    /// from `A-Z a-z 0-9 _ . -`, and neither `.` nor `..`.
    pub instance: Option<String>,
    /// `prefer`: the side that wins a conflict when both mtimes are equal.
    pub prefer: Option<Side>,
    /// `trash_days`: days the trash keeps files (default
    /// [`DEFAULT_TRASH_DAYS`]).
    pub trash_days: Option<u32>,
    /// `conflict_dir`: where conflict copies go instead of beside the file.
    pub conflict_dir: Option<String>,
    /// `max_delete_percent`: 0 to 100 (default
    /// [`DEFAULT_MAX_DELETE_PERCENT`]).
    pub max_delete_percent: Option<u8>,
    /// `ssh_config`: an ssh client configuration file.
    pub ssh_config: Option<String>,
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
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
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
pub fn parse(file: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let cx = Cx { file, text };
    let doc = DeTable::parse(text).map_err(|e| cx.syntax(&e))?;
    // The table is sorted by key; check in file order so that the first
    // error reported is the first one in the file.
    let mut entries: Vec<_> = doc.get_ref().iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);

    let mut c = FileConfig::default();
    let mut remote_host_at = None;
    for (k, v) in entries {
        let key: &str = k.get_ref();
        match key {
            "left" => c.left = Some(cx.path(key, v)?),
            "right" => c.right = Some(cx.right(key, v)?),
            "remote_host" => {
                c.remote_host = Some(cx.host(key, v)?);
                remote_host_at = Some(v.span());
            }
            "remote_path" => c.remote_path = Some(cx.path(key, v)?),
            "exclude" => c.exclude = Some(cx.regexes(key, v)?),
            "tempfiles" => c.tempfiles = Some(cx.regex(key, v)?),
            "rsync_excludes" => c.rsync_excludes = Some(cx.path(key, v)?),
            "rsync_extra" => c.rsync_extra = Some(cx.strings(key, v, "strings", |_| true)?),
            "banned" => {
                c.banned = Some(cx.strings(key, v, "program names", |s| !s.is_empty())?);
            }
            "debug" => c.debug = Some(cx.int(key, v, 0, 3)?),
            "log_format" => {
                c.log_format = Some(cx.choice(
                    key,
                    v,
                    &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                )?);
            }
            "dry_run" => c.dry_run = Some(cx.bool(key, v)?),
            "sync_only" => c.sync_only = Some(cx.bool(key, v)?),
            "skip_initial_sync" => c.skip_initial_sync = Some(cx.bool(key, v)?),
            "force" => c.force = Some(cx.bool(key, v)?),
            "exit_on_no_events" => c.exit_on_no_events = Some(cx.bool(key, v)?),
            "instance" => c.instance = Some(cx.instance(key, v)?),
            "prefer" => {
                c.prefer =
                    Some(cx.choice(key, v, &[("left", Side::Left), ("right", Side::Right)])?);
            }
            "trash_days" => c.trash_days = Some(cx.int(key, v, 0, u32::MAX)?),
            "conflict_dir" => c.conflict_dir = Some(cx.path(key, v)?),
            "max_delete_percent" => c.max_delete_percent = Some(cx.int(key, v, 0, 100)?),
            "ssh_config" => c.ssh_config = Some(cx.path(key, v)?),
            _ => {
                let message = match suggest(key) {
                    Some(known) => format!("unknown key (did you mean `{known}`?)"),
                    None => "unknown key".to_string(),
                };
                return Err(cx.err(k.span(), key, message));
            }
        }
    }
    if let (Some(at), Some(right)) = (remote_host_at, &c.right) {
        if remote_of(right).is_some() {
            return Err(cx.err(
                at,
                "remote_host",
                format!(
                    "right ({right:?}) already names a remote host; set either remote_host \
                     with a plain path in right, or a host:/path in right"
                ),
            ));
        }
    }
    Ok(c)
}

/// The known key closest to `unknown`, when it is at most 2 edits away
/// (ignoring case, and `-` for `_`).
fn suggest(unknown: &str) -> Option<&'static str> {
    let norm = unknown.to_lowercase().replace('-', "_");
    KEYS.iter()
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

type Value<'i> = Spanned<DeValue<'i>>;

impl Cx<'_> {
    /// 1-based line of byte `offset`.
    fn line(&self, offset: usize) -> usize {
        let b = self.text.as_bytes();
        1 + b[..offset.min(b.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
    }

    fn err(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(span.start),
            key: key.to_string(),
            message,
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

    /// How a value is shown after "found".
    fn found(&self, v: &Value<'_>) -> String {
        match v.get_ref() {
            DeValue::String(s) => format!("{:?}", s.as_ref()),
            DeValue::Array(_) => "an array".to_string(),
            DeValue::Table(_) => "a table".to_string(),
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Datetime(d) => d.to_string(),
            DeValue::Integer(_) | DeValue::Float(_) => {
                self.text.get(v.span()).unwrap_or("a number").to_string()
            }
        }
    }

    fn expected(&self, key: &str, v: &Value<'_>, what: &str) -> ConfigError {
        self.err(
            v.span(),
            key,
            format!("expected {what}, found {}", self.found(v)),
        )
    }

    fn string<'v>(&self, key: &str, v: &'v Value<'_>, what: &str) -> Result<&'v str, ConfigError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected(key, v, what)),
        }
    }

    /// A non-empty string naming a file or directory.
    fn path(&self, key: &str, v: &Value<'_>) -> Result<String, ConfigError> {
        let s = self.string(key, v, "a path (a string)")?;
        check_path(s).map_err(|m| self.expected(key, v, &format!("a path ({m})")))?;
        Ok(s.to_string())
    }

    /// The right root: a local path or a remote address.
    fn right(&self, key: &str, v: &Value<'_>) -> Result<String, ConfigError> {
        let what = "a local path, host:/path, user@host:/path or ssh://user@host:port/path";
        let s = self.string(key, v, what)?;
        check_right(s).map_err(|m| self.expected(key, v, &format!("{what} ({m})")))?;
        Ok(s.to_string())
    }

    /// A host name for ssh, optionally `user@host`.
    fn host(&self, key: &str, v: &Value<'_>) -> Result<String, ConfigError> {
        let what = "a host name (host or user@host)";
        let s = self.string(key, v, what)?;
        let host = match s.split_once('@') {
            Some((user, host)) => {
                check_user(user).map_err(|m| self.expected(key, v, &format!("{what}; {m}")))?;
                host
            }
            None => s,
        };
        check_host(host).map_err(|m| self.expected(key, v, &format!("{what}; {m}")))?;
        Ok(s.to_string())
    }

    fn bool(&self, key: &str, v: &Value<'_>) -> Result<bool, ConfigError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.expected(key, v, "true or false")),
        }
    }

    /// An integer in `min..=max`.
    fn int<T: TryFrom<i128> + Into<i128> + Copy>(
        &self,
        key: &str,
        v: &Value<'_>,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let (lo, hi) = (min.into(), max.into());
        let what = format!("an integer from {lo} to {hi}");
        let DeValue::Integer(i) = v.get_ref() else {
            return Err(self.expected(key, v, &what));
        };
        i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.expected(key, v, &what))
    }

    /// One of a few fixed strings.
    fn choice<T: Copy>(
        &self,
        key: &str,
        v: &Value<'_>,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        let what = match names.as_slice() {
            [a, b] => format!("{a} or {b}"),
            _ => format!("one of {}", names.join(", ")),
        };
        let s = self.string(key, v, &what)?;
        choices
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| self.expected(key, v, &what))
    }

    /// An array of strings that each pass `ok`; `what` names them.
    fn strings(
        &self,
        key: &str,
        v: &Value<'_>,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, ConfigError> {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.expected(key, v, &format!("an array of {what}")));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.get_ref() {
                DeValue::String(s) if ok(s) => Ok(s.to_string()),
                _ => Err(self.err(
                    item.span(),
                    key,
                    format!(
                        "expected an array of {what}; element {} is {}",
                        i + 1,
                        self.found(item)
                    ),
                )),
            })
            .collect()
    }

    /// A string that compiles as a regex.
    fn regex(&self, key: &str, v: &Value<'_>) -> Result<String, ConfigError> {
        let s = self.string(key, v, "a regex (a string)")?;
        compile(s).map_err(|m| self.err(v.span(), key, m))?;
        Ok(s.to_string())
    }

    /// An array of strings that each compile as a regex; a bad one is
    /// reported at its own line.
    fn regexes(&self, key: &str, v: &Value<'_>) -> Result<Vec<String>, ConfigError> {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.expected(key, v, "an array of regexes (strings)"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let DeValue::String(s) = item.get_ref() else {
                    return Err(self.err(
                        item.span(),
                        key,
                        format!(
                            "expected an array of regexes (strings); element {} is {}",
                            i + 1,
                            self.found(item)
                        ),
                    ));
                };
                compile(s).map_err(|m| self.err(item.span(), key, m))?;
                Ok(s.to_string())
            })
            .collect()
    }

    fn instance(&self, key: &str, v: &Value<'_>) -> Result<String, ConfigError> {
        let what = format!(
            "a name of 1 to {MAX_INSTANCE_LEN} characters from A-Z a-z 0-9 _ . - \
             (not . or ..)"
        );
        let s = self.string(key, v, &what)?;
        let ok = (1..=MAX_INSTANCE_LEN).contains(&s.chars().count())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && s != "."
            && s != "..";
        if ok {
            Ok(s.to_string())
        } else {
            Err(self.expected(key, v, &what))
        }
    }
}

/// Compile `pattern` as the filter does (a bytes regex); the reason on error.
fn compile(pattern: &str) -> Result<(), String> {
    match regex::bytes::Regex::new(pattern) {
        Ok(_) => Ok(()),
        Err(e) => {
            let reason = match &e {
                // The syntax error's text spans lines (pattern, caret,
                // "error: ..."): keep the last line's reason.
                regex::Error::Syntax(s) => s
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .map_or_else(
                        || s.split_whitespace().collect::<Vec<_>>().join(" "),
                        str::to_string,
                    ),
                other => other.to_string(),
            };
            Err(format!("invalid regex {pattern:?}: {reason}"))
        }
    }
}

fn check_path(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        Err("it is empty")
    } else if s.contains('\0') {
        Err("it holds a NUL character")
    } else {
        Ok(())
    }
}

/// The `[user@]host` part of a remote `right`, or `None` for a local path.
/// Like rsync and scp: remote when a `:` comes before the first `/`, or for an
/// `ssh://` URL.
fn remote_of(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix("ssh://") {
        return Some(rest.split('/').next().unwrap_or(rest));
    }
    let head = &s[..s.find('/').unwrap_or(s.len())];
    // A bracketed IPv6 host holds colons of its own.
    let after_bracket = head.find(']').map_or(0, |i| i + 1);
    head[after_bracket..]
        .find(':')
        .map(|i| &s[..after_bracket + i])
}

fn check_right(s: &str) -> Result<(), String> {
    check_path(s)?;
    let Some(authority) = remote_of(s) else {
        return Ok(());
    };
    let (user, hostport) = match authority.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = user {
        check_user(u)?;
    }
    if let Some(rest) = s.strip_prefix("ssh://") {
        let path = &rest[authority.len()..];
        if path.len() <= 1 {
            return Err("the ssh:// address has no /path after the host".into());
        }
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return Err(format!("unexpected {p:?} after the host")),
                },
                None => return Err("unclosed [ in the host".into()),
            },
            None => match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        check_host(host)?;
        if let Some(p) = port {
            if !matches!(p.parse::<u16>(), Ok(n) if n > 0) || !p.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!("the port {p:?} is not a number from 1 to 65535"));
            }
        }
    } else {
        let host = hostport
            .strip_prefix('[')
            .map_or(hostport, |h| h.trim_end_matches(']'));
        check_host(host)?;
        if s.len() <= authority.len() + 1 {
            return Err("there is no path after the host:".into());
        }
    }
    Ok(())
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        Err("the user name before @ is empty".into())
    } else if user.starts_with('-') {
        Err(format!("the user name {user:?} starts with -"))
    } else if user
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        Err(format!(
            "the user name {user:?} holds a space, control character or @"
        ))
    } else {
        Ok(())
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        Err("the host name is empty".into())
    } else if host.starts_with('-') {
        // ssh would take it for an option.
        Err(format!("the host name {host:?} starts with -"))
    } else if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']'))
    {
        Err(format!(
            "the host name {host:?} holds a space, control character, /, @, [ or ]"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/twinsync.toml");

    fn p(text: &str) -> Result<FileConfig, ConfigError> {
        parse(Path::new("twinsync.toml"), text)
    }

    /// The error's `(line, key, message)`, and its whole text.
    fn err(text: &str) -> (usize, String, String, String) {
        match p(text) {
            Ok(c) => panic!("accepted {text:?} as {c:?}"),
            Err(e) => {
                let shown = e.to_string();
                match e {
                    ConfigError::Invalid {
                        line, key, message, ..
                    } => (line, key, message, shown),
                    ConfigError::Read { .. } => panic!("{shown}"),
                }
            }
        }
    }

    #[test]
    fn a_full_file_sets_every_key() {
        let text = r#"
# a comment
left = "/home/me/docs"
right = "ssh://me@host:2222/srv/docs"
remote_path = "/opt/twinsync/bin/twinsync"
exclude = [
    '(^|/)\.git(/|$)',
    '\.swp$',
]
tempfiles = '\.tmp$'
rsync_excludes = "/etc/twinsync/rsync-excludes"
rsync_extra = ["--bwlimit=100", "-L"]
banned = ["backup-tool"]
debug = 2
log_format = "json"
dry_run = true
sync_only = false
skip_initial_sync = true
force = false
exit_on_no_events = true
instance = "docs_1.a-b"
prefer = "right"
trash_days = 0
conflict_dir = ".conflicts"
max_delete_percent = 100
ssh_config = "~/.ssh/config"
"#;
        let c = p(text).unwrap();
        assert_eq!(
            c,
            FileConfig {
                left: Some("/home/me/docs".into()),
                right: Some("ssh://me@host:2222/srv/docs".into()),
                remote_host: None,
                remote_path: Some("/opt/twinsync/bin/twinsync".into()),
                exclude: Some(vec![r"(^|/)\.git(/|$)".into(), r"\.swp$".into()]),
                tempfiles: Some(r"\.tmp$".into()),
                rsync_excludes: Some("/etc/twinsync/rsync-excludes".into()),
                rsync_extra: Some(vec!["--bwlimit=100".into(), "-L".into()]),
                banned: Some(vec!["backup-tool".into()]),
                debug: Some(2),
                log_format: Some(LogFormat::Json),
                dry_run: Some(true),
                sync_only: Some(false),
                skip_initial_sync: Some(true),
                force: Some(false),
                exit_on_no_events: Some(true),
                instance: Some("docs_1.a-b".into()),
                prefer: Some(Side::Right),
                trash_days: Some(0),
                conflict_dir: Some(".conflicts".into()),
                max_delete_percent: Some(100),
                ssh_config: Some("~/.ssh/config".into()),
            }
        );
        // remote_host goes with a plain right path
        let c = p("right = \"/srv/docs\"\nremote_host = \"me@host\"\n").unwrap();
        assert_eq!(c.remote_host.as_deref(), Some("me@host"));
        assert_eq!(c.right.as_deref(), Some("/srv/docs"));
    }

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(p("").unwrap(), FileConfig::default());
        assert_eq!(
            p("# only comments\n\n   \n# debug = 3\n").unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_a_suggestion() {
        let text = "left = \"/a\"\n\n\n\n\n\nexlude = [\"x\"]\n";
        let (line, key, _, shown) = err(text);
        assert_eq!((line, key.as_str()), (7, "exlude"));
        assert_eq!(
            shown,
            "twinsync.toml:7: exlude: unknown key (did you mean `exclude`?)"
        );
        assert_eq!(
            err("dry-run = true\n").2,
            "unknown key (did you mean `dry_run`?)"
        );
        assert_eq!(err("Debug = 1\n").2, "unknown key (did you mean `debug`?)");
        assert_eq!(
            err("rsync_extras = []\n").2,
            "unknown key (did you mean `rsync_extra`?)"
        );
        // too far from anything: no suggestion
        assert_eq!(
            err("colour = \"red\"\n").3,
            "twinsync.toml:1: colour: unknown key"
        );
        // tables and dotted keys are unknown keys too, at their line
        let (line, key, msg, _) = err("debug = 1\n[options]\nx = 1\n");
        assert_eq!(
            (line, key.as_str(), msg.as_str()),
            (2, "options", "unknown key")
        );
        let (line, key, _, _) = err("\nfoo.bar = 1\n");
        assert_eq!((line, key.as_str()), (2, "foo"));
    }

    #[test]
    fn a_wrong_type_says_what_was_expected_and_found() {
        let text = "left = \"/a\"\nright = \"/b\"\ndebug = \"high\"\n";
        assert_eq!(
            err(text).3,
            "twinsync.toml:3: debug: expected an integer from 0 to 3, found \"high\""
        );
        assert_eq!(
            err("dry_run = \"yes\"\n").3,
            "twinsync.toml:1: dry_run: expected true or false, found \"yes\""
        );
        assert_eq!(err("left = 3\n").2, "expected a path (a string), found 3");
        assert_eq!(
            err("exclude = '\\.o$'\n").2,
            "expected an array of regexes (strings), found \"\\\\.o$\""
        );
        assert_eq!(
            err("rsync_extra = \"-L\"\n").2,
            "expected an array of strings, found \"-L\""
        );
        let (line, key, msg, _) = err("rsync_extra = [\n  \"-L\",\n  7,\n]\n");
        assert_eq!((line, key.as_str()), (3, "rsync_extra"));
        assert_eq!(msg, "expected an array of strings; element 2 is 7");
        assert_eq!(
            err("banned = [\"\"]\n").2,
            "expected an array of program names; element 1 is \"\""
        );
        assert_eq!(
            err("log_format = \"xml\"\n").2,
            "expected \"text\" or \"json\", found \"xml\""
        );
        assert_eq!(
            err("prefer = \"newer\"\n").2,
            "expected \"left\" or \"right\", found \"newer\""
        );
        assert_eq!(
            err("trash_days = 1.5\n").2,
            "expected an integer from 0 to 4294967295, found 1.5"
        );
        assert_eq!(
            err("trash_days = -1\n").2,
            "expected an integer from 0 to 4294967295, found -1"
        );
        assert_eq!(
            err("max_delete_percent = 101\n").2,
            "expected an integer from 0 to 100, found 101"
        );
        assert_eq!(
            err("debug = [1]\n").2,
            "expected an integer from 0 to 3, found an array"
        );
        assert_eq!(
            err("[left]\npath = \"/a\"\n").3,
            "twinsync.toml:1: left: expected a path (a string), found a table"
        );
        assert_eq!(
            err("force = 1979-05-27\n").2,
            "expected true or false, found 1979-05-27"
        );
        assert_eq!(
            err("conflict_dir = \"\"\n").2,
            "expected a path (it is empty), found \"\""
        );
    }

    #[test]
    fn integers_in_range_in_any_notation() {
        assert_eq!(p("debug = 0").unwrap().debug, Some(0));
        assert_eq!(p("debug = +3").unwrap().debug, Some(3));
        assert_eq!(p("debug = 0x3").unwrap().debug, Some(3));
        assert_eq!(
            p("max_delete_percent = 1_0").unwrap().max_delete_percent,
            Some(10)
        );
        assert_eq!(
            p("trash_days = 4294967295").unwrap().trash_days,
            Some(u32::MAX)
        );
        assert!(p("trash_days = 4294967296").is_err());
        assert!(p("trash_days = 99999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn debug_out_of_range() {
        let (line, key, msg, shown) = err("\ndebug = 4\n");
        assert_eq!((line, key.as_str()), (2, "debug"));
        assert_eq!(msg, "expected an integer from 0 to 3, found 4");
        assert_eq!(
            shown,
            "twinsync.toml:2: debug: expected an integer from 0 to 3, found 4"
        );
        assert_eq!(
            err("debug = -1").2,
            "expected an integer from 0 to 3, found -1"
        );
    }

    #[test]
    fn a_bad_regex_in_exclude_names_its_own_line() {
        let text = "debug = 1\nexclude = [\n    '\\.swp$',\n    'a(b',\n    '~$',\n]\n";
        let (line, key, msg, shown) = err(text);
        assert_eq!((line, key.as_str()), (4, "exclude"));
        assert_eq!(msg, "invalid regex \"a(b\": unclosed group");
        assert!(!shown.contains('\n'), "{shown}");
        // on one line: that line
        assert_eq!(err("\n\nexclude = ['ok', '[z-a]']\n").0, 3);
        // tempfiles too
        let (line, key, msg, _) = err("tempfiles = '*.tmp'\n");
        assert_eq!((line, key.as_str()), (1, "tempfiles"));
        assert!(msg.starts_with("invalid regex \"*.tmp\": "), "{msg}");
        // the filter's bytes regexes take what str regexes refuse
        assert!(p(r"exclude = ['(?-u)\xff']").is_ok());
    }

    #[test]
    fn a_bad_instance_name_is_refused() {
        let what = "expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . - (not . or ..)";
        for bad in ["", "my docs", "a/b", "..", ".", "é", &"x".repeat(65)] {
            let (line, key, msg, _) = err(&format!("\ninstance = {bad:?}\n"));
            assert_eq!((line, key.as_str()), (2, "instance"));
            assert_eq!(msg, format!("{what}, found {bad:?}"));
        }
        assert_eq!(err("instance = 5").2, format!("{what}, found 5"));
        for good in ["a", "docs-2024_v1.0", &"x".repeat(64), "..a"] {
            assert_eq!(
                p(&format!("instance = {good:?}"))
                    .unwrap()
                    .instance
                    .as_deref(),
                Some(good)
            );
        }
    }

    #[test]
    fn a_syntax_error_names_its_line_and_the_key_it_is_in() {
        let (line, key, msg, shown) = err("left = \"/a\"\nright = \"/b\"\ndebug = \n");
        assert_eq!((line, key.as_str()), (3, "debug"));
        assert!(msg.starts_with("TOML syntax error at column 9: "), "{msg}");
        assert!(
            shown.starts_with("twinsync.toml:3: debug: TOML syntax error"),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "{shown}");
        // an unclosed string
        let (line, key, _, _) = err("\n\nleft = \"/a\n");
        assert_eq!((line, key.as_str()), (3, "left"));
        // a missing comma in a multi-line array: the element's line, its key
        let (line, key, _, _) = err("exclude = [\n  'a'\n  'b',\n]\n");
        assert_eq!((line, key.as_str()), (3, "exclude"));
        // a key with no `=`
        let (line, key, msg, _) = err("debug = 1\nexlude ['x']\n");
        assert_eq!((line, key.as_str()), (2, "exlude"));
        assert!(msg.contains("expected `=`"), "{msg}");
        // a duplicate key
        let (line, key, msg, _) = err("debug = 1\n\ndebug = 2\n");
        assert_eq!((line, key.as_str()), (3, "debug"));
        assert!(msg.contains("duplicate key"), "{msg}");
        // nothing key-like: "syntax"
        let (line, key, _, _) = err("debug = 1\n[[[\n");
        assert_eq!((line, key.as_str()), (2, "syntax"));
        let (line, key, _, _) = err("debug = 1\n= 3\n");
        assert_eq!((line, key.as_str()), (2, "syntax"));
    }

    #[test]
    fn the_first_error_in_the_file_is_reported() {
        // keys come back sorted from the parser; errors must follow the file
        let (line, key, _, _) = err("zzz = 1\ndebug = 9\naaa = 1\n");
        assert_eq!((line, key.as_str()), (1, "zzz"));
        let (line, key, _, _) = err("trash_days = -1\nbanned = 3\n");
        assert_eq!((line, key.as_str()), (1, "trash_days"));
    }

    #[test]
    fn right_may_be_local_or_remote() {
        for good in [
            "/srv/docs",
            "relative/dir",
            "./a:b",
            "/x/a:b",
            "host:/srv/docs",
            "host:docs",
            "me@host:/srv/docs",
            "me@10.0.0.1:/srv",
            "[::1]:/srv",
            "ssh://host/srv",
            "ssh://me@host/srv",
            "ssh://me@host:2222/srv/docs",
            "ssh://me@[fe80::1]:22/srv",
        ] {
            assert_eq!(
                p(&format!("right = {good:?}")).unwrap().right.as_deref(),
                Some(good)
            );
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("host:", "there is no path after the host:"),
            (":/srv", "the host name is empty"),
            ("@host:/srv", "the user name before @ is empty"),
            ("-oProxyCommand=x:/srv", "starts with -"),
            ("me@-host:/srv", "starts with -"),
            ("my host:/srv", "holds a space"),
            ("ssh://host", "no /path after the host"),
            ("ssh://host/", "no /path after the host"),
            ("ssh://me@host:99999/srv", "not a number from 1 to 65535"),
            ("ssh://me@host:0/srv", "not a number from 1 to 65535"),
            ("ssh://me@host:+22/srv", "not a number from 1 to 65535"),
            ("ssh://me@:22/srv", "the host name is empty"),
            ("ssh://[::1/srv", "unclosed ["),
        ] {
            let (line, key, msg, _) = err(&format!("\nright = {bad:?}\n"));
            assert_eq!((line, key.as_str()), (2, "right"), "{bad}");
            assert!(
                msg.starts_with("expected a local path, host:/path, user@host:/path or ssh://"),
                "{bad}: {msg}"
            );
            assert!(msg.contains(why), "{bad}: {msg}");
        }
    }

    #[test]
    fn remote_host_is_a_host_and_not_given_twice() {
        assert_eq!(
            p("remote_host = \"backup.example\"")
                .unwrap()
                .remote_host
                .as_deref(),
            Some("backup.example")
        );
        assert!(err("remote_host = \"-oProxyCommand=x\"")
            .2
            .contains("starts with -"));
        assert!(err("remote_host = \"\"")
            .2
            .contains("the host name is empty"));
        assert!(err("remote_host = \"a b\"").2.contains("holds a space"));
        let (line, key, msg, _) = err("right = \"h:/srv\"\nremote_host = \"h\"\n");
        assert_eq!((line, key.as_str()), (2, "remote_host"));
        assert!(msg.contains("already names a remote host"), "{msg}");
    }

    #[test]
    fn suggestions_are_within_two_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("exlude", "exclude"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ab", ""), 2);
        assert_eq!(suggest("exlcude"), Some("exclude"));
        assert_eq!(suggest("lef"), Some("left"));
        assert_eq!(suggest("rigth"), Some("right"));
        assert_eq!(suggest("MAX-DELETE-PERCENT"), Some("max_delete_percent"));
        assert_eq!(suggest("verbose"), None);
        assert_eq!(suggest("x"), None);
    }

    #[test]
    fn the_example_file_parses_and_documents_every_key() {
        assert_eq!(
            parse(Path::new("examples/twinsync.toml"), EXAMPLE).unwrap(),
            FileConfig::default()
        );
        // Each setting is shown commented out as "# key = value"; with those
        // lines uncommented the file must still be valid and set every key.
        let mut shown = Vec::new();
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| KEYS.contains(&k)) =>
                {
                    shown.push(rest.split_once(" = ").unwrap().0);
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        shown.sort_unstable();
        assert_eq!(shown, keys, "each key shown once in the example");
        let c = parse(Path::new("examples/twinsync.toml"), &uncommented)
            .unwrap_or_else(|e| panic!("{e}"));
        let FileConfig {
            left,
            right,
            remote_host,
            remote_path,
            exclude,
            tempfiles,
            rsync_excludes,
            rsync_extra,
            banned,
            debug,
            log_format,
            dry_run,
            sync_only,
            skip_initial_sync,
            force,
            exit_on_no_events,
            instance,
            prefer,
            trash_days,
            conflict_dir,
            max_delete_percent,
            ssh_config,
        } = c;
        assert!(left.is_some() && right.is_some() && remote_host.is_some());
        assert!(remote_path.is_some() && exclude.is_some() && tempfiles.is_some());
        assert!(rsync_excludes.is_some() && rsync_extra.is_some() && banned.is_some());
        assert!(log_format.is_some() && dry_run.is_some() && sync_only.is_some());
        assert!(skip_initial_sync.is_some() && force.is_some());
        assert!(exit_on_no_events.is_some() && instance.is_some() && prefer.is_some());
        assert!(conflict_dir.is_some() && ssh_config.is_some());
        // the shown values are the defaults
        assert_eq!(debug, Some(1));
        assert_eq!(log_format, Some(LogFormat::Text));
        assert_eq!(prefer, Some(Side::Left));
        assert_eq!(trash_days, Some(DEFAULT_TRASH_DAYS));
        assert_eq!(max_delete_percent, Some(DEFAULT_MAX_DELETE_PERCENT));
        assert_eq!(
            [
                dry_run,
                sync_only,
                skip_initial_sync,
                exit_on_no_events,
                force
            ],
            [Some(false); 5]
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read: ", missing.display())),
            "{e}"
        );

        let f = dir.path().join("twinsync.toml");
        std::fs::write(&f, "debug = 2\n").unwrap();
        assert_eq!(load(&f).unwrap().debug, Some(2));

        std::fs::write(&f, "debug = 2\nbanned = []\nright = \"/x\"\nbogus = 1\n").unwrap();
        assert_eq!(
            load(&f).unwrap_err().to_string(),
            format!("{}:4: bogus: unknown key", f.display())
        );

        std::fs::write(&f, b"debug = 2\nleft = \"\xff\"\n").unwrap();
        assert_eq!(
            load(&f).unwrap_err().to_string(),
            format!("{}:2: syntax: the file is not valid UTF-8", f.display())
        );
    }

    #[test]
    fn crlf_lines_and_a_bom_count_right() {
        let (line, key, _, _) = err("\u{feff}debug = 1\r\nforce = 1\r\n");
        assert_eq!((line, key.as_str()), (2, "force"));
    }
}
