//! What was measured per tool, and the targets the figures are held to; its
//! two renderings are [`table()`] (the side-by-side table on stdout) and
//! [`json()`] (the JSON object for `--json`).

mod json;
mod table;

pub use json::{json, BulkJson, SshJson};
pub use table::{table, Body, Section};

use crate::error::Res;
use crate::scenarios::{Burst, Latency, Rename, Resources};

/// Everything measured for one tool. `None` = not run / not applicable.
#[derive(Debug, Default)]
pub struct ToolReport {
    pub slug: &'static str,
    /// The `ssh-*` scenarios: the right side over ssh.
    pub ssh: bool,
    /// Over ssh: this tool's burst time over ssh / its local burst time,
    /// when both ran.
    pub burst_vs_local: Option<f64>,
    /// Set when the tool could not be run at all.
    pub missing: Option<String>,
    pub latency_lr: Option<Res<Latency>>,
    pub latency_rl: Option<Res<Latency>>,
    pub burst: Option<Res<Burst>>,
    pub rename: Option<Res<Rename>>,
    /// The rename100k scenario: renaming a directory of many small files.
    pub rename100k: Option<Res<Rename>>,
    /// Resources measured at the end of each scenario's run.
    pub resources: Vec<(&'static str, Res<Resources>)>,
    /// Trees that did not match after a scenario, tools that died, etc.
    pub notes: Vec<String>,
}

impl ToolReport {
    pub fn new(slug: &'static str) -> Self {
        ToolReport {
            slug,
            ..Default::default()
        }
    }

    /// The report of the tool's runs over ssh.
    pub fn new_ssh(slug: &'static str) -> Self {
        ToolReport {
            slug,
            ssh: true,
            ..Default::default()
        }
    }

    /// The tool's name in notes: "twinsync", "lsyncd (ssh)".
    fn name(&self) -> String {
        if self.ssh {
            format!("{} (ssh)", self.slug)
        } else {
            self.slug.to_string()
        }
    }

    /// The worst of the per-scenario resource figures: highest peak RSS
    /// (the run with the largest total) and highest idle CPU. Not counting
    /// the rename100k run, whose big tree gets a row of its own.
    pub fn worst_resources(&self) -> Option<Res<Resources>> {
        let small = || self.resources.iter().filter(|(sc, _)| *sc != TREE_SCENARIO);
        let ok: Vec<&Resources> = small().filter_map(|(_, r)| r.as_ref().ok()).collect();
        let Some(biggest) = ok
            .iter()
            .max_by(|a, b| a.total_mib().total_cmp(&b.total_mib()))
        else {
            return small().next().map(|(_, r)| r.clone());
        };
        Some(Ok(Resources {
            idle_cpu_pct: ok.iter().map(|r| r.idle_cpu_pct).fold(0.0, f64::max),
            ..(*biggest).clone()
        }))
    }

    /// The resources at the end of the rename100k run, with the big tree
    /// on both sides.
    fn tree_resources(&self) -> Option<Res<Resources>> {
        self.resources
            .iter()
            .find(|(sc, _)| *sc == TREE_SCENARIO)
            .map(|(_, r)| r.clone())
    }
}

/// The slug of the scenario whose resources are shown apart.
const TREE_SCENARIO: &str = "rename100k";

/// The parameters shown in row labels.
pub struct Labels {
    pub burst_files: usize,
    pub rename_mib: u64,
    /// Files in the rename100k tree.
    pub tree_files: usize,
    /// `--quick`: the tree is smaller than 100k, which its labels say.
    pub quick: bool,
}

impl Labels {
    /// A rename100k row's label: `before`, the tree's size, `after`, and
    /// "(--quick)" when that made the tree smaller, e.g. "rename 100k-file
    /// dir ms", "rename 20k-file dir ms (--quick)".
    fn tree(&self, before: &str, after: &str) -> String {
        let quick = if self.quick { " (--quick)" } else { "" };
        format!("{before}{}k-file {after}{quick}", self.tree_files / 1000)
    }
}

/// The target for twinsync's first merge over `rsync -a`.
pub const MERGE_RATIO_TARGET: f64 = 1.2;
/// The target for twinsync's second merge, seconds.
pub const SECOND_MERGE_TARGET_SECS: f64 = 1.0;
/// The target for the brain's peak RSS per file, bytes.
pub const BYTES_PER_FILE_TARGET: f64 = 256.0;
/// The target for an attribute-only change's p50 latency over a small
/// file's content latency (issue 12: no slower).
pub const ATTR_RATIO_TARGET: f64 = 1.0;
/// The target for the sparse file's arrival, seconds (issue 12: "tens of
/// ms").
pub const SPARSE_TARGET_SECS: f64 = 0.1;
/// The target for the sparse file's space on the right and its bytes over
/// the loopback, in multiples of its data (issue 12: "bytes ≈ the data").
pub const SPARSE_BYTES_TARGET: f64 = 2.0;
/// The target for watch1m's total memory, MiB.
pub const WATCH_TOTAL_TARGET_MIB: f64 = 256.0;
