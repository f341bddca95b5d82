//! The fidelity scenarios as JSON: `"attr_latency"`, `"sparse"`,
//! `"rootfs_merge"`.

use serde::Serialize;

use super::{r3, LatencyJson, Outcome, TimedJson};
use crate::fidelity::attrs::AttrLatency;
use crate::fidelity::rootfs::RootfsBench;
use crate::fidelity::sparse::{SparseBench, SparseRun};
use crate::report::{
    ATTR_RATIO_TARGET, MERGE_RATIO_TARGET, SPARSE_BYTES_TARGET, SPARSE_TARGET_SECS,
};
use crate::scenarios::Latency;

/// An attribute's latency, and its median over the content's.
#[derive(Serialize)]
pub struct RatioJson {
    #[serde(flatten)]
    latency: LatencyJson,
    p50_over_content: f64,
}

/// The attr-latency scenario.
#[derive(Serialize)]
pub struct AttrsJson<'a> {
    content: LatencyJson,
    chmod: RatioJson,
    chown: Option<RatioJson>,
    setfattr: RatioJson,
    target_p50_over_content: f64,
    notes: &'a [String],
}

impl<'a> From<&'a AttrLatency> for AttrsJson<'a> {
    fn from(a: &'a AttrLatency) -> Self {
        let content = a.content.percentile(0.5);
        let with_ratio = |l: &Latency| RatioJson {
            latency: l.into(),
            p50_over_content: r3(l.percentile(0.5) / content),
        };
        AttrsJson {
            content: (&a.content).into(),
            chmod: with_ratio(&a.chmod),
            chown: a.chown.as_ref().map(with_ratio),
            setfattr: with_ratio(&a.setfattr),
            target_p50_over_content: ATTR_RATIO_TARGET,
            notes: &a.notes,
        }
    }
}

#[derive(Serialize)]
pub struct SparseRunJson {
    secs: f64,
    allocated_bytes: u64,
    net_kib: Option<f64>,
}

impl From<&SparseRun> for SparseRunJson {
    fn from(r: &SparseRun) -> Self {
        SparseRunJson {
            secs: r3(r.secs),
            allocated_bytes: r.allocated,
            net_kib: r.net_kib.map(r3),
        }
    }
}

/// The sparse scenario.
#[derive(Serialize)]
pub struct SparseJson<'a> {
    length_bytes: u64,
    data_bytes: u64,
    twinsync: Outcome<SparseRunJson>,
    twinsync_ssh: Outcome<SparseRunJson>,
    rsync: Outcome<SparseRunJson>,
    rsync_ssh: Outcome<SparseRunJson>,
    target_secs: f64,
    target_bytes_over_data: f64,
    notes: &'a [String],
}

impl<'a> From<&'a SparseBench> for SparseJson<'a> {
    fn from(s: &'a SparseBench) -> Self {
        SparseJson {
            length_bytes: crate::fidelity::sparse::LEN,
            data_bytes: 1 << 20,
            twinsync: Outcome::of(Some(&s.local), SparseRunJson::from),
            twinsync_ssh: Outcome::of(s.ssh.as_ref(), SparseRunJson::from),
            rsync: Outcome::of(s.rsync_local.as_ref(), SparseRunJson::from),
            rsync_ssh: Outcome::of(s.rsync_ssh.as_ref(), SparseRunJson::from),
            target_secs: SPARSE_TARGET_SECS,
            target_bytes_over_data: SPARSE_BYTES_TARGET,
            notes: &s.notes,
        }
    }
}

/// What rsync still finds after twinsync's merge.
#[derive(Serialize)]
pub struct DifferencesJson<'a> {
    left_to_right: &'a [String],
    right_to_left: &'a [String],
}

/// The rootfs-merge scenario.
#[derive(Serialize)]
pub struct RootfsJson<'a> {
    source: &'a str,
    entries: usize,
    twinsync: Outcome<TimedJson>,
    rsync: Outcome<TimedJson>,
    twinsync_over_rsync: Option<f64>,
    target_ratio: f64,
    differences: Outcome<DifferencesJson<'a>>,
    notes: &'a [String],
}

impl<'a> From<&'a RootfsBench> for RootfsJson<'a> {
    fn from(r: &'a RootfsBench) -> Self {
        RootfsJson {
            source: &r.source,
            entries: r.entries,
            twinsync: Outcome::of(Some(&r.twinsync), |t| (&t.run).into()),
            rsync: Outcome::of(r.rsync.as_ref(), TimedJson::from),
            twinsync_over_rsync: r.ratio().map(r3),
            target_ratio: MERGE_RATIO_TARGET,
            differences: Outcome::of(r.differences.as_ref(), |[a, b]| DifferencesJson {
                left_to_right: a,
                right_to_left: b,
            }),
            notes: &r.notes,
        }
    }
}
