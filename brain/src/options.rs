//! The options, one struct for both sources: the command line (clap) and the
//! config file (serde), merged with the file's values as defaults and the
//! flags over them. [`crate::config`] turns the merged options into checked
//! [`crate::config::Settings`].
//!
//! Each field is a flag and a key at once: its doc comment is the flag's
//! help, its `#[arg]` the flag, its `#[serde]` the key (named after the field
//! unless renamed) with the reader in [`de`] that checks the value and says
//! what was expected. Lists (excludes, rsync arguments, banned programs) add
//! up: the file's first, then the flags'.

pub mod address;
pub mod de;

use std::path::PathBuf;

use clap::ValueEnum;
use serde::Deserialize;

/// Days a deleted or overwritten file stays in the trash when `trash_days` is
/// not set.
pub const DEFAULT_TRASH_DAYS: u32 = 30;

/// The `max_delete_percent` used when the key is not set.
pub const DEFAULT_MAX_DELETE_PERCENT: u8 = 50;

/// Longest accepted `instance` name, in characters.
pub const MAX_INSTANCE_LEN: usize = 64;

/// psync's default temp-file pattern.
pub const DEFAULT_TEMPFILES: &str = r"(?i)\.tmp$|\.~tmp~|/~\$";

/// Every option: a command-line flag and a config-file key each.
///
/// `None`, `false` or empty for what a source leaves out; [`Options::merge`]
/// puts the flags over the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The left (local) replica root.
    #[serde(default, deserialize_with = "de::path")]
    pub left: Option<PathBuf>,
    /// The right replica root: a local path or a remote one.
    #[serde(default, deserialize_with = "de::right")]
    pub right: Option<PathBuf>,
    /// The right replica is on HOST (psync's -r): RIGHT is a path there.
    #[arg(short = 'r', long = "remote-host", value_name = "HOST")]
    #[serde(default, deserialize_with = "de::host")]
    pub remote_host: Option<String>,
    /// The twinsync binary on the remote host [default: twinsync].
    #[arg(long, value_name = "PATH")]
    #[serde(default, deserialize_with = "de::path_string")]
    pub remote_path: Option<String>,
    /// Never copy this binary to the remote host when it has no agent of
    /// this version (by default it is installed in
    /// ~/.cache/twinsync/agents/VERSION/ there and started).
    #[arg(long)]
    #[serde(default, deserialize_with = "de::boolean")]
    pub no_agent_install: bool,
    /// ssh config file to use (ssh -F) instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    #[serde(default, deserialize_with = "de::path")]
    pub ssh_config: Option<PathBuf>,
    /// Exclude paths matching this regex (relative to the root; repeatable).
    #[arg(short = 'e', long = "exclude", value_name = "REGEX")]
    #[serde(default, deserialize_with = "de::regexes")]
    pub exclude: Vec<String>,
    /// Temporary files, never synced; a save-by-rename from one syncs the
    /// final name [default: (?i)\.tmp$|\.~tmp~|/~\$].
    #[arg(short = 't', long, value_name = "REGEX")]
    #[serde(default, deserialize_with = "de::regex")]
    pub tempfiles: Option<String>,
    /// A file of rsync exclude rules, passed to rsync (--exclude-from).
    #[arg(long, value_name = "FILE")]
    #[serde(default, deserialize_with = "de::path")]
    pub rsync_excludes: Option<PathBuf>,
    /// Extra argument passed to rsync (repeatable).
    #[arg(
        short = 'x',
        long = "rsync-extra",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "de::strings")]
    pub rsync_extra: Vec<String>,
    /// Exit (status 3) while a program of this name runs (repeatable).
    #[arg(short = 'b', long = "banned", value_name = "PROGRAM")]
    #[serde(default, deserialize_with = "de::programs")]
    pub banned: Vec<String>,
    /// Trace every event and decision; change nothing on either side.
    #[arg(short = 'n', long)]
    #[serde(default, deserialize_with = "de::boolean")]
    pub dry_run: bool,
    /// Merge both replicas once, then exit.
    #[arg(short = 's', long)]
    #[serde(default, deserialize_with = "de::boolean")]
    pub sync_only: bool,
    /// Start live mode without the initial merge.
    #[arg(short = 'k', long)]
    #[serde(default, deserialize_with = "de::boolean")]
    pub skip_initial_sync: bool,
    /// Go on when a safety net trips (mass deletion, an emptied root, a root
    /// on another device than at the last sync).
    #[arg(short = 'f', long)]
    #[serde(default, deserialize_with = "de::boolean")]
    pub force: bool,
    /// Converge, then exit 0 once a pass finds nothing more to do.
    #[arg(long)]
    #[serde(default, deserialize_with = "de::boolean")]
    pub exit_on_no_events: bool,
    /// Side that wins a conflict when both mtimes are equal [default: left].
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de::choice")]
    pub prefer: Option<Prefer>,
    /// Log level: 0 warnings, 1 info, 2 debug (every decision), 3 trace
    /// [default: 1].
    #[arg(short = 'd', long = "debug", value_name = "LEVEL",
          value_parser = clap::value_parser!(u8).range(0..=3))]
    #[serde(default, deserialize_with = "de::log_level")]
    pub debug: Option<u8>,
    /// Log format: human text, or one JSON object per line [default: text].
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de::choice")]
    pub log_format: Option<LogFormat>,
    /// Instance name: one index, lock and status entry per instance
    /// [default: derived from the two roots].
    #[arg(long, value_name = "NAME")]
    #[serde(default, deserialize_with = "de::instance")]
    pub instance: Option<String>,
    /// Refuse a merge that deletes more than this share of a side's entries
    /// [default: 50].
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    #[serde(
        default,
        rename = "max_delete_percent",
        deserialize_with = "de::percent"
    )]
    pub max_delete: Option<u8>,
    /// Where a conflict's losing version is kept: beside the file as
    /// NAME.conflict-DATE-SIDE.EXT on both sides, or in the losing replica's
    /// .twinsync/conflicts/ [default: beside].
    #[arg(long, value_enum, value_name = "PLACE")]
    #[serde(
        default,
        rename = "conflict_dir",
        deserialize_with = "de::conflict_dir"
    )]
    pub conflict_copies: Option<ConflictPlace>,
    /// Days deleted files and conflict copies are kept in .twinsync/trash
    /// [default: 30].
    #[arg(long, value_name = "DAYS")]
    #[serde(default, deserialize_with = "de::days")]
    pub trash_days: Option<u32>,
    /// Serve Prometheus metrics over HTTP on this address (IP:PORT), at
    /// /metrics.
    #[arg(long, value_name = "ADDR")]
    #[serde(default, deserialize_with = "de::socket_addr")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Limit file transfers (rsync's and the contents sent over the agents'
    /// channel) to RATE per direction: KiB/s, or with a suffix B, K, M, G
    /// (rsync's --bwlimit); 0: no limit [default: no limit].
    #[arg(long, value_name = "RATE", value_parser = rate)]
    #[serde(default, deserialize_with = "de::rate")]
    pub bwlimit: Option<u64>,
    /// How each agent sees changes: auto (the kernel's events: inotify
    /// today), inotify, or poll (every watched directory listed again each
    /// --poll-interval: for NFS, CIFS and FUSE mounts that other hosts
    /// change) [default: auto].
    #[arg(long, value_enum, env = "TWINSYNC_WATCHER")]
    #[serde(default, deserialize_with = "de::choice")]
    pub watcher: Option<WatcherChoice>,
    /// Milliseconds between two passes of the polling watcher (10 to
    /// 3600000) [default: 2000].
    #[arg(long, value_name = "MS", env = "TWINSYNC_POLL_INTERVAL",
          value_parser = clap::value_parser!(u32).range(10..=3_600_000))]
    #[serde(default, deserialize_with = "de::millis")]
    pub poll_interval: Option<u32>,
}

