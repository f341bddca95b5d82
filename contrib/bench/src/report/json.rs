//! The JSON object written by `--json`: every figure of the run.

mod fidelity;

use std::fmt::Write as _;

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

/// A minimal JSON value with a hand-written serialiser.
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Obj(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A number rounded to 3 decimals.
    fn num(x: f64) -> Json {
        Json::Num((x * 1000.0).round() / 1000.0)
    }

    /// Serialise, pretty-printed with two-space indents.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(x) if x.is_finite() => {
                let _ = write!(out, "{x}");
            }
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => write_str(out, s),
            Json::Arr(items) => write_seq(out, depth, '[', ']', items, |out, item, d| {
                item.write(out, d)
            }),
            Json::Obj(fields) => write_seq(out, depth, '{', '}', fields, |out, (k, v), d| {
                write_str(out, k);
                out.push_str(": ");
                v.write(out, d);
            }),
        }
    }
}

fn write_seq<T>(
    out: &mut String,
    depth: usize,
    open: char,
    close: char,
    items: &[T],
    each: impl Fn(&mut String, &T, usize),
) {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return;
    }
    for (i, item) in items.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&"  ".repeat(depth + 1));
        each(out, item, depth + 1);
    }
    out.push('\n');
    out.push_str(&"  ".repeat(depth));
    out.push(close);
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn result_json<T>(r: &Option<Res<T>>, ok: impl Fn(&T) -> Json) -> Json {
    match r {
        None => Json::Null,
        Some(Ok(t)) => ok(t),
        Some(Err(f)) => failure_json(f),
    }
}

fn failure_json(f: &Failure) -> Json {
    Json::obj([
        ("error", Json::Str(f.short().into())),
        ("detail", Json::Str(f.to_string())),
    ])
}

fn latency_json(l: &Latency) -> Json {
    Json::obj([
        ("p50_ms", Json::num(l.percentile(0.5))),
        ("p90_ms", Json::num(l.percentile(0.9))),
        (
            "samples_ms",
            Json::Arr(l.samples_ms.iter().map(|&x| Json::num(x)).collect()),
        ),
    ])
}

fn burst_json(b: &Burst) -> Json {
    Json::obj([
        ("files", Json::Num(b.files as f64)),
        ("secs", Json::num(b.secs)),
        ("write_secs", Json::num(b.write_secs)),
    ])
}

/// A rename scenario: the copy's figures, then either the rename's or
/// `rename_error` (a timeout, or "never (old dir left)").
fn rename_json(r: &Rename) -> Json {
    let mut fields = vec![
        (
            "mib".to_string(),
            Json::num(r.bytes as f64 / (1u64 << 20) as f64),
        ),
        ("files".into(), Json::Num(r.files as f64)),
        ("copy_secs".into(), Json::num(r.copy_secs)),
    ];
    match &r.renamed {
        Ok(x) => {
            fields.extend([
                ("rename_ms".to_string(), Json::num(x.secs * 1e3)),
                ("inodes_kept".into(), Json::Num(x.inodes_kept as f64)),
                ("inodes_checked".into(), Json::Num(x.inodes_checked as f64)),
                (
                    "no_data_copied".into(),
                    Json::Bool(x.inodes_kept == x.inodes_checked),
                ),
            ]);
            if let Some(k) = x.net_kib {
                fields.push(("loopback_kib_approx".into(), Json::num(k)));
            }
        }
        Err(f) => {
            fields.push(("rename_ms".into(), Json::Null));
            fields.push(("rename_error".into(), failure_json(f)));
        }
    }
    Json::Obj(fields)
}

fn resources_json(r: &Resources) -> Json {
    Json::obj([
        ("main_peak_rss_mib", Json::num(r.main_mib)),
        (
            "children_peak_rss_mib",
            Json::Arr(r.children_mib.iter().map(|&m| Json::num(m)).collect()),
        ),
        ("total_peak_rss_mib", Json::num(r.total_mib())),
        ("idle_cpu_percent", Json::num(r.idle_cpu_pct)),
    ])
}

/// One tool's figures as JSON.
pub fn tool_json(t: &ToolReport) -> Json {
    if let Some(why) = &t.missing {
        return Json::obj([
            ("available", Json::Bool(false)),
            ("error", Json::Str(why.clone())),
        ]);
    }
    let runs = t
        .resources
        .iter()
        .map(|(sc, r)| {
            (
                sc.to_string(),
                result_json(&Some(r.clone()), resources_json),
            )
        })
        .collect();
    let mut j = Json::obj([
        ("available", Json::Bool(true)),
        ("latency_lr", result_json(&t.latency_lr, latency_json)),
        ("latency_rl", result_json(&t.latency_rl, latency_json)),
        ("burst", result_json(&t.burst, burst_json)),
        ("rename", result_json(&t.rename, rename_json)),
        ("rename100k", result_json(&t.rename100k, rename_json)),
        (
            "resources",
            result_json(&t.worst_resources(), resources_json),
        ),
        ("resources_per_scenario", Json::Obj(runs)),
        (
            "notes",
            Json::Arr(t.notes.iter().map(|n| Json::Str(n.clone())).collect()),
        ),
    ]);
    if let (Json::Obj(fields), true) = (&mut j, t.ssh) {
        let ratio = t.burst_vs_local.map_or(Json::Null, Json::num);
        fields.push(("burst_ssh_over_local".into(), ratio));
    }
    j
}

