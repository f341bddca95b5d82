//! The measurements. Each takes a live tool on a fresh [`Pair`] and returns
//! its figures; every wait is bounded and ends in [`Failure::Timeout`].

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{interrupted, io_ctx, Failure, Res};
use crate::fsops::{self, Pair, TreeSpec, Wait};
use crate::procs::{self, Running};

/// Longest any single wait may take (readiness, a burst, a rename).
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Longest a tool may take to become live on an empty pair.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// Longest one latency sample may take before the series is abandoned.
const SAMPLE_LIMIT: Duration = Duration::from_secs(10);

/// Wait, at most `limit`, until a probe written in `from` shows up in
/// `to`; `dead` says why to give up early (the tool exited).
pub fn wait_probe_within(
    from: &Path,
    to: &Path,
    tag: &str,
    limit: Duration,
    mut dead: impl FnMut() -> Option<Failure>,
) -> Res<Duration> {
    let name = format!("bench-probe-{tag}");
    let content = format!("probe {tag}\n").into_bytes();
    let since = Instant::now();
    fsops::write(&from.join(&name), &content)?;
    let dest = to.join(&name);
    fsops::poll_until(
        Wait {
            since,
            limit,
            every: Duration::from_millis(5),
        },
        || match dead() {
            Some(f) => Err(f),
            None => fsops::has_content(&dest, &content),
        },
        || format!("probe {} never arrived", dest.display()),
    )
}

/// Wait until the tool on `pair` is live (both ways if `two_way`), each
/// way at most `limit` ([`READY_LIMIT`] if `None`).
pub fn wait_ready(pair: &Pair, two_way: bool, limit: Option<Duration>) -> Res<()> {
    let limit = limit.unwrap_or(READY_LIMIT);
    wait_probe_within(&pair.left, &pair.right, "lr", limit, || None)?;
    if two_way {
        wait_probe_within(&pair.right, &pair.left, "rl", limit, || None)?;
    }
    Ok(())
}

/// Arrival times of small files, in milliseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    pub samples_ms: Vec<f64>,
}

impl Latency {
    /// Nearest-rank percentile `q` in (0, 1].
    pub fn percentile(&self, q: f64) -> f64 {
        let mut s = self.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            return f64::NAN;
        }
        let rank = (q * s.len() as f64).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }
}

/// `n` samples: write a 16-byte file (new name each time) in `from`, time
/// until it is in `to` with that content. Stops at the first sample that
/// takes longer than [`SAMPLE_LIMIT`].
pub fn latency(from: &Path, to: &Path, n: usize, tag: &str) -> Res<Latency> {
    let mut samples_ms = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("lat-{tag}-{i:03}");
        let content = format!("{tag}:{i:012}\n").into_bytes();
        let dest = to.join(&name);
        let since = Instant::now();
        fsops::write(&from.join(&name), &content)?;
        let took = fsops::poll_until(
            Wait {
                since,
                limit: SAMPLE_LIMIT,
                every: Duration::from_micros(200),
            },
            || fsops::has_content(&dest, &content),
            || {
                format!(
                    "{} did not arrive within {} s ({i}/{n} samples done)",
                    dest.display(),
                    SAMPLE_LIMIT.as_secs()
                )
            },
        )?;
        samples_ms.push(took.as_secs_f64() * 1e3);
        sleep(Duration::from_millis(30));
    }
    Ok(Latency { samples_ms })
}

/// A burst of small files.
#[derive(Debug, Clone)]
pub struct Burst {
    pub files: usize,
    /// From the first write until all files were on the right.
    pub secs: f64,
    /// How long writing them on the left took.
    pub write_secs: f64,
}

/// The burst layout: `dirs` directories `bNN`, each with its files' names
/// and sizes.
fn burst_layout(files: usize, dirs: usize) -> Vec<(String, Vec<(String, u64)>)> {
    (0..dirs)
        .map(|d| {
            let names = (0..files / dirs)
                .map(|f| {
                    let i = d * (files / dirs) + f;
                    (format!("f{i:05}"), 16 + (i as u64 * 37) % 200)
                })
                .collect();
            (format!("b{d:02}"), names)
        })
        .collect()
}

