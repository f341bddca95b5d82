//! `twinsync-bench`: twinsync against lsyncd (`-rsync`, delay 0), side by side.
//!
//! ```text
//! cargo build --release
//! cargo run --release -p twinsync-bench -- [--quick] [--json PATH] [--only latency|burst|rename]
//! ```
//!
//! Scenarios, each run on a fresh pair of directories under
//! `/tmp/twinsync-bench-<pid>/` with a freshly started tool:
//!
//! * **latency** — write a 16-byte file under a new name, poll the other side
//!   every 200 µs until it is there with that content; p50/p90 over 60
//!   samples (20 with `--quick`). twinsync both ways, lsyncd left → right.
//! * **burst** — 5000 small files in 50 directories, written as fast as
//!   possible; time until all are on the right with the right sizes.
//! * **rename** — 100 × 1 MiB files in `big/`; once copied, `rename(big,
//!   big2)` and time until the right has `big2/` complete and no `big/`;
//!   reports whether the right side's inodes survived (no data copied).
//! * **resources** — after each run: peak RSS (`VmHWM`) of the main process
//!   (and twinsync's two `agent` children) and CPU use over 2 s idle; the
//!   table shows the worst run.
//!
//! After every scenario the two trees are compared (ignoring `.twinsync/`);
//! differences left after 5 s are printed as notes under the table.
//!
//! twinsync is `$TWINSYNC_BIN` or the workspace's `target/release/twinsync`;
//! lsyncd is looked up in `$PATH`. Every wait is bounded (20 s to get ready,
//! 10 s per latency sample, 60 s otherwise) and a timeout shows as "timeout" in its cell. All
//! started processes are stopped and the temp root removed at the end, also
//! on errors and on Ctrl-C.

mod error;
mod fsops;
mod procs;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use error::{Failure, Res};
use fsops::TempRoot;
use procs::{Kind, Running, Tool};
use report::{Labels, ToolReport};

const USAGE: &str = "usage: twinsync-bench [--quick] [--json PATH] [--only latency|burst|rename]";

/// Default location of the twinsync binary: the workspace's release build,
/// `$CARGO_MANIFEST_DIR/../../target/release/twinsync`.
fn default_bin() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // contrib/bench → the workspace root, spelled without "..".
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    workspace.join("target/release/twinsync")
}

/// How long the trees may take to converge after a scenario.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// The measured scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Latency,
    Burst,
    Rename,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Latency, Scenario::Burst, Scenario::Rename];

    fn slug(self) -> &'static str {
        match self {
            Scenario::Latency => "latency",
            Scenario::Burst => "burst",
            Scenario::Rename => "rename",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|sc| sc.slug() == s)
    }
}

/// Command-line options.
#[derive(Debug, Default)]
struct Options {
    quick: bool,
    json: Option<PathBuf>,
    only: Option<Scenario>,
    help: bool,
}

/// Sizes of the workloads.
struct Params {
    latency_samples: usize,
    burst_files: usize,
    burst_dirs: usize,
    rename_files: usize,
}

