//! The JSON object written by `--json`: every figure of the run, as
//! serde-serialised views of the reports (fields in output order).

mod fidelity;
mod workloads;

use serde::{Serialize, Serializer};

use super::{
    ToolReport, BYTES_PER_FILE_TARGET, MERGE_RATIO_TARGET, SECOND_MERGE_TARGET_SECS,
    WATCH_TOTAL_TARGET_MIB,
};
use crate::error::{Failure, Res};
use crate::fsops::TreeCheck;
use crate::merge::{MergeBench, TwinsyncMerge};
use crate::procs::Timed;
use crate::scenarios::{Burst, Latency, Rename, Resources};
use crate::watch1m::{Mem, Watch1m};

/// A figure rounded to 3 decimals (serialised as `null` if not finite).
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// KiB as MiB, rounded.
fn mib(kib: u64) -> f64 {
    r3(kib as f64 / 1024.0)
}

/// Entries written as one JSON object, in their order (a
/// `serde_json::Map` would sort them).
struct Keyed<T>(Vec<(&'static str, T)>);

impl<T: Serialize> Serialize for Keyed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Why a figure is missing: `{error, detail}`.
#[derive(Serialize)]
struct FailureJson {
    error: &'static str,
    detail: String,
}

impl From<&Failure> for FailureJson {
    fn from(f: &Failure) -> Self {
        FailureJson {
            error: f.short(),
            detail: f.to_string(),
        }
    }
}

/// A scenario's figures: `null` when it was not run, `{error, detail}` when
/// it failed.
#[derive(Serialize)]
#[serde(untagged)]
enum Outcome<T> {
    NotRun,
    Ran(T),
    Failed(FailureJson),
}

impl<T> Outcome<T> {
    /// The figures of `r` as `ran` shows them.
    fn of<'r, R>(r: Option<&'r Res<R>>, ran: impl FnOnce(&'r R) -> T) -> Self {
        match r {
            None => Outcome::NotRun,
            Some(Ok(r)) => Outcome::Ran(ran(r)),
            Some(Err(f)) => Outcome::Failed(f.into()),
        }
    }
}

/// A tool that could not be run at all, or the ssh scenarios when sshd
/// could not be started.
#[derive(Serialize)]
struct Unavailable<'a> {
    available: bool,
    error: &'a str,
}

impl<'a> Unavailable<'a> {
    fn because(error: &'a str) -> Self {
        Unavailable {
            available: false,
            error,
        }
    }
}

#[derive(Serialize)]
struct LatencyJson {
    p50_ms: f64,
    p90_ms: f64,
    samples_ms: Vec<f64>,
}

impl From<&Latency> for LatencyJson {
    fn from(l: &Latency) -> Self {
        LatencyJson {
            p50_ms: r3(l.percentile(0.5)),
            p90_ms: r3(l.percentile(0.9)),
            samples_ms: l.samples_ms.iter().map(|&x| r3(x)).collect(),
        }
    }
}

#[derive(Serialize)]
struct BurstJson {
    files: usize,
    secs: f64,
    write_secs: f64,
}

impl From<&Burst> for BurstJson {
    fn from(b: &Burst) -> Self {
        BurstJson {
            files: b.files,
            secs: r3(b.secs),
            write_secs: r3(b.write_secs),
        }
    }
}

/// A rename scenario: the copy's figures, then either the rename's or
/// `rename_error` (a timeout, or "never (old dir left)").
#[derive(Serialize)]
struct RenameJson {
    mib: f64,
    files: usize,
    copy_secs: f64,
    /// `null` when the rename never showed.
    rename_ms: Option<f64>,
    #[serde(flatten)]
    renamed: Option<RenamedJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rename_error: Option<FailureJson>,
}

#[derive(Serialize)]
struct RenamedJson {
    inodes_kept: usize,
    inodes_checked: usize,
    no_data_copied: bool,
    /// Over ssh only.
    #[serde(skip_serializing_if = "Option::is_none")]
    loopback_kib_approx: Option<f64>,
}

impl From<&Rename> for RenameJson {
    fn from(r: &Rename) -> Self {
        let (rename_ms, renamed, rename_error) = match &r.renamed {
            Ok(x) => (
                Some(r3(x.secs * 1e3)),
                Some(RenamedJson {
                    inodes_kept: x.inodes_kept,
                    inodes_checked: x.inodes_checked,
                    no_data_copied: x.inodes_kept == x.inodes_checked,
                    loopback_kib_approx: x.net_kib.map(r3),
                }),
                None,
            ),
            Err(f) => (None, None, Some(f.into())),
        };
        RenameJson {
            mib: r3(r.bytes as f64 / (1u64 << 20) as f64),
            files: r.files,
            copy_secs: r3(r.copy_secs),
            rename_ms,
            renamed,
            rename_error,
        }
    }
}

#[derive(Serialize)]
struct ResourcesJson {
    main_peak_rss_mib: f64,
    children_peak_rss_mib: Vec<f64>,
    total_peak_rss_mib: f64,
    idle_cpu_percent: f64,
}

impl From<&Resources> for ResourcesJson {
    fn from(r: &Resources) -> Self {
        ResourcesJson {
            main_peak_rss_mib: r3(r.main_mib),
            children_peak_rss_mib: r.children_mib.iter().map(|&m| r3(m)).collect(),
            total_peak_rss_mib: r3(r.total_mib()),
            idle_cpu_percent: r3(r.idle_cpu_pct),
        }
    }
}

/// One tool's figures, or why it could not be run.
#[derive(Serialize)]
#[serde(untagged)]
enum ToolJson<'a> {
    Unavailable(Unavailable<'a>),
    Ran(Box<ToolFigures<'a>>),
}

#[derive(Serialize)]
struct ToolFigures<'a> {
    available: bool,
    latency_lr: Outcome<LatencyJson>,
    latency_rl: Outcome<LatencyJson>,
    burst: Outcome<BurstJson>,
    rename: Outcome<RenameJson>,
    rename100k: Outcome<RenameJson>,
    resources: Outcome<ResourcesJson>,
    resources_per_scenario: Keyed<Outcome<ResourcesJson>>,
    notes: &'a [String],
    /// Over ssh only (then `null` when either burst did not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    burst_ssh_over_local: Option<Option<f64>>,
}

impl<'a> From<&'a ToolReport> for ToolJson<'a> {
    fn from(t: &'a ToolReport) -> Self {
        if let Some(why) = &t.missing {
            return ToolJson::Unavailable(Unavailable::because(why));
        }
        ToolJson::Ran(Box::new(ToolFigures {
            available: true,
            latency_lr: Outcome::of(t.latency_lr.as_ref(), LatencyJson::from),
            latency_rl: Outcome::of(t.latency_rl.as_ref(), LatencyJson::from),
            burst: Outcome::of(t.burst.as_ref(), BurstJson::from),
            rename: Outcome::of(t.rename.as_ref(), RenameJson::from),
            rename100k: Outcome::of(t.rename100k.as_ref(), RenameJson::from),
            resources: Outcome::of(t.worst_resources().as_ref(), ResourcesJson::from),
            resources_per_scenario: Keyed(
                t.resources
                    .iter()
                    .map(|(sc, r)| (*sc, Outcome::of(Some(r), ResourcesJson::from)))
                    .collect(),
            ),
            notes: &t.notes,
            burst_ssh_over_local: t.ssh.then(|| t.burst_vs_local.map(r3)),
        }))
    }
}