/// Create `files` small files in `dirs` directories on the left as fast as
/// possible; time until all are on the right with the right sizes.
pub fn burst(pair: &Pair, files: usize, dirs: usize) -> Res<Burst> {
    let layout = burst_layout(files, dirs);
    let total: usize = layout.iter().map(|(_, f)| f.len()).sum();
    let since = Instant::now();
    for (dir, names) in &layout {
        let d = pair.left.join(dir);
        fsops::mkdir(&d)?;
        for (name, size) in names {
            fsops::write(&d.join(name), &fsops::pseudo_random(*size, *size as usize))?;
        }
    }
    let write_secs = since.elapsed().as_secs_f64();
    let count = || -> Res<usize> {
        layout.iter().try_fold(0, |acc, (dir, names)| {
            Ok(acc + fsops::count_present(&pair.right.join(dir), names)?)
        })
    };
    let took = fsops::poll_until(
        Wait {
            since,
            limit: WAIT_LIMIT,
            every: Duration::from_millis(20),
        },
        || Ok(count()? == total),
        || {
            let n = count().map_or_else(|e| e.to_string(), |n| n.to_string());
            format!("{n}/{total} files arrived on the right")
        },
    )?;
    Ok(Burst {
        files: total,
        secs: took.as_secs_f64(),
        write_secs,
    })
}

/// Renaming a big directory.
#[derive(Debug, Clone)]
pub struct Rename {
    /// Bytes in the directory's files.
    pub bytes: u64,
    pub files: usize,
    /// How long the first copy of the directory took to arrive.
    pub copy_secs: f64,
    /// The rename itself, or why it never showed on the right (timeout,
    /// [`Failure::Stuck`]); the copy's figure stays either way.
    pub renamed: Res<Renamed>,
}

/// The figures of a rename that showed on the right.
#[derive(Debug, Clone)]
pub struct Renamed {
    /// From `rename` until the right side matched.
    pub secs: f64,
    /// Checked files on the right whose inode survived the rename.
    pub inodes_kept: usize,
    /// Files on the right whose inode was checked: all of them, or a
    /// sample of a big tree.
    pub inodes_checked: usize,
    /// Over ssh: KiB that crossed the loopback interface for the rename
    /// (see [`loopback_kib`]); `None` when not measured.
    pub net_kib: Option<f64>,
}

/// What a rename's wait ([`wait_rename`]) gave, as a [`Rename::renamed`]:
/// the figures (inodes of `pinned` under `new_root`, loopback traffic since
/// `since` if counted from `lo_before`), or the timeout. Only an
/// interruption or an I/O error is returned as an error.
fn renamed(
    took: Res<Duration>,
    since: Instant,
    lo_before: Option<u64>,
    pinned: &[(PathBuf, fs::File)],
    new_root: &Path,
) -> Res<Res<Renamed>> {
    let took = match took {
        Ok(t) => t,
        Err(Failure::Interrupted) => return Err(Failure::Interrupted),
        Err(f) => return Ok(Err(f)),
    };
    let net_kib = match lo_before {
        Some(before) => loopback_kib(before, since)?,
        None => None,
    };
    Ok(Ok(Renamed {
        secs: took.as_secs_f64(),
        inodes_kept: inodes_kept(pinned, new_root)?,
        inodes_checked: pinned.len(),
        net_kib,
    }))
}

/// Bytes per file in the rename scenario (1 MiB).
const MIB: u64 = 1 << 20;

