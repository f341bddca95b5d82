//! One randomized run: a seeded schedule of file operations on both
//! replicas of a live pair (private subtrees with an exact model, shared
//! paths hammered from both sides at once), optionally with kills of the
//! brain, an agent or the ssh link; then a bounded wait for the pair to
//! settle with equal trees, and the invariants.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;

use crate::harness::{self, Brain, Entry, Stopped, Tree};
use crate::sshd::Sshd;

/// How a run is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Local,
    Ssh,
    LocalKills,
    SshKills,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Local, Mode::Ssh, Mode::LocalKills, Mode::SshKills];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Ssh => "ssh",
            Mode::LocalKills => "local+kills",
            Mode::SshKills => "ssh+kills",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    fn ssh(self) -> bool {
        matches!(self, Mode::Ssh | Mode::SshKills)
    }

    fn kills(self) -> bool {
        matches!(self, Mode::LocalKills | Mode::SshKills)
    }
}

/// Knobs of a run (the campaign uses the defaults; regressions narrow them).
#[derive(Clone, Copy, Debug, Default)]
pub struct Knobs {
    /// Shared paths get only plain writes (no deletes, renames, ties).
    pub gentle_shared: bool,
}

/// The one-line command that replays a run.
pub fn replay_command(seed: u64, mode: Mode) -> String {
    format!(
        "CAMPAIGN_SEED={seed} CAMPAIGN_MODE={} cargo test -p twinsync --test campaign -- replay --nocapture",
        mode.name()
    )
}

/// The fixed mtime of "same length, same mtime" overwrites.
fn fixed_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

/// A brain that exited after our schedule killed one of its agents (it
/// may: the agent's link is lost) is restarted, once per kill; any other
/// exit is returned.
fn restart_if_ours(
    brain: &mut Brain,
    may_restart: &mut bool,
    log: &Log,
) -> Result<(), std::process::ExitStatus> {
    let Some(st) = brain.exited() else {
        return Ok(());
    };
    if !std::mem::take(may_restart) {
        return Err(st);
    }
    log.push(
        "run",
        format!("brain exited with {st} after the agent kill; restarted"),
    );
    brain.spawn();
    Ok(())
}

/// The record of a run's operations, shared by the threads.
#[derive(Clone)]
struct Log {
    start: Instant,
    ops: Arc<Mutex<Vec<String>>>,
}

impl Log {
    fn push(&self, who: &str, what: impl AsRef<str>) {
        let ms = self.start.elapsed().as_millis();
        self.ops
            .lock()
            .unwrap()
            .push(format!("{ms:>6} ms {who}: {}", what.as_ref()));
    }

    fn last(&self, n: usize) -> String {
        let ops = self.ops.lock().unwrap();
        let from = ops.len().saturating_sub(n);
        ops[from..].join("\n")
    }

