//! `twinsync-bench`: twinsync against lsyncd (`-rsync`, delay 0) and clsync
//! (`rsyncdirect`, every delay 0), side by side, locally, and over ssh
//! against lsyncd `-rsyncssh`, delay 0 (clsync is measured locally only;
//! its command line and why: `Tool::clsync_command` in `procs.rs`).
//!
//! ```text
//! cargo build --release
//! cargo run --release -p twinsync-bench -- [--quick] [--json PATH] [--keep]
//!     [--only latency|burst|rename|rename100k|ssh-latency|ssh-burst|
//!             ssh-rename|ssh-rename100k|merge|attr-latency|sparse|
//!             rootfs-merge|watch1m|delta-ssh|mixed] [--delta-mib N]
//! ```
//!
//! Scenarios, each run on a fresh pair of directories under
//! `/tmp/twinsync-bench-<pid>/` with a freshly started tool:
//!
//! * **latency** — write a 16-byte file under a new name, poll the other side
//!   every 200 µs until it is there with that content; p50/p90 over 60
//!   samples (20 with `--quick`). twinsync both ways, the peers left → right.
//! * **burst** — 5000 small files in 50 directories, written as fast as
//!   possible; time until all are on the right with the right sizes.
//! * **rename** — 100 × 1 MiB files in `big/`; once copied, `rename(big,
//!   big2)` and time until the right has `big2/` complete and no `big/`;
//!   reports whether the right side's inodes survived (no data copied).
//!   If `big2/` is complete but `big/` is still there 10 s later, the cell
//!   says "never (old dir left)" (clsync); plain "timeout" after 60 s.
//! * **rename100k** — a tree of 100,000 files of 1–200 bytes (100 in each of
//!   1000 directories; 20,000 with `--quick`, which its rows say) in
//!   `tree/`, made before the tool starts and copied by its first sync (not
//!   timed, up to 180 s); then `rename(tree, tree2)` and time until the
//!   right has `tree2/` with every file at its size (500 spread over it also
//!   by content) and no `tree/`; inodes checked on those 500. "never (old
//!   dir left)" and "timeout" as for rename. The resources of this run get
//!   a row of their own, not mixed into the others.
//! * **resources** — after each run: peak RSS (`VmHWM`) of the main process
//!   (and twinsync's two `agent` children) and CPU use over 2 s idle; the
//!   table shows the worst run (but rename100k's, shown apart).
//!
//! * **ssh-latency**, **ssh-burst**, **ssh-rename**, **ssh-rename100k** —
//!   the same four with the right side behind a private OpenSSH server that
//!   the bench starts on a free port of 127.0.0.1 (fresh host and client
//!   keys, own
//!   `sshd_config` and client `ssh_config` in the temp root; see
//!   `sshd.rs`), on the same machine: twinsync runs as `twinsync
//!   --ssh-config CFG --remote-path <this twinsync> L twinsync-bench:/abs/R`
//!   (brain and left agent local, right agent under sshd), lsyncd as
//!   `default.rsyncssh` using the same config for rsync and its `ssh mv`.
//!   ssh-burst also shows each tool's ssh burst time over its local one
//!   when both ran (twinsync's target: ≤ 2×); ssh-rename and
//!   ssh-rename100k also show about how many KiB crossed the loopback
//!   interface for the rename (noisy). No resource figures over ssh. Part of the default run when
//!   `/usr/sbin/sshd` exists; otherwise skipped with a message.
//!
//! * **merge** — a fresh tree of 100,000 files of 1–200 bytes (100 in each
//!   of 1000 directories; 20,000 with `--quick`) against an empty right
//!   side: `rsync -a L/ R/`, twinsync's first `--sync-only` merge (wall
//!   time, the brain's and agents' peak RSS sampled from `/proc` every
//!   20 ms, the brain's bytes per file; then the right tree is compared
//!   with the left, all names and sizes and the bytes of 1000 files), a
//!   second `--sync-only` on the now identical pair (wall time, and that
//!   it copied nothing), and unison (`-batch -auto -times -perms 0`, with
//!   a fresh `$UNISON`). Each tool gets its own `cp -a` of one generated
//!   tree, made before any tool runs; see `merge.rs`. Own table section
//!   and `"merge"` in the JSON.
//! * **attr-latency**, **sparse**, **rootfs-merge** — fidelity (issue
//!   12), twinsync alone with rsync one way beside it where it can do the
//!   same: an attribute-only change's latency beside a small file's; a
//!   1 GiB sparse file holding 1 MiB, locally and over ssh (time, space on
//!   the right, bytes over the loopback); the first merge of a Debian root
//!   file system beside `rsync -aHAXS --numeric-ids`. See `fidelity.rs`.
//!   Own table sections, and `"attr_latency"`, `"sparse"`,
//!   `"rootfs_merge"` in the JSON.
//! * **delta-ssh**, **mixed** — workloads (issue 16), each with its peer
//!   in the same run: a 1 GiB file of real data (`--delta-mib N` for
//!   another size) rewritten for 1 MiB in its middle over ssh, time and
//!   bytes over the loopback, beside `rsync -a` over the same sshd; a build
//!   tree (2000 × 4 KiB object files rewritten through a temp file and a
//!   rename, 4 archives appended 64 MiB each), time until the right has it
//!   all, beside lsyncd. See `workloads.rs`. Own table sections, and
//!   `"delta_ssh"`, `"mixed"` in the JSON.
//! * **watch1m** — only with `--only watch1m`: twinsync live on two
//!   identical trees of 1,000,000 empty files in 10,000 directories; once
//!   live, the brain's and agents' `VmRSS`/`VmHWM` and the agents'
//!   inotify watches. Takes minutes and about 2 × 1M inodes; see
//!   `watch1m.rs`.
//!
//! After every live-tool scenario the two trees are compared (ignoring
//! `.twinsync/`), entries and sizes, then file contents; differences left
//! after 5 s are printed as notes under the table, and so are the
//! WARN/ERROR lines of the tool's log (lsyncd: `Error:` lines; clsync:
//! `Error`/`Warning` lines).
//!
//! `--keep` leaves `/tmp/twinsync-bench-<pid>/` in place at the end and
//! runs twinsync with `-d 1` instead of `-d 0` (clsync with `-d1`), so that
//! every run's log (`<tool>-<scenario>/<tool>.log`) and the sshd files can
//! be read.
//!
//! twinsync is `$TWINSYNC_BIN` or the workspace's `target/release/twinsync`;
//! lsyncd and clsync are looked up in `$PATH` (a missing one gets "-" and a
//! note in its column). Every wait is bounded (20 s to get ready, 180 s
//! with the rename100k tree, 10 s per latency sample, 60 s otherwise) and a
//! timeout shows as "timeout" in its cell. All started processes are
//! stopped and the temp root removed at the end, also on errors and on
//! Ctrl-C.