/// The tools' figures under their slugs.
fn tools_json<'a>(tools: &[&'a ToolReport]) -> Keyed<ToolJson<'a>> {
    Keyed(tools.iter().map(|t| (t.slug, ToolJson::from(*t))).collect())
}

/// The ssh part of the JSON output: `null` if no ssh scenario was
/// selected, `{available: false, error}` if they could not run.
pub enum SshJson<'a> {
    NotRun,
    Unavailable(&'a str),
    Ran(&'a [&'a ToolReport]),
}

#[derive(Serialize)]
#[serde(untagged)]
enum SshOut<'a> {
    NotRun,
    Unavailable(Unavailable<'a>),
    Ran(SshRan<'a>),
}

#[derive(Serialize)]
struct SshRan<'a> {
    available: bool,
    #[serde(flatten)]
    tools: Keyed<ToolJson<'a>>,
}

#[derive(Serialize)]
struct TimedJson {
    secs: f64,
    peak_rss_mib: f64,
    rusage_maxrss_mib: f64,
}

impl From<&Timed> for TimedJson {
    fn from(t: &Timed) -> Self {
        TimedJson {
            secs: r3(t.secs),
            peak_rss_mib: mib(t.main_peak_kib()),
            rusage_maxrss_mib: mib(t.rusage_maxrss_kib),
        }
    }
}

