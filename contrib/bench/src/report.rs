//! What was measured per tool, and its two renderings: the side-by-side
//! table on stdout and the JSON object for `--json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::error::{Failure, Res};
use crate::fsops::TreeCheck;
use crate::merge::{MergeBench, TwinsyncMerge};
use crate::procs::Timed;
use crate::scenarios::{self, Burst, Latency, Rename, Resources};
use crate::watch1m::{Mem, Watch1m};

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
    let r = match &r.renamed {
        Ok(r) => r,
        Err(f @ Failure::Timeout(_)) => {
            return Cell {
                text: format!("{} (> {} s)", f.short(), scenarios::WAIT_LIMIT.as_secs()),
                value: None,
            }
        }
        Err(f) => {
            return Cell {
                text: f.short().into(),
                value: None,
            }
        }
    };
    let how = if r.inodes_kept == r.inodes_checked {
        "inodes kept".to_string()
    } else if r.inodes_kept == 0 {
        "re-copied".to_string()
    } else {
        format!("{}/{} inodes kept", r.inodes_kept, r.inodes_checked)
    };
    let ms = r.secs * 1e3;
    Cell::num(format!("{ms:.1} ({how})"), ms)
}

/// The rows: label and a cell builder applied to each tool.
type RowFn = fn(&ToolReport) -> Cell;

