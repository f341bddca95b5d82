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

#[cfg(test)]
mod tests {
    use super::{json, BulkJson, SshJson, ToolReport};
    use crate::error::Failure;
    use crate::fidelity::attrs::AttrLatency;
    use crate::fidelity::rootfs::RootfsBench;
    use crate::fidelity::sparse::{SparseBench, SparseRun};
    use crate::fsops::TreeCheck;
    use crate::merge::{MergeBench, TwinsyncMerge};
    use crate::procs::Timed;
    use crate::scenarios::{Burst, Latency, Rename, Renamed, Resources};
    use crate::watch1m::{Agent, Mem, Watch1m};

    fn latency() -> Latency {
        Latency {
            samples_ms: vec![1.25, 2.5, 40.0],
        }
    }

    fn resources() -> Resources {
        Resources {
            main_mib: 7.5,
            children_mib: vec![3.0, 3.25],
            idle_cpu_pct: 0.1,
        }
    }

    fn rename(renamed: Result<Renamed, Failure>) -> Rename {
        Rename {
            bytes: 3 << 20,
            files: 12,
            copy_secs: 1.5,
            renamed,
        }
    }

    fn timed() -> Timed {
        Timed {
            secs: 2.0,
            rusage_maxrss_kib: 4096,
            main_hwm_kib: Some(2048),
            agents_hwm_kib: vec![1024, 1536],
        }
    }

    fn merge_run() -> TwinsyncMerge {
        TwinsyncMerge {
            run: timed(),
            copied: Some((0, 100)),
            scan_ms: None,
        }
    }

    fn sparse_run(net_kib: Option<f64>) -> SparseRun {
        SparseRun {
            secs: 0.5,
            allocated: 2 << 20,
            net_kib,
        }
    }

    /// Every scenario, ran or failed; one tool missing, one not run.
    fn tools() -> [ToolReport; 3] {
        let mut twinsync = ToolReport::new("twinsync");
        twinsync.latency_lr = Some(Ok(latency()));
        twinsync.latency_rl = Some(Err(Failure::Timeout("no probe".into())));
        twinsync.burst = Some(Ok(Burst {
            files: 1000,
            secs: 1.5,
            write_secs: 0.25,
        }));
        twinsync.rename = Some(Ok(rename(Ok(Renamed {
            secs: 0.002,
            inodes_kept: 12,
            inodes_checked: 12,
            net_kib: Some(3.5),
        }))));
        twinsync.rename100k = Some(Ok(rename(Err(Failure::Stuck {
            cell: "never (old dir left)",
            detail: "old dir left".into(),
        }))));
        twinsync.resources = vec![
            ("latency", Ok(resources())),
            ("burst", Err(Failure::Other("died".into()))),
        ];
        twinsync.notes = vec!["a \"quoted\"\tnote".into()];
        let mut lsyncd = ToolReport::new("lsyncd");
        lsyncd.missing = Some("lsyncd: not installed".into());
        [twinsync, lsyncd, ToolReport::new("clsync")]
    }

    fn ssh_tools() -> [ToolReport; 2] {
        let mut twinsync = ToolReport::new_ssh("twinsync");
        twinsync.burst = Some(Err(Failure::Interrupted));
        twinsync.burst_vs_local = Some(1.25);
        [twinsync, ToolReport::new_ssh("lsyncd")]
    }

    fn merge() -> MergeBench {
        MergeBench {
            fs: "tmpfs".into(),
            files: 100,
            dirs: 10,
            generate_secs: 0.5,
            rsync: Some(Ok(timed())),
            first: Ok(merge_run()),
            first_check: Some(Ok(TreeCheck::default())),
            second: Some(Ok(merge_run())),
            unison: None,
            notes: Vec::new(),
        }
    }

    fn attrs() -> AttrLatency {
        AttrLatency {
            content: latency(),
            chmod: latency(),
            chown: None,
            setfattr: latency(),
            notes: vec!["not root".into()],
        }
    }

