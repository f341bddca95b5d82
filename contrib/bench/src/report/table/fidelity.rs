//! The fidelity sections of the table: attr-latency, sparse, rootfs-merge.

use std::fmt::Write as _;

use super::{latency_cell, run_text, verdict, Line};
use crate::error::Res;
use crate::fidelity::attrs::AttrLatency;
use crate::fidelity::rootfs::RootfsBench;
use crate::fidelity::sparse::{SparseBench, SparseRun};
use crate::report::{
    ATTR_RATIO_TARGET, MERGE_RATIO_TARGET, SPARSE_BYTES_TARGET, SPARSE_TARGET_SECS,
};
use crate::scenarios::Latency;

/// A failed scenario: its short form in the table, the whole in a note.
pub(super) fn failed<'a, T>(
    r: &'a Res<T>,
    slug: &str,
    lines: &mut Vec<Line>,
    notes_out: &mut String,
) -> Option<&'a T> {
    match r {
        Ok(t) => Some(t),
        Err(f) => {
            lines.push(Line::Title(format!("  {}: see the note", f.short())));
            let _ = writeln!(notes_out, "note: {slug}: {f}");
            None
        }
    }
}

/// The attr-latency rows: each change's p50/p90 and its p50 over the
/// content's.
pub(super) fn attrs_lines(a: &Res<AttrLatency>, lines: &mut Vec<Line>, notes_out: &mut String) {
    let Some(a) = failed(a, "attr-latency", lines, notes_out) else {
        return;
    };
    let row = |cols: [String; 3]| Line::Cols(cols.into());
    lines.push(row([
        "attr-latency".into(),
        "twinsync p50 / p90 ms".into(),
        "p50 / content's (target)".into(),
    ]));
    let content = a.content.percentile(0.5);
    lines.push(row([
        "content: new 16-byte file".into(),
        latency_cell(&a.content).text,
        String::new(),
    ]));
    let against = |l: &Latency| {
        let x = l.percentile(0.5) / content;
        format!(
            "{x:.2} (≤ {ATTR_RATIO_TARGET}: {})",
            verdict(x <= ATTR_RATIO_TARGET)
        )
    };
    for (what, l) in [
        ("chmod", Some(&a.chmod)),
        ("chown (uid and gid)", a.chown.as_ref()),
        ("setfattr user.*", Some(&a.setfattr)),
    ] {
        lines.push(match l {
            Some(l) => row([what.into(), latency_cell(l).text, against(l)]),
            None => row([what.into(), "-".into(), String::new()]),
        });
    }
    for n in &a.notes {
        let _ = writeln!(notes_out, "note: attr-latency: {n}");
    }
    let _ = writeln!(
        notes_out,
        "note: attr-latency: one synced file, changed on the left {} times per kind \
         (30 ms apart), polled on the right every 200 µs until it shows the change",
        a.chmod.samples_ms.len()
    );
}

/// Bytes as MiB, 2 decimals.
pub(super) fn mib(bytes: f64) -> String {
    format!("{:.2}", bytes / f64::from(1u32 << 20))
}