#[derive(Serialize)]
struct TwinsyncMergeJson {
    secs: f64,
    scan_ms: Option<u64>,
    copied_to_left: Option<u64>,
    copied_to_right: Option<u64>,
    brain_peak_rss_mib: Option<f64>,
    brain_peak_bytes_per_file: Option<f64>,
    agents_peak_rss_mib: Vec<f64>,
    rusage_maxrss_mib: f64,
}

impl TwinsyncMergeJson {
    fn new(t: &TwinsyncMerge, files: usize) -> Self {
        let brain = t.run.main_hwm_kib;
        let (copied_to_left, copied_to_right) = t.copied.unzip();
        TwinsyncMergeJson {
            secs: r3(t.run.secs),
            scan_ms: t.scan_ms,
            copied_to_left,
            copied_to_right,
            brain_peak_rss_mib: brain.map(mib),
            brain_peak_bytes_per_file: brain.map(|k| r3(k as f64 * 1024.0 / files.max(1) as f64)),
            agents_peak_rss_mib: t.run.agents_hwm_kib.iter().map(|&k| mib(k)).collect(),
            rusage_maxrss_mib: mib(t.run.rusage_maxrss_kib),
        }
    }
}

#[derive(Serialize)]
struct CheckJson {
    matches: bool,
    entries: usize,
    differences: usize,
    sampled: usize,
    content_differences: usize,
    mtime_differences: usize,
}

impl From<&TreeCheck> for CheckJson {
    fn from(c: &TreeCheck) -> Self {
        CheckJson {
            matches: c.matches(),
            entries: c.entries,
            differences: c.diffs,
            sampled: c.sampled,
            content_differences: c.content_diffs,
            mtime_differences: c.mtime_diffs,
        }
    }
}

/// The merge scenario.
#[derive(Serialize)]
struct MergeJson<'a> {
    fs: &'a str,
    files: usize,
    dirs: usize,
    generate_secs: f64,
    rsync: Outcome<TimedJson>,
    twinsync_first: Outcome<TwinsyncMergeJson>,
    twinsync_first_check: Outcome<CheckJson>,
    twinsync_second: Outcome<TwinsyncMergeJson>,
    twinsync_second_copied_nothing: Option<bool>,
    unison: Outcome<TimedJson>,
    ratios: MergeRatios,
    targets_met: MergeTargets,
    notes: &'a [String],
}

#[derive(Serialize)]
struct MergeRatios {
    twinsync_first_over_rsync: Option<f64>,
    unison_over_rsync: Option<f64>,
    twinsync_second_secs: Option<f64>,
    brain_bytes_per_file: Option<f64>,
    unison_bytes_per_file: Option<f64>,
}

#[derive(Serialize)]
struct MergeTargets {
    first_over_rsync: Option<bool>,
    second_secs: Option<bool>,
    brain_bytes_per_file: Option<bool>,
}

