//! File-system helpers: the temp root and per-run directory pairs (removed on
//! drop), content generation, bounded polling, and tree snapshots.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use twinsync_testkit::tree::{self, Walk};
pub use twinsync_testkit::wait::Wait;
use twinsync_testkit::wait::{self, Stopped};

use crate::error::{interrupted, io_ctx, Failure, Res};

/// `/tmp/twinsync-bench-<pid>/`, removed with everything in it on drop
/// (unless kept, for looking at the logs afterwards).
pub struct TempRoot {
    path: PathBuf,
    keep: bool,
}

impl TempRoot {
    /// Create a fresh, empty temp root; `keep` leaves it (and every pair
    /// in it) in place at the end.
    pub fn create(keep: bool) -> Res<Self> {
        let path = std::env::temp_dir().join(format!("twinsync-bench-{}", std::process::id()));
        if path.exists() {
            io_ctx(fs::remove_dir_all(&path), path.display())?;
        }
        io_ctx(fs::create_dir_all(&path), path.display())?;
        // Absolute and free of symlinks: the ssh scenarios name the right
        // root by this path on the "remote" side.
        let path = io_ctx(path.canonicalize(), path.display())?;
        Ok(TempRoot { path, keep })
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh `NAME/{L,R}` pair under the root.
    pub fn pair(&self, name: &str) -> Res<Pair> {
        let dir = self.path.join(name);
        let left = dir.join("L");
        let right = dir.join("R");
        for d in [&left, &right] {
            io_ctx(fs::create_dir_all(d), d.display())?;
        }
        Ok(Pair {
            dir,
            left,
            right,
            keep: self.keep,
        })
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Two replica roots (`left`, `right`) and a place for logs and configs
/// (`dir`); the whole `dir` is removed on drop unless kept.
pub struct Pair {
    pub dir: PathBuf,
    pub left: PathBuf,
    pub right: PathBuf,
    keep: bool,
}

impl Drop for Pair {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Deterministic, incompressible-looking bytes (xorshift64*), so that no
/// tool can shortcut the copy and every file differs.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write a whole file, with the path in the error.
pub fn write(path: &Path, bytes: &[u8]) -> Res<()> {
    io_ctx(fs::write(path, bytes), path.display())
}

/// Create a directory, with the path in the error.
pub fn mkdir(path: &Path) -> Res<()> {
    io_ctx(fs::create_dir(path), path.display())
}

/// Whether `path` exists with exactly `expected` as content.
pub fn has_content(path: &Path, expected: &[u8]) -> Res<bool> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes == expected),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::Other(format!("{}: {e}", path.display()))),
    }
}

/// Whether anything (even a dangling symlink) exists at `path`.
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Regular files directly in `dir`: name → (size, inode). A missing `dir`
/// is empty.
pub fn list_files(dir: &Path) -> Res<BTreeMap<String, (u64, u64)>> {
    let mut out = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Failure::Other(format!("{}: {e}", dir.display()))),
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        // Entries can vanish between readdir and stat (temp files): skip.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            out.insert(name, (meta.len(), meta.ino()));
        }
    }
    Ok(out)
}

/// Count the `(name, size)` pairs of `want` present in `dir` with that size.
pub fn count_present(dir: &Path, want: &[(String, u64)]) -> Res<usize> {
    let have = list_files(dir)?;
    Ok(want
        .iter()
        .filter(|(name, size)| have.get(name).is_some_and(|(s, _)| s == size))
        .count())
}

/// Poll `done` every `w.every` until it says yes; returns the time since
/// `w.since`. Ctrl-C ends the wait; on timeout the error text comes from
/// `on_timeout` (called once, so it can describe what is still missing).
pub fn poll_until(
    w: Wait,
    mut done: impl FnMut() -> Res<bool>,
    on_timeout: impl FnOnce() -> String,
) -> Res<Duration> {
    let polled = wait::poll_until(w, || match done()? {
        false if interrupted() => Err(Failure::Interrupted),
        yes => Ok(yes),
    });
    match polled {
        Ok(took) => Ok(took),
        Err(Stopped::Failed(f)) => Err(f),
        Err(Stopped::TimedOut) => Err(Failure::Timeout(on_timeout())),
    }
}

/// What a tree entry is, for comparing two replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(u64),
    Link(PathBuf),
    Other,
}