/// The sparse rows: time, space on the right, bytes over the loopback,
/// locally and over ssh, twinsync beside rsync -aS.
pub(super) fn sparse_lines(s: &Res<SparseBench>, lines: &mut Vec<Line>, notes_out: &mut String) {
    let Some(s) = failed(s, "sparse", lines, notes_out) else {
        return;
    };
    let row = |cols: [String; 4]| Line::Cols(cols.into());
    lines.push(row([
        "sparse".into(),
        "twinsync".into(),
        "rsync -aS".into(),
        "target".into(),
    ]));
    let data = 1u64 << 20;
    let runs = [
        ("local", Some(&s.local), s.rsync_local.as_ref()),
        ("ssh", s.ssh.as_ref(), s.rsync_ssh.as_ref()),
    ];
    for (where_, tw, rs) in runs {
        let tw_ok = tw.and_then(|r| r.as_ref().ok());
        lines.push(row([
            format!("time to the right s ({where_})"),
            run_text(tw, |r: &SparseRun| format!("{:.3}", r.secs)),
            run_text(rs, |r: &SparseRun| format!("{:.3}", r.secs)),
            tw_ok.map_or(String::new(), |r| {
                format!(
                    "≤ {SPARSE_TARGET_SECS} s: {}",
                    verdict(r.secs <= SPARSE_TARGET_SECS)
                )
            }),
        ]));
        lines.push(row([
            format!("  allocated on the right MiB ({where_})"),
            run_text(tw, |r: &SparseRun| mib(r.allocated as f64)),
            run_text(rs, |r: &SparseRun| mib(r.allocated as f64)),
            tw_ok.map_or(String::new(), |r| {
                format!(
                    "≤ {SPARSE_BYTES_TARGET} × 1 MiB: {}",
                    verdict(r.allocated as f64 <= SPARSE_BYTES_TARGET * data as f64)
                )
            }),
        ]));
        if where_ == "ssh" {
            let net = |r: &SparseRun| r.net_kib.map_or("?".into(), |k| mib(k * 1024.0));
            lines.push(row([
                "  sent over lo MiB (ssh)".into(),
                run_text(tw, net),
                run_text(rs, net),
                tw_ok.and_then(|r| r.net_kib).map_or(String::new(), |k| {
                    format!(
                        "≤ {SPARSE_BYTES_TARGET} × 1 MiB: {}",
                        verdict(k * 1024.0 <= SPARSE_BYTES_TARGET * data as f64)
                    )
                }),
            ]));
        }
    }
    for (what, r) in [
        ("twinsync (local)", Some(&s.local)),
        ("twinsync (ssh)", s.ssh.as_ref()),
        ("rsync -aS (local)", s.rsync_local.as_ref()),
        ("rsync -aS (ssh)", s.rsync_ssh.as_ref()),
    ] {
        if let Some(Err(f)) = r {
            let _ = writeln!(notes_out, "note: sparse: {what}: {f}");
        }
    }
    for n in &s.notes {
        let _ = writeln!(notes_out, "note: sparse: {n}");
    }
    let _ = writeln!(
        notes_out,
        "note: sparse: twinsync live, timed from the file's creation on the left until the \
         right has its length and mtime (then checked by content); rsync -aS of the file \
         into an empty directory, one way, timed as a command (over ssh: its connection \
         included); \"sent over lo\": growth of lo's tx_bytes, both directions and ssh \
         framing included, an idle baseline taken off (noisy)"
    );
}

/// The rootfs-merge rows: twinsync's first merge beside rsync -aHAXS, and
/// what rsync finds after it.
pub(super) fn rootfs_lines(r: &Res<RootfsBench>, lines: &mut Vec<Line>, notes_out: &mut String) {
    let Some(r) = failed(r, "rootfs-merge", lines, notes_out) else {
        return;
    };
    let row = |cols: [String; 4]| Line::Cols(cols.into());
    lines.push(row([
        "rootfs-merge".into(),
        "twinsync".into(),
        "rsync -aHAXS".into(),
        "ratio / target".into(),
    ]));
    let rsync = r.rsync.as_ref();
    lines.push(row([
        format!("first sync s ({} entries)", r.entries),
        run_text(Some(&r.twinsync), |t| format!("{:.3}", t.run.secs)),
        run_text(rsync, |t| format!("{:.3}", t.secs)),
        r.ratio().map_or(String::new(), |x| {
            format!(
                "twinsync/rsync {x:.2} (≤ {MERGE_RATIO_TARGET}: {})",
                verdict(x <= MERGE_RATIO_TARGET)
            )
        }),
    ]));
    lines.push(row([
        "  differences after (L→R / R→L)".into(),
        run_text(r.differences.as_ref(), |[a, b]| {
            format!("{} / {}", a.len(), b.len())
        }),
        "-".into(),
        match &r.differences {
            Some(Ok([a, b])) => format!("none: {}", verdict(a.is_empty() && b.is_empty())),
            _ => String::new(),
        },
    ]));
    if let Err(f) = &r.twinsync {
        let _ = writeln!(notes_out, "note: rootfs-merge: twinsync: {f}");
    }
    if let Some(Err(f)) = rsync {
        let _ = writeln!(notes_out, "note: rootfs-merge: rsync -aHAXS: {f}");
    }
    match &r.differences {
        Some(Err(f)) => {
            let _ = writeln!(notes_out, "note: rootfs-merge: comparing: {f}");
        }
        Some(Ok(d)) => {
            for (way, lines) in ["L→R", "R→L"].iter().zip(d) {
                for l in lines.iter().take(10) {
                    let _ = writeln!(notes_out, "note: rootfs-merge: {way} differs: {l}");
                }
            }
        }
        None => {}
    }
    for n in &r.notes {
        let _ = writeln!(notes_out, "note: rootfs-merge: {n}");
    }
    let _ = writeln!(
        notes_out,
        "note: rootfs-merge: {} with devices, a fifo, a file capability, ACLs, \
         user/trusted/security attributes, odd owners, hard-link groups and a sparse \
         image, copied (cp -a) for each tool, not timed; rsync -aHAXS --numeric-ids \
         L/ R/ one way; twinsync --sync-only; differences: rsync -aHAXS --numeric-ids \
         --checksum --dry-run --itemize-changes, both ways, .twinsync/ and the roots left out",
        r.source
    );
}