impl<'a> From<&'a MergeBench> for MergeJson<'a> {
    fn from(m: &'a MergeBench) -> Self {
        let files = m.files;
        let merge = |t: &TwinsyncMerge| TwinsyncMergeJson::new(t, files);
        let second_ok = m.second.as_ref().and_then(|r| r.as_ref().ok());
        MergeJson {
            fs: &m.fs,
            files,
            dirs: m.dirs,
            generate_secs: r3(m.generate_secs),
            rsync: Outcome::of(m.rsync.as_ref(), TimedJson::from),
            twinsync_first: Outcome::of(Some(&m.first), merge),
            twinsync_first_check: Outcome::of(m.first_check.as_ref(), CheckJson::from),
            twinsync_second: Outcome::of(m.second.as_ref(), merge),
            twinsync_second_copied_nothing: second_ok.map(|t| t.copied == Some((0, 0))),
            unison: Outcome::of(m.unison.as_ref(), TimedJson::from),
            ratios: MergeRatios {
                twinsync_first_over_rsync: m.first_over_rsync().map(r3),
                unison_over_rsync: m.unison_over_rsync().map(r3),
                twinsync_second_secs: second_ok.map(|t| r3(t.run.secs)),
                brain_bytes_per_file: m.brain_bytes_per_file().map(r3),
                unison_bytes_per_file: m.unison_bytes_per_file().map(r3),
            },
            targets_met: MergeTargets {
                first_over_rsync: m.first_over_rsync().map(|x| x <= MERGE_RATIO_TARGET),
                second_secs: second_ok.map(|t| t.run.secs <= SECOND_MERGE_TARGET_SECS),
                brain_bytes_per_file: m.brain_bytes_per_file().map(|b| b <= BYTES_PER_FILE_TARGET),
            },
            notes: &m.notes,
        }
    }
}

#[derive(Serialize)]
struct MemJson {
    rss_mib: f64,
    hwm_mib: f64,
}

impl From<&Mem> for MemJson {
    fn from(m: &Mem) -> Self {
        MemJson {
            rss_mib: mib(m.rss_kib),
            hwm_mib: mib(m.hwm_kib),
        }
    }
}

#[derive(Serialize)]
struct AgentJson {
    #[serde(flatten)]
    mem: MemJson,
    inotify_watches: Option<usize>,
}

/// The idle CPU after going live, or why it was not measured.
#[derive(Serialize)]
#[serde(untagged)]
enum IdleJson {
    Percent(f64),
    Failed(FailureJson),
}

/// The watch1m scenario.
#[derive(Serialize)]
struct Watch1mJson<'a> {
    files: usize,
    dirs: usize,
    max_user_watches: Option<u64>,
    generate_secs: f64,
    live_secs: f64,
    brain: MemJson,
    agents: Vec<AgentJson>,
    total_rss_mib: f64,
    total_hwm_mib: f64,
    total_within_target: bool,
    idle_cpu_percent: IdleJson,
    sampled: usize,
    inodes_kept_left: usize,
    inodes_kept_right: usize,
    notes: &'a [String],
}

impl<'a> From<&'a Watch1m> for Watch1mJson<'a> {
    fn from(w: &'a Watch1m) -> Self {
        let total_hwm = w.total_kib(true) as f64 / 1024.0;
        Watch1mJson {
            files: w.files,
            dirs: w.dirs,
            max_user_watches: w.max_user_watches,
            generate_secs: r3(w.generate_secs),
            live_secs: r3(w.live_secs),
            brain: (&w.brain).into(),
            agents: w
                .agents
                .iter()
                .map(|a| AgentJson {
                    mem: (&a.mem).into(),
                    inotify_watches: a.watches,
                })
                .collect(),
            total_rss_mib: mib(w.total_kib(false)),
            total_hwm_mib: r3(total_hwm),
            total_within_target: total_hwm <= WATCH_TOTAL_TARGET_MIB,
            idle_cpu_percent: match &w.idle {
                Ok(r) => IdleJson::Percent(r3(r.idle_cpu_pct)),
                Err(f) => IdleJson::Failed(f.into()),
            },
            sampled: w.sampled,
            inodes_kept_left: w.inodes_kept.0,
            inodes_kept_right: w.inodes_kept.1,
            notes: &w.notes,
        }
    }
}

