//! The side-by-side table on stdout: one row per figure, a column per tool,
//! their ratio, and the notes under it.

mod fidelity;
mod workloads;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{
    Labels, ToolReport, BYTES_PER_FILE_TARGET, MERGE_RATIO_TARGET, SECOND_MERGE_TARGET_SECS,
    WATCH_TOTAL_TARGET_MIB,
};
use crate::error::{Failure, Res};
use crate::merge::{MergeBench, TwinsyncMerge};
use crate::procs::Timed;
use crate::scenarios::{self, Latency, Rename};
use crate::watch1m::{Mem, Watch1m};

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
    /// The attr-latency scenario: twinsync alone.
    Attrs(&'a Res<crate::fidelity::attrs::AttrLatency>),
    /// The sparse scenario: twinsync and rsync -aS.
    Sparse(&'a Res<crate::fidelity::sparse::SparseBench>),
    /// The rootfs-merge scenario: twinsync and rsync -aHAXS.
    Rootfs(&'a Res<crate::fidelity::rootfs::RootfsBench>),
    /// The watch1m scenario: twinsync alone.
    Watch1m(&'a Res<Watch1m>),
    /// The delta-ssh scenario: twinsync and rsync -a over ssh.
    Delta(&'a Res<crate::workloads::delta::DeltaBench>),
    /// The mixed scenario: twinsync and lsyncd.
    Mixed(&'a Res<crate::workloads::mixed::MixedBench>),
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
            Body::Attrs(a) => fidelity::attrs_lines(a, &mut lines, &mut notes_out),
            Body::Sparse(s) => fidelity::sparse_lines(s, &mut lines, &mut notes_out),
            Body::Rootfs(r) => fidelity::rootfs_lines(r, &mut lines, &mut notes_out),
            Body::Watch1m(w) => watch_lines(w, &mut lines, &mut notes_out),
            Body::Delta(d) => workloads::delta_lines(d, &mut lines, &mut notes_out),
            Body::Mixed(m) => workloads::mixed_lines(m, &mut lines, &mut notes_out),
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