/// Fill `left/big` with `files` files of 1 MiB, wait for the copy, then
/// rename it to `big2` and time until the right has `big2` (all files) and
/// no `big`; count right-side inodes that survived. With `net`, also
/// measure the loopback traffic the rename caused.
pub fn rename(pair: &Pair, files: usize, net: bool) -> Res<Rename> {
    let want: Vec<(String, u64)> = (0..files).map(|i| (format!("blob{i:03}"), MIB)).collect();
    let (big, big2) = (pair.left.join("big"), pair.left.join("big2"));
    let (rbig, rbig2) = (pair.right.join("big"), pair.right.join("big2"));

    let since = Instant::now();
    fsops::mkdir(&big)?;
    for (i, (name, size)) in want.iter().enumerate() {
        fsops::write(
            &big.join(name),
            &fsops::pseudo_random(i as u64 + 1, *size as usize),
        )?;
    }
    let copy = wait_files(&rbig, &want, since, Duration::from_millis(20))?;
    // Let the tool finish whatever it does after the data lands (mtimes,
    // bookkeeping) so the rename is measured on a quiet pair.
    sleep(Duration::from_millis(500));
    // Hold the right-side files open: their inodes then cannot be freed and
    // recycled by a re-copy, so "same inode" really means "not copied".
    let names: Vec<PathBuf> = want.iter().map(|(n, _)| PathBuf::from(n)).collect();
    let pinned = pin_files(&rbig, &names)?;

    let lo_before = if net { lo_tx_bytes() } else { None };
    let since = Instant::now();
    io_ctx(fs::rename(&big, &big2), big.display())?;
    let took = wait_rename(
        since,
        &rbig,
        || Ok(fsops::count_present(&rbig2, &want)? == files),
        || Ok(true),
        || rename_progress(&rbig, &rbig2, &want),
    );
    Ok(Rename {
        bytes: files as u64 * MIB,
        files,
        copy_secs: copy.as_secs_f64(),
        renamed: renamed(took, since, lo_before, &pinned, &rbig2)?,
    })
}

/// How long the old name may stay on the right once the new one is
/// complete before the rename is called stuck ("never").
pub const STUCK_LIMIT: Duration = Duration::from_secs(10);
/// How often the full check of [`wait_rename`] runs while the old name is
/// still on the right.
const FULL_EVERY: Duration = Duration::from_secs(1);

/// Wait (every 200 µs, at most [`WAIT_LIMIT`]) until `old` is gone from
/// the right and the new name is complete: `quick` (run every poll) and
/// then `full` (run once `quick` holds) say so. Returns the time from
/// `since` to the start of the poll that saw it. If the new name stays
/// complete for [`STUCK_LIMIT`] while `old` is still there, gives up with
/// [`Failure::Stuck`] ("never (old dir left)"); a plain timeout otherwise.
/// `progress` describes the state for either.
fn wait_rename(
    since: Instant,
    old: &Path,
    mut quick: impl FnMut() -> Res<bool>,
    mut full: impl FnMut() -> Res<bool>,
    progress: impl Fn() -> String,
) -> Res<Duration> {
    let mut complete_since: Option<Instant> = None;
    let mut last_full: Option<Instant> = None;
    loop {
        let t = since.elapsed();
        let old_there = fsops::exists(old);
        if quick()? {
            if !old_there {
                if full()? {
                    return Ok(t);
                }
            } else if complete_since.is_none()
                && last_full.is_none_or(|l| l.elapsed() >= FULL_EVERY)
            {
                last_full = Some(Instant::now());
                if full()? {
                    complete_since = Some(Instant::now());
                }
            }
        } else {
            complete_since = None;
        }
        if let Some(c) = complete_since {
            if c.elapsed() >= STUCK_LIMIT && fsops::exists(old) {
                return Err(Failure::Stuck {
                    cell: "never (old dir left)",
                    detail: format!(
                        "{}; the new name was complete on the right {:.1} s after the \
                         rename, the old one still there {} s later (given up)",
                        progress(),
                        (c - since).as_secs_f64(),
                        STUCK_LIMIT.as_secs()
                    ),
                });
            }
        }
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        if since.elapsed() > WAIT_LIMIT {
            return Err(Failure::Timeout(format!(
                "{} s after the rename: {}",
                WAIT_LIMIT.as_secs(),
                progress()
            )));
        }
        sleep(Duration::from_micros(200));
    }
}

/// The tree of the rename100k scenario: 100 files of 1–200 bytes in each
/// of 1000 directories (100,000 files), or of 200 with `--quick`.
pub fn tree_spec(quick: bool) -> TreeSpec {
    TreeSpec {
        dirs: if quick { 200 } else { 1000 },
        per_dir: 100,
        content: true,
        mtime: None,
    }
}