mod error;
mod fidelity;
mod fsops;
mod merge;
mod procs;
mod report;
mod scenarios;
mod sshd;
mod watch1m;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use error::{Failure, Res};
use fsops::TempRoot;
use procs::{Kind, Remote, Running, Tool};
use report::{Body, BulkJson, Labels, Section, SshJson, ToolReport};
use sshd::Sshd;

const USAGE: &str = "usage: twinsync-bench [--quick] [--json PATH] [--keep] \
                     [--only latency|burst|rename|rename100k|ssh-latency|ssh-burst|ssh-rename|\
                     ssh-rename100k|merge|attr-latency|sparse|rootfs-merge|watch1m|delta-ssh|\
                     mixed] [--delta-mib N]";

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
    Rename100k,
    SshLatency,
    SshBurst,
    SshRename,
    SshRename100k,
    Merge,
    AttrLatency,
    Sparse,
    RootfsMerge,
    Watch1m,
    DeltaSsh,
    Mixed,
}

impl Scenario {
    const ALL: [Scenario; 15] = [
        Scenario::Latency,
        Scenario::Burst,
        Scenario::Rename,
        Scenario::Rename100k,
        Scenario::SshLatency,
        Scenario::SshBurst,
        Scenario::SshRename,
        Scenario::SshRename100k,
        Scenario::Merge,
        Scenario::AttrLatency,
        Scenario::Sparse,
        Scenario::RootfsMerge,
        Scenario::Watch1m,
        Scenario::DeltaSsh,
        Scenario::Mixed,
    ];