    /// Every operation that names one of the (first few) paths quoted in
    /// `text`, for a failure report.
    fn history_of(&self, text: &str) -> String {
        let mut paths: Vec<&str> = Vec::new();
        for w in text.split(|c: char| c.is_whitespace() || c == ':' || c == '"') {
            let is_path = ["priv-L/", "priv-R/", "shared/"]
                .iter()
                .any(|p| w.starts_with(p));
            if is_path && !paths.contains(&w) && paths.len() < 6 {
                paths.push(w);
            }
        }
        if paths.is_empty() {
            return String::new();
        }
        let ops = self.ops.lock().unwrap();
        let hits: Vec<&String> = ops
            .iter()
            .filter(|o| {
                paths.iter().any(|p| {
                    o.contains(p) || {
                        // and the parents: a directory rename or rm -r
                        let mut q = *p;
                        let mut hit = false;
                        while let Some(i) = q.rfind('/') {
                            q = &q[..i];
                            if q.contains('/') && (o.contains(&format!("{q} ")) || o.ends_with(q)) {
                                hit = true;
                            }
                        }
                        hit
                    }
                })
            })
            .collect();
        let from = hits.len().saturating_sub(40);
        format!(
            "--- operations on {} (and their parents) ---\n{}\n",
            paths.join(", "),
            hits[from..]
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    fn len(&self) -> usize {
        self.ops.lock().unwrap().len()
    }
}

/// A model entry of a private subtree.
#[derive(Clone, Debug, PartialEq, Eq)]
enum MEntry {
    File { mode: u32, data: Vec<u8> },
    Dir { mode: u32 },
    Link { target: Vec<u8> },
}

impl MEntry {
    fn matches(&self, e: &Entry) -> bool {
        match (self, e) {
            (
                MEntry::File { mode, data },
                Entry::File {
                    mode: m, data: d, ..
                },
            ) => mode == m && data == d,
            (MEntry::Dir { mode }, Entry::Dir { mode: m }) => mode == m,
            (MEntry::Link { target }, Entry::Link { target: t }) => target == t,
            _ => false,
        }
    }
}

/// One side's private subtree (`priv-L` or `priv-R`) and its exact model.
struct Private {
    root: PathBuf,
    top: String,
    model: BTreeMap<String, MEntry>,
    next: u64,
}

/// What happened to a shared path, in the global order of `seq`.
#[derive(Clone, Debug)]
struct SharedOp {
    side: usize,
    path: String,
    /// Taken before the operation started.
    start: u64,
    /// Taken after it finished.
    end: u64,
    /// The content it left there, for a write; None for a destructive op.
    wrote: Option<Vec<u8>>,
    /// For a rename away from `path`: where the entry went.
    moved_to: Option<String>,
}

/// The shared paths and the record of what each side did to them.
struct Shared {
    names: Vec<String>,
    seq: AtomicU64,
    ops: Mutex<Vec<SharedOp>>,
}

const SHARED_DIR_FILE: &str = "shared/dir/x";

fn random_bytes(rng: &mut XorShiftRng, len: usize, tag: &str) -> Vec<u8> {
    // Printable, tagged (side and a counter) so a diff says whose it is.
    let mut v = tag.as_bytes().to_vec();
    while v.len() < len {
        v.push(b'a' + rng.random_range(0..26u8));
    }
    v.truncate(len.max(1));
    v
}

fn content_len(rng: &mut XorShiftRng) -> usize {
    match rng.random_range(0..100) {
        0 => rng.random_range(1_100_000..1_300_000), // beyond the inline limit: rsync
        1..=9 => 0,
        10..=20 => rng.random_range(4096..70_000),
        _ => rng.random_range(1..3000),
    }
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(p)
        .map(|m| m.mode() & 0o7777)
        .unwrap_or(0)
}

impl Private {
    fn new(root: &Path, top: &str) -> Private {
        let mut p = Private {
            root: root.to_path_buf(),
            top: top.to_string(),
            model: BTreeMap::new(),
            next: 0,
        };
        fs::create_dir_all(root.join(top)).unwrap();
        p.model.insert(
            top.into(),
            MEntry::Dir {
                mode: mode_of(&root.join(top)),
            },
        );
        p
    }

    fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn pick(&self, rng: &mut XorShiftRng, f: impl Fn(&str, &MEntry) -> bool) -> Option<String> {
        let c: Vec<&String> = self
            .model
            .iter()
            .filter(|(k, v)| f(k, v))
            .map(|(k, _)| k)
            .collect();
        if c.is_empty() {
            None
        } else {
            Some(c[rng.random_range(0..c.len())].clone())
        }
    }

    fn dirs(&self, rng: &mut XorShiftRng) -> String {
        self.pick(rng, |_, v| matches!(v, MEntry::Dir { .. }))
            .unwrap()
    }

    /// Move every model key at or below `from` to `to`.
    fn model_move(&mut self, from: &str, to: &str) {
        let below = format!("{from}/");
        let keys: Vec<String> = self
            .model
            .keys()
            .filter(|k| *k == from || k.starts_with(&below))
            .cloned()
            .collect();
        // A rename over an existing entry replaces it (and, for a directory,
        // only an empty one can be replaced).
        let tbelow = format!("{to}/");
        self.model
            .retain(|k, _| !(k == to || k.starts_with(&tbelow)));
        for k in keys {
            let v = self.model.remove(&k).unwrap();
            self.model.insert(format!("{to}{}", &k[from.len()..]), v);
        }
    }

    fn model_remove(&mut self, at: &str) {
        let below = format!("{at}/");
        self.model
            .retain(|k, _| !(k == at || k.starts_with(&below)));
    }

    /// One random operation on the subtree; returns its description.
    fn op(&mut self, rng: &mut XorShiftRng, tag: &str) -> String {
        let big = self.model.len() > 120;
        let w = [
            if big { 5 } else { 25 }, // create file
            15,                       // overwrite
            if big { 20 } else { 8 }, // delete file/link
            12,                       // rename file/link
            5,                        // rename dir
            if big { 2 } else { 8 },  // mkdir
            if big { 6 } else { 2 },  // rm -r
            8,                        // chmod
            5,                        // symlink
        ];
        let total: u32 = w.iter().sum();
        let mut x = rng.random_range(0..total);
        let mut kind = 0;
        for (i, wi) in w.iter().enumerate() {
            if x < *wi {
                kind = i;
                break;
            }
            x -= wi;
        }
        let top = self.top.clone();
        match kind {
            0 => {
                let d = self.dirs(rng);
                let name = self.fresh("f");
                let rel = format!("{d}/{name}");
                let len = content_len(rng);
                let data = random_bytes(rng, len, &format!("{tag}{}:", self.next));
                match fs::write(self.abs(&rel), &data) {
                    Ok(()) => {
                        let mode = mode_of(&self.abs(&rel));
                        self.model.insert(
                            rel.clone(),
                            MEntry::File {
                                mode,
                                data: data.clone(),
                            },
                        );
                        format!("create {rel} len={}", data.len())
                    }
                    Err(e) => panic!("private create {rel}: {e}"),
                }
            }
            1 => {
                let Some(rel) = self.pick(rng, |_, v| matches!(v, MEntry::File { .. })) else {
                    return "overwrite: no file".into();
                };
                let MEntry::File { mode, data: old } = self.model[&rel].clone() else {
                    unreachable!()
                };
                let len = if rng.random_bool(0.5) {
                    old.len()
                } else {
                    content_len(rng)
                };
                self.next += 1;
                let data = random_bytes(rng, len, &format!("{tag}{}:", self.next));
                fs::write(self.abs(&rel), &data)
                    .unwrap_or_else(|e| panic!("private overwrite {rel}: {e}"));
                self.model.insert(
                    rel.clone(),
                    MEntry::File {
                        mode,
                        data: data.clone(),
                    },
                );
                format!("overwrite {rel} len={} (was {})", data.len(), old.len())
            }
            2 => {
                let Some(rel) = self.pick(rng, |_, v| !matches!(v, MEntry::Dir { .. })) else {
                    return "delete: no file".into();
                };
                fs::remove_file(self.abs(&rel))
                    .unwrap_or_else(|e| panic!("private delete {rel}: {e}"));
                self.model_remove(&rel);
                format!("delete {rel}")
            }
            3 => {
                let Some(from) = self.pick(rng, |_, v| !matches!(v, MEntry::Dir { .. })) else {
                    return "rename: no file".into();
                };
                let to = match self.pick(rng, |k, v| !matches!(v, MEntry::Dir { .. }) && k != from)
                {
                    Some(t) if rng.random_bool(0.3) => t,
                    _ => {
                        let d = self.dirs(rng);
                        let n = self.fresh("r");
                        format!("{d}/{n}")
                    }
                };
                let replaced = self.model.contains_key(&to);
                fs::rename(self.abs(&from), self.abs(&to))
                    .unwrap_or_else(|e| panic!("private rename {from} -> {to}: {e}"));
                self.model_move(&from, &to);
                format!(
                    "rename {from} -> {to}{}",
                    if replaced { " (replacing)" } else { "" }
                )
            }
            4 => {
                let Some(from) = self.pick(rng, |k, v| matches!(v, MEntry::Dir { .. }) && k != top)
                else {
                    return "rename dir: no dir".into();
                };
                let inside = format!("{from}/");
                let Some(d) = self.pick(rng, |k, v| {
                    matches!(v, MEntry::Dir { .. }) && k != from && !k.starts_with(&inside)
                }) else {
                    return "rename dir: nowhere".into();
                };
                let n = self.fresh("D");
                let to = format!("{d}/{n}");
                fs::rename(self.abs(&from), self.abs(&to))
                    .unwrap_or_else(|e| panic!("private rename dir {from} -> {to}: {e}"));
                self.model_move(&from, &to);
                format!("rename dir {from} -> {to}")
            }
            5 => {
                let d = self.dirs(rng);
                let n = self.fresh("d");
                let mut rel = format!("{d}/{n}");
                let nested = rng.random_bool(0.3);
                if nested {
                    let n2 = self.fresh("d");
                    let inner = format!("{rel}/{n2}");
                    fs::create_dir_all(self.abs(&inner)).unwrap();
                    let m = mode_of(&self.abs(&rel));
                    self.model.insert(rel.clone(), MEntry::Dir { mode: m });
                    rel = inner;
                } else {
                    fs::create_dir(self.abs(&rel)).unwrap();
                }
                let m = mode_of(&self.abs(&rel));
                self.model.insert(rel.clone(), MEntry::Dir { mode: m });
                format!("mkdir{} {rel}", if nested { " -p" } else { "" })
            }
            6 => {
                let Some(rel) = self.pick(rng, |k, v| matches!(v, MEntry::Dir { .. }) && k != top)
                else {
                    return "rm -r: no dir".into();
                };
                fs::remove_dir_all(self.abs(&rel))
                    .unwrap_or_else(|e| panic!("private rm -r {rel}: {e}"));
                let n = self
                    .model
                    .keys()
                    .filter(|k| k.starts_with(&format!("{rel}/")))
                    .count();
                self.model_remove(&rel);
                format!("rm -r {rel} ({n} entries below)")
            }
            7 => {
                let Some(rel) = self.pick(rng, |_, v| !matches!(v, MEntry::Link { .. })) else {
                    return "chmod: nothing".into();
                };
                let is_dir = matches!(self.model[&rel], MEntry::Dir { .. });
                let modes: &[u32] = if is_dir {
                    &[0o755, 0o700, 0o750, 0o775]
                } else {
                    &[0o644, 0o600, 0o755, 0o640, 0o444]
                };
                let m = modes[rng.random_range(0..modes.len())];
                fs::set_permissions(self.abs(&rel), fs::Permissions::from_mode(m)).unwrap();
                match self.model.get_mut(&rel).unwrap() {
                    MEntry::File { mode, .. } | MEntry::Dir { mode } => *mode = m,
                    MEntry::Link { .. } => unreachable!(),
                }
                format!("chmod {m:o} {rel}")
            }
            _ => {
                let d = self.dirs(rng);
                let n = self.fresh("l");
                let rel = format!("{d}/{n}");
                let targets = ["f1", "../dangling", "sub/dir/file", "x y", "/etc/hostname"];
                let t = targets[rng.random_range(0..targets.len())];
                std::os::unix::fs::symlink(t, self.abs(&rel)).unwrap();
                self.model.insert(
                    rel.clone(),
                    MEntry::Link {
                        target: t.as_bytes().to_vec(),
                    },
                );
                format!("symlink {rel} -> {t}")
            }
        }
    }

    /// Differences between the model and `tree` below this subtree.
    fn check(&self, tree: &Tree, side: &str) -> Vec<String> {
        let mut out = Vec::new();
        let below = format!("{}/", self.top);
        for (k, v) in tree {
            let k = String::from_utf8_lossy(k).into_owned();
            if k != self.top && !k.starts_with(&below) {
                continue;
            }
            match self.model.get(&k) {
                None if k.contains(".conflict-") => out.push(format!(
                    "  {side} {k}: spurious conflict copy in a private subtree: {v}"
                )),
                None => out.push(format!("  {side} {k}: not in the model: {v}")),
                Some(m) if !m.matches(v) => {
                    out.push(format!("  {side} {k}: model {m:?} but found {v}"))
                }
                Some(_) => {}
            }
        }
        for (k, m) in &self.model {
            if !tree.contains_key(k.as_bytes()) {
                out.push(format!("  {side} {k}: missing (model: {})", describe(m)));
            }
        }
        out
    }
}

fn describe(m: &MEntry) -> String {
    match m {
        MEntry::File { mode, data } => format!(
            "file {mode:o} len={} {:?}",
            data.len(),
            harness::short(data)
        ),
        MEntry::Dir { mode } => format!("dir {mode:o}"),
        MEntry::Link { target } => format!("link -> {:?}", String::from_utf8_lossy(target)),
    }
}

/// One side's worker: its replica root, private subtree and rng.
struct Side {
    idx: usize,
    tag: &'static str,
    root: PathBuf,
    stage: PathBuf,
    private: Private,
    rng: XorShiftRng,
    counter: u64,
    /// Weights of the shared operations (mixed by seed).
    shared_w: [u32; 7],
}

impl Side {
    fn shared_op(&mut self, shared: &Shared, log: &Log, gentle: bool) {
        let rng = &mut self.rng;
        let names = &shared.names;
        let p = names[rng.random_range(0..names.len())].clone();
        let abs = self.root.join(&p);
        let kind = if gentle {
            0
        } else {
            let total: u32 = self.shared_w.iter().sum();
            let mut x = rng.random_range(0..total);
            let mut k = 0;
            for (i, w) in self.shared_w.iter().enumerate() {
                if x < *w {
                    k = i;
                    break;
                }
                x -= w;
            }
            k
        };
        self.counter += 1;
        let tag = format!("{}#{}:", self.tag, self.counter);
        let start = shared.seq.fetch_add(1, Ordering::SeqCst);
        let record_move = |path: &str, wrote: Option<Vec<u8>>, moved_to: Option<&str>| {
            let end = shared.seq.fetch_add(1, Ordering::SeqCst);
            shared.ops.lock().unwrap().push(SharedOp {
                side: self.idx,
                path: path.to_string(),
                start,
                end,
                wrote,
                moved_to: moved_to.map(str::to_string),
            });
        };
        let record = |path: &str, wrote: Option<Vec<u8>>| record_move(path, wrote, None);
        let cur = fs::symlink_metadata(&abs).ok().filter(|m| m.is_file());
        let desc = match kind {
            0 => {
                let len = rng.random_range(1..200);
                let data = random_bytes(rng, len, &tag);
                let _ = fs::create_dir_all(abs.parent().unwrap());
                match fs::write(&abs, &data) {
                    Ok(()) => {
                        record(&p, Some(data.clone()));
                        format!("write {p} {:?}", harness::short(&data))
                    }
                    Err(e) => format!("write {p}: failed ({e})"),
                }
            }
            1 => {
                let len = cur.as_ref().map_or(32, |m| m.len() as usize).max(tag.len());
                let data = random_bytes(rng, len, &tag);
                let _ = fs::create_dir_all(abs.parent().unwrap());
                match harness::write_with_mtime(&abs, &data, fixed_mtime()) {
                    Ok(()) => {
                        record(&p, Some(data.clone()));
                        format!(
                            "overwrite same-length, fixed mtime {p} {:?}",
                            harness::short(&data)
                        )
                    }
                    Err(e) => format!("overwrite same-length {p}: failed ({e})"),
                }
            }
            2 => {
                // cp -p style restore: same size and mtime, another inode,
                // renamed over the path.
                let len = cur.as_ref().map_or(32, |m| m.len() as usize).max(tag.len());
                let mtime = cur
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .unwrap_or_else(fixed_mtime);
                let data = random_bytes(rng, len, &tag);
                let staging = match rng.random_range(0..3) {
                    0 => self.stage.join(format!("restore-{}", self.counter)),
                    1 => self
                        .root
                        .join(format!("shared/.restore-{}-{}", self.tag, self.counter)),
                    _ => self
                        .root
                        .join(format!("shared/restore-{}-{}.tmp", self.tag, self.counter)),
                };
                let _ = fs::create_dir_all(abs.parent().unwrap());
                let r = harness::write_with_mtime(&staging, &data, mtime)
                    .and_then(|()| fs::rename(&staging, &abs));
                match r {
                    Ok(()) => {
                        record(&p, Some(data.clone()));
                        format!(
                            "cp -p restore over {p} via {} {:?}",
                            staging.file_name().unwrap().to_string_lossy(),
                            harness::short(&data)
                        )
                    }
                    Err(e) => {
                        let _ = fs::remove_file(&staging);
                        format!("cp -p restore {p}: failed ({e})")
                    }
                }
            }
            3 => match fs::remove_file(&abs) {
                Ok(()) => {
                    record(&p, None);
                    format!("delete {p}")
                }
                Err(e) => format!("delete {p}: failed ({e})"),
            },
            4 => {
                let q = names[rng.random_range(0..names.len())].clone();
                if q == p {
                    return;
                }
                let _ = fs::create_dir_all(self.root.join(&q).parent().unwrap());
                match fs::rename(&abs, self.root.join(&q)) {
                    Ok(()) => {
                        record_move(&p, None, Some(&q));
                        record(&q, None);
                        format!("rename {p} -> {q}")
                    }
                    Err(e) => format!("rename {p} -> {q}: failed ({e})"),
                }
            }
            5 => match fs::remove_dir_all(self.root.join("shared/dir")) {
                Ok(()) => {
                    record(SHARED_DIR_FILE, None);
                    "rm -r shared/dir".into()
                }
                Err(e) => format!("rm -r shared/dir: failed ({e})"),
            },
            _ => {
                let modes = [0o644, 0o600, 0o664];
                let m = modes[rng.random_range(0..modes.len())];
                match fs::set_permissions(&abs, fs::Permissions::from_mode(m)) {
                    Ok(()) => format!("chmod {m:o} {p}"),
                    Err(e) => format!("chmod {m:o} {p}: failed ({e})"),
                }
            }
        };
        log.push(self.tag, desc);
    }
}

/// What kills this run's schedule makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    Brain,
    Agent,
    SshClient,
}

/// The outcome of one run: Ok(duration) or the failure report.
pub fn run(seed: u64, mode: Mode, knobs: Knobs) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut rng = XorShiftRng::seed_from_u64(seed ^ 0x0077_696e_7379_6e63);
    let tmpfs = rng.random_bool(0.3);
    let dir = harness::temp_dir("twinsync-campaign-", tmpfs);
    let base = dir.path().to_path_buf();
    let left = base.join("left");
    let right = base.join("right");
    let stage = base.join("stage");
    for d in [&left, &right, &stage] {
        fs::create_dir(d).unwrap();
    }
    let log = Log {
        start: Instant::now(),
        ops: Arc::new(Mutex::new(Vec::new())),
    };
    log.push(
        "run",
        format!(
            "seed={seed} mode={} fs={} dir={}",
            mode.name(),
            if tmpfs { "tmpfs" } else { "disk" },
            base.display()
        ),
    );