/// The rename100k tree's name on both sides, before and after the rename.
const TREE: &str = "tree";
const TREE2: &str = "tree2";
/// Files of the tree whose inodes (and bytes) are checked after the rename.
pub const TREE_SAMPLE: usize = 500;
/// Longest the tool may take to copy the tree (started with it in place).
const TREE_COPY_LIMIT: Duration = Duration::from_secs(180);
/// Longest the tool may take to become live with the tree to copy first.
pub const TREE_READY_LIMIT: Duration = TREE_COPY_LIMIT;

/// Generate the rename100k tree in `left/tree`, before the tool starts:
/// it is copied by the tool's own first sync.
pub fn prepare_tree(pair: &Pair, spec: &TreeSpec) -> Res<()> {
    let root = pair.left.join(TREE);
    fsops::mkdir(&root)?;
    fsops::make_tree(&root, spec)?;
    Ok(())
}

/// The tree's files, directory by directory: (directory, [(name, size)]).
fn tree_layout(spec: &TreeSpec) -> Vec<(PathBuf, Vec<(String, u64)>)> {
    let mut out: Vec<(PathBuf, Vec<(String, u64)>)> = Vec::with_capacity(spec.dirs);
    for i in 0..spec.files() {
        let path = spec.file_path(i);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let entry = (name, spec.size(i) as u64);
        match out.last_mut() {
            Some((d, files)) if *d == dir => files.push(entry),
            _ => out.push((dir, vec![entry])),
        }
    }
    out
}

/// How many files of `layout` are under `root` with their size.
fn tree_present(root: &Path, layout: &[(PathBuf, Vec<(String, u64)>)]) -> Res<usize> {
    layout.iter().try_fold(0, |acc, (dir, files)| {
        Ok(acc + fsops::count_present(&root.join(dir), files)?)
    })
}

/// Whether `path` is a file of `size` bytes.
fn has_size(path: &Path, size: u64) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// The rename100k scenario, on a tool started (at `started`) with the tree
/// of `spec` in `left/tree`: wait until the right has all of it (not
/// timed), then rename `left/tree` to `left/tree2` and time until the right
/// has `tree2` with every file at its size (and [`TREE_SAMPLE`] files
/// spread over it with their bytes) and no `tree`; the sampled files'
/// inodes tell whether it was moved or copied. With `net`, also the
/// loopback traffic.
pub fn rename_tree(pair: &Pair, spec: &TreeSpec, started: Instant, net: bool) -> Res<Rename> {
    let files = spec.files();
    let layout = tree_layout(spec);
    let (old, new) = (pair.left.join(TREE), pair.left.join(TREE2));
    let (rold, rnew) = (pair.right.join(TREE), pair.right.join(TREE2));
    let copy = fsops::poll_until(
        Wait {
            since: started,
            limit: TREE_COPY_LIMIT,
            every: Duration::from_millis(250),
        },
        || Ok(tree_present(&rold, &layout)? == files),
        || {
            let n = tree_present(&rold, &layout).unwrap_or(0);
            format!("first copy: {n}/{files} files of the tree on the right")
        },
    )?;
    sleep(Duration::from_millis(500));
    let step = (files / TREE_SAMPLE).max(1);
    let sample: Vec<usize> = (0..files).step_by(step).take(TREE_SAMPLE).collect();
    let sample_paths: Vec<PathBuf> = sample.iter().map(|&i| spec.file_path(i)).collect();
    let pinned = pin_files(&rold, &sample_paths)?;
    let (first, last) = (0, files.saturating_sub(1));
    let (first_path, last_path) = (spec.file_path(first), spec.file_path(last));

    let lo_before = if net { lo_tx_bytes() } else { None };
    let since = Instant::now();
    io_ctx(fs::rename(&old, &new), old.display())?;
    let took = wait_rename(
        since,
        &rold,
        || {
            Ok(has_size(&rnew.join(&first_path), spec.size(first) as u64)
                && has_size(&rnew.join(&last_path), spec.size(last) as u64))
        },
        || {
            if tree_present(&rnew, &layout)? != files {
                return Ok(false);
            }
            for &i in &sample {
                let want = fsops::pseudo_random(i as u64 + 1, spec.size(i));
                if !fsops::has_content(&rnew.join(spec.file_path(i)), &want)? {
                    return Ok(false);
                }
            }
            Ok(true)
        },
        || {
            let n = tree_present(&rnew, &layout).unwrap_or(0);
            let o = tree_present(&rold, &layout).unwrap_or(0);
            format!(
                "right/{TREE} {} ({o} files), right/{TREE2} has {n}/{files} files",
                if fsops::exists(&rold) {
                    "still exists"
                } else {
                    "is gone"
                }
            )
        },
    );
    Ok(Rename {
        bytes: (0..files).map(|i| spec.size(i) as u64).sum(),
        files,
        copy_secs: copy.as_secs_f64(),
        renamed: renamed(took, since, lo_before, &pinned, &rnew)?,
    })
}