    /// Those of the default run: all but watch1m.
    fn default_run() -> Vec<Scenario> {
        Self::ALL
            .into_iter()
            .filter(|&sc| sc != Scenario::Watch1m)
            .collect()
    }

    fn slug(self) -> &'static str {
        match self {
            Scenario::Latency => "latency",
            Scenario::Burst => "burst",
            Scenario::Rename => "rename",
            Scenario::Rename100k => "rename100k",
            Scenario::SshLatency => "ssh-latency",
            Scenario::SshBurst => "ssh-burst",
            Scenario::SshRename => "ssh-rename",
            Scenario::SshRename100k => "ssh-rename100k",
            Scenario::Merge => "merge",
            Scenario::AttrLatency => "attr-latency",
            Scenario::Sparse => "sparse",
            Scenario::RootfsMerge => "rootfs-merge",
            Scenario::Watch1m => "watch1m",
            Scenario::DeltaSsh => "delta-ssh",
            Scenario::Mixed => "mixed",
        }
    }

    /// Whether it runs each live tool on a pair (not merge, watch1m, the
    /// fidelity scenarios, which run twinsync alone, nor the workloads,
    /// which run their own peer).
    fn live(self) -> bool {
        !matches!(
            self,
            Scenario::Merge
                | Scenario::AttrLatency
                | Scenario::Sparse
                | Scenario::RootfsMerge
                | Scenario::Watch1m
                | Scenario::DeltaSsh
                | Scenario::Mixed
        )
    }

    /// Whether the right side is reached over ssh.
    fn ssh(self) -> bool {
        matches!(
            self,
            Scenario::SshLatency
                | Scenario::SshBurst
                | Scenario::SshRename
                | Scenario::SshRename100k
        )
    }

    /// The measurement, local or not.
    fn base(self) -> Scenario {
        match self {
            Scenario::SshLatency => Scenario::Latency,
            Scenario::SshBurst => Scenario::Burst,
            Scenario::SshRename => Scenario::Rename,
            Scenario::SshRename100k => Scenario::Rename100k,
            local => local,
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
    keep: bool,
    /// `--delta-mib`: the delta-ssh file's size (default 1024).
    delta_mib: Option<u64>,
    help: bool,
}

impl Options {
    fn selected(&self) -> Vec<Scenario> {
        match self.only {
            Some(sc) => vec![sc],
            None => Scenario::default_run(),
        }
    }
}

/// Sizes of the workloads.
struct Params {
    latency_samples: usize,
    burst_files: usize,
    burst_dirs: usize,
    rename_files: usize,
    /// The rename100k scenario's tree.
    tree: fsops::TreeSpec,
}

impl Params {
    fn new(quick: bool) -> Self {
        Params {
            latency_samples: if quick { 20 } else { 60 },
            burst_files: 5000,
            burst_dirs: 50,
            rename_files: 100,
            tree: scenarios::tree_spec(quick),
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
            "--keep" => opts.keep = true,
            "--json" => opts.json = Some(PathBuf::from(value("--json")?)),
            "--only" => {
                let v = value("--only")?;
                opts.only =
                    Some(Scenario::parse(&v).ok_or_else(|| format!("unknown scenario {v:?}"))?);
            }
            "--delta-mib" => {
                let v = value("--delta-mib")?;
                opts.delta_mib =
                    Some(v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("--delta-mib wants a positive number, not {v:?}")
                    })?);
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

/// A rename that never showed because the tool died says so.
fn explain_rename(r: Res<scenarios::Rename>, running: &mut Running) -> Res<scenarios::Rename> {
    r.map(|mut x| {
        x.renamed = x.renamed.map_err(|f| running.explain(f));
        x
    })
}

/// Run the measurement of `sc` on a live, ready tool, started at
/// `started`.
fn measure(
    sc: Scenario,
    tool: &Tool,
    pair: &fsops::Pair,
    p: &Params,
    started: Instant,
    running: &mut Running,
    rep: &mut ToolReport,
) -> Res<()> {
    match sc.base() {
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
            let r = scenarios::rename(pair, p.rename_files, sc.ssh());
            record(&mut rep.rename, explain_rename(r, running), running)?;
        }
        Scenario::Rename100k => {
            let r = scenarios::rename_tree(pair, &p.tree, started, sc.ssh());
            record(&mut rep.rename100k, explain_rename(r, running), running)?;
        }
        Scenario::SshLatency
        | Scenario::SshBurst
        | Scenario::SshRename
        | Scenario::SshRename100k => {
            unreachable!("base() is a local scenario")
        }
        Scenario::Merge
        | Scenario::AttrLatency
        | Scenario::Sparse
        | Scenario::RootfsMerge
        | Scenario::Watch1m
        | Scenario::DeltaSsh
        | Scenario::Mixed => unreachable!("not a live-tool scenario"),
    }
    Ok(())
}

/// Start `tool` on a fresh pair, wait until live, measure `sc`, check the
/// trees converged, and take the resource figures; then stop the tool and
/// note the trouble its log reports.
fn live_run(
    tool: &Tool,
    sc: Scenario,
    root: &TempRoot,
    p: &Params,
    rep: &mut ToolReport,
) -> Res<()> {
    let pair = root.pair(&format!("{}-{}", tool.slug(), sc.slug()))?;
    if sc.base() == Scenario::Rename100k {
        // In place before the tool starts: its first sync copies it.
        scenarios::prepare_tree(&pair, &p.tree)?;
    }
    let started = Instant::now();
    let mut running = tool.start(&pair)?;
    let log = running.log_path().to_path_buf();
    let r = measure_live(tool, sc, &pair, p, started, &mut running, rep);
    drop(running);
    let (lines, total) = scenarios::log_trouble(&log, 5);
    if total > 0 {
        rep.notes.push(format!(
            "{}: {total} warning/error line(s) in {}: {}",
            sc.slug(),
            log.display(),
            lines.join(" | ")
        ));
    }
    r
}

/// The part of [`live_run`] with the tool running.
fn measure_live(
    tool: &Tool,
    sc: Scenario,
    pair: &fsops::Pair,
    p: &Params,
    started: Instant,
    running: &mut Running,
    rep: &mut ToolReport,
) -> Res<()> {
    // With the big tree to copy first, becoming live takes longer.
    let ready_limit = (sc.base() == Scenario::Rename100k).then_some(scenarios::TREE_READY_LIMIT);
    scenarios::wait_ready(pair, tool.two_way(), ready_limit).map_err(|f| running.explain(f))?;
    measure(sc, tool, pair, p, started, running, rep)?;
    if let Some(f) = running.exited() {
        rep.notes.push(format!("after {}: {f}", sc.slug()));
        return Ok(());
    }
    if let Some(d) = scenarios::settle_and_compare(pair, SETTLE_LIMIT)? {
        rep.notes.push(format!("after {}: {d}", sc.slug()));
    }
    // Over ssh the right agent is not the tool's child: no figures.
    if !sc.ssh() {
        let res = scenarios::resources(running);
        rep.resources.push((sc.slug(), res));
    }
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
            match sc.base() {
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
                Scenario::Rename100k => {
                    rep.rename100k.get_or_insert(Err(f));
                }
                Scenario::SshLatency
                | Scenario::SshBurst
                | Scenario::SshRename
                | Scenario::SshRename100k => {
                    unreachable!("base() is a local scenario")
                }
                Scenario::Merge
                | Scenario::AttrLatency
                | Scenario::Sparse
                | Scenario::RootfsMerge
                | Scenario::Watch1m
                | Scenario::DeltaSsh
                | Scenario::Mixed => {
                    unreachable!("not a live-tool scenario")
                }
            }
            Ok(())
        }
    }
}