/// The `poll_interval` used when the key is not set, in milliseconds.
pub const DEFAULT_POLL_INTERVAL_MS: u32 = 2000;

/// `--watcher`, `watcher`: how the agents see changes.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum WatcherChoice {
    /// The best the kernel offers (inotify).
    Auto,
    /// One inotify watch per directory.
    Inotify,
    /// A listing of every watched directory per interval.
    Poll,
}

/// A `--bwlimit`: bytes per second, 0 for no limit.
fn rate(s: &str) -> Result<u64, String> {
    twinsync_helpers::pace::parse_rate(s).map(Option::unwrap_or_default)
}

impl Options {
    /// `flags` over `file`: a value a flag gives wins, a switch is on when
    /// either turns it on, and lists are the file's followed by the flags'.
    #[must_use]
    pub fn merge(file: Options, flags: Options) -> Options {
        // Destructured in full: a new option cannot be forgotten here.
        let Options {
            left,
            right,
            remote_host,
            remote_path,
            no_agent_install,
            ssh_config,
            mut exclude,
            tempfiles,
            rsync_excludes,
            mut rsync_extra,
            mut banned,
            dry_run,
            sync_only,
            skip_initial_sync,
            force,
            exit_on_no_events,
            prefer,
            debug,
            log_format,
            instance,
            max_delete,
            conflict_copies,
            trash_days,
            metrics,
            bwlimit,
            watcher,
            poll_interval,
        } = file;
        exclude.extend(flags.exclude);
        rsync_extra.extend(flags.rsync_extra);
        banned.extend(flags.banned);
        Options {
            left: flags.left.or(left),
            right: flags.right.or(right),
            remote_host: flags.remote_host.or(remote_host),
            remote_path: flags.remote_path.or(remote_path),
            no_agent_install: flags.no_agent_install || no_agent_install,
            ssh_config: flags.ssh_config.or(ssh_config),
            exclude,
            tempfiles: flags.tempfiles.or(tempfiles),
            rsync_excludes: flags.rsync_excludes.or(rsync_excludes),
            rsync_extra,
            banned,
            dry_run: flags.dry_run || dry_run,
            sync_only: flags.sync_only || sync_only,
            skip_initial_sync: flags.skip_initial_sync || skip_initial_sync,
            force: flags.force || force,
            exit_on_no_events: flags.exit_on_no_events || exit_on_no_events,
            prefer: flags.prefer.or(prefer),
            debug: flags.debug.or(debug),
            log_format: flags.log_format.or(log_format),
            instance: flags.instance.or(instance),
            max_delete: flags.max_delete.or(max_delete),
            conflict_copies: flags.conflict_copies.or(conflict_copies),
            trash_days: flags.trash_days.or(trash_days),
            metrics: flags.metrics.or(metrics),
            bwlimit: flags.bwlimit.or(bwlimit),
            watcher: flags.watcher.or(watcher),
            poll_interval: flags.poll_interval.or(poll_interval),
        }
    }

