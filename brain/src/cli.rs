//! The command line: clap's raw structs and the dispatch of subcommands. The
//! raw values are turned into validated [`Settings`] by [`crate::config`];
//! nothing downstream sees clap.
//!
//! Exit codes: 0 success (stopped by a signal, a one-shot merge done, or
//! `--exit-on-no-events` converged); 1 a runtime error (an agent lost for
//! good, a root vanished, a safety net tripped, rsync missing); 2 a usage or
//! configuration error (nothing was started); 3 a banned program is running.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Settings, UsageError};
use crate::control::Request;
use crate::options::{LogFormat, Options};

/// Real-time two-way file replicator.
///
/// Keeps LEFT and RIGHT identical, live: creates, writes, deletes, renames
/// (replayed in place, never re-copied), modes, mtimes and symlinks go both
/// ways. RIGHT may be remote: HOST:/PATH, USER@HOST:/PATH or
/// ssh://USER@HOST:PORT/PATH (a host without twinsync gets a copy of this
/// one). When both sides change a file before it is synced, the newer wins
/// and the other is kept as NAME.conflict-DATE-SIDE.EXT. Deleted and overwritten files are
/// kept in each root's .twinsync/trash/ for --trash-days.
///
/// Exit status: 0 done or stopped by SIGTERM/SIGINT; 1 runtime error or a
/// safety net tripped; 2 usage or configuration error; 3 a banned program is
/// running.
#[derive(Debug, Parser)]
#[command(
    name = "twinsync",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Signals: SIGTERM/SIGINT finish the batch in flight and exit; SIGHUP reloads \
                  excludes from the config file; SIGUSR1 forces a full re-merge."
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Cmd>,
    /// Read options from this TOML file (command-line flags override it).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The options, shared with the config file.
    #[command(flatten)]
    pub(crate) options: Options,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Serve one replica to a brain over stdin/stdout (started by the brain,
    /// locally or over ssh; not for interactive use).
    Agent {
        /// Serve only this root (for an ssh forced command).
        #[arg(long, value_name = "ROOT")]
        restrict: Option<PathBuf>,
    },
    /// Run rsync's server end of a transfer for ROOT, confined beneath it
    /// (started by the brain's rsync over ssh; not for interactive use).
    #[command(hide = true)]
    RsyncServer {
        /// The replica root: rsync may read beneath it and write beneath its
        /// stage only.
        #[arg(long, value_name = "ROOT")]
        root: PathBuf,
        /// The rsync program and its server arguments.
        #[arg(last = true, required = true, value_name = "RSYNC")]
        command: Vec<OsString>,
    },
    /// List the instances running on this machine, with their state and
    /// counters (exit 1 when NAME is given and not running).
    Status {
        /// Only this instance.
        name: Option<String>,
        /// One JSON object per instance.
        #[arg(long)]
        json: bool,
    },
    /// Wait until a running instance has synced every change made before
    /// this command: nothing queued, nothing running, both replicas verified
    /// equal (exit 0; exit 1 on a timeout or if it stops or is paused).
    Flush {
        /// The instance [default: the only one running].
        name: Option<String>,
        /// Give up after this many seconds (exit 1).
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        timeout: Option<std::time::Duration>,
    },
    /// Stop syncing after the batch in flight; changes keep being watched
    /// and queue up until `resume`.
    Pause {
        /// The instance [default: the only one running].
        name: Option<String>,
    },
    /// Sync what queued while paused, and go on.
    Resume {
        /// The instance [default: the only one running].
        name: Option<String>,
    },
    /// List the conflict copies not yet resolved (deleted or renamed): the
    /// path, the kept copy, and each version's side, size and mtime.
    Conflicts {
        /// The instance [default: the only one running].
        name: Option<String>,
        /// One JSON object per conflict.
        #[arg(long)]
        json: bool,
    },
    /// Print the manual page (roff) to stdout.
    Man,
    /// Print shell completions to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// An agent behind an ssh forced command (`--restrict ROOT`) serves what
/// the client asked for (`SSH_ORIGINAL_COMMAND`) if it is one of twinsync's
/// own: the agent (`None`: go on), or rsync's server end for a transfer,
/// confined to ROOT whatever root the client named (never unconfined).
/// Anything else is refused.
fn forced_command(root: &std::path::Path, asked: &str) -> Option<ExitCode> {
    let refuse = |why: &str| {
        eprintln!("twinsync agent: refused {asked:?}: {why}");
        Some(ExitCode::from(1))
    };
    let Ok(words) = shell_words::split(asked) else {
        return refuse("not a command line");
    };
    match words.get(1).map(String::as_str) {
        Some("agent") if words.len() == 2 => None,
        Some("rsync-server") => {
            let Some(dash) = words.iter().position(|w| w == "--") else {
                return refuse("no rsync command");
            };
            let rsync = &words[dash + 1..];
            if rsync.first().map(String::as_str) != Some("rsync") {
                return refuse("only rsync may run");
            }
            let args: Vec<OsString> = rsync[1..].iter().map(OsString::from).collect();
            let e = twinsync_helpers::confine::exec_rsync_server(
                root,
                std::ffi::OsStr::new("rsync"),
                &args,
                true,
            );
            eprintln!("twinsync agent: {e}");
            Some(ExitCode::from(1))
        }
        _ => refuse("this key may run the twinsync agent and its rsync transfers only"),
    }
}

/// How long `pause` and `resume` wait for an answer (given at once).
const PROMPT: std::time::Duration = std::time::Duration::from_secs(10);

/// A `--timeout`: a non-negative number of seconds.
fn seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|x| std::time::Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| format!("expected a number of seconds, found {s:?}"))
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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let env = tracing_subscriber::EnvFilter::try_from_env("TWINSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(crate::progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // The errors logged are counted for `status`.
    let logs = tracing_subscriber::registry()
        .with(env)
        .with(crate::status::CountErrors);
    if json {
        logs.with(fmt.json().flatten_event(true)).init();
    } else {
        logs.with(fmt).init();
    }
}