impl Params {
    fn new(quick: bool) -> Self {
        Params {
            latency_samples: if quick { 20 } else { 60 },
            burst_files: 5000,
            burst_dirs: 50,
            rename_files: 100,
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--quick" => opts.quick = true,
            "--json" => opts.json = Some(PathBuf::from(value("--json")?)),
            "--only" => {
                let v = value("--only")?;
                opts.only =
                    Some(Scenario::parse(&v).ok_or_else(|| format!("unknown scenario {v:?}"))?);
            }
            "-h" | "--help" => opts.help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

/// The twinsync binary to measure, or a message saying how to get one.
fn find_twinsync() -> Result<PathBuf, String> {
    let (path, from_env) = match std::env::var_os("TWINSYNC_BIN") {
        Some(p) => (PathBuf::from(p), true),
        None => (default_bin(), false),
    };
    if path.is_file() {
        return Ok(path.canonicalize().unwrap_or(path));
    }
    let hint = if from_env {
        "check $TWINSYNC_BIN"
    } else {
        "run cargo build --release first (or set TWINSYNC_BIN)"
    };
    Err(format!(
        "twinsync binary not found at {}: {hint}",
        path.display()
    ))
}

/// Store one measurement; only an interruption stops the run.
fn record<T>(slot: &mut Option<Res<T>>, r: Res<T>, running: &mut Running) -> Res<()> {
    let r = r.map_err(|f| running.explain(f));
    if let Err(Failure::Interrupted) = r {
        return Err(Failure::Interrupted);
    }
    *slot = Some(r);
    Ok(())
}

/// Run the measurement of `sc` on a live, ready tool.
fn measure(
    sc: Scenario,
    tool: &Tool,
    pair: &fsops::Pair,
    p: &Params,
    running: &mut Running,
    rep: &mut ToolReport,
) -> Res<()> {
    match sc {
        Scenario::Latency => {
            let n = p.latency_samples;
            let lr = scenarios::latency(&pair.left, &pair.right, n, "lr");
            record(&mut rep.latency_lr, lr, running)?;
            if tool.two_way() {
                let rl = scenarios::latency(&pair.right, &pair.left, n, "rl");
                record(&mut rep.latency_rl, rl, running)?;
            }
        }
        Scenario::Burst => {
            let b = scenarios::burst(pair, p.burst_files, p.burst_dirs);
            record(&mut rep.burst, b, running)?;
        }
        Scenario::Rename => {
            let r = scenarios::rename(pair, p.rename_files);
            record(&mut rep.rename, r, running)?;
        }
    }
    Ok(())
}

/// Start `tool` on a fresh pair, wait until live, measure `sc`, check the
/// trees converged, and take the resource figures.
fn live_run(
    tool: &Tool,
    sc: Scenario,
    root: &TempRoot,
    p: &Params,
    rep: &mut ToolReport,
) -> Res<()> {
    let pair = root.pair(&format!("{}-{}", tool.slug(), sc.slug()))?;
    let mut running = tool.start(&pair)?;
    scenarios::wait_ready(&pair, tool.two_way()).map_err(|f| running.explain(f))?;
    measure(sc, tool, &pair, p, &mut running, rep)?;
    if let Some(f) = running.exited() {
        rep.notes.push(format!("after {}: {f}", sc.slug()));
        return Ok(());
    }
    if let Some(d) = scenarios::settle_and_compare(&pair, SETTLE_LIMIT)? {
        rep.notes.push(format!("after {}: {d}", sc.slug()));
    }
    let res = scenarios::resources(&mut running);
    rep.resources.push((sc.slug(), res));
    Ok(())
}

/// Run one scenario for one tool; a failure to start or get ready fills
/// that scenario's cells. Only an interruption is returned.
fn run_scenario(
    tool: &Tool,
    sc: Scenario,
    root: &TempRoot,
    p: &Params,
    rep: &mut ToolReport,
) -> Res<()> {
    eprintln!("[bench] {} with {} ...", sc.slug(), tool.slug());
    match live_run(tool, sc, root, p, rep) {
        Ok(()) => Ok(()),
        Err(Failure::Interrupted) => Err(Failure::Interrupted),
        Err(f) => {
            eprintln!("[bench] {} {}: {f}", tool.slug(), sc.slug());
            match sc {
                Scenario::Latency => {
                    rep.latency_lr.get_or_insert(Err(f.clone()));
                    if tool.two_way() {
                        rep.latency_rl.get_or_insert(Err(f));
                    }
                }
                Scenario::Burst => {
                    rep.burst.get_or_insert(Err(f));
                }
                Scenario::Rename => {
                    rep.rename.get_or_insert(Err(f));
                }
            }
            Ok(())
        }
    }
}

/// All selected scenarios, each for every available tool in turn.
fn run_all(opts: &Options, tools: &[Option<Tool>], reports: &mut [ToolReport]) -> Res<()> {
    let root = TempRoot::create()?;
    let p = Params::new(opts.quick);
    let selected: Vec<Scenario> = match opts.only {
        Some(sc) => vec![sc],
        None => Scenario::ALL.to_vec(),
    };
    for sc in selected {
        for (tool, rep) in tools.iter().zip(reports.iter_mut()) {
            if let Some(tool) = tool {
                run_scenario(tool, sc, &root, &p, rep)?;
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    error::install_signal_handlers();
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("twinsync-bench: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let twinsync = match find_twinsync() {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("twinsync-bench: {msg}");
            return ExitCode::from(2);
        }
    };
    let tools = [
        Some(Tool {
            kind: Kind::Twinsync,
            program: twinsync.clone(),
        }),
        procs::find_in_path("lsyncd").map(|program| Tool {
            kind: Kind::Lsyncd,
            program,
        }),
    ];
    let mut reports = [ToolReport::new("twinsync"), ToolReport::new("lsyncd")];
    if tools[1].is_none() {
        reports[1].missing = Some("not installed (apt-get install lsyncd)".into());
    }

    if let Err(f) = run_all(&opts, &tools, &mut reports) {
        eprintln!("twinsync-bench: {f}");
        return ExitCode::from(if matches!(f, Failure::Interrupted) {
            130
        } else {
            1
        });
    }

    let p = Params::new(opts.quick);
    let labels = Labels {
        burst_files: p.burst_files,
        rename_mib: p.rename_files as u64,
    };
    print!("{}", report::table(&reports[0], &reports[1], &labels));
    if let Some(path) = &opts.json {
        let json = report::json(
            opts.quick,
            &twinsync.to_string_lossy(),
            &[&reports[0], &reports[1]],
        );
        if let Err(e) = std::fs::write(path, json.render()) {
            eprintln!("twinsync-bench: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