    let n_shared = rng.random_range(3..=5);
    let mut names: Vec<String> = (0..n_shared - 1).map(|i| format!("shared/s{i}")).collect();
    names.push(SHARED_DIR_FILE.into());
    let shared = Shared {
        names,
        seq: AtomicU64::new(0),
        ops: Mutex::new(Vec::new()),
    };

    let shared_w = [
        rng.random_range(5..20),
        rng.random_range(0..15),
        rng.random_range(0..10),
        rng.random_range(0..6),
        rng.random_range(0..5),
        rng.random_range(0..3),
        rng.random_range(0..4),
    ];
    let mut sides =
        [("L", &left, "priv-L"), ("R", &right, "priv-R")].map(|(tag, root, top)| Side {
            idx: usize::from(tag == "R"),
            tag,
            root: root.clone(),
            stage: stage.clone(),
            private: Private::new(root, top),
            rng: XorShiftRng::seed_from_u64(rng.random()),
            counter: 0,
            shared_w,
        });
    fs::create_dir_all(left.join("shared")).unwrap();
    fs::create_dir_all(right.join("shared")).unwrap();

    // Some content before the first start (merged as a union).
    for s in &mut sides {
        for _ in 0..rng.random_range(0..15) {
            let d = s.private.op(&mut s.rng, s.tag);
            log.push(s.tag, format!("(before start) {d}"));
        }
    }

