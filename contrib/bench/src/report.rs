//! What was measured per tool, and its two renderings: the side-by-side
//! table on stdout and the JSON object for `--json`.

use std::fmt::Write as _;

use crate::error::{Failure, Res};
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
    /// (the run with the largest total) and highest idle CPU.
    pub fn worst_resources(&self) -> Option<Res<Resources>> {
        let ok: Vec<&Resources> = self
            .resources
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        let Some(biggest) = ok
            .iter()
            .max_by(|a, b| a.total_mib().total_cmp(&b.total_mib()))
        else {
            return self.resources.first().map(|(_, r)| r.clone());
        };
        Some(Ok(Resources {
            idle_cpu_pct: ok.iter().map(|r| r.idle_cpu_pct).fold(0.0, f64::max),
            ..(*biggest).clone()
        }))
    }
}

/// The parameters shown in row labels.
pub struct Labels {
    pub burst_files: usize,
    pub rename_mib: u64,
}

/// One table cell: its text, and the number used for the ratio column.
struct Cell {
    text: String,
    value: Option<f64>,
}

impl Cell {
    fn dash() -> Self {
        Cell {
            text: "-".into(),
            value: None,
        }
    }

    fn num(text: String, value: f64) -> Self {
        Cell {
            text,
            value: Some(value),
        }
    }
}

/// A cell from an optional result, `show` giving text and ratio value.
fn cell<T>(r: &Option<Res<T>>, show: impl Fn(&T) -> Cell) -> Cell {
    match r {
        None => Cell::dash(),
        Some(Err(f)) => Cell {
            text: f.short().into(),
            value: None,
        },
        Some(Ok(t)) => show(t),
    }
}

fn latency_cell(l: &Latency) -> Cell {
    let p50 = l.percentile(0.5);
    Cell::num(format!("{p50:.1} / {:.1}", l.percentile(0.9)), p50)
}

fn rename_cell(r: &Rename) -> Cell {
    let how = if r.inodes_kept == r.files {
        "inodes kept".to_string()
    } else if r.inodes_kept == 0 {
        "re-copied".to_string()
    } else {
        format!("{}/{} inodes kept", r.inodes_kept, r.files)
    };
    let ms = r.secs * 1e3;
    Cell::num(format!("{ms:.1} ({how})"), ms)
}

/// The rows: label and a cell builder applied to each tool.
type RowFn = fn(&ToolReport) -> Cell;

/// The rows of the ssh section.
fn ssh_rows(labels: &Labels) -> Vec<(String, RowFn)> {
    vec![
        ("latency L→R p50/p90 ms (ssh)".into(), |t| {
            cell(&t.latency_lr, latency_cell)
        }),
        ("latency R→L p50/p90 ms (ssh)".into(), |t| {
            cell(&t.latency_rl, latency_cell)
        }),
        (format!("burst {} files s (ssh)", labels.burst_files), |t| {
            cell(&t.burst, |b| Cell::num(format!("{:.3}", b.secs), b.secs))
        }),
        // Each tool against itself: no ratio between the tools.
        ("burst ssh / local (ssh)".into(), |t| {
            let text = match t.burst_vs_local {
                None => return Cell::dash(),
                Some(x) if t.slug == "twinsync" => {
                    let verdict = if x <= 2.0 { "ok" } else { "MISSED" };
                    format!("{x:.2}× (target ≤ 2×: {verdict})")
                }
                Some(x) => format!("{x:.2}×"),
            };
            Cell { text, value: None }
        }),
        (format!("copy {}MiB dir s (ssh)", labels.rename_mib), |t| {
            cell(&t.rename, |r| {
                Cell::num(format!("{:.3}", r.copy_secs), r.copy_secs)
            })
        }),
        (
            format!("rename {}MiB dir ms (ssh)", labels.rename_mib),
            |t| cell(&t.rename, rename_cell),
        ),
        ("rename: sent over lo (ssh)".into(), |t| {
            cell(&t.rename, |r| match r.net_kib {
                None => Cell::dash(),
                Some(k) if k < 10.0 => Cell::num(format!("≈ {k:.1} KiB"), k),
                Some(k) => Cell::num(format!("≈ {k:.0} KiB"), k),
            })
        }),
    ]
}

