//! The workload sections of the table: delta-ssh, mixed.

use std::fmt::Write as _;

use super::fidelity::{failed, mib};
use super::{run_text, Line};
use crate::error::Res;
use crate::workloads::delta::{DeltaBench, DeltaRun, CHANGED};
use crate::workloads::mixed::{MixedBench, MixedRun};

/// The delta-ssh rows: the update's time and bytes over the loopback,
/// twinsync beside rsync -a.
pub(super) fn delta_lines(d: &Res<DeltaBench>, lines: &mut Vec<Line>, notes_out: &mut String) {
    let Some(d) = failed(d, "delta-ssh", lines, notes_out) else {
        return;
    };
    let row = |cols: [String; 3]| Line::Cols(cols.into());
    lines.push(row([
        "delta-ssh".into(),
        "twinsync".into(),
        "rsync -a".into(),
    ]));
    let (tw, rs) = (Some(&d.twinsync), d.rsync.as_ref());
    lines.push(row([
        "first copy s (not timed)".into(),
        run_text(tw, |r: &DeltaRun| format!("{:.3}", r.copy_secs)),
        run_text(rs, |r: &DeltaRun| format!("{:.3}", r.copy_secs)),
    ]));
    lines.push(row([
        "update to the right s".into(),
        run_text(tw, |r: &DeltaRun| format!("{:.3}", r.secs)),
        run_text(rs, |r: &DeltaRun| format!("{:.3}", r.secs)),
    ]));
    let net = |r: &DeltaRun| r.net_kib.map_or("?".into(), |k| mib(k * 1024.0));
    lines.push(row([
        "  sent over lo MiB".into(),
        run_text(tw, net),
        run_text(rs, net),
    ]));
    for (what, r) in [("twinsync", tw), ("rsync -a", rs)] {
        if let Some(Err(f)) = r {
            let _ = writeln!(notes_out, "note: delta-ssh: {what}: {f}");
        }
    }
    for n in &d.notes {
        let _ = writeln!(notes_out, "note: delta-ssh: {n}");
    }
    let _ = writeln!(
        notes_out,
        "note: delta-ssh: a {} MiB file of pseudo-random data, {} KiB rewritten in place in \
         its middle; twinsync live, timed from the rewrite until the right has the left's \
         length and mtime (then checked byte for byte); rsync -a over the same sshd timed as \
         a command; \"sent over lo\": growth of lo's tx_bytes, both directions and ssh framing \
         included, an idle baseline taken off (noisy)",
        d.len >> 20,
        CHANGED.min(d.len) >> 10
    );
}

/// The mixed rows: the build's time to the right, twinsync beside lsyncd.
pub(super) fn mixed_lines(m: &Res<MixedBench>, lines: &mut Vec<Line>, notes_out: &mut String) {
    let Some(m) = failed(m, "mixed", lines, notes_out) else {
        return;
    };
    let row = |cols: [String; 4]| Line::Cols(cols.into());
    lines.push(row([
        "mixed".into(),
        "twinsync".into(),
        "lsyncd".into(),
        "twinsync / lsyncd".into(),
    ]));
    let (tw, ls) = (Some(&m.twinsync), m.lsyncd.as_ref());
    let ratio = match (&m.twinsync, &m.lsyncd) {
        (Ok(t), Some(Ok(l))) if l.secs > 0.0 => format!("{:.2}", t.secs / l.secs),
        _ => String::new(),
    };
    lines.push(row([
        "build to the right s".into(),
        run_text(tw, |r: &MixedRun| format!("{:.3}", r.secs)),
        run_text(ls, |r: &MixedRun| format!("{:.3}", r.secs)),
        ratio,
    ]));
    lines.push(row([
        "  writing it on the left s".into(),
        run_text(tw, |r: &MixedRun| format!("{:.3}", r.write_secs)),
        run_text(ls, |r: &MixedRun| format!("{:.3}", r.write_secs)),
        String::new(),
    ]));
    for (what, r) in [("twinsync", tw), ("lsyncd", ls)] {
        if let Some(Err(f)) = r {
            let _ = writeln!(notes_out, "note: mixed: {what}: {f}");
        }
    }
    for n in &m.notes {
        let _ = writeln!(notes_out, "note: mixed: {n}");
    }
    let _ = writeln!(
        notes_out,
        "note: mixed: a synced build tree, then {} object files of {} KiB rewritten through \
         a temp file and a rename, and {} MiB appended to each of {} archives in 1 MiB \
         writes; timed from the first write until the right has every file at the left's \
         length and mtime (then checked byte for byte)",
        m.mix.small,
        m.mix.small_bytes >> 10,
        m.mix.appended >> 20,
        m.mix.large
    );
}
