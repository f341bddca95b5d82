//! The exclude list, built in one place at start and at SIGHUP: the config
//! file's `exclude`, then the `-e` flags', then the temp-file regex, each
//! compiled once (by the filter's [`Excludes`]); a bad one is named with
//! where it came from (the file's line, or the flag).

use twinsync_filter::Excludes;

use crate::config_file::ConfigFile;

/// Where the temp-file regex came from, for a message about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempfilesFrom {
    /// `-t` / `--tempfiles`.
    Flag,
    /// The config file's `tempfiles`.
    File,
    /// The built-in default.
    Default,
}

/// The excludes in force: the patterns (sent to the agents) and the same,
/// compiled (used by the engine).
#[derive(Debug, Clone)]
pub struct ExcludeSet {
    patterns: Vec<String>,
    compiled: Excludes,
    /// The flags' patterns, kept when the file is read again.
    flags: Vec<String>,
    /// The temp-file regex (empty: none), kept when the file is read again.
    tempfiles: String,
}

impl ExcludeSet {
    /// The file's excludes, then the flags', then `tempfiles` (unless
    /// empty), compiled.
    ///
    /// # Errors
    /// The first pattern that is not a regex, as `FILE:LINE: exclude: invalid
    /// regex "…": why` or `--exclude: invalid regex "…": why`.
    pub fn build(
        file: Option<&ConfigFile>,
        flags: Vec<String>,
        tempfiles: String,
        tempfiles_from: TempfilesFrom,
    ) -> Result<ExcludeSet, String> {
        let from_file = file.map_or(&[][..], |f| &f.options.exclude[..]);
        let mut patterns = from_file.to_vec();
        patterns.extend(flags.iter().cloned());
        if !tempfiles.is_empty() {
            patterns.push(tempfiles.clone());
        }
        let compiled = Excludes::new(&patterns).map_err(|_| {
            // Only on this path is each pattern tried alone, to say which.
            let bad = |p: &str| invalid(p).err();
            if let Some((i, why)) = from_file
                .iter()
                .enumerate()
                .find_map(|(i, p)| Some((i, bad(p)?)))
            {
                let f = file.expect("patterns from the file");
                return f.error_at("exclude", Some(i), why).to_string();
            }
            if let Some(why) = flags.iter().find_map(|p| bad(p)) {
                return format!("--exclude: {why}");
            }
            let why = bad(&tempfiles).unwrap_or_else(|| "invalid regex".into());
            match (tempfiles_from, file) {
                (TempfilesFrom::File, Some(f)) => f.error_at("tempfiles", None, why).to_string(),
                _ => format!("--tempfiles: {why}"),
            }
        })?;
        Ok(ExcludeSet {
            patterns,
            compiled,
            flags,
            tempfiles,
        })
    }

    /// The same flags and temp-file regex with the excludes of `file` read
    /// again (SIGHUP).
    ///
    /// # Errors
    /// As [`ExcludeSet::build`].
    pub fn reread(&self, file: &ConfigFile) -> Result<ExcludeSet, String> {
        // The temp-file regex compiled before: no error can name it.
        ExcludeSet::build(
            Some(file),
            self.flags.clone(),
            self.tempfiles.clone(),
            TempfilesFrom::Default,
        )
    }

    /// The patterns, in order.
    #[must_use]
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The compiled patterns.
    #[must_use]
    pub fn compiled(&self) -> &Excludes {
        &self.compiled
    }
}

/// Compile `pattern` as the filter does (a bytes regex); the reason on error,
/// on one line.
fn invalid(pattern: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(text: &str) -> ConfigFile {
        crate::config_file::parse(Path::new("twinsync.toml"), text).unwrap()
    }

    fn build(text: &str, flags: &[&str], tempfiles: &str) -> Result<ExcludeSet, String> {
        let from = if text.contains("tempfiles") {
            TempfilesFrom::File
        } else {
            TempfilesFrom::Flag
        };
        let f = file(text);
        ExcludeSet::build(
            Some(&f),
            flags.iter().map(|s| (*s).to_string()).collect(),
            f.options.tempfiles.clone().unwrap_or(tempfiles.into()),
            from,
        )
    }

    #[test]
    fn file_then_flags_then_tempfiles() {
        let s = build("exclude = ['a', 'b']", &["c"], "t").unwrap();
        assert_eq!(s.patterns(), ["a", "b", "c", "t"]);
        let s = build("", &[], "").unwrap();
        assert!(s.patterns().is_empty());
        // SIGHUP: the flags and the tempfiles stay, the file's are new
        let again = s.reread(&file("exclude = ['z']")).unwrap();
        assert_eq!(again.patterns(), ["z"]);
        let s = build("exclude = ['a']", &["c"], "t").unwrap();
        let again = s.reread(&file("exclude = []")).unwrap();
        assert_eq!(again.patterns(), ["c", "t"]);
    }

    #[test]
    fn a_bad_regex_in_exclude_names_its_own_line() {
        let text = "debug = 1\nexclude = [\n    '\\.swp$',\n    'a(b',\n    '~$',\n]\n";
        assert_eq!(
            build(text, &[], "").unwrap_err(),
            "twinsync.toml:4: exclude: invalid regex \"a(b\": unclosed group"
        );
        // on one line: that line
        assert!(build("\n\nexclude = ['ok', '[z-a]']\n", &[], "")
            .unwrap_err()
            .starts_with("twinsync.toml:3: exclude: invalid regex \"[z-a]\": "));
        // tempfiles too
        let e = build("tempfiles = '*.tmp'\n", &[], "").unwrap_err();
        assert!(
            e.starts_with("twinsync.toml:1: tempfiles: invalid regex \"*.tmp\": "),
            "{e}"
        );
        // the flags say which flag
        assert_eq!(
            build("", &["ok", "a(b"], "").unwrap_err(),
            "--exclude: invalid regex \"a(b\": unclosed group"
        );
        assert!(build("", &[], "a(b")
            .unwrap_err()
            .starts_with("--tempfiles: invalid regex"));
        // the filter's bytes regexes take what str regexes refuse
        assert!(build(r"exclude = ['(?-u)\xff']", &[], "").is_ok());
    }
}