/// Every entry under `root` (relative path → kind), skipping the root's
/// `.twinsync/`. Entries vanishing mid-walk are skipped.
pub fn snapshot(root: &Path) -> Res<BTreeMap<PathBuf, Kind>> {
    let how = Walk {
        skip_state: true,
        strict: true,
    };
    let tree = tree::walk(root, how, |p, md| {
        Some(if md.is_dir() {
            Kind::Dir
        } else if md.is_file() {
            Kind::File(md.len())
        } else if md.file_type().is_symlink() {
            Kind::Link(fs::read_link(p).unwrap_or_default())
        } else {
            Kind::Other
        })
    })
    .map_err(|e| Failure::Other(e.to_string()))?;
    Ok(tree
        .into_iter()
        .map(|(rel, kind)| (PathBuf::from(std::ffi::OsString::from_vec(rel)), kind))
        .collect())
}

/// Differences between two snapshots, one line each (at most `max`), plus
/// the total count.
pub fn diff(
    a: &BTreeMap<PathBuf, Kind>,
    b: &BTreeMap<PathBuf, Kind>,
    max: usize,
) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut total = 0;
    let mut note = |line: String| {
        total += 1;
        if lines.len() < max {
            lines.push(line);
        }
    };
    for (path, ka) in a {
        match b.get(path) {
            None => note(format!(
                "{}: {ka:?} only on the source side",
                path.display()
            )),
            Some(kb) if kb != ka => note(format!("{}: {ka:?} vs {kb:?}", path.display())),
            Some(_) => {}
        }
    }
    for (path, kb) in b {
        if !a.contains_key(path) {
            note(format!(
                "{}: {kb:?} only on the destination side",
                path.display()
            ));
        }
    }
    (lines, total)
}

/// Regular files present on both sides (per `a`/`b` snapshots, same size)
/// whose bytes differ: one line each (at most `max`), plus the total count.
pub fn content_diff(
    root_a: &Path,
    root_b: &Path,
    a: &BTreeMap<PathBuf, Kind>,
    b: &BTreeMap<PathBuf, Kind>,
    max: usize,
) -> Res<(Vec<String>, usize)> {
    let mut lines = Vec::new();
    let mut total = 0;
    for (path, ka) in a {
        if !matches!(ka, Kind::File(_)) || b.get(path) != Some(ka) {
            continue;
        }
        let read = |root: &Path| match fs::read(root.join(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            // Gone in between: the tree comparison reports such changes.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::Other(format!(
                "{}: {e}",
                root.join(path).display()
            ))),
        };
        if let (Some(x), Some(y)) = (read(root_a)?, read(root_b)?) {
            if x != y {
                total += 1;
                if lines.len() < max {
                    lines.push(format!("{}: same size, different content", path.display()));
                }
            }
        }
    }
    Ok((lines, total))
}

/// A generated tree: `dirs` directories `dNNNNN`, each with `per_dir`
/// files `fNNNNNNN` (numbered across the whole tree).
#[derive(Debug, Clone, Copy)]
pub struct TreeSpec {
    pub dirs: usize,
    pub per_dir: usize,
    /// Files of 1–200 pseudo-random bytes when set, else empty.
    pub content: bool,
    /// Give every file and directory (the root too) this mtime, seconds
    /// since the epoch, so that two trees made one after the other are
    /// identical.
    pub mtime: Option<u64>,
}

impl TreeSpec {
    pub fn files(&self) -> usize {
        self.dirs * self.per_dir
    }

    /// The relative path of file number `i`.
    pub fn file_path(&self, i: usize) -> PathBuf {
        let d = i / self.per_dir.max(1);
        PathBuf::from(format!("d{d:05}")).join(format!("f{i:07}"))
    }

    /// The size of file number `i`.
    pub fn size(&self, i: usize) -> usize {
        if !self.content {
            return 0;
        }
        // splitmix64's finaliser: sizes spread evenly over 1..=200.
        let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        1 + (z % 200) as usize
    }

    fn times(&self) -> Option<fs::FileTimes> {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(self.mtime?);
        Some(fs::FileTimes::new().set_modified(t).set_accessed(t))
    }
}

/// Create the tree `spec` describes in the existing, empty `root`, with a
/// few threads; returns how long it took.
pub fn make_tree(root: &Path, spec: &TreeSpec) -> Res<Duration> {
    let since = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let results: Vec<Res<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || make_dirs(root, spec, t, threads)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Failure::Other("tree generator panicked".into())))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    set_times(root, spec)?;
    Ok(since.elapsed())
}