/// Parse `args` and run; returns the process exit code.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let cli = match Cli::command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
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
    match cli.command {
        Some(Cmd::RsyncServer { root, command }) => {
            init_logs("warn", false);
            let e = twinsync_helpers::confine::exec_rsync_server(
                &root,
                &command[0],
                &command[1..],
                false,
            );
            eprintln!("twinsync rsync-server: {e}");
            return ExitCode::from(1);
        }
        Some(Cmd::Agent { restrict }) => {
            init_logs("warn", false);
            if let (Some(root), Ok(asked)) = (&restrict, std::env::var("SSH_ORIGINAL_COMMAND")) {
                if let Some(code) = forced_command(root, &asked) {
                    return code;
                }
            }
            // A local agent runs in its own process group, in the background
            // of the brain's terminal: its warnings must not stop it there
            // (`stty tostop`).
            // SAFETY: setting a signal to be ignored, before any thread starts.
            unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
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
        Some(Cmd::Status { name, json }) => {
            return crate::status::print_status(name.as_deref(), json);
        }
        Some(Cmd::Flush { name, timeout }) => {
            return crate::control::command(name.as_deref(), Request::Flush, timeout);
        }
        Some(Cmd::Pause { name }) => {
            return crate::control::command(name.as_deref(), Request::Pause, Some(PROMPT));
        }
        Some(Cmd::Resume { name }) => {
            return crate::control::command(name.as_deref(), Request::Resume, Some(PROMPT));
        }
        Some(Cmd::Conflicts { name, json }) => {
            return crate::control::print_conflicts(name.as_deref(), json);
        }
        Some(Cmd::Man) => {
            let mut page = Vec::new();
            if let Err(e) = crate::man::render(&mut page) {
                eprintln!("twinsync: cannot render the manual page: {e}");
                return ExitCode::from(1);
            }
            return crate::stdout::emit(&page);
        }
        Some(Cmd::Completions { shell }) => {
            // Into a buffer first: `generate` panics on a write error (a
            // closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "twinsync", &mut script);
            return crate::stdout::emit(&script);
        }
        None => {}
    }
    let settings = match Settings::new(cli.config, cli.options) {
        Ok(s) => s,
        Err(UsageError(e)) => {
            eprintln!("twinsync: {e}");
            return ExitCode::from(2);
        }
    };
    let json = settings.log_format == LogFormat::Json;
    init_logs(level(settings.debug), json);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // In JSON, every line the pair logs names its instance (a field of this
    // span, under "span"); the text log, read by people, is left as it is.
    let span = if json {
        tracing::info_span!("pair", instance = %settings.instance)
    } else {
        tracing::Span::none()
    };
    match rt.block_on(tracing::Instrument::instrument(
        crate::run::run(settings),
        span,
    )) {
        Ok(crate::run::Exit::Done) => ExitCode::SUCCESS,
        Ok(crate::run::Exit::Banned(p)) => {
            tracing::warn!(program = %p, "a banned program is running: exiting");
            ExitCode::from(3)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}
