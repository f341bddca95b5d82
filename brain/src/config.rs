//! Validated settings: what the rest of the brain sees (never clap's structs).

use std::path::{Path, PathBuf};

use crate::engine::Side;

/// Everything a sync run needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Left (local) root, absolute and canonical.
    pub left: PathBuf,
    /// Right root, absolute and canonical.
    pub right: PathBuf,
    /// Exclude regexes.
    pub excludes: Vec<String>,
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
    /// An ssh config file to use instead of the user's.
    pub ssh_config: Option<PathBuf>,
    /// Log level 0-3.
    pub debug: u8,
    /// Log format.
    pub log_format: crate::cli::LogFormat,
    /// Programs whose running makes twinsync exit (status 3).
    pub banned: Vec<String>,
    /// The config file, re-read on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// The temp-file regex (also in `excludes`).
    pub tempfiles: String,
    /// The excludes given on the command line (kept on SIGHUP).
    pub cli_excludes: Vec<String>,
    /// Conflict copies beside the file (true) or in `.twinsync/conflicts/`.
    pub conflicts_beside: bool,
}

/// psync's default temp-file pattern.
pub const DEFAULT_TEMPFILES: &str = r"(?i)\.tmp$|\.~tmp~|/~\$";

impl Settings {
    /// Merge the command line over the config file (if any) and check it all.
    ///
    /// # Errors
    /// A [`UsageError`] naming the problem (for the file: its path, line and key).
    pub fn from_cli(cli: crate::cli::Cli) -> Result<Settings, UsageError> {
        use crate::cli::{LogFormat, Prefer};
        let file = match &cli.config {
            Some(path) => crate::config_file::load(path).map_err(|e| UsageError(e.to_string()))?,
            None => crate::config_file::FileConfig::default(),
        };
        let left = cli.left.or_else(|| file.left.as_ref().map(PathBuf::from));
        let right = cli.right.or_else(|| file.right.as_ref().map(PathBuf::from));
        let (Some(left), Some(right)) = (left, right) else {
            return Err(UsageError(
                "two replica roots are needed: twinsync LEFT RIGHT, or `left` and `right` in \
                 the config file (see --help)"
                    .into(),
            ));
        };
        let left = check_root("left", &left)?;
        let remote_host = cli.remote_host.or(file.remote_host);
        let remote = crate::remote::parse(&right.to_string_lossy(), remote_host.as_deref())
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
        let tempfiles = cli
            .tempfiles
            .or(file.tempfiles)
            .unwrap_or_else(|| DEFAULT_TEMPFILES.to_string());
        let mut excludes = file.exclude.unwrap_or_default();
        let cli_excludes = cli.exclude.clone();
        excludes.extend(cli.exclude);
        if !tempfiles.is_empty() {
            excludes.push(tempfiles.clone());
        }
        twinsync_filter::Excludes::new(&excludes).map_err(UsageError)?;
        let mut rsync_extra = file.rsync_extra.unwrap_or_default();
        rsync_extra.extend(cli.rsync_extra);
        if let Some(f) = cli
            .rsync_excludes
            .or(file.rsync_excludes.map(PathBuf::from))
        {
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
        let mut banned = file.banned.unwrap_or_default();
        banned.extend(cli.banned);
        let instance = match cli.instance.or(file.instance) {
            Some(i) => {
                if i.is_empty()
                    || i.len() > 64
                    || i == "."
                    || i == ".."
                    || !i
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                {
                    return Err(UsageError(format!(
                        "bad instance name {i:?}: use 1 to 64 of A-Z a-z 0-9 _ . -"
                    )));
                }
                i
            }
            None => default_instance(&left, &pair_right),
        };
        Ok(Settings {
            left,
            right,
            excludes,
            dry_run: cli.dry_run || file.dry_run.unwrap_or(false),
            sync_only: cli.sync_only || file.sync_only.unwrap_or(false),
            skip_initial_sync: cli.skip_initial_sync || file.skip_initial_sync.unwrap_or(false),
            exit_on_no_events: cli.exit_on_no_events || file.exit_on_no_events.unwrap_or(false),
            prefer: match cli.prefer {
                Some(Prefer::Left) => Side::Left,
                Some(Prefer::Right) => Side::Right,
                None => file.prefer.unwrap_or(Side::Left),
            },
            rsync_extra,
            agent_log: std::env::var("TWINSYNC_LOG").ok(),
            force: cli.force || file.force.unwrap_or(false),
            instance,
            max_delete_percent: cli
                .max_delete
                .or(file.max_delete_percent)
                .unwrap_or(crate::config_file::DEFAULT_MAX_DELETE_PERCENT),
            trash_days: cli
                .trash_days
                .or(file.trash_days)
                .unwrap_or(crate::config_file::DEFAULT_TRASH_DAYS),
            remote,
            remote_path: cli
                .remote_path
                .or(file.remote_path)
                .unwrap_or_else(|| "twinsync".into()),
            ssh_config: cli.ssh_config.or(file.ssh_config.map(PathBuf::from)),
            debug: cli.debug.or(file.debug).unwrap_or(1),
            log_format: match cli.log_format {
                Some(f) => f,
                None => match file.log_format {
                    Some(crate::config_file::LogFormat::Json) => LogFormat::Json,
                    _ => LogFormat::Text,
                },
            },
            banned,
            config_file: cli.config,
            tempfiles,
            cli_excludes,
            conflicts_beside: match (cli.conflict_copies, file.conflict_dir.as_deref()) {
                (Some(crate::cli::ConflictPlace::Beside), _) | (None, None | Some("beside")) => {
                    true
                }
                (Some(crate::cli::ConflictPlace::StateDir), _)
                | (None, Some(".twinsync/conflicts" | "state-dir")) => false,
                (None, Some(other)) => {
                    return Err(UsageError(format!(
                        "conflict_dir = {other:?}: use \"beside\" (NAME.conflict-… next to the \
                         file) or \".twinsync/conflicts\""
                    )))
                }
            },
        })
    }
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