/// The local tools and their reports.
struct Side<'a> {
    tools: &'a [Option<Tool>],
    reports: &'a mut [ToolReport],
}

/// The ssh scenarios' server, started at the first of them.
enum SshState {
    /// No ssh scenario reached yet.
    NotStarted,
    Running {
        /// Kept for its `Drop`, which stops sshd and its sessions.
        _server: Sshd,
        tools: Vec<Option<Tool>>,
    },
    /// They cannot run here; the reason was printed.
    Unavailable(String),
}

impl SshState {
    /// The tools over ssh, starting the server on first use.
    fn tools(&mut self, local: &[Option<Tool>], root: &TempRoot) -> Res<Option<&[Option<Tool>]>> {
        if let SshState::NotStarted = self {
            *self = match sshd::unavailable() {
                Some(why) => SshState::Unavailable(why),
                None => {
                    eprintln!("[bench] starting sshd on 127.0.0.1 ...");
                    match sshd::start(&root.path().join("sshd")) {
                        Ok(server) => {
                            eprintln!("[bench] sshd listens on 127.0.0.1:{}", server.port);
                            let tools = over_ssh(local, &server);
                            SshState::Running {
                                _server: server,
                                tools,
                            }
                        }
                        Err(Failure::Interrupted) => return Err(Failure::Interrupted),
                        Err(f) => SshState::Unavailable(format!("sshd: failed to start: {f}")),
                    }
                }
            };
            if let SshState::Unavailable(why) = self {
                eprintln!("{why}; skipping the ssh scenarios");
            }
        }
        Ok(match self {
            SshState::Running { tools, .. } => Some(tools),
            _ => None,
        })
    }