fn rows(labels: &Labels) -> Vec<(String, RowFn)> {
    vec![
        ("latency L→R p50/p90 ms".into(), |t| {
            cell(&t.latency_lr, latency_cell)
        }),
        ("latency R→L p50/p90 ms".into(), |t| {
            cell(&t.latency_rl, latency_cell)
        }),
        (format!("burst {} files s", labels.burst_files), |t| {
            cell(&t.burst, |b| Cell::num(format!("{:.3}", b.secs), b.secs))
        }),
        (format!("copy {}MiB dir s", labels.rename_mib), |t| {
            cell(&t.rename, |r| {
                Cell::num(format!("{:.3}", r.copy_secs), r.copy_secs)
            })
        }),
        (format!("rename {}MiB dir ms", labels.rename_mib), |t| {
            cell(&t.rename, rename_cell)
        }),
        ("brain|lsyncd peak RSS MiB".into(), |t| {
            cell(&t.worst_resources(), |r| {
                Cell::num(format!("{:.1}", r.main_mib), r.main_mib)
            })
        }),
        ("agents peak RSS MiB".into(), |t| {
            cell(&t.worst_resources(), |r| {
                if r.children_mib.is_empty() {
                    return Cell::dash();
                }
                let each: Vec<String> = r.children_mib.iter().map(|m| format!("{m:.1}")).collect();
                Cell {
                    text: each.join(" + "),
                    value: None,
                }
            })
        }),
        ("total peak RSS MiB".into(), |t| {
            cell(&t.worst_resources(), |r| {
                Cell::num(format!("{:.1}", r.total_mib()), r.total_mib())
            })
        }),
        ("idle CPU % (2 s)".into(), |t| {
            cell(&t.worst_resources(), |r| {
                Cell::num(format!("{:.1}", r.idle_cpu_pct), r.idle_cpu_pct)
            })
        }),
    ]
}

/// Column header for a tool.
fn header(t: &ToolReport) -> &'static str {
    match (t.slug, t.ssh) {
        ("lsyncd", false) => "lsyncd(-rsync,delay 0)",
        ("lsyncd", true) => "lsyncd(-rsyncssh,delay 0)",
        (other, _) => other,
    }
}

fn ratio(a: &Cell, b: &Cell) -> String {
    match (a.value, b.value) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}", x / y),
        _ => "-".into(),
    }
}

/// One part of the table: a title line (if any), then either a reason it
/// did not run or the two tools side by side.
pub struct Section<'a> {
    pub title: Option<String>,
    pub unavailable: Option<String>,
    pub ours: &'a ToolReport,
    pub peer: &'a ToolReport,
    pub ssh: bool,
}

/// A line of the table: a title, or four aligned columns.
enum Line {
    Title(String),
    Cols([String; 4]),
}