/// KiB sent over the loopback, roughly.
fn net_cell(r: &Rename) -> Cell {
    let Ok(r) = &r.renamed else {
        return Cell::dash();
    };
    match r.net_kib {
        None => Cell::dash(),
        Some(k) if k < 10.0 => Cell::num(format!("≈ {k:.1} KiB"), k),
        Some(k) => Cell::num(format!("≈ {k:.0} KiB"), k),
    }
}

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
            cell(&t.rename, net_cell)
        }),
        (labels.tree("rename ", "dir ms (ssh)"), |t| {
            cell(&t.rename100k, rename_cell)
        }),
        (labels.tree("rename ", "dir: sent over lo (ssh)"), |t| {
            cell(&t.rename100k, net_cell)
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
        (labels.tree("rename ", "dir ms"), |t| {
            cell(&t.rename100k, rename_cell)
        }),
        ("brain|peer peak RSS MiB".into(), |t| {
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
        (labels.tree("total peak RSS MiB, ", "tree"), |t| {
            cell(&t.tree_resources(), |r| {
                Cell::num(format!("{:.1}", r.total_mib()), r.total_mib())
            })
        }),
    ]
}

/// Column header for a tool.
fn header(t: &ToolReport) -> &'static str {
    match (t.slug, t.ssh) {
        ("lsyncd", false) => "lsyncd(-rsync,delay 0)",
        ("lsyncd", true) => "lsyncd(-rsyncssh,delay 0)",
        ("clsync", _) => "clsync(rsyncdirect,-t0 -T0 -w0)",
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
/// did not run or its rows.
pub struct Section<'a> {
    pub title: Option<String>,
    pub unavailable: Option<String>,
    pub body: Body<'a>,
}

/// What a [`Section`] shows.
pub enum Body<'a> {
    /// The live tools side by side: twinsync, then its peers, then
    /// twinsync's figure over each peer's.
    Tools {
        ours: &'a ToolReport,
        peers: Vec<&'a ToolReport>,
        ssh: bool,
    },
    /// The merge scenario: twinsync, rsync -a and unison.
    Merge(&'a Res<MergeBench>),
    /// The watch1m scenario: twinsync alone.
    Watch1m(&'a Res<Watch1m>),
}

/// A line of the table: a title, or aligned columns (lines with the same
/// number of columns share their widths).
enum Line {
    Title(String),
    Cols(Vec<String>),
}

/// The table, section after section, and the notes under it.
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
        match &sec.body {
            Body::Tools { ours, peers, ssh } => {
                tools_lines(ours, peers, *ssh, labels, &mut lines, &mut notes_out);
            }
            Body::Merge(m) => merge_lines(m, &mut lines, &mut notes_out),
            Body::Watch1m(w) => watch_lines(w, &mut lines, &mut notes_out),
        }
    }
    let mut widths: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for line in &lines {
        if let Line::Cols(cols) = line {
            let w = widths
                .entry(cols.len())
                .or_insert_with(|| vec![0; cols.len()]);
            for (w, c) in w.iter_mut().zip(cols) {
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
                for (c, w) in cols.iter().zip(&widths[&cols.len()]) {
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

/// The rows of the live tools side by side (twinsync, each peer, then one
/// ratio column per peer: twinsync's figure over the peer's), and their
/// notes.
fn tools_lines(
    ours: &ToolReport,
    peers: &[&ToolReport],
    ssh: bool,
    labels: &Labels,
    lines: &mut Vec<Line>,
    notes_out: &mut String,
) {
    let scenario = if ssh { "scenario (ssh)" } else { "scenario" };
    let mut head = vec![scenario.to_string(), header(ours).into()];
    head.extend(peers.iter().map(|p| header(p).to_string()));
    if let [_] = peers {
        head.push("ratio".into());
    } else {
        head.extend(peers.iter().map(|p| format!("{}/{}", ours.slug, p.slug)));
    }
    lines.push(Line::Cols(head));
    let rows = if ssh { ssh_rows(labels) } else { rows(labels) };
    for (i, (label, build)) in rows.into_iter().enumerate() {
        let a = tool_cell(ours, build, i);
        let others: Vec<Cell> = peers.iter().map(|p| tool_cell(p, build, i)).collect();
        let mut cols = vec![label];
        cols.extend(others.iter().map(|b| ratio(&a, b)));
        cols.splice(1..1, others.into_iter().map(|b| b.text));
        cols.insert(1, a.text);
        lines.push(Line::Cols(cols));
    }
    let mut all = vec![ours];
    all.extend(peers);
    notes_out.push_str(&notes(&all));
    if all.iter().any(|t| matches!(&t.rename100k, Some(Ok(_)))) {
        let _ = writeln!(
            notes_out,
            "note: {}: the tree (100 files of 1–200 bytes per directory) is made \
             before the tool starts and copied by its first sync (not timed); then \
             time from rename(tree, tree2) on the left until the right has tree2 with \
             every file at its size ({} spread over it also by content) and no tree; \
             inodes checked on those {}; \"never (old dir left)\": tree2 complete but \
             tree still there {} s later",
            labels.tree("rename ", "dir"),
            scenarios::TREE_SAMPLE,
            scenarios::TREE_SAMPLE,
            scenarios::STUCK_LIMIT.as_secs()
        );
    }
    if ssh && all.iter().any(|t| measured_net(t)) {
        notes_out.push_str(
            "note: \"sent over lo\" = growth of /sys/class/net/lo tx_bytes from the \
             rename until 0.5 s after it showed on the right, minus an idle sample of \
             the same length; both directions, ssh and TCP/IP overhead and any other \
             loopback traffic included: noisy, an order of magnitude only\n",
        );
    }
}

/// "ok" or "MISSED".
fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// KiB as MiB with one decimal.
fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A cell of an optional run: "-" if not run, the failure's short form,
/// or `show`'s text.
fn run_text<T>(r: Option<&Res<T>>, show: impl Fn(&T) -> String) -> String {
    match r {
        None => "-".into(),
        Some(Err(f)) => f.short().into(),
        Some(Ok(t)) => show(t),
    }
}

/// The target for twinsync's first merge over `rsync -a`.
pub const MERGE_RATIO_TARGET: f64 = 1.2;
/// The target for twinsync's second merge, seconds.
pub const SECOND_MERGE_TARGET_SECS: f64 = 1.0;
/// The target for the brain's peak RSS per file, bytes.
pub const BYTES_PER_FILE_TARGET: f64 = 256.0;
/// The target for watch1m's total memory, MiB.
pub const WATCH_TOTAL_TARGET_MIB: f64 = 256.0;

/// The merge section's rows and notes.
fn merge_lines(m: &Res<MergeBench>, lines: &mut Vec<Line>, notes_out: &mut String) {
    let m = match m {
        Ok(m) => m,
        Err(f) => {
            lines.push(Line::Title(format!("  {}: see the note", f.short())));
            let _ = writeln!(notes_out, "note: merge: {f}");
            return;
        }
    };
    let first = Some(&m.first);
    let second = m.second.as_ref();
    let (rsync, unison) = (m.rsync.as_ref(), m.unison.as_ref());
    let row = |cols: [String; 5]| Line::Cols(cols.into());
    lines.push(row([
        "merge".into(),
        "twinsync".into(),
        "rsync -a".into(),
        "unison".into(),
        "ratio / target".into(),
    ]));
    let secs = |t: &Timed| format!("{:.3}", t.secs);
    let mut ratios = Vec::new();
    if let Some(x) = m.first_over_rsync() {
        ratios.push(format!(
            "twinsync/rsync {x:.2} (target ≤ {MERGE_RATIO_TARGET}: {})",
            verdict(x <= MERGE_RATIO_TARGET)
        ));
    }
    if let Some(x) = m.unison_over_rsync() {
        ratios.push(format!("unison/rsync {x:.2}"));
    }
    lines.push(row([
        "first sync s (right empty)".into(),
        run_text(first, |t| secs(&t.run)),
        run_text(rsync, secs),
        run_text(unison, secs),
        ratios.join("; "),
    ]));
    let copied = |t: &TwinsyncMerge| match t.copied {
        Some((l, r)) => format!("{l} / {r}"),
        None => "? (no in sync line)".into(),
    };
    lines.push(row([
        "  files copied to L / to R".into(),
        run_text(first, copied),
        "-".into(),
        "-".into(),
        String::new(),
    ]));
    let second_target = match second {
        Some(Ok(t)) => format!(
            "target ≤ {SECOND_MERGE_TARGET_SECS} s: {}",
            verdict(t.run.secs <= SECOND_MERGE_TARGET_SECS)
        ),
        _ => String::new(),
    };
    lines.push(row([
        "second sync s (identical pair)".into(),
        run_text(second, |t| {
            let what = match t.copied {
                Some((0, 0)) => "copied nothing".to_string(),
                Some((l, r)) => format!("COPIED {l} / {r}"),
                None => "no in sync line".into(),
            };
            format!("{} ({what})", secs(&t.run))
        }),
        "-".into(),
        "-".into(),
        second_target,
    ]));
    let brain_kib = m.first.as_ref().ok().and_then(|t| t.run.main_hwm_kib);
    let unison_kib = unison
        .and_then(|u| u.as_ref().ok())
        .map(Timed::main_peak_kib);
    let rss_ratio = match (brain_kib, unison_kib) {
        (Some(b), Some(u)) if u > 0 => format!("twinsync/unison {:.2}", b as f64 / u as f64),
        _ => String::new(),
    };
    lines.push(row([
        "peak RSS MiB (brain | biggest proc)".into(),
        run_text(first, |t| t.run.main_hwm_kib.map_or("?".into(), mib)),
        run_text(rsync, |t| mib(t.main_peak_kib())),
        run_text(unison, |t| mib(t.main_peak_kib())),
        rss_ratio,
    ]));
    lines.push(row([
        "  agents peak RSS MiB".into(),
        run_text(first, |t| {
            let each: Vec<String> = t.run.agents_hwm_kib.iter().map(|&k| mib(k)).collect();
            if each.is_empty() {
                "?".into()
            } else {
                each.join(" + ")
            }
        }),
        "-".into(),
        "-".into(),
        String::new(),
    ]));
    let mut per_file = Vec::new();
    if let Some(b) = m.brain_bytes_per_file() {
        per_file.push(format!(
            "target ≤ {BYTES_PER_FILE_TARGET}: {}",
            verdict(b <= BYTES_PER_FILE_TARGET)
        ));
        if let Some(u) = m.unison_bytes_per_file().filter(|&u| u > 0.0) {
            per_file.push(format!("twinsync/unison {:.2}", b / u));
        }
    }
    lines.push(row([
        "peak bytes/file (brain | unison)".into(),
        m.brain_bytes_per_file()
            .map_or_else(|| run_text(first, |_| "?".into()), |b| format!("{b:.0}")),
        "-".into(),
        m.unison_bytes_per_file()
            .map_or_else(|| run_text(unison, |_| "?".into()), |u| format!("{u:.0}")),
        per_file.join("; "),
    ]));
    lines.push(row([
        "right = left after first sync".into(),
        match &m.first_check {
            None => "-".into(),
            Some(Err(f)) => f.short().into(),
            Some(Ok(c)) if c.matches() => format!("yes ({} sampled)", c.sampled),
            Some(Ok(_)) => "NO (see notes)".into(),
        },
        "-".into(),
        "-".into(),
        String::new(),
    ]));
    let failures = [
        ("twinsync first merge", Some(&m.first)),
        ("twinsync second merge", second),
    ];
    for (what, r) in failures {
        if let Some(Err(f)) = r {
            let _ = writeln!(notes_out, "note: merge: {what}: {f}");
        }
    }
    for (what, r) in [("rsync -a", rsync), ("unison", unison)] {
        if let Some(Err(f)) = r {
            let _ = writeln!(notes_out, "note: merge: {what}: {f}");
        }
    }
    if let Some(Err(f)) = &m.first_check {
        let _ = writeln!(notes_out, "note: merge: comparing the trees: {f}");
    }
    for n in &m.notes {
        let _ = writeln!(notes_out, "note: merge: {n}");
    }
    let _ = writeln!(
        notes_out,
        "note: merge: on {} ({}); tree generated in {:.1} s and copied (cp -a) for each \
         tool, not timed; page cache not dropped (needs root): a find over every source \
         warmed them all alike, and sync ran before each tool; peak RSS sampled from /proc \
         every 20 ms (rsync and unison: also wait4's ru_maxrss, the larger kept)",
        m.fs,
        std::env::temp_dir().display(),
        m.generate_secs
    );
    if m.fs != "tmpfs" {
        let _ = writeln!(
            notes_out,
            "note: merge: timings on a disk vary with its writeback from run to run; \
             TMPDIR=/dev/shm (tmpfs) gives steadier figures"
        );
    }
}

/// The watch1m section's rows and notes.
fn watch_lines(w: &Res<Watch1m>, lines: &mut Vec<Line>, notes_out: &mut String) {
    let w = match w {
        Ok(w) => w,
        Err(f) => {
            lines.push(Line::Title(format!("  {}: see the note", f.short())));
            let _ = writeln!(notes_out, "note: watch1m: {f}");
            return;
        }
    };
    let row = |a: &str, b: String, c: String| Line::Cols(vec![a.into(), b, c]);
    let mem = |m: &Mem| format!("{} / {}", mib(m.rss_kib), mib(m.hwm_kib));
    lines.push(row("watch1m", "twinsync".into(), "target".into()));
    lines.push(row(
        "generate both trees s",
        format!("{:.1}", w.generate_secs),
        String::new(),
    ));
    lines.push(row(
        "time to live s (probe both ways)",
        format!("{:.1}", w.live_secs),
        String::new(),
    ));
    lines.push(row("brain VmRSS / VmHWM MiB", mem(&w.brain), String::new()));
    let agents: Vec<String> = w.agents.iter().map(|a| mem(&a.mem)).collect();
    lines.push(row(
        "agents VmRSS / VmHWM MiB",
        agents.join(" + "),
        String::new(),
    ));
    let total = w.total_kib(true) as f64 / 1024.0;
    lines.push(row(
        "total VmRSS / VmHWM MiB",
        format!("{} / {}", mib(w.total_kib(false)), mib(w.total_kib(true))),
        format!(
            "≤ {WATCH_TOTAL_TARGET_MIB} MiB: {}",
            verdict(total <= WATCH_TOTAL_TARGET_MIB)
        ),
    ));
    let watches: Vec<String> = w
        .agents
        .iter()
        .map(|a| a.watches.map_or("?".into(), |n| n.to_string()))
        .collect();
    let all_watched = w.agents.len() == 2
        && w.agents
            .iter()
            .all(|a| a.watches.is_some_and(|n| n > w.dirs));
    lines.push(row(
        "inotify watches (per agent)",
        watches.join(" + "),
        format!(
            "one per directory, > {} each: {}",
            w.dirs,
            verdict(all_watched)
        ),
    ));
    lines.push(row(
        "idle CPU % (2 s)",
        match &w.idle {
            Ok(r) => format!("{:.1}", r.idle_cpu_pct),
            Err(f) => f.short().into(),
        },
        String::new(),
    ));
    let (l, r) = w.inodes_kept;
    lines.push(row(
        "sampled inodes kept L / R",
        format!("{l}/{} / {r}/{}", w.sampled, w.sampled),
        format!(
            "all (nothing re-copied): {}",
            verdict(l == w.sampled && r == w.sampled)
        ),
    ));
    if let Err(f) = &w.idle {
        let _ = writeln!(notes_out, "note: watch1m: idle CPU: {f}");
    }
    for n in &w.notes {
        let _ = writeln!(notes_out, "note: watch1m: {n}");
    }
    let _ = writeln!(
        notes_out,
        "note: watch1m: {} empty files in {} directories on each side, same names and \
         mtimes; fs.inotify.max_user_watches = {}",
        w.files,
        w.dirs,
        w.max_user_watches
            .map_or_else(|| "?".to_string(), |m| m.to_string())
    );
}

/// Whether the rename's loopback traffic was measured for `t`.
fn measured_net(t: &ToolReport) -> bool {
    [&t.rename, &t.rename100k]
        .into_iter()
        .any(|r| matches!(r, Some(Ok(r)) if r.renamed.as_ref().is_ok_and(|x| x.net_kib.is_some())))
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

/// Why a rename scenario has no figure: it failed, or (its copy done) the
/// rename never showed.
fn rename_err(r: &Option<Res<Rename>>) -> Option<&Failure> {
    match r.as_ref()? {
        Err(f) => Some(f),
        Ok(r) => r.renamed.as_ref().err(),
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
            ("rename", rename_err(&t.rename)),
            ("rename100k", rename_err(&t.rename100k)),
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
    pub watch1m: Option<&'a Res<Watch1m>>,
}

/// The whole run as one JSON object; the ssh figures under `"ssh"`, the
/// merge and watch1m scenarios under `"merge"` and `"watch1m"`.
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
        "watch1m".to_string(),
        bulk.watch1m.map_or(Json::Null, watch1m_json),
    ));
    Json::Obj(fields)
}
