//! The command line: clap's raw structs, turned into [`Settings`] here and
//! nowhere else.
//!
//! Exit codes: 0 success (stopped by a signal, or a one-shot merge done);
//! 1 a runtime error (an agent lost, a root vanished, rsync missing);
//! 2 a usage or configuration error (nothing was started).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{check_pair, check_root, Settings, UsageError};
use crate::engine::Side;

/// Real-time two-way file replicator.
///
/// Keeps LEFT and RIGHT identical, live: creates, writes, deletes, renames
/// (moved in place, never re-copied), modes, mtimes and symlinks go both ways.
/// When both sides change a file before it is synced, the newer wins and the
/// other is kept as NAME.conflict-DATE-SIDE.EXT. Deleted and overwritten files
/// are kept in each root's .twinsync/trash/.
#[derive(Debug, Parser)]
#[command(name = "twinsync", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The left (local) replica root.
    left: Option<PathBuf>,
    /// The right replica root.
    right: Option<PathBuf>,
    /// The right replica is on HOST (psync's -r): RIGHT is a path there.
    #[arg(short = 'r', long = "remote-host", value_name = "HOST")]
    remote_host: Option<String>,
    /// The twinsync binary on the remote host.
    #[arg(long, value_name = "PATH", default_value = "twinsync")]
    remote_path: String,
    /// ssh config file to use (ssh -F) instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Exclude paths matching this regex (relative to the root; repeatable).
    #[arg(short = 'e', long = "exclude", value_name = "REGEX")]
    exclude: Vec<String>,
    /// Trace every event and decision; change nothing on either side.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Merge both replicas once, then exit.
    #[arg(short = 's', long)]
    sync_only: bool,
    /// Start live mode without the initial merge.
    #[arg(short = 'k', long)]
    skip_initial_sync: bool,
    /// Exit 0 once a pass finds nothing more to do.
    #[arg(long)]
    exit_on_no_events: bool,
    /// Side that wins a conflict when both mtimes are equal.
    #[arg(long, value_enum, default_value_t = Prefer::Left)]
    prefer: Prefer,
    /// Extra argument passed to rsync (repeatable).
    #[arg(
        short = 'x',
        long = "rsync-extra",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    rsync_extra: Vec<String>,
    /// Log level: 0 warnings, 1 info (default), 2 debug (decisions), 3 trace.
    #[arg(short = 'd', long = "debug", value_name = "LEVEL", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=3))]
    debug: u8,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Go ahead even when a safety net trips (mass deletion, emptied root,
    /// root on another device than at the last sync).
    #[arg(short = 'f', long)]
    force: bool,
    /// Instance name: one index, lock and status entry per instance
    /// (default: derived from the two roots).
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Refuse a merge that would delete more than this percentage of a
    /// side's entries (unless --force).
    #[arg(long, value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    max_delete: u8,
    /// Days deleted files and conflict copies are kept in .twinsync/trash.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    trash_days: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Prefer {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve one replica to a brain over stdin/stdout (started by the brain,
    /// locally or over ssh; not for interactive use).
    Agent {
        /// Serve only this root (for an ssh forced command).
        #[arg(long, value_name = "ROOT")]
        restrict: Option<PathBuf>,
    },
}

fn level(d: u8) -> &'static str {
    match d {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

fn init_logs(filter: &str, json: bool) {
    let env = tracing_subscriber::EnvFilter::try_from_env("TWINSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let b = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if json {
        b.json().flatten_event(true).init();
    } else {
        b.init();
    }
}

/// Parse `args` and run; returns the process exit code.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(Cmd::Agent { restrict }) = cli.command {
        init_logs("warn", false);
        return match twinsync_helpers::agent::serve(
            Box::new(std::io::stdin()),
            Box::new(std::io::stdout()),
            restrict,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("twinsync agent: {e}");
                ExitCode::from(1)
            }
        };
    }
    init_logs(level(cli.debug), cli.log_format == LogFormat::Json);
    let settings = match settings(cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("twinsync: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twinsync: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(crate::run::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("twinsync: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn settings(cli: Cli) -> Result<Settings, UsageError> {
    let (Some(left), Some(right)) = (cli.left, cli.right) else {
        return Err(UsageError(
            "two replica roots are needed: twinsync LEFT RIGHT (see --help)".into(),
        ));
    };
    let left = check_root("left", &left)?;
    let remote = crate::remote::parse(&right.to_string_lossy(), cli.remote_host.as_deref())
        .map_err(UsageError)?;
    let right = match &remote {
        Some(r) => r.path.clone(),
        None => {
            let right = check_root("right", &right)?;
            check_pair(&left, &right)?;
            right
        }
    };
    let instance_right = match &remote {
        Some(r) => format!("{}:{}", r.display_host(), r.path.display()),
        None => right.to_string_lossy().into_owned(),
    };
    twinsync_filter::Excludes::new(&cli.exclude).map_err(UsageError)?;
    Ok(Settings {
        left: left.clone(),
        right: right.clone(),
        excludes: cli.exclude,
        dry_run: cli.dry_run,
        sync_only: cli.sync_only,
        skip_initial_sync: cli.skip_initial_sync,
        exit_on_no_events: cli.exit_on_no_events,
        prefer: match cli.prefer {
            Prefer::Left => Side::Left,
            Prefer::Right => Side::Right,
        },
        rsync_extra: cli.rsync_extra,
        agent_log: std::env::var("TWINSYNC_LOG").ok(),
        force: cli.force,
        instance: match cli.instance {
            Some(i) => {
                if i.is_empty()
                    || i.len() > 64
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
            None => crate::config::default_instance(&left, &instance_right),
        },
        max_delete_percent: cli.max_delete,
        trash_days: cli.trash_days,
        remote,
        remote_path: cli.remote_path,
        ssh_config: cli.ssh_config,
    })
}
