//! Validated settings: what the rest of the brain sees, made from the
//! [`Options`] of the config file and the flags (never clap's structs).

use std::path::{Path, PathBuf};

use crate::excludes::{ExcludeSet, TempfilesFrom};
use crate::options::{
    is_instance_name, ConflictPlace, LogFormat, Options, Prefer, WatcherChoice,
    DEFAULT_MAX_DELETE_PERCENT, DEFAULT_POLL_INTERVAL_MS, DEFAULT_TEMPFILES, DEFAULT_TRASH_DAYS,
    MAX_INSTANCE_LEN,
};
use crate::side::Side;

/// Everything a sync run needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Left (local) root, absolute and canonical.
    pub left: PathBuf,
    /// Right root, absolute and canonical.
    pub right: PathBuf,
    /// The excludes (the file's, the flags', the temp-file regex), compiled.
    pub excludes: ExcludeSet,
    /// Trace events and decisions; change nothing.
    pub dry_run: bool,
    /// Merge once and exit.
    pub sync_only: bool,
    /// Start live mode without the initial merge.
    pub skip_initial_sync: bool,
    /// Exit 0 once a pass finds nothing to do.
    pub exit_on_no_events: bool,
    /// Which side wins a conflict on equal mtimes.
    pub prefer: Side,
    /// Extra rsync arguments.
    pub rsync_extra: Vec<String>,
    /// Log filter handed to agents.
    pub agent_log: Option<String>,
    /// Override the safety nets (mass deletion, emptied root, changed device).
    pub force: bool,
    /// Instance name (index file, lock, status).
    pub instance: String,
    /// A merge deleting more than this share of a side's entries is refused.
    pub max_delete_percent: u8,
    /// Days trash and conflict copies are kept.
    pub trash_days: u32,
    /// The right replica is on another host (`right` is then its path there).
    pub remote: Option<crate::remote::RemoteSpec>,
    /// The agent binary on the remote host.
    pub remote_path: String,
    /// Copy this binary to the remote host when it has no matching agent.
    pub agent_install: bool,
    /// An ssh config file to use instead of the user's.
    pub ssh_config: Option<PathBuf>,
    /// Log level 0-3.
    pub debug: u8,
    /// Log format.
    pub log_format: LogFormat,
    /// Programs whose running makes twinsync exit (status 3).
    pub banned: Vec<String>,
    /// The config file, re-read on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// Conflict copies beside the file (true) or in `.twinsync/conflicts/`.
    pub conflicts_beside: bool,
    /// Serve Prometheus metrics on this address.
    pub metrics: Option<std::net::SocketAddr>,
    /// File transfers go at most this many bytes per second, each way
    /// (`--bwlimit`, or an `rsync_extra` `--bwlimit` when that is not set).
    pub bwlimit: Option<u64>,
    /// The agents list their replicas this often (milliseconds) instead of
    /// taking the kernel's events (`--watcher poll`).
    pub poll_ms: Option<u32>,
}

impl Settings {
    /// Read the config file `config` (if any), put the flags over it, and
    /// check it all.
    ///
    /// # Errors
    /// A [`UsageError`] naming the problem (for the file: its path, line and key).
    pub fn new(config: Option<PathBuf>, flags: Options) -> Result<Settings, UsageError> {
        let file = match &config {
            Some(path) => {
                Some(crate::config_file::load(path).map_err(|e| UsageError(e.to_string()))?)
            }
            None => None,
        };
        let tempfiles_from = match (
            &flags.tempfiles,
            file.as_ref().map(|f| &f.options.tempfiles),
        ) {
            (Some(_), _) => TempfilesFrom::Flag,
            (None, Some(Some(_))) => TempfilesFrom::File,
            _ => TempfilesFrom::Default,
        };
        let flag_excludes = flags.exclude.clone();
        let o = Options::merge(
            file.as_ref().map(|f| f.options.clone()).unwrap_or_default(),
            flags,
        );
        let (Some(left), Some(right)) = (o.left, o.right) else {
            return Err(UsageError(
                "two replica roots are needed: twinsync LEFT RIGHT, or `left` and `right` in \
                 the config file (see --help)"
                    .into(),
            ));
        };
        let left = check_root("left", &left)?;
        let remote = crate::remote::parse(&right.to_string_lossy(), o.remote_host.as_deref())
            .map_err(UsageError)?;
        let right = match &remote {
            Some(r) => r.path.clone(),
            None => {
                let right = check_root("right", &right)?;
                check_pair(&left, &right)?;
                right
            }
        };
        let pair_right = match &remote {
            Some(r) => format!("{}:{}", r.display_host(), r.path.display()),
            None => right.to_string_lossy().into_owned(),
        };
        let tempfiles = o.tempfiles.unwrap_or_else(|| DEFAULT_TEMPFILES.to_string());
        let excludes = ExcludeSet::build(file.as_ref(), flag_excludes, tempfiles, tempfiles_from)
            .map_err(UsageError)?;
        let mut rsync_extra = o.rsync_extra;
        let bwlimit = match o.bwlimit {
            Some(rate) => (rate > 0).then_some(rate),
            None => bwlimit_in(&rsync_extra)?,
        };
        if let Some(f) = o.rsync_excludes {
            if !f.is_file() {
                return Err(UsageError(format!(
                    "rsync excludes file {} does not exist",
                    f.display()
                )));
            }
            let mut a = std::ffi::OsString::from("--exclude-from=");
            a.push(f.canonicalize().unwrap_or(f));
            rsync_extra.push(a.to_string_lossy().into_owned());
        }
        // (An interval for another watcher is left unused: it may come from
        // the environment, for every run.)
        let poll_ms = (o.watcher == Some(WatcherChoice::Poll))
            .then(|| o.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL_MS));
        let instance = match o.instance {
            Some(i) if !is_instance_name(&i) => {
                return Err(UsageError(format!(
                    "bad instance name {i:?}: use 1 to {MAX_INSTANCE_LEN} of A-Z a-z 0-9 _ . -"
                )));
            }
            Some(i) => i,
            None => default_instance(&left, &pair_right),
        };
        Ok(Settings {
            left,
            right,
            excludes,
            dry_run: o.dry_run,
            sync_only: o.sync_only,
            skip_initial_sync: o.skip_initial_sync,
            exit_on_no_events: o.exit_on_no_events,
            prefer: match o.prefer {
                None | Some(Prefer::Left) => Side::Left,
                Some(Prefer::Right) => Side::Right,
            },
            rsync_extra,
            agent_log: std::env::var("TWINSYNC_LOG").ok(),
            force: o.force,
            instance,
            max_delete_percent: o.max_delete.unwrap_or(DEFAULT_MAX_DELETE_PERCENT),
            trash_days: o.trash_days.unwrap_or(DEFAULT_TRASH_DAYS),
            remote,
            remote_path: o.remote_path.unwrap_or_else(|| "twinsync".into()),
            agent_install: !o.no_agent_install,
            ssh_config: o.ssh_config,
            debug: o.debug.unwrap_or(1),
            log_format: o.log_format.unwrap_or(LogFormat::Text),
            banned: o.banned,
            config_file: config,
            conflicts_beside: o.conflict_copies != Some(ConflictPlace::StateDir),
            metrics: o.metrics,
            bwlimit,
            poll_ms,
        })
    }
}