    fn sparse() -> SparseBench {
        SparseBench {
            local: Ok(sparse_run(None)),
            ssh: Some(Ok(sparse_run(Some(120.0)))),
            rsync_local: None,
            rsync_ssh: Some(Err(Failure::Other("rsync died".into()))),
            notes: Vec::new(),
        }
    }

    fn rootfs() -> RootfsBench {
        RootfsBench {
            source: "synthetic".into(),
            entries: 300,
            rsync: Some(Ok(timed())),
            twinsync: Ok(merge_run()),
            differences: Some(Ok([vec![">f..t...... etc/a".into()], Vec::new()])),
            notes: Vec::new(),
        }
    }

    fn watch1m() -> Watch1m {
        let mem = Mem {
            rss_kib: 1024,
            hwm_kib: 2048,
        };
        Watch1m {
            files: 1_000_000,
            dirs: 1000,
            max_user_watches: Some(65536),
            generate_secs: 20.0,
            live_secs: 30.0,
            brain: mem,
            agents: vec![
                Agent {
                    mem,
                    watches: Some(1001),
                },
                Agent { mem, watches: None },
            ],
            idle: Ok(resources()),
            inodes_kept: (1000, 999),
            sampled: 1000,
            notes: Vec::new(),
        }
    }

    /// The key paths of a pretty-printed JSON text, in order, each with the
    /// kind of its value (`merge.ratios.unison_over_rsync: null`); `[]`
    /// stands for each object in an array.
    fn outline(text: &str) -> String {
        let mut out = String::new();
        let mut path: Vec<&str> = Vec::new();
        for line in text.lines() {
            let item = line.trim_start();
            let depth = (line.len() - item.len()) / 2;
            if item.starts_with('{') && depth > 0 {
                path.truncate(depth - 1);
                path.push("[]");
                continue;
            }
            let Some((key, value)) = item.strip_prefix('"').and_then(|k| k.split_once("\": "))
            else {
                continue;
            };
            path.truncate(depth - 1);
            let kind = match value.chars().next() {
                Some('{') => "object",
                Some('[') => "array",
                Some('"') => "string",
                Some('n') => "null",
                Some('t' | 'f') => "bool",
                _ => "number",
            };
            for (i, p) in path.iter().enumerate() {
                if i > 0 && *p != "[]" {
                    out.push('.');
                }
                out.push_str(p);
            }
            if !path.is_empty() {
                out.push('.');
            }
            out.push_str(&format!("{key}: {kind}\n"));
            if matches!(value, "{" | "[") {
                path.push(key);
            }
        }
        out
    }

    fn render(ssh: SshJson) -> String {
        let [a, b, c] = tools();
        let (merge, attrs, sparse, rootfs, watch1m) = (
            Ok(merge()),
            Ok(attrs()),
            Ok(sparse()),
            Ok(rootfs()),
            Ok(watch1m()),
        );
        json(
            true,
            "/usr/bin/twinsync",
            &[&a, &b, &c],
            ssh,
            BulkJson {
                merge: Some(&merge),
                attrs: Some(&attrs),
                sparse: Some(&sparse),
                rootfs: Some(&rootfs),
                watch1m: Some(&watch1m),
            },
        )
        .render()
    }

    #[test]
    fn json_has_every_figure_under_its_key() {
        let [a, b] = ssh_tools();
        let text = render(SshJson::Ran(&[&a, &b]));
        assert_eq!(outline(&text), EXPECTED, "{text}");
    }

    #[test]
    fn json_says_why_ssh_did_not_run() {
        let text = render(SshJson::Unavailable("no sshd"));
        assert!(
            text.contains(
                "  \"ssh\": {\n    \"available\": false,\n    \"error\": \"no sshd\"\n  },"
            ),
            "{text}"
        );
        let text = render(SshJson::NotRun);
        assert!(text.contains("  \"ssh\": null,"), "{text}");
    }