/// The side-by-side table, section after section (`ours` vs `peer`), and
/// the notes under it.
pub fn table(sections: &[Section], labels: &Labels) -> String {
    let mut lines = Vec::new();
    let mut notes_out = String::new();
    for sec in sections {
        if let Some(t) = &sec.title {
            lines.push(Line::Title(t.clone()));
        }
        if let Some(why) = &sec.unavailable {
            lines.push(Line::Title(format!("  {why}")));
            continue;
        }
        let scenario = if sec.ssh {
            "scenario (ssh)"
        } else {
            "scenario"
        };
        lines.push(Line::Cols([
            scenario.into(),
            header(sec.ours).into(),
            header(sec.peer).into(),
            "ratio".into(),
        ]));
        let rows = if sec.ssh {
            ssh_rows(labels)
        } else {
            rows(labels)
        };
        for (i, (label, build)) in rows.into_iter().enumerate() {
            let a = tool_cell(sec.ours, build, i);
            let b = tool_cell(sec.peer, build, i);
            let r = ratio(&a, &b);
            lines.push(Line::Cols([label, a.text, b.text, r]));
        }
        notes_out.push_str(&notes(&[sec.ours, sec.peer]));
        if sec.ssh && [sec.ours, sec.peer].iter().any(|t| measured_net(t)) {
            notes_out.push_str(
                "note: \"sent over lo\" = growth of /sys/class/net/lo tx_bytes from the \
                 rename until 0.5 s after it showed on the right, minus an idle sample of \
                 the same length; both directions, ssh and TCP/IP overhead and any other \
                 loopback traffic included: noisy, an order of magnitude only\n",
            );
        }
    }
    let mut widths = [0usize; 4];
    for line in &lines {
        if let Line::Cols(cols) = line {
            for (w, c) in widths.iter_mut().zip(cols) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for line in &lines {
        match line {
            Line::Title(t) => out.push_str(t),
            Line::Cols(cols) => {
                let mut row = String::new();
                for (c, w) in cols.iter().zip(widths) {
                    let _ = write!(row, "{c}{}   ", " ".repeat(w - c.chars().count()));
                }
                out.push_str(row.trim_end());
            }
        }
        out.push('\n');
    }
    out.push_str(&notes_out);
    out
}

/// Whether the rename's loopback traffic was measured for `t`.
fn measured_net(t: &ToolReport) -> bool {
    matches!(&t.rename, Some(Ok(r)) if r.net_kib.is_some())
}

/// A tool's cell, or (first row only) why the tool did not run.
fn tool_cell(t: &ToolReport, build: RowFn, row: usize) -> Cell {
    match &t.missing {
        Some(why) if row == 0 => Cell {
            text: format!("{}: {why}", t.slug),
            value: None,
        },
        Some(_) => Cell::dash(),
        None => build(t),
    }
}

/// Full failure texts and notes, one per line.
fn notes(tools: &[&ToolReport]) -> String {
    let mut out = String::new();
    for t in tools {
        let failures = [
            (
                "latency L→R",
                t.latency_lr.as_ref().and_then(|r| r.as_ref().err()),
            ),
            (
                "latency R→L",
                t.latency_rl.as_ref().and_then(|r| r.as_ref().err()),
            ),
            ("burst", t.burst.as_ref().and_then(|r| r.as_ref().err())),
            ("rename", t.rename.as_ref().and_then(|r| r.as_ref().err())),
        ];
        let name = t.name();
        for (what, f) in failures {
            if let Some(f) = f {
                let _ = writeln!(out, "note: {name} {what}: {f}");
            }
        }
        for (sc, r) in &t.resources {
            if let Err(f) = r {
                let _ = writeln!(out, "note: {name} resources after {sc}: {f}");
            }
        }
        for n in &t.notes {
            let _ = writeln!(out, "note: {name}: {n}");
        }
    }
    out
}

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

fn rename_json(r: &Rename) -> Json {
    let mut j = Json::obj([
        ("mib", Json::Num(r.mib as f64)),
        ("files", Json::Num(r.files as f64)),
        ("copy_secs", Json::num(r.copy_secs)),
        ("rename_ms", Json::num(r.secs * 1e3)),
        ("inodes_kept", Json::Num(r.inodes_kept as f64)),
        ("no_data_copied", Json::Bool(r.inodes_kept == r.files)),
    ]);
    if let (Json::Obj(fields), Some(k)) = (&mut j, r.net_kib) {
        fields.push(("loopback_kib_approx".into(), Json::num(k)));
    }
    j
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

/// The whole run as one JSON object; the ssh figures under `"ssh"`.
pub fn json(quick: bool, twinsync_bin: &str, tools: &[&ToolReport], ssh: SshJson) -> Json {
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
    Json::Obj(fields)
}