/// The ssh part of the JSON output: `null` if no ssh scenario was
/// selected, `{available: false, error}` if they could not run.
pub enum SshJson<'a> {
    NotRun,
    Unavailable(&'a str),
    Ran(&'a [&'a ToolReport]),
}

fn timed_json(t: &Timed) -> Json {
    Json::obj([
        ("secs", Json::num(t.secs)),
        ("peak_rss_mib", Json::num(t.main_peak_kib() as f64 / 1024.0)),
        (
            "rusage_maxrss_mib",
            Json::num(t.rusage_maxrss_kib as f64 / 1024.0),
        ),
    ])
}

fn twinsync_merge_json(t: &TwinsyncMerge, files: usize) -> Json {
    let brain = t.run.main_hwm_kib;
    let (l, r) = t.copied.unzip();
    Json::obj([
        ("secs", Json::num(t.run.secs)),
        (
            "scan_ms",
            t.scan_ms.map_or(Json::Null, |ms| Json::Num(ms as f64)),
        ),
        (
            "copied_to_left",
            l.map_or(Json::Null, |n| Json::Num(n as f64)),
        ),
        (
            "copied_to_right",
            r.map_or(Json::Null, |n| Json::Num(n as f64)),
        ),
        (
            "brain_peak_rss_mib",
            brain.map_or(Json::Null, |k| Json::num(k as f64 / 1024.0)),
        ),
        (
            "brain_peak_bytes_per_file",
            brain.map_or(Json::Null, |k| {
                Json::num(k as f64 * 1024.0 / files.max(1) as f64)
            }),
        ),
        (
            "agents_peak_rss_mib",
            Json::Arr(
                t.run
                    .agents_hwm_kib
                    .iter()
                    .map(|&k| Json::num(k as f64 / 1024.0))
                    .collect(),
            ),
        ),
        (
            "rusage_maxrss_mib",
            Json::num(t.run.rusage_maxrss_kib as f64 / 1024.0),
        ),
    ])
}

fn check_json(c: &TreeCheck) -> Json {
    Json::obj([
        ("matches", Json::Bool(c.matches())),
        ("entries", Json::Num(c.entries as f64)),
        ("differences", Json::Num(c.diffs as f64)),
        ("sampled", Json::Num(c.sampled as f64)),
        ("content_differences", Json::Num(c.content_diffs as f64)),
        ("mtime_differences", Json::Num(c.mtime_diffs as f64)),
    ])
}

fn opt_num(x: Option<f64>) -> Json {
    x.map_or(Json::Null, Json::num)
}

/// The merge scenario as JSON.
pub fn merge_json(m: &Res<MergeBench>) -> Json {
    let m = match m {
        Ok(m) => m,
        Err(f) => return failure_json(f),
    };
    let files = m.files;
    let second_ok = m.second.as_ref().and_then(|r| r.as_ref().ok());
    Json::obj([
        ("fs", Json::Str(m.fs.clone())),
        ("files", Json::Num(files as f64)),
        ("dirs", Json::Num(m.dirs as f64)),
        ("generate_secs", Json::num(m.generate_secs)),
        ("rsync", result_json(&m.rsync, timed_json)),
        (
            "twinsync_first",
            result_json(&Some(m.first.clone()), |t| twinsync_merge_json(t, files)),
        ),
        (
            "twinsync_first_check",
            result_json(&m.first_check, check_json),
        ),
        (
            "twinsync_second",
            result_json(&m.second, |t| twinsync_merge_json(t, files)),
        ),
        (
            "twinsync_second_copied_nothing",
            second_ok.map_or(Json::Null, |t| Json::Bool(t.copied == Some((0, 0)))),
        ),
        ("unison", result_json(&m.unison, timed_json)),
        (
            "ratios",
            Json::obj([
                ("twinsync_first_over_rsync", opt_num(m.first_over_rsync())),
                ("unison_over_rsync", opt_num(m.unison_over_rsync())),
                (
                    "twinsync_second_secs",
                    opt_num(second_ok.map(|t| t.run.secs)),
                ),
                ("brain_bytes_per_file", opt_num(m.brain_bytes_per_file())),
                ("unison_bytes_per_file", opt_num(m.unison_bytes_per_file())),
            ]),
        ),
        (
            "targets_met",
            Json::obj([
                (
                    "first_over_rsync",
                    m.first_over_rsync()
                        .map_or(Json::Null, |x| Json::Bool(x <= MERGE_RATIO_TARGET)),
                ),
                (
                    "second_secs",
                    second_ok.map_or(Json::Null, |t| {
                        Json::Bool(t.run.secs <= SECOND_MERGE_TARGET_SECS)
                    }),
                ),
                (
                    "brain_bytes_per_file",
                    m.brain_bytes_per_file()
                        .map_or(Json::Null, |b| Json::Bool(b <= BYTES_PER_FILE_TARGET)),
                ),
            ]),
        ),
        (
            "notes",
            Json::Arr(m.notes.iter().map(|n| Json::Str(n.clone())).collect()),
        ),
    ])
}

