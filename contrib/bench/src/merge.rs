//! The `merge` scenario: a fresh tree of small files merged into an empty
//! right side, by `rsync -a` (one way), twinsync (`--sync-only`, then
//! again on the identical pair) and unison; wall times and peak memory.
//!
//! The tree is generated once into `merge-pristine/` and copied with
//! `cp -a` into each tool's left side before any tool runs (not timed).
//! The page cache is not dropped (that needs root): instead a throwaway
//! `find` walks every source first, so that all tools start warm, and
//! `sync` flushes the previous writes before each run, so that no tool
//! pays for another's writeback.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{io_ctx, Failure, Res};
use crate::fsops::{self, Pair, TempRoot, TreeCheck, TreeSpec};
use crate::procs::{self, Timed};
use crate::scenarios;

/// Longest one tool may take for one sync.
const RUN_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Files whose bytes and mtimes are compared after a sync.
const SAMPLE: usize = 1000;

/// The tree for `--quick` or not: 100 files (1–200 bytes) in each of
/// 1000 directories, or of 200 with `--quick`.
pub fn spec(quick: bool) -> TreeSpec {
    TreeSpec {
        dirs: if quick { 200 } else { 1000 },
        per_dir: 100,
        content: true,
        mtime: None,
    }
}

/// One twinsync `--sync-only` run.
#[derive(Debug, Clone)]
pub struct TwinsyncMerge {
    pub run: Timed,
    /// `copied_to_left`, `copied_to_right` of its `in sync` log line.
    pub copied: Option<(u64, u64)>,
    /// The `ms=` of its `scanned both replicas` log line.
    pub scan_ms: Option<u64>,
}

/// Everything the merge scenario measured.
#[derive(Debug)]
pub struct MergeBench {
    /// The file system of the temp root (see [`fsops::fs_type`]).
    pub fs: String,
    pub files: usize,
    pub dirs: usize,
    /// Generating the pristine tree.
    pub generate_secs: f64,
    /// `rsync -a L/ R/`; `None`: not installed.
    pub rsync: Option<Res<Timed>>,
    /// twinsync's first merge (right side empty).
    pub first: Res<TwinsyncMerge>,
    /// The right side against the left after the first merge.
    pub first_check: Option<Res<TreeCheck>>,
    /// twinsync again, on the identical pair; `None`: not run.
    pub second: Option<Res<TwinsyncMerge>>,
    /// `unison … -batch`; `None`: not installed.
    pub unison: Option<Res<Timed>>,
    pub notes: Vec<String>,
}

impl MergeBench {
    /// The brain's peak RSS in bytes per file, after the first merge.
    pub fn brain_bytes_per_file(&self) -> Option<f64> {
        let kib = self.first.as_ref().ok()?.run.main_hwm_kib?;
        Some(kib as f64 * 1024.0 / self.files.max(1) as f64)
    }

    /// unison's peak RSS in bytes per file.
    pub fn unison_bytes_per_file(&self) -> Option<f64> {
        let u = self.unison.as_ref()?.as_ref().ok()?;
        Some(u.main_peak_kib() as f64 * 1024.0 / self.files.max(1) as f64)
    }

    /// twinsync's first merge over `rsync -a`.
    pub fn first_over_rsync(&self) -> Option<f64> {
        let r = self.rsync.as_ref()?.as_ref().ok()?;
        let t = self.first.as_ref().ok()?;
        (r.secs > 0.0).then(|| t.run.secs / r.secs)
    }

    /// unison over `rsync -a`.
    pub fn unison_over_rsync(&self) -> Option<f64> {
        let r = self.rsync.as_ref()?.as_ref().ok()?;
        let u = self.unison.as_ref()?.as_ref().ok()?;
        (r.secs > 0.0).then(|| u.secs / r.secs)
    }
}

/// Keep a result, except an interruption, which ends the scenario.
fn keep<T>(r: Res<T>) -> Res<Res<T>> {
    match r {
        Err(Failure::Interrupted) => Err(Failure::Interrupted),
        r => Ok(r),
    }
}