    let sshd = if mode.ssh() {
        Some(
            Sshd::start()
                .expect("sshd is required for the ssh modes (.ci/run installs openssh-server)"),
        )
    } else {
        None
    };
    let marker = format!("campaign-{seed}-{}-{}", mode.name(), std::process::id());
    // A restart after a kill merges what changed while the brain was down:
    // the random churn may delete most of a small tree then, which the
    // mass-deletion safety net (its own e2e test) would rightly refuse.
    let net: &[&str] = if mode.kills() {
        &["--max-delete", "100"]
    } else {
        &[]
    };
    let args = match &sshd {
        None => harness::args(net, &left, &right),
        Some(s) => {
            let mut a: Vec<OsString> = net.iter().map(OsString::from).collect();
            a.extend([
                "--ssh-config".into(),
                s.ssh_config.clone().into(),
                "--remote-path".into(),
                harness::bin().into(),
            ]);
            a.push(left.clone().into());
            a.push(format!("{}:{}", s.host, right.display()).into());
            a
        }
    };
    let mut brain = Brain::new(&base, args, &marker);

    let fail = |brain: &Brain, what: &str, details: &str| -> String {
        let kept = base.display();
        // Every operation, for a look at what the report leaves out.
        let _ = std::fs::write(base.join("operations.log"), log.last(usize::MAX) + "\n");
        format!(
            "\n=== campaign FAILED: seed={seed} mode={} fs={} ===\n{what}\n{details}\n{}--- last 50 operations (of {}) ---\n{}\n--- brain log tail ---\n{}\n--- run dir: {kept} (kept; every operation in operations.log) ---\nreplay: {}\n",
            mode.name(),
            if tmpfs { "tmpfs" } else { "disk" },
            log.history_of(&format!("{what}\n{details}")),
            log.len(),
            log.last(50),
            brain.log_tail(40),
            replay_command(seed, mode)
        )
    };
    // On failure the run dir is kept (forgotten, not deleted) for a look.
    let failed = |brain: &Brain, what: &str, details: &str| -> Result<Duration, String> {
        Err(fail(brain, what, details))
    };

