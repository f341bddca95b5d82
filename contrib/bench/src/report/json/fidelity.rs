//! The fidelity scenarios as JSON: `"attr_latency"`, `"sparse"`,
//! `"rootfs_merge"`.

use super::{failure_json, latency_json, opt_num, result_json, timed_json, Json};
use crate::error::Res;
use crate::fidelity::attrs::AttrLatency;
use crate::fidelity::rootfs::RootfsBench;
use crate::fidelity::sparse::{SparseBench, SparseRun};
use crate::report::{
    ATTR_RATIO_TARGET, MERGE_RATIO_TARGET, SPARSE_BYTES_TARGET, SPARSE_TARGET_SECS,
};

fn notes(n: &[String]) -> Json {
    Json::Arr(n.iter().map(|n| Json::Str(n.clone())).collect())
}

/// The attr-latency scenario.
pub fn attrs_json(a: &Res<AttrLatency>) -> Json {
    let a = match a {
        Ok(a) => a,
        Err(f) => return failure_json(f),
    };
    let content = a.content.percentile(0.5);
    let with_ratio = |l: &crate::scenarios::Latency| {
        let Json::Obj(mut f) = latency_json(l) else {
            unreachable!("latency_json is an object")
        };
        f.push((
            "p50_over_content".into(),
            Json::num(l.percentile(0.5) / content),
        ));
        Json::Obj(f)
    };
    Json::obj([
        ("content", latency_json(&a.content)),
        ("chmod", with_ratio(&a.chmod)),
        ("chown", a.chown.as_ref().map_or(Json::Null, with_ratio)),
        ("setfattr", with_ratio(&a.setfattr)),
        ("target_p50_over_content", Json::Num(ATTR_RATIO_TARGET)),
        ("notes", notes(&a.notes)),
    ])
}

fn sparse_run_json(r: &SparseRun) -> Json {
    Json::obj([
        ("secs", Json::num(r.secs)),
        ("allocated_bytes", Json::Num(r.allocated as f64)),
        ("net_kib", opt_num(r.net_kib)),
    ])
}

/// The sparse scenario.
pub fn sparse_json(s: &Res<SparseBench>) -> Json {
    let s = match s {
        Ok(s) => s,
        Err(f) => return failure_json(f),
    };
    Json::obj([
        (
            "length_bytes",
            Json::Num(crate::fidelity::sparse::LEN as f64),
        ),
        ("data_bytes", Json::Num(f64::from(1u32 << 20))),
        (
            "twinsync",
            result_json(&Some(s.local.clone()), sparse_run_json),
        ),
        ("twinsync_ssh", result_json(&s.ssh, sparse_run_json)),
        ("rsync", result_json(&s.rsync_local, sparse_run_json)),
        ("rsync_ssh", result_json(&s.rsync_ssh, sparse_run_json)),
        ("target_secs", Json::Num(SPARSE_TARGET_SECS)),
        ("target_bytes_over_data", Json::Num(SPARSE_BYTES_TARGET)),
        ("notes", notes(&s.notes)),
    ])
}

/// The rootfs-merge scenario.
pub fn rootfs_json(r: &Res<RootfsBench>) -> Json {
    let r = match r {
        Ok(r) => r,
        Err(f) => return failure_json(f),
    };
    let lines = |v: &Vec<String>| Json::Arr(v.iter().map(|l| Json::Str(l.clone())).collect());
    Json::obj([
        ("source", Json::Str(r.source.clone())),
        ("entries", Json::Num(r.entries as f64)),
        (
            "twinsync",
            result_json(&Some(r.twinsync.clone()), |t| timed_json(&t.run)),
        ),
        ("rsync", result_json(&r.rsync, timed_json)),
        ("twinsync_over_rsync", opt_num(r.ratio())),
        ("target_ratio", Json::Num(MERGE_RATIO_TARGET)),
        (
            "differences",
            result_json(&r.differences, |[a, b]| {
                Json::obj([("left_to_right", lines(a)), ("right_to_left", lines(b))])
            }),
        ),
        ("notes", notes(&r.notes)),
    ])
}
