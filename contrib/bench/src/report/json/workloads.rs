//! The workload scenarios as JSON: `"delta_ssh"`, `"mixed"`.

use serde::Serialize;

use super::{r3, Outcome};
use crate::workloads::delta::{DeltaBench, DeltaRun, CHANGED};
use crate::workloads::mixed::{MixedBench, MixedRun};

/// One update of the delta-ssh file.
#[derive(Serialize)]
pub struct DeltaRunJson {
    copy_secs: f64,
    secs: f64,
    net_kib: Option<f64>,
}

impl From<&DeltaRun> for DeltaRunJson {
    fn from(r: &DeltaRun) -> Self {
        DeltaRunJson {
            copy_secs: r3(r.copy_secs),
            secs: r3(r.secs),
            net_kib: r.net_kib.map(r3),
        }
    }
}

/// The delta-ssh scenario.
#[derive(Serialize)]
pub struct DeltaJson<'a> {
    length_bytes: u64,
    changed_bytes: u64,
    twinsync: Outcome<DeltaRunJson>,
    rsync: Outcome<DeltaRunJson>,
    notes: &'a [String],
}

impl<'a> From<&'a DeltaBench> for DeltaJson<'a> {
    fn from(d: &'a DeltaBench) -> Self {
        DeltaJson {
            length_bytes: d.len,
            changed_bytes: CHANGED.min(d.len),
            twinsync: Outcome::of(Some(&d.twinsync), DeltaRunJson::from),
            rsync: Outcome::of(d.rsync.as_ref(), DeltaRunJson::from),
            notes: &d.notes,
        }
    }
}

/// One tool's mixed run.
#[derive(Serialize)]
pub struct MixedRunJson {
    write_secs: f64,
    secs: f64,
}

impl From<&MixedRun> for MixedRunJson {
    fn from(r: &MixedRun) -> Self {
        MixedRunJson {
            write_secs: r3(r.write_secs),
            secs: r3(r.secs),
        }
    }
}

/// The mixed scenario.
#[derive(Serialize)]
pub struct MixedJson<'a> {
    small_files: usize,
    small_bytes: usize,
    large_files: usize,
    appended_bytes: u64,
    twinsync: Outcome<MixedRunJson>,
    lsyncd: Outcome<MixedRunJson>,
    twinsync_over_lsyncd: Option<f64>,
    notes: &'a [String],
}

impl<'a> From<&'a MixedBench> for MixedJson<'a> {
    fn from(m: &'a MixedBench) -> Self {
        let ratio = match (&m.twinsync, &m.lsyncd) {
            (Ok(t), Some(Ok(l))) if l.secs > 0.0 => Some(r3(t.secs / l.secs)),
            _ => None,
        };
        MixedJson {
            small_files: m.mix.small,
            small_bytes: m.mix.small_bytes,
            large_files: m.mix.large,
            appended_bytes: m.mix.appended,
            twinsync: Outcome::of(Some(&m.twinsync), MixedRunJson::from),
            lsyncd: Outcome::of(m.lsyncd.as_ref(), MixedRunJson::from),
            twinsync_over_lsyncd: ratio,
            notes: &m.notes,
        }
    }
}