    brain.spawn();
    log.push("run", "brain started");
    // Going live is not waited for: the churn starts at once in some seeds.
    if rng.random_bool(0.7) {
        let why = match brain.until_live(Duration::from_secs(30)) {
            Ok(()) => None,
            Err(Stopped::Failed(st)) => Some(format!("the brain exited with {st} at start-up")),
            Err(Stopped::TimedOut) => Some("the brain did not go live within 30 s".to_string()),
        };
        if let Some(why) = why {
            let r = failed(&brain, &why, "");
            std::mem::forget(dir);
            return r;
        }
        log.push("run", "brain live");
    }

    // The schedule: rounds of concurrent operations on both sides.
    let rounds = rng.random_range(3..=6);
    let kills: Vec<(usize, Kill, u64)> = if mode.kills() {
        let mut k = vec![(
            rng.random_range(0..rounds),
            Kill::Brain,
            rng.random_range(0..150),
        )];
        if rng.random_bool(0.5) {
            k.push((
                rng.random_range(0..rounds),
                Kill::Agent,
                rng.random_range(0..150),
            ));
        }
        if mode.ssh() && rng.random_bool(0.6) {
            k.push((
                rng.random_range(0..rounds),
                Kill::SshClient,
                rng.random_range(0..150),
            ));
        }
        k
    } else {
        Vec::new()
    };
    let mut may_restart = false;
    for round in 0..rounds {
        let ops = rng.random_range(10..40);
        let shared_share = rng.random_range(0.1..0.6);
        log.push("run", format!("round {round}: {ops} ops per side"));
        let my_kills: Vec<(Kill, u64)> = kills
            .iter()
            .filter(|k| k.0 == round)
            .map(|k| (k.1, k.2))
            .collect();
        let mut err = None;
        std::thread::scope(|sc| {
            for s in sides.iter_mut() {
                let (shared, log) = (&shared, &log);
                sc.spawn(move || {
                    for _ in 0..ops {
                        if s.rng.random_bool(shared_share) {
                            s.shared_op(shared, log, knobs.gentle_shared);
                        } else {
                            let d = s.private.op(&mut s.rng, s.tag);
                            log.push(s.tag, d);
                        }
                        let pause = s.rng.random_range(0..5);
                        std::thread::sleep(Duration::from_millis(pause));
                    }
                });
            }
            // Meanwhile, this round's kills.
            for (kill, delay) in my_kills {
                std::thread::sleep(Duration::from_millis(delay));
                match kill {
                    Kill::Brain => {
                        brain.kill9();
                        log.push("run", "kill -9 brain");
                        std::thread::sleep(Duration::from_millis(rng.random_range(0..200)));
                        brain.spawn();
                        log.push("run", "brain restarted (same args)");
                    }
                    Kill::Agent => {
                        let agents = brain.agent_pids();
                        if let Some(&pid) = agents.get(rng.random_range(0..agents.len().max(1))) {
                            // SAFETY: kill(2) has no memory-safety preconditions.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                            may_restart = true;
                            log.push("run", format!("kill -9 agent {pid}"));
                        } else {
                            log.push("run", "kill agent: no agent child found");
                        }
                    }
                    Kill::SshClient => {
                        let cut: Vec<i32> = harness::processes()
                            .into_iter()
                            .filter(|p| {
                                p.comm == "ssh"
                                    && p.env_has(format!("CAMPAIGN_MARKER={marker}").as_bytes())
                            })
                            .map(|p| p.pid)
                            .collect();
                        for &pid in &cut {
                            // SAFETY: as above.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                        log.push("run", format!("kill -9 ssh client {cut:?} (link cut)"));
                    }
                }
            }
        });
        // Between rounds: a brain our schedule brought down is restarted.
        if let Err(st) = restart_if_ours(&mut brain, &mut may_restart, &log) {
            err = Some(format!("the brain exited with {st} during the churn"));
        }
        if let Some(e) = err {
            let r = failed(&brain, &e, "");
            std::mem::forget(dir);
            return r;
        }
        let pause = rng.random_range(0..400);
        std::thread::sleep(Duration::from_millis(pause));
    }
    log.push(
        "run",
        "churn over; waiting for the pair to settle with equal trees",
    );

    // Converge: settled (live, empty queue) and equal trees, twice in a row.
    let bound = Duration::from_secs(if mode.kills() { 45 } else { 30 });
    let t = Instant::now();
    let mut ok_once = false;
    let (lt, rt) = loop {
        if let Err(st) = restart_if_ours(&mut brain, &mut may_restart, &log) {
            let r = failed(
                &brain,
                &format!("the brain exited with {st} while converging"),
                "",
            );
            std::mem::forget(dir);
            return r;
        }
        let settled = brain.settled();
        let (lt, rt) = (harness::tree(&left, true), harness::tree(&right, true));
        if settled && lt == rt {
            if ok_once {
                break (lt, rt);
            }
            ok_once = true;
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        ok_once = false;
        if t.elapsed() > bound {
            let st = brain
                .status()
                .map_or("(no status)".into(), |s| s.to_string());
            let r = failed(
                &brain,
                &format!("invariant 1: not converged within {bound:?} (settled by status: {settled}; status: {st})"),
                &format!("--- tree differences (L vs R) ---\n{}", harness::diff(&lt, &rt, 40).join("\n")),
            );
            std::mem::forget(dir);
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log.push("run", format!("converged after {:?}", t.elapsed()));
    let last_status = brain.status();

    let mut problems: Vec<String> = Vec::new();

    // 2 and 4: private subtrees hold exactly their models, on both sides (a
    // private path deleted last is absent: no deletion undone).
    for s in &sides {
        problems.extend(s.private.check(&lt, "L"));
        problems.extend(s.private.check(&rt, "R"));
    }
    if !problems.is_empty() {
        problems.insert(
            0,
            "invariants 2/4: private subtrees differ from their models:".into(),
        );
    }

    // 3: each side's last write to a shared path is still somewhere.
    let mut p3 = Vec::new();
    {
        let ops = shared.ops.lock().unwrap();
        let in_tree: Vec<&Vec<u8>> = lt
            .values()
            .chain(rt.values())
            .filter_map(|e| match e {
                Entry::File { data, .. } => Some(data),
                _ => None,
            })
            .collect();
        let mut kept = Vec::new();
        for root in [&left, &right] {
            kept.extend(harness::contents_below(&root.join(".twinsync/trash")));
            kept.extend(harness::contents_below(&root.join(".twinsync/conflicts")));
        }
        let mut last: HashMap<(usize, &str), &SharedOp> = HashMap::new();
        for op in ops.iter() {
            last.insert((op.side, op.path.as_str()), op);
        }
        for ((side, path), op) in &last {
            let Some(data) = &op.wrote else { continue };
            let other_after = ops
                .iter()
                .any(|o| o.side != *side && o.path == *path && o.end > op.start);
            let found_tree = in_tree.contains(&data);
            let found_kept = kept.iter().any(|d| d == data);
            // The other side renamed the path away after the write (maybe
            // after it arrived there: then it moved the write along), and
            // the destination was written, deleted or renamed onto since:
            // the write's fate was decided there, by a user who saw it.
            let moved_on = ops.iter().any(|o| {
                o.side != *side
                    && o.path == *path
                    && o.end > op.start
                    && o.moved_to.as_ref().is_some_and(|q| {
                        ops.iter()
                            .any(|x| x.path == *q && x.start > o.start && x.moved_to.is_none())
                    })
            });
            if moved_on && !found_tree && !found_kept {
                continue;
            }
            let who = if *side == 0 { "left" } else { "right" };
            if !(found_tree || (other_after && found_kept)) {
                p3.push(format!(
                    "  {who}'s last write to {path} {:?} (len {}) is {}{}",
                    harness::short(data),
                    data.len(),
                    if found_kept {
                        "only in .twinsync trash/conflicts"
                    } else {
                        "nowhere"
                    },
                    if other_after {
                        ""
                    } else {
                        ", though the other side did not touch that path after it"
                    }
                ));
            }
        }
    }
    if !p3.is_empty() {
        problems.push("invariant 3: a side's last write to a shared path was lost:".into());
        problems.extend(p3);
    }

    // 6: the background verification repaired nothing.
    // TODO(#10): once `status --json` always has `repairs` (being added),
    // make its absence a failure too; for now it is checked when present.
    if let Some(r) = last_status
        .as_ref()
        .and_then(|s| s.get("repairs"))
        .and_then(|v| v.as_u64())
    {
        if r != 0 {
            problems.push(format!(
                "invariant 6: status reports repairs = {r} (a divergence was repaired)"
            ));
        }
    }

    // 5: stopped by SIGTERM, nothing is left behind.
    match brain.stop() {
        Some(st) if st.success() => log.push("run", "brain stopped by SIGTERM (exit 0)"),
        Some(st) => problems.push(format!(
            "the brain exited with {st} on SIGTERM (expected 0)"
        )),
        None => problems.push("the brain did not exit within 15 s of SIGTERM".into()),
    }
    let port = sshd.as_ref().map(|s| s.port);
    let mut left_behind = Vec::new();
    let gone = harness::wait_for(Duration::from_secs(10), || {
        left_behind = harness::leftovers(&marker, &base, port);
        left_behind.is_empty()
    });
    if !gone {
        problems.push("invariant 5: processes left behind 10 s after the brain exited:".into());
        for p in &left_behind {
            problems.push(format!("  pid {} ({}): {}", p.pid, p.comm, p.cmd()));
            // We started them (through the brain): end them, by pid.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }

    if problems.is_empty() {
        Ok(t0.elapsed())
    } else {
        let first = problems[0].clone();
        let r = failed(
            &brain,
            &first,
            &problems[1..]
                .iter()
                .take(60)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
        );
        std::mem::forget(dir);
        r
    }
}

/// Seeds of a bounded campaign test: `CAMPAIGN_SEEDS` of them (else
/// `default`), from `CAMPAIGN_SEED_BASE` (else a fixed base, so CI is
/// reproducible; `CAMPAIGN_SEED_BASE=$RANDOM` gives fresh ones).
pub fn seeds(default: u64, salt: u64) -> Vec<u64> {
    let n = std::env::var("CAMPAIGN_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let base: u64 = std::env::var("CAMPAIGN_SEED_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    (0..n).map(|i| base * 100 + salt * 10 + i).collect()
}

/// Run every (seed, mode); panic listing every failure with its replay line.
pub fn campaign(runs: &[(u64, Mode)]) {
    let t = Instant::now();
    let mut failures = Vec::new();
    for &(seed, mode) in runs {
        match run(seed, mode, Knobs::default()) {
            Ok(d) => eprintln!("campaign: seed={seed} mode={} ok in {d:.1?}", mode.name()),
            Err(report) => {
                eprintln!("{report}");
                failures.push(format!(
                    "seed={seed} mode={}: {}",
                    mode.name(),
                    replay_command(seed, mode)
                ));
            }
        }
    }
    eprintln!(
        "campaign: {} runs in {:.1?}, {} failed",
        runs.len(),
        t.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} campaign runs failed (reports above); replay with:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}

/// The private-subtree model against the disk with no sync running: a
/// check of the campaign itself (its model must be exact for invariant 2).
pub fn model_self_check(seed: u64, steps: usize) {
    let dir = harness::temp_dir("twinsync-campaign-model-", false);
    let mut p = Private::new(dir.path(), "priv-L");
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let mut ops = Vec::new();
    for _ in 0..steps {
        ops.push(p.op(&mut rng, "L"));
    }
    let t = harness::tree(dir.path(), true);
    let problems = p.check(&t, "disk");
    assert!(
        problems.is_empty(),
        "the campaign's model differs from the disk with no sync at all:\n{}\nlast ops:\n{}",
        problems.join("\n"),
        ops[ops.len().saturating_sub(30)..].join("\n")
    );
}