/// Flush every dirty page, so that a run does not pay for the writeback
/// of the one before.
pub fn sync_all() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// Run a helper command (`cp`, `find`) to completion, output discarded.
pub fn helper(cmd: &mut Command, what: &str) -> Res<()> {
    let status = io_ctx(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        what,
    )?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Other(format!("{what}: {status}")))
    }
}

/// The run: generate, copy, warm up, then rsync, twinsync twice, unison.
pub fn run(root: &TempRoot, twinsync: &Path, quick: bool) -> Res<MergeBench> {
    let spec = spec(quick);
    let files = spec.files();
    let pristine = root.path().join("merge-pristine");
    fsops::mkdir(&pristine)?;
    eprintln!(
        "[bench] merge: generating {files} files in {} directories ...",
        spec.dirs
    );
    let generate_secs = fsops::make_tree(&pristine, &spec)?.as_secs_f64();

    let rsync_bin = twinsync_testkit::tools::find_in_path("rsync");
    let unison_bin = twinsync_testkit::tools::find_in_path("unison");
    let mut notes = Vec::new();
    if rsync_bin.is_none() {
        notes.push("rsync not installed: no rsync -a figure".to_string());
    }
    if unison_bin.is_none() {
        notes.push("unison not installed (apt-get install unison): no unison figures".to_string());
    }
    let mut pairs: BTreeMap<&str, Pair> = BTreeMap::new();
    for (tool, present) in [
        ("rsync", rsync_bin.is_some()),
        ("twinsync", true),
        ("unison", unison_bin.is_some()),
    ] {
        if present {
            let pair = root.pair(&format!("merge-{tool}"))?;
            let mut src = pristine.clone().into_os_string();
            src.push("/.");
            helper(
                Command::new("cp").arg("-a").arg(src).arg(&pair.left),
                &format!("cp -a {} {}", pristine.display(), pair.left.display()),
            )?;
            pairs.insert(tool, pair);
        }
    }
    // Warm every source alike (the copies are in the page cache already;
    // this brings their inodes and dentries in too), and write back.
    let mut find = Command::new("find");
    find.arg(&pristine);
    for p in pairs.values() {
        find.arg(&p.left);
    }
    helper(&mut find, "find (warm-up)")?;
    sync_all();

    let rsync = match (&rsync_bin, pairs.remove("rsync")) {
        (Some(bin), Some(pair)) => {
            eprintln!("[bench] merge with rsync -a ...");
            Some(keep(run_rsync(bin, &pair, &mut notes))?)
        }
        _ => None,
    };

    let pair = pairs
        .remove("twinsync")
        .ok_or_else(|| Failure::Other("no pair for twinsync".into()))?;
    eprintln!("[bench] merge with twinsync (first) ...");
    sync_all();
    let first = keep(run_twinsync(twinsync, &pair, "twinsync-1.log", &mut notes))?;
    let mut first_check = None;
    let mut second = None;
    if first.is_ok() {
        let check = keep(fsops::check_tree(&pair.left, &pair.right, SAMPLE))?;
        if let Ok(c) = &check {
            if !c.matches() {
                notes.push(format!("after twinsync's first merge: {}", c.summary()));
            }
        }
        first_check = Some(check);
        eprintln!("[bench] merge with twinsync (second, in sync) ...");
        sync_all();
        let s = keep(run_twinsync(twinsync, &pair, "twinsync-2.log", &mut notes))?;
        if let Ok(TwinsyncMerge {
            copied: Some((l, r)),
            ..
        }) = &s
        {
            if (*l, *r) != (0, 0) {
                notes.push(format!(
                    "twinsync's second merge copied {l} file(s) to the left and {r} to the \
                     right of an identical pair"
                ));
            }
        }
        second = Some(s);
    }
    drop(pair);

    let unison = match (&unison_bin, pairs.remove("unison")) {
        (Some(bin), Some(pair)) => {
            eprintln!("[bench] merge with unison ...");
            sync_all();
            Some(keep(run_unison(bin, &pair, &mut notes))?)
        }
        _ => None,
    };
    Ok(MergeBench {
        fs: fsops::fs_type(root.path()),
        files,
        dirs: spec.dirs,
        generate_secs,
        rsync,
        first,
        first_check,
        second,
        unison,
        notes,
    })
}