fn mem_json(m: &Mem) -> Json {
    Json::obj([
        ("rss_mib", Json::num(m.rss_kib as f64 / 1024.0)),
        ("hwm_mib", Json::num(m.hwm_kib as f64 / 1024.0)),
    ])
}

/// The watch1m scenario as JSON.
pub fn watch1m_json(w: &Res<Watch1m>) -> Json {
    let w = match w {
        Ok(w) => w,
        Err(f) => return failure_json(f),
    };
    let total_hwm = w.total_kib(true) as f64 / 1024.0;
    Json::obj([
        ("files", Json::Num(w.files as f64)),
        ("dirs", Json::Num(w.dirs as f64)),
        (
            "max_user_watches",
            w.max_user_watches
                .map_or(Json::Null, |m| Json::Num(m as f64)),
        ),
        ("generate_secs", Json::num(w.generate_secs)),
        ("live_secs", Json::num(w.live_secs)),
        ("brain", mem_json(&w.brain)),
        (
            "agents",
            Json::Arr(
                w.agents
                    .iter()
                    .map(|a| {
                        let mut j = mem_json(&a.mem);
                        if let Json::Obj(f) = &mut j {
                            f.push((
                                "inotify_watches".into(),
                                a.watches.map_or(Json::Null, |n| Json::Num(n as f64)),
                            ));
                        }
                        j
                    })
                    .collect(),
            ),
        ),
        (
            "total_rss_mib",
            Json::num(w.total_kib(false) as f64 / 1024.0),
        ),
        ("total_hwm_mib", Json::num(total_hwm)),
        (
            "total_within_target",
            Json::Bool(total_hwm <= WATCH_TOTAL_TARGET_MIB),
        ),
        (
            "idle_cpu_percent",
            match &w.idle {
                Ok(r) => Json::num(r.idle_cpu_pct),
                Err(f) => failure_json(f),
            },
        ),
        ("sampled", Json::Num(w.sampled as f64)),
        ("inodes_kept_left", Json::Num(w.inodes_kept.0 as f64)),
        ("inodes_kept_right", Json::Num(w.inodes_kept.1 as f64)),
        (
            "notes",
            Json::Arr(w.notes.iter().map(|n| Json::Str(n.clone())).collect()),
        ),
    ])
}

/// The scenarios outside the two-tool table, for [`json`]; `None` = not
/// run.
pub struct BulkJson<'a> {
    pub merge: Option<&'a Res<MergeBench>>,
    pub attrs: Option<&'a Res<crate::fidelity::attrs::AttrLatency>>,
    pub sparse: Option<&'a Res<crate::fidelity::sparse::SparseBench>>,
    pub rootfs: Option<&'a Res<crate::fidelity::rootfs::RootfsBench>>,
    pub watch1m: Option<&'a Res<Watch1m>>,
}

/// The whole run as one JSON object; the ssh figures under `"ssh"`, the
/// merge, fidelity and watch1m scenarios under `"merge"`,
/// `"attr_latency"`, `"sparse"`, `"rootfs_merge"` and `"watch1m"`.
pub fn json(
    quick: bool,
    twinsync_bin: &str,
    tools: &[&ToolReport],
    ssh: SshJson,
    bulk: BulkJson,
) -> Json {
    let mut fields = vec![
        ("quick".to_string(), Json::Bool(quick)),
        ("twinsync_bin".to_string(), Json::Str(twinsync_bin.into())),
    ];
    fields.extend(tools.iter().map(|t| (t.slug.to_string(), tool_json(t))));
    let ssh = match ssh {
        SshJson::NotRun => Json::Null,
        SshJson::Unavailable(why) => Json::obj([
            ("available", Json::Bool(false)),
            ("error", Json::Str(why.into())),
        ]),
        SshJson::Ran(tools) => {
            let mut f = vec![("available".to_string(), Json::Bool(true))];
            f.extend(tools.iter().map(|t| (t.slug.to_string(), tool_json(t))));
            Json::Obj(f)
        }
    };
    fields.push(("ssh".to_string(), ssh));
    fields.push((
        "merge".to_string(),
        bulk.merge.map_or(Json::Null, merge_json),
    ));
    fields.push((
        "attr_latency".to_string(),
        bulk.attrs.map_or(Json::Null, fidelity::attrs_json),
    ));
    fields.push((
        "sparse".to_string(),
        bulk.sparse.map_or(Json::Null, fidelity::sparse_json),
    ));
    fields.push((
        "rootfs_merge".to_string(),
        bulk.rootfs.map_or(Json::Null, fidelity::rootfs_json),
    ));
    fields.push((
        "watch1m".to_string(),
        bulk.watch1m.map_or(Json::Null, watch1m_json),
    ));
    Json::Obj(fields)
}