/// The scenarios outside the two-tool table, for [`json`]; `None` = not
/// run.
pub struct BulkJson<'a> {
    pub merge: Option<&'a Res<MergeBench>>,
    pub attrs: Option<&'a Res<crate::fidelity::attrs::AttrLatency>>,
    pub sparse: Option<&'a Res<crate::fidelity::sparse::SparseBench>>,
    pub rootfs: Option<&'a Res<crate::fidelity::rootfs::RootfsBench>>,
    pub watch1m: Option<&'a Res<Watch1m>>,
    pub delta: Option<&'a Res<crate::workloads::delta::DeltaBench>>,
    pub mixed: Option<&'a Res<crate::workloads::mixed::MixedBench>>,
}

/// The whole run, for `--json`: see [`json`].
#[derive(Serialize)]
pub struct Report<'a> {
    quick: bool,
    twinsync_bin: String,
    #[serde(flatten)]
    tools: Keyed<ToolJson<'a>>,
    ssh: SshOut<'a>,
    merge: Outcome<MergeJson<'a>>,
    attr_latency: Outcome<fidelity::AttrsJson<'a>>,
    sparse: Outcome<fidelity::SparseJson<'a>>,
    rootfs_merge: Outcome<fidelity::RootfsJson<'a>>,
    watch1m: Outcome<Watch1mJson<'a>>,
    delta_ssh: Outcome<workloads::DeltaJson<'a>>,
    mixed: Outcome<workloads::MixedJson<'a>>,
}

impl Report<'_> {
    /// Serialise, pretty-printed with two-space indents.
    pub fn render(&self) -> String {
        let mut out =
            serde_json::to_string_pretty(self).expect("string keys and plain values serialise");
        out.push('\n');
        out
    }
}

/// The whole run as one JSON object; the ssh figures under `"ssh"`, the
/// merge, fidelity, watch1m and workload scenarios under `"merge"`,
/// `"attr_latency"`, `"sparse"`, `"rootfs_merge"`, `"watch1m"`,
/// `"delta_ssh"` and `"mixed"`.
pub fn json<'a>(
    quick: bool,
    twinsync_bin: &str,
    tools: &[&'a ToolReport],
    ssh: SshJson<'a>,
    bulk: BulkJson<'a>,
) -> Report<'a> {
    Report {
        quick,
        twinsync_bin: twinsync_bin.into(),
        tools: tools_json(tools),
        ssh: match ssh {
            SshJson::NotRun => SshOut::NotRun,
            SshJson::Unavailable(why) => SshOut::Unavailable(Unavailable::because(why)),
            SshJson::Ran(tools) => SshOut::Ran(SshRan {
                available: true,
                tools: tools_json(tools),
            }),
        },
        merge: Outcome::of(bulk.merge, MergeJson::from),
        attr_latency: Outcome::of(bulk.attrs, fidelity::AttrsJson::from),
        sparse: Outcome::of(bulk.sparse, fidelity::SparseJson::from),
        rootfs_merge: Outcome::of(bulk.rootfs, fidelity::RootfsJson::from),
        watch1m: Outcome::of(bulk.watch1m, Watch1mJson::from),
        delta_ssh: Outcome::of(bulk.delta, workloads::DeltaJson::from),
        mixed: Outcome::of(bulk.mixed, workloads::MixedJson::from),
    }
}

#[cfg(test)]
mod tests;