/// The loopback interface's transmit counter. On `lo` every packet is sent
/// once and received once, so this counts both directions of every local
/// connection (payload, ssh framing and TCP/IP headers).
pub fn lo_tx_bytes() -> Option<u64> {
    fs::read_to_string("/sys/class/net/lo/statistics/tx_bytes")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How long to keep counting after the rename was seen on the right, for
/// the traffic that trails it (acknowledgements, bookkeeping).
const NET_TAIL: Duration = Duration::from_millis(500);

/// KiB sent over `lo` since `since` (counter `before` then), after
/// [`NET_TAIL`] more, minus an idle baseline taken right after over a
/// window of the same length. Noisy: anything else using the loopback
/// counts too. `None` if the counter cannot be read.
pub fn loopback_kib(before: u64, since: Instant) -> Res<Option<f64>> {
    sleep(NET_TAIL);
    let Some(after) = lo_tx_bytes() else {
        return Ok(None);
    };
    let window = since.elapsed();
    let Some(base0) = lo_tx_bytes() else {
        return Ok(None);
    };
    let t = Instant::now();
    while t.elapsed() < window {
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        sleep(Duration::from_millis(20).min(window));
    }
    let Some(base1) = lo_tx_bytes() else {
        return Ok(None);
    };
    let busy = after.saturating_sub(before) as f64;
    let idle = base1.saturating_sub(base0) as f64 * window.as_secs_f64()
        / t.elapsed().as_secs_f64().max(1e-6);
    Ok(Some(((busy - idle) / 1024.0).max(0.0)))
}

/// Open the files `rels` (paths relative to `dir`).
fn pin_files(dir: &Path, rels: &[PathBuf]) -> Res<Vec<(PathBuf, fs::File)>> {
    rels.iter()
        .map(|rel| {
            let path = dir.join(rel);
            Ok((rel.clone(), io_ctx(fs::File::open(&path), path.display())?))
        })
        .collect()
}

/// Wait until `dir` holds every `(name, size)` of `want`.
fn wait_files(
    dir: &Path,
    want: &[(String, u64)],
    since: Instant,
    every: Duration,
) -> Res<Duration> {
    fsops::poll_until(
        Wait {
            since,
            limit: WAIT_LIMIT,
            every,
        },
        || Ok(fsops::count_present(dir, want)? == want.len()),
        || {
            let n = fsops::count_present(dir, want).unwrap_or(0);
            format!("{}: {n}/{} files arrived", dir.display(), want.len())
        },
    )
}

fn rename_progress(rbig: &Path, rbig2: &Path, want: &[(String, u64)]) -> String {
    let n = fsops::count_present(rbig2, want).unwrap_or(0);
    let left_in_big = fsops::list_files(rbig).map(|m| m.len()).unwrap_or(0);
    format!(
        "right/big {} ({left_in_big} files), right/big2 has {n}/{} files",
        if fsops::exists(rbig) {
            "still exists"
        } else {
            "is gone"
        },
        want.len()
    )
}

/// How many pinned files are still linked and are what `new_root` holds
/// under the same relative path.
fn inodes_kept(pinned: &[(PathBuf, fs::File)], new_root: &Path) -> Res<usize> {
    let mut kept = 0;
    for (rel, file) in pinned {
        let meta = io_ctx(file.metadata(), rel.display())?;
        let same = fs::symlink_metadata(new_root.join(rel)).is_ok_and(|m| m.ino() == meta.ino());
        if same && meta.nlink() > 0 {
            kept += 1;
        }
    }
    Ok(kept)
}

/// Wait (bounded) until the destination mirrors the source, ignoring
/// `.twinsync/`: same entries, same sizes, then the same bytes in every
/// file. Returns the differences still left after `limit`, if any.
pub fn settle_and_compare(pair: &Pair, limit: Duration) -> Res<Option<String>> {
    let since = Instant::now();
    loop {
        let (src, dst) = (fsops::snapshot(&pair.left)?, fsops::snapshot(&pair.right)?);
        let (mut lines, mut total) = fsops::diff(&src, &dst, 8);
        if total == 0 {
            (lines, total) = fsops::content_diff(&pair.left, &pair.right, &src, &dst, 8)?;
            if total == 0 {
                return Ok(None);
            }
        }
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        if since.elapsed() > limit {
            return Ok(Some(format!(
                "{total} difference(s) left → right after {} s: {}",
                limit.as_secs(),
                lines.join("; ")
            )));
        }
        sleep(Duration::from_millis(50));
    }
}

/// Lines of a tool's log that report trouble: twinsync's `WARN`/`ERROR`
/// records, lsyncd's `Error:` lines, clsync's `Error`/`Warning` lines. At most `max`, plus the total count.
pub fn log_trouble(log: &Path, max: usize) -> (Vec<String>, usize) {
    let text = fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains(" WARN ")
                || l.contains(" ERROR ")
                || l.contains("Error:")
                || l.starts_with("Error (")
                || l.starts_with("Warning")
        })
        .collect();
    let total = bad.len();
    let lines = bad
        .into_iter()
        .take(max)
        .map(|l| l.chars().take(300).collect())
        .collect();
    (lines, total)
}