/// Compare a tool's result with its source; a note when they differ.
fn check_into_notes(tool: &str, pair: &Pair, notes: &mut Vec<String>) -> Res<()> {
    match fsops::check_tree(&pair.left, &pair.right, SAMPLE) {
        Ok(c) if c.matches() => Ok(()),
        Ok(c) => {
            notes.push(format!("after {tool}: {}", c.summary()));
            Ok(())
        }
        Err(Failure::Interrupted) => Err(Failure::Interrupted),
        Err(f) => {
            notes.push(format!("after {tool}: cannot compare the trees: {f}"));
            Ok(())
        }
    }
}

fn run_rsync(bin: &Path, pair: &Pair, notes: &mut Vec<String>) -> Res<Timed> {
    let (mut src, mut dst) = (
        pair.left.clone().into_os_string(),
        pair.right.clone().into_os_string(),
    );
    src.push("/");
    dst.push("/");
    let mut cmd = Command::new(bin);
    cmd.arg("-a").arg(src).arg(dst);
    let t = procs::run_timed(&mut cmd, "rsync -a", &pair.dir.join("rsync.log"), RUN_LIMIT)?;
    check_into_notes("rsync -a", pair, notes)?;
    Ok(t)
}

/// `twinsync -d 1 --sync-only L R`, its log in `pair.dir/log_name`.
pub fn run_twinsync(
    bin: &Path,
    pair: &Pair,
    log_name: &str,
    notes: &mut Vec<String>,
) -> Res<TwinsyncMerge> {
    let mut cmd = Command::new(bin);
    cmd.args(["-d", "1", "--sync-only"])
        .arg(&pair.left)
        .arg(&pair.right);
    let log = pair.dir.join(log_name);
    let run = procs::run_timed(&mut cmd, "twinsync", &log, RUN_LIMIT);
    let (lines, total) = scenarios::log_trouble(&log, 5);
    if total > 0 {
        notes.push(format!(
            "twinsync: {total} warning/error line(s) in {}: {}",
            log.display(),
            lines.join(" | ")
        ));
    }
    let run = run?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    Ok(TwinsyncMerge {
        copied: in_sync_counts(&text),
        scan_ms: text
            .lines()
            .filter(|l| l.contains("scanned both replicas"))
            .find_map(|l| field(l, "ms")),
        run,
    })
}

/// `KEY=N` in a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// `copied_to_left` and `copied_to_right` of the last `in sync` line.
fn in_sync_counts(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.contains(" in sync "))?;
    Some((
        field(line, "copied_to_left")?,
        field(line, "copied_to_right")?,
    ))
}

/// `unison L R -batch -auto -times -perms 0 -ui text`, with its own
/// `$UNISON` (and `$HOME`) in `pair.dir`, so no archive is reused.
fn run_unison(bin: &Path, pair: &Pair, notes: &mut Vec<String>) -> Res<Timed> {
    let home = pair.dir.join("unison-home");
    fsops::mkdir(&home)?;
    let mut cmd = Command::new(bin);
    cmd.arg(&pair.left)
        .arg(&pair.right)
        .args(["-batch", "-auto", "-times", "-perms", "0", "-ui", "text"])
        .env("UNISON", &home)
        .env("HOME", &home);
    let t = procs::run_timed(&mut cmd, "unison", &pair.dir.join("unison.log"), RUN_LIMIT)?;
    check_into_notes("unison", pair, notes)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_in_sync_line() {
        let log = "2026-11-21T09:59:43.770105Z  INFO scanned both replicas left=101000 \
                   right=0 ms=195\n\
                   2026-11-21T09:59:50.144878Z  INFO in sync copied_to_left=0 \
                   copied_to_right=100000 conflicts=0\n";
        assert_eq!(in_sync_counts(log), Some((0, 100_000)));
        let scan = log.lines().find_map(|l| field(l, "ms"));
        assert_eq!(scan, Some(195));
        assert_eq!(in_sync_counts("nothing here\n"), None);
    }
}