/// A `--bwlimit` among the extra rsync arguments (`--bwlimit=RATE` or
/// `--bwlimit RATE`): rsync alone would honour it, and the contents sent
/// without rsync would pass it by; taken as `--bwlimit` for both. rsync
/// gets it again from [`crate::rsync`], the same.
fn bwlimit_in(extra: &[String]) -> Result<Option<u64>, UsageError> {
    let mut found = None;
    for (i, a) in extra.iter().enumerate() {
        let value = match a.strip_prefix("--bwlimit") {
            Some(v) if v.starts_with('=') => &v[1..],
            Some("") => extra.get(i + 1).map_or("", String::as_str),
            _ => continue,
        };
        found = twinsync_helpers::pace::parse_rate(value)
            .map_err(|e| UsageError(format!("rsync_extra {a}: {e}")))?;
    }
    Ok(found)
}

/// The default instance name of a pair: stable for the same two roots.
#[must_use]
pub fn default_instance(left: &Path, right: &str) -> String {
    // FNV-1a: stable across runs and builds (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in left
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(right.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("pair-{h:016x}")
}

/// A usage error: bad roots or options. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Check one root: it must exist and be a directory. Returns its canonical form.
///
/// # Errors
/// A [`UsageError`] that names the root and says what to do.
pub fn check_root(which: &str, p: &Path) -> Result<PathBuf, UsageError> {
    match std::fs::metadata(p) {
        Ok(md) if md.is_dir() => p
            .canonicalize()
            .map_err(|e| UsageError(format!("{which} root {}: {e}", p.display()))),
        Ok(_) => Err(UsageError(format!(
            "{which} root {} is not a directory",
            p.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(UsageError(format!(
            "{which} root {} does not exist; create it first (twinsync never creates or \
             deletes a replica root)",
            p.display()
        ))),
        Err(e) => Err(UsageError(format!("{which} root {}: {e}", p.display()))),
    }
}

/// Check that two canonical roots are distinct and not nested.
///
/// # Errors
/// A [`UsageError`] naming both.
pub fn check_pair(left: &Path, right: &Path) -> Result<(), UsageError> {
    if left == right {
        return Err(UsageError(format!(
            "left and right are the same directory ({}); give two different folders",
            left.display()
        )));
    }
    if right.starts_with(left) || left.starts_with(right) {
        return Err(UsageError(format!(
            "one root is inside the other ({} and {}); a replica cannot contain its twin",
            left.display(),
            right.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bwlimit_among_the_rsync_arguments_limits_every_transfer() {
        let extra = |a: &[&str]| a.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            bwlimit_in(&extra(&["-L", "--bwlimit=100"])).unwrap(),
            Some(102_400)
        );
        assert_eq!(
            bwlimit_in(&extra(&["--bwlimit", "2M"])).unwrap(),
            Some(2 << 20)
        );
        assert_eq!(bwlimit_in(&extra(&["--bwlimit=0"])).unwrap(), None);
        assert_eq!(bwlimit_in(&extra(&["--bwlimitx"])).unwrap(), None);
        let e = bwlimit_in(&extra(&["--bwlimit=lots"])).unwrap_err();
        assert!(
            e.0.starts_with("rsync_extra --bwlimit=lots: expected a rate"),
            "{e}"
        );
    }
}