    /// The outline of the `--json` output (see [`outline`]).
    const EXPECTED: &str = "\
quick: bool
twinsync_bin: string
twinsync: object
twinsync.available: bool
twinsync.latency_lr: object
twinsync.latency_lr.p50_ms: number
twinsync.latency_lr.p90_ms: number
twinsync.latency_lr.samples_ms: array
twinsync.latency_rl: object
twinsync.latency_rl.error: string
twinsync.latency_rl.detail: string
twinsync.burst: object
twinsync.burst.files: number
twinsync.burst.secs: number
twinsync.burst.write_secs: number
twinsync.rename: object
twinsync.rename.mib: number
twinsync.rename.files: number
twinsync.rename.copy_secs: number
twinsync.rename.rename_ms: number
twinsync.rename.inodes_kept: number
twinsync.rename.inodes_checked: number
twinsync.rename.no_data_copied: bool
twinsync.rename.loopback_kib_approx: number
twinsync.rename100k: object
twinsync.rename100k.mib: number
twinsync.rename100k.files: number
twinsync.rename100k.copy_secs: number
twinsync.rename100k.rename_ms: null
twinsync.rename100k.rename_error: object
twinsync.rename100k.rename_error.error: string
twinsync.rename100k.rename_error.detail: string
twinsync.resources: object
twinsync.resources.main_peak_rss_mib: number
twinsync.resources.children_peak_rss_mib: array
twinsync.resources.total_peak_rss_mib: number
twinsync.resources.idle_cpu_percent: number
twinsync.resources_per_scenario: object
twinsync.resources_per_scenario.latency: object
twinsync.resources_per_scenario.latency.main_peak_rss_mib: number
twinsync.resources_per_scenario.latency.children_peak_rss_mib: array
twinsync.resources_per_scenario.latency.total_peak_rss_mib: number
twinsync.resources_per_scenario.latency.idle_cpu_percent: number
twinsync.resources_per_scenario.burst: object
twinsync.resources_per_scenario.burst.error: string
twinsync.resources_per_scenario.burst.detail: string
twinsync.notes: array
lsyncd: object
lsyncd.available: bool
lsyncd.error: string
clsync: object
clsync.available: bool
clsync.latency_lr: null
clsync.latency_rl: null
clsync.burst: null
clsync.rename: null
clsync.rename100k: null
clsync.resources: null
clsync.resources_per_scenario: object
clsync.notes: array
ssh: object
ssh.available: bool
ssh.twinsync: object
ssh.twinsync.available: bool
ssh.twinsync.latency_lr: null
ssh.twinsync.latency_rl: null
ssh.twinsync.burst: object
ssh.twinsync.burst.error: string
ssh.twinsync.burst.detail: string
ssh.twinsync.rename: null
ssh.twinsync.rename100k: null
ssh.twinsync.resources: null
ssh.twinsync.resources_per_scenario: object
ssh.twinsync.notes: array
ssh.twinsync.burst_ssh_over_local: number
ssh.lsyncd: object
ssh.lsyncd.available: bool
ssh.lsyncd.latency_lr: null
ssh.lsyncd.latency_rl: null
ssh.lsyncd.burst: null
ssh.lsyncd.rename: null
ssh.lsyncd.rename100k: null
ssh.lsyncd.resources: null
ssh.lsyncd.resources_per_scenario: object
ssh.lsyncd.notes: array
ssh.lsyncd.burst_ssh_over_local: null
merge: object
merge.fs: string
merge.files: number
merge.dirs: number
merge.generate_secs: number
merge.rsync: object
merge.rsync.secs: number
merge.rsync.peak_rss_mib: number
merge.rsync.rusage_maxrss_mib: number
merge.twinsync_first: object
merge.twinsync_first.secs: number
merge.twinsync_first.scan_ms: null
merge.twinsync_first.copied_to_left: number
merge.twinsync_first.copied_to_right: number
merge.twinsync_first.brain_peak_rss_mib: number
merge.twinsync_first.brain_peak_bytes_per_file: number
merge.twinsync_first.agents_peak_rss_mib: array
merge.twinsync_first.rusage_maxrss_mib: number
merge.twinsync_first_check: object
merge.twinsync_first_check.matches: bool
merge.twinsync_first_check.entries: number
merge.twinsync_first_check.differences: number
merge.twinsync_first_check.sampled: number
merge.twinsync_first_check.content_differences: number
merge.twinsync_first_check.mtime_differences: number
merge.twinsync_second: object
merge.twinsync_second.secs: number
merge.twinsync_second.scan_ms: null
merge.twinsync_second.copied_to_left: number
merge.twinsync_second.copied_to_right: number
merge.twinsync_second.brain_peak_rss_mib: number
merge.twinsync_second.brain_peak_bytes_per_file: number
merge.twinsync_second.agents_peak_rss_mib: array
merge.twinsync_second.rusage_maxrss_mib: number
merge.twinsync_second_copied_nothing: bool
merge.unison: null
merge.ratios: object
merge.ratios.twinsync_first_over_rsync: number
merge.ratios.unison_over_rsync: null
merge.ratios.twinsync_second_secs: number
merge.ratios.brain_bytes_per_file: number
merge.ratios.unison_bytes_per_file: null
merge.targets_met: object
merge.targets_met.first_over_rsync: bool
merge.targets_met.second_secs: bool
merge.targets_met.brain_bytes_per_file: bool
merge.notes: array
attr_latency: object
attr_latency.content: object
attr_latency.content.p50_ms: number
attr_latency.content.p90_ms: number
attr_latency.content.samples_ms: array
attr_latency.chmod: object
attr_latency.chmod.p50_ms: number
attr_latency.chmod.p90_ms: number
attr_latency.chmod.samples_ms: array
attr_latency.chmod.p50_over_content: number
attr_latency.chown: null
attr_latency.setfattr: object
attr_latency.setfattr.p50_ms: number
attr_latency.setfattr.p90_ms: number
attr_latency.setfattr.samples_ms: array
attr_latency.setfattr.p50_over_content: number
attr_latency.target_p50_over_content: number
attr_latency.notes: array
sparse: object
sparse.length_bytes: number
sparse.data_bytes: number
sparse.twinsync: object
sparse.twinsync.secs: number
sparse.twinsync.allocated_bytes: number
sparse.twinsync.net_kib: null
sparse.twinsync_ssh: object
sparse.twinsync_ssh.secs: number
sparse.twinsync_ssh.allocated_bytes: number
sparse.twinsync_ssh.net_kib: number
sparse.rsync: null
sparse.rsync_ssh: object
sparse.rsync_ssh.error: string
sparse.rsync_ssh.detail: string
sparse.target_secs: number
sparse.target_bytes_over_data: number
sparse.notes: array
rootfs_merge: object
rootfs_merge.source: string
rootfs_merge.entries: number
rootfs_merge.twinsync: object
rootfs_merge.twinsync.secs: number
rootfs_merge.twinsync.peak_rss_mib: number
rootfs_merge.twinsync.rusage_maxrss_mib: number
rootfs_merge.rsync: object
rootfs_merge.rsync.secs: number
rootfs_merge.rsync.peak_rss_mib: number
rootfs_merge.rsync.rusage_maxrss_mib: number
rootfs_merge.twinsync_over_rsync: number
rootfs_merge.target_ratio: number
rootfs_merge.differences: object
rootfs_merge.differences.left_to_right: array
rootfs_merge.differences.right_to_left: array
rootfs_merge.notes: array
watch1m: object
watch1m.files: number
watch1m.dirs: number
watch1m.max_user_watches: number
watch1m.generate_secs: number
watch1m.live_secs: number
watch1m.brain: object
watch1m.brain.rss_mib: number
watch1m.brain.hwm_mib: number
watch1m.agents: array
watch1m.agents[].rss_mib: number
watch1m.agents[].hwm_mib: number
watch1m.agents[].inotify_watches: number
watch1m.agents[].rss_mib: number
watch1m.agents[].hwm_mib: number
watch1m.agents[].inotify_watches: null
watch1m.total_rss_mib: number
watch1m.total_hwm_mib: number
watch1m.total_within_target: bool
watch1m.idle_cpu_percent: number
watch1m.sampled: number
watch1m.inodes_kept_left: number
watch1m.inodes_kept_right: number
watch1m.notes: array
";
}