/// Memory and idle CPU of a tool's long-lived processes.
#[derive(Debug, Clone)]
pub struct Resources {
    /// Peak RSS of the main process (twinsync brain, lsyncd), MiB.
    pub main_mib: f64,
    /// Peak RSS of each long-lived child (twinsync agents), MiB.
    pub children_mib: Vec<f64>,
    /// CPU used by those processes while nothing happens, % of one core.
    pub idle_cpu_pct: f64,
}

impl Resources {
    /// Main + children peak RSS, MiB.
    pub fn total_mib(&self) -> f64 {
        self.main_mib + self.children_mib.iter().sum::<f64>()
    }
}

/// Idle-CPU sampling window.
const IDLE_WINDOW: Duration = Duration::from_secs(2);

/// Peak RSS of the tool (and its `agent` children), and its CPU use over
/// [`IDLE_WINDOW`] of no activity.
pub fn resources(running: &mut Running) -> Res<Resources> {
    let main = running.pid();
    let children: Vec<u32> = procs::children_of(main)
        .into_iter()
        .filter(|&p| procs::cmdline(p).split(' ').any(|a| a == "agent"))
        .collect();
    let mut pids = vec![main];
    pids.extend(&children);
    let ticks = |pids: &[u32]| -> u64 { pids.iter().filter_map(|&p| procs::cpu_ticks(p)).sum() };
    sleep(Duration::from_millis(500));
    let (t0, start) = (ticks(&pids), Instant::now());
    sleep(IDLE_WINDOW);
    let (t1, elapsed) = (ticks(&pids), start.elapsed());
    if let Some(f) = running.exited() {
        return Err(f);
    }
    let rss = |p: u32| -> Res<f64> {
        procs::peak_rss_kib(p)
            .map(|k| k as f64 / 1024.0)
            .ok_or_else(|| Failure::Other(format!("no VmHWM for pid {p}")))
    };
    Ok(Resources {
        main_mib: rss(main)?,
        children_mib: children.iter().map(|&p| rss(p)).collect::<Res<_>>()?,
        idle_cpu_pct: t1.saturating_sub(t0) as f64
            / procs::clock_ticks_per_sec()
            / elapsed.as_secs_f64()
            * 100.0,
    })
}