    /// The config file's keys, in the order of the struct (which is the
    /// order of `examples/twinsync.toml`'s sections, roughly).
    #[must_use]
    pub fn keys() -> &'static [&'static str] {
        de::field_names::<Options>()
    }
}

/// `--prefer`, `prefer`: the side that wins.
// No doc comments on the variants: clap would show them as help text.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Prefer {
    Left,
    Right,
}

/// `--conflict-copies`, `conflict_dir`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ConflictPlace {
    /// Beside the file, on both sides.
    Beside,
    /// In the losing replica's `.twinsync/conflicts/`.
    StateDir,
}

/// `--log-format`, `log_format`: the format of the log lines on stderr.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// An instance name: 1 to [`MAX_INSTANCE_LEN`] of `A-Z a-z 0-9 _ . -`, and
/// neither `.` nor `..` (it names files).
#[must_use]
pub fn is_instance_name(s: &str) -> bool {
    (1..=MAX_INSTANCE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && s != "."
        && s != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_lists_add_up() {
        let file = Options {
            left: Some("/file/left".into()),
            right: Some("/file/right".into()),
            exclude: vec!["f".into()],
            banned: vec!["fb".into()],
            debug: Some(3),
            dry_run: true,
            trash_days: Some(7),
            ..Options::default()
        };
        let flags = Options {
            left: Some("/flag/left".into()),
            exclude: vec!["x".into()],
            banned: vec!["xb".into()],
            debug: Some(0),
            force: true,
            ..Options::default()
        };
        let m = Options::merge(file, flags);
        assert_eq!(m.left, Some("/flag/left".into()));
        assert_eq!(m.right, Some("/file/right".into()));
        assert_eq!(m.exclude, ["f", "x"]);
        assert_eq!(m.banned, ["fb", "xb"]);
        assert_eq!(m.debug, Some(0));
        assert!(m.dry_run && m.force && !m.sync_only);
        assert_eq!(m.trash_days, Some(7));
        assert_eq!(
            Options::merge(Options::default(), Options::default()),
            Options::default()
        );
    }

    #[test]
    fn the_keys_are_the_fields_with_their_file_names() {
        let keys = Options::keys();
        assert_eq!(keys.len(), 27);
        for k in [
            "left",
            "exclude",
            "max_delete_percent",
            "conflict_dir",
            "metrics",
            "bwlimit",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert!(!keys.contains(&"max_delete") && !keys.contains(&"config"));
    }

    #[test]
    fn instance_names() {
        for good in ["a", "docs-2024_v1.0", &"x".repeat(64), "..a"] {
            assert!(is_instance_name(good), "{good}");
        }
        for bad in ["", "my docs", "a/b", "..", ".", "é", &"x".repeat(65)] {
            assert!(!is_instance_name(bad), "{bad}");
        }
    }
}