    fn unavailable(&self) -> Option<&str> {
        match self {
            SshState::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

/// The local tools, reaching the right side through `server` (`None` for
/// those measured locally only).
fn over_ssh(local: &[Option<Tool>], server: &Sshd) -> Vec<Option<Tool>> {
    local
        .iter()
        .map(|t| {
            t.clone().filter(Tool::over_ssh).map(|t| Tool {
                remote: Some(Remote {
                    client_config: server.ssh_config.clone(),
                    host: sshd::HOST,
                }),
                ..t
            })
        })
        .collect()
}

/// The results of the scenarios outside the two-tool table.
#[derive(Default)]
struct Bulk {
    merge: Option<Res<merge::MergeBench>>,
    attrs: Option<Res<fidelity::attrs::AttrLatency>>,
    sparse: Option<Res<fidelity::sparse::SparseBench>>,
    rootfs: Option<Res<fidelity::rootfs::RootfsBench>>,
    watch1m: Option<Res<watch1m::Watch1m>>,
    delta: Option<Res<workloads::delta::DeltaBench>>,
    mixed: Option<Res<workloads::mixed::MixedBench>>,
}

/// Keep a scenario's result; only an interruption stops the run.
fn keep_bulk<T>(slot: &mut Option<Res<T>>, r: Res<T>) -> Res<()> {
    if let Err(Failure::Interrupted) = r {
        return Err(Failure::Interrupted);
    }
    if let Err(f) = &r {
        eprintln!("[bench] {f}");
    }
    *slot = Some(r);
    Ok(())
}

/// All selected scenarios, each for every available tool in turn (the ssh
/// ones with `local`'s tools reaching the right side over ssh, recorded in
/// `ssh_reports`; merge and watch1m into `bulk`). Returns why the ssh
/// scenarios could not run, if so.
fn run_all(
    opts: &Options,
    local: Side,
    ssh_reports: &mut [ToolReport],
    bulk: &mut Bulk,
) -> Res<Option<String>> {
    let root = TempRoot::create(opts.keep)?;
    if opts.keep {
        eprintln!("[bench] keeping {}", root.path().display());
    }
    let p = Params::new(opts.quick);
    // Declared after `root`, so dropped (sshd stopped) before it.
    let mut ssh_state = SshState::NotStarted;
    for sc in opts.selected() {
        let twinsync = local.tools.first().and_then(Option::as_ref);
        match (sc, twinsync) {
            (Scenario::Merge, Some(t)) => {
                eprintln!("[bench] merge ...");
                keep_bulk(&mut bulk.merge, merge::run(&root, &t.program, opts.quick))?;
                continue;
            }
            (Scenario::Watch1m, Some(t)) => {
                eprintln!("[bench] watch1m ...");
                keep_bulk(&mut bulk.watch1m, watch1m::run(&root, t))?;
                continue;
            }
            (Scenario::AttrLatency, Some(t)) => {
                eprintln!("[bench] attr-latency ...");
                let r = fidelity::attrs::run(&root, t, p.latency_samples);
                keep_bulk(&mut bulk.attrs, r)?;
                continue;
            }
            (Scenario::Sparse, Some(t)) => {
                eprintln!("[bench] sparse ...");
                let over_ssh = ssh_state
                    .tools(local.tools, &root)?
                    .and_then(|tools| tools.first().cloned().flatten());
                let why = ssh_state.unavailable().unwrap_or("no ssh tool").to_string();
                let r = fidelity::sparse::run(&root, t, over_ssh.as_ref().ok_or(why));
                keep_bulk(&mut bulk.sparse, r)?;
                continue;
            }
            (Scenario::DeltaSsh, Some(_)) => {
                let over_ssh = ssh_state
                    .tools(local.tools, &root)?
                    .and_then(|tools| tools.first().cloned().flatten());
                let why = ssh_state.unavailable().unwrap_or("no ssh tool").to_string();
                let len = opts.delta_mib.unwrap_or(1024) << 20;
                let r = workloads::delta::run(&root, over_ssh.as_ref().ok_or(why), len);
                keep_bulk(&mut bulk.delta, r)?;
                continue;
            }
            (Scenario::Mixed, Some(t)) => {
                let lsyncd = local.tools.get(1).and_then(Option::as_ref);
                let r = workloads::mixed::run(&root, t, lsyncd, workloads::mixed::MIX);
                keep_bulk(&mut bulk.mixed, r)?;
                continue;
            }
            (Scenario::RootfsMerge, Some(t)) => {
                eprintln!("[bench] rootfs-merge ...");
                keep_bulk(&mut bulk.rootfs, fidelity::rootfs::run(&root, &t.program))?;
                continue;
            }
            (
                Scenario::Merge
                | Scenario::AttrLatency
                | Scenario::Sparse
                | Scenario::RootfsMerge
                | Scenario::Watch1m
                | Scenario::DeltaSsh
                | Scenario::Mixed,
                None,
            ) => continue,
            _ => {}
        }
        let (tools, reports) = if sc.ssh() {
            match ssh_state.tools(local.tools, &root)? {
                Some(tools) => (tools, &mut *ssh_reports),
                None => continue,
            }
        } else {
            (local.tools, &mut *local.reports)
        };
        for (tool, rep) in tools.iter().zip(reports.iter_mut()) {
            if let Some(tool) = tool {
                run_scenario(tool, sc, &root, &p, rep)?;
            }
        }
    }
    Ok(ssh_state.unavailable().map(str::to_string))
}

/// Each tool's ssh burst time over its local one, when both were measured.
fn burst_ratios(local: &[ToolReport], ssh: &mut [ToolReport]) {
    for (l, s) in local.iter().zip(ssh.iter_mut()) {
        if let (Some(Ok(lb)), Some(Ok(sb))) = (&l.burst, &s.burst) {
            if lb.secs > 0.0 {
                s.burst_vs_local = Some(sb.secs / lb.secs);
            }
        }
    }
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
    let log_level = if opts.keep { 1 } else { 0 };
    let tools = [
        Some(Tool {
            kind: Kind::Twinsync,
            program: twinsync.clone(),
            remote: None,
            log_level,
        }),
        twinsync_testkit::tools::find_in_path("lsyncd").map(|program| Tool {
            kind: Kind::Lsyncd,
            program,
            remote: None,
            log_level,
        }),
        twinsync_testkit::tools::find_in_path("clsync").map(|program| Tool {
            kind: Kind::Clsync,
            program,
            remote: None,
            log_level,
        }),
    ];
    let mut reports = [
        ToolReport::new("twinsync"),
        ToolReport::new("lsyncd"),
        ToolReport::new("clsync"),
    ];
    // clsync runs locally only: no ssh column for it (over_ssh skips it).
    let mut ssh_reports = [
        ToolReport::new_ssh("twinsync"),
        ToolReport::new_ssh("lsyncd"),
    ];
    if tools[1].is_none() {
        for r in [&mut reports[1], &mut ssh_reports[1]] {
            r.missing = Some("not installed (apt-get install lsyncd)".into());
        }
    }
    if tools[2].is_none() {
        reports[2].missing = Some("not installed (apt-get install clsync)".into());
    }

    let local = Side {
        tools: &tools,
        reports: &mut reports,
    };
    let mut bulk = Bulk::default();
    let ssh_unavailable = match run_all(&opts, local, &mut ssh_reports, &mut bulk) {
        Ok(u) => u,
        Err(f) => {
            eprintln!("twinsync-bench: {f}");
            return ExitCode::from(if matches!(f, Failure::Interrupted) {
                130
            } else {
                1
            });
        }
    };
    burst_ratios(&reports, &mut ssh_reports);

    let p = Params::new(opts.quick);
    let labels = Labels {
        burst_files: p.burst_files,
        rename_mib: p.rename_files as u64,
        tree_files: p.tree.files(),
        quick: opts.quick,
    };
    let selected = opts.selected();
    let mut sections = Vec::new();
    if selected.iter().any(|sc| sc.live() && !sc.ssh()) {
        sections.push(Section {
            title: None,
            unavailable: None,
            body: Body::Tools {
                ours: &reports[0],
                peers: vec![&reports[1], &reports[2]],
                ssh: false,
            },
        });
    }
    let ssh_selected = selected.iter().any(|sc| sc.ssh());
    if ssh_selected {
        sections.push(Section {
            title: Some("over ssh: twinsync vs lsyncd(-rsyncssh, delay 0)".into()),
            unavailable: ssh_unavailable.clone(),
            body: Body::Tools {
                ours: &ssh_reports[0],
                peers: vec![&ssh_reports[1]],
                ssh: true,
            },
        });
    }
    if let Some(m) = &bulk.merge {
        let spec = merge::spec(opts.quick);
        sections.push(Section {
            title: Some(format!(
                "merge of a fresh {}k-file tree ({} dirs × {} files of 1–200 bytes; right empty)",
                spec.files() / 1000,
                spec.dirs,
                spec.per_dir
            )),
            unavailable: None,
            body: Body::Merge(m),
        });
    }
    if let Some(a) = &bulk.attrs {
        sections.push(Section {
            title: Some(
                "attribute-only changes, twinsync L→R (beside a small file's content, same run)"
                    .into(),
            ),
            unavailable: None,
            body: Body::Attrs(a),
        });
    }
    if let Some(s) = &bulk.sparse {
        sections.push(Section {
            title: Some(format!(
                "a {} GiB sparse file holding 1 MiB of data, written live on the left",
                fidelity::sparse::LEN >> 30
            )),
            unavailable: None,
            body: Body::Sparse(s),
        });
    }
    if let Some(r) = &bulk.rootfs {
        sections.push(Section {
            title: Some("first merge of a Debian root file system (right empty)".into()),
            unavailable: None,
            body: Body::Rootfs(r),
        });
    }
    if let Some(w) = &bulk.watch1m {
        let spec = watch1m::SPEC;
        sections.push(Section {
            title: Some(format!(
                "live on {} empty files in {} dirs (both sides pre-made, identical)",
                spec.files(),
                spec.dirs
            )),
            unavailable: None,
            body: Body::Watch1m(w),
        });
    }
    if let Some(d) = &bulk.delta {
        sections.push(Section {
            title: Some(
                "delta over ssh: 1 MiB rewritten in the middle of a big file (real data)".into(),
            ),
            unavailable: None,
            body: Body::Delta(d),
        });
    }
    if let Some(m) = &bulk.mixed {
        sections.push(Section {
            title: Some(
                "mixed: a build tree (object files rewritten via rename, archives appended)".into(),
            ),
            unavailable: None,
            body: Body::Mixed(m),
        });
    }
    print!("{}", report::table(&sections, &labels));
    if let Some(path) = &opts.json {
        let ssh_refs = [&ssh_reports[0], &ssh_reports[1]];
        let ssh_json = match (&ssh_unavailable, ssh_selected) {
            (_, false) => SshJson::NotRun,
            (Some(why), true) => SshJson::Unavailable(why),
            (None, true) => SshJson::Ran(&ssh_refs),
        };
        let json = report::json(
            opts.quick,
            &twinsync.to_string_lossy(),
            &[&reports[0], &reports[1], &reports[2]],
            ssh_json,
            BulkJson {
                merge: bulk.merge.as_ref(),
                attrs: bulk.attrs.as_ref(),
                sparse: bulk.sparse.as_ref(),
                rootfs: bulk.rootfs.as_ref(),
                watch1m: bulk.watch1m.as_ref(),
                delta: bulk.delta.as_ref(),
                mixed: bulk.mixed.as_ref(),
            },
        );
        if let Err(e) = std::fs::write(path, json.render()) {
            eprintln!("twinsync-bench: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