/// The directories `first, first + step, …` of `spec` under `root`.
fn make_dirs(root: &Path, spec: &TreeSpec, first: usize, step: usize) -> Res<()> {
    use std::io::Write as _;
    let times = spec.times();
    for d in (first..spec.dirs).step_by(step) {
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        let first_file = d * spec.per_dir;
        let dir = root.join(spec.file_path(first_file).parent().unwrap_or(Path::new("")));
        mkdir(&dir)?;
        for i in first_file..first_file + spec.per_dir {
            let path = root.join(spec.file_path(i));
            let mut f = io_ctx(fs::File::create(&path), path.display())?;
            let size = spec.size(i);
            if size > 0 {
                io_ctx(
                    f.write_all(&pseudo_random(i as u64 + 1, size)),
                    path.display(),
                )?;
            }
            if let Some(t) = times {
                io_ctx(f.set_times(t), path.display())?;
            }
        }
        set_times(&dir, spec)?;
    }
    Ok(())
}

/// Give directory `dir` the mtime of `spec`, if it sets one.
fn set_times(dir: &Path, spec: &TreeSpec) -> Res<()> {
    if let Some(t) = spec.times() {
        let f = io_ctx(fs::File::open(dir), dir.display())?;
        io_ctx(f.set_times(t), dir.display())?;
    }
    Ok(())
}

/// How a copy compares with its source (see [`check_tree`]).
#[derive(Debug, Clone, Default)]
pub struct TreeCheck {
    /// Entries in the source (without `.twinsync/`).
    pub entries: usize,
    /// Entries missing, extra, or of another type or size.
    pub diffs: usize,
    /// Files whose bytes and mtime (whole seconds) were compared.
    pub sampled: usize,
    pub content_diffs: usize,
    pub mtime_diffs: usize,
    /// The first few differences, one line each.
    pub lines: Vec<String>,
}

impl TreeCheck {
    pub fn matches(&self) -> bool {
        self.diffs == 0 && self.content_diffs == 0 && self.mtime_diffs == 0
    }

    /// "identical (…)" or what differs.
    pub fn summary(&self) -> String {
        if self.matches() {
            return format!(
                "identical ({} entries; {} files' bytes and mtimes compared)",
                self.entries, self.sampled
            );
        }
        format!(
            "{} entries missing/extra/different, {} of {} sampled files with other bytes, \
             {} with another mtime: {}",
            self.diffs,
            self.content_diffs,
            self.sampled,
            self.mtime_diffs,
            self.lines.join("; ")
        )
    }
}

/// Compare `dst` with `src` (both without `.twinsync/`): every entry's
/// name, type and size, then the bytes and mtime (to the second) of about
/// `sample` files spread over the tree.
pub fn check_tree(src: &Path, dst: &Path, sample: usize) -> Res<TreeCheck> {
    let (a, b) = (snapshot(src)?, snapshot(dst)?);
    let (mut lines, diffs) = diff(&a, &b, 5);
    let files: Vec<&PathBuf> = a
        .iter()
        .filter(|(p, k)| matches!(k, Kind::File(_)) && b.get(*p) == Some(k))
        .map(|(p, _)| p)
        .collect();
    let step = (files.len() / sample.max(1)).max(1);
    let mut check = TreeCheck {
        entries: a.len(),
        diffs,
        ..TreeCheck::default()
    };
    for rel in files.iter().step_by(step).take(sample) {
        let (x, y) = (src.join(rel), dst.join(rel));
        check.sampled += 1;
        let bytes = |p: &Path| io_ctx(fs::read(p), p.display());
        if bytes(&x)? != bytes(&y)? {
            check.content_diffs += 1;
            if lines.len() < 8 {
                lines.push(format!("{}: different content", rel.display()));
            }
        }
        let mtime = |p: &Path| io_ctx(fs::symlink_metadata(p), p.display()).map(|m| m.mtime());
        let (mx, my) = (mtime(&x)?, mtime(&y)?);
        if mx != my {
            check.mtime_diffs += 1;
            if lines.len() < 8 {
                lines.push(format!("{}: mtime {mx} vs {my}", rel.display()));
            }
        }
    }
    check.lines = lines;
    Ok(check)
}

/// The type of the file system holding `path` ("tmpfs", "ext4/3/2", …, or
/// the magic number), for the notes: timings on a disk depend on its
/// writeback, on tmpfs they do not.
pub fn fs_type(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "?".into();
    };
    // SAFETY: an all-zero statfs is a valid value; statfs only writes it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "?".into();
    }
    let magic = st.f_type as u64;
    match magic {
        0x0102_1994 => "tmpfs".into(),
        0xEF53 => "ext4/3/2".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        other => format!("fs magic {other:#x}"),
    }
}
