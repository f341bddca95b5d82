//! The `mixed` scenario: a build tree on a live pair, synced before the
//! clock starts: [`Mix::small`] object files of [`Mix::small_bytes`] in 20
//! directories and [`Mix::large`] archives of 1 MiB. Then, as fast as
//! possible, every object file is rewritten as a compiler does (a temp
//! file beside it, renamed over it) and [`Mix::appended`] bytes are
//! appended to each archive in 1 MiB writes; the time until the right has
//! every file at the left's length and mtime (then checked byte for byte).
//! twinsync beside lsyncd, each on a fresh pair.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{arrived, check_same, keep, write_random};
use crate::error::{io_ctx, Res};
use crate::fsops::{self, TempRoot, Wait};
use crate::procs::Tool;
use crate::scenarios;

/// The workload's sizes.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub small: usize,
    pub small_bytes: usize,
    pub large: usize,
    /// Appended to each large file.
    pub appended: u64,
}

/// The default: 2000 × 4 KiB rewritten, 4 × 64 MiB appended.
pub const MIX: Mix = Mix {
    small: 2000,
    small_bytes: 4 << 10,
    large: 4,
    appended: 64 << 20,
};

/// Directories the object files are spread over.
const DIRS: usize = 20;
/// Each archive's length before the workload.
const LARGE_START: u64 = 1 << 20;
/// The size of one append.
const APPEND: u64 = 1 << 20;
/// How long the first sync and the update may each take.
const LIMIT: Duration = Duration::from_secs(120);

/// One tool's run.
#[derive(Debug, Clone)]
pub struct MixedRun {
    /// How long writing the update on the left took.
    pub write_secs: f64,
    /// From the first write until the right had it all.
    pub secs: f64,
}

/// Everything the scenario measured.
#[derive(Debug)]
pub struct MixedBench {
    pub mix: Mix,
    pub twinsync: Res<MixedRun>,
    /// `None`: lsyncd not installed (the note says so).
    pub lsyncd: Option<Res<MixedRun>>,
    pub notes: Vec<String>,
}

/// Every file of the tree, relative to a root: object files, then archives.
fn files(mix: &Mix) -> Vec<PathBuf> {
    let objects = (0..mix.small).map(|i| PathBuf::from(format!("obj/d{:02}/f{i:05}.o", i % DIRS)));
    let archives = (0..mix.large).map(|i| PathBuf::from(format!("lib/big{i}.a")));
    objects.chain(archives).collect()
}

/// The tree before the workload, on `left`.
fn prepare(left: &Path, mix: &Mix) -> Res<()> {
    for d in 0..DIRS {
        let dir = left.join(format!("obj/d{d:02}"));
        io_ctx(fs::create_dir_all(&dir), dir.display())?;
    }
    fsops::mkdir(&left.join("lib"))?;
    for (i, rel) in files(mix).iter().enumerate() {
        let path = left.join(rel);
        if i < mix.small {
            fsops::write(&path, &fsops::pseudo_random(i as u64, mix.small_bytes))?;
        } else {
            let f = io_ctx(fs::File::create(&path), path.display())?;
            write_random(&f, &path, i as u64, 0, LARGE_START)?;
        }
    }
    Ok(())
}

/// The build: rewrite every object file through a temp file and a rename,
/// then append to the archives.
fn build(left: &Path, mix: &Mix) -> Res<()> {
    for (i, rel) in files(mix).iter().enumerate() {
        let path = left.join(rel);
        if i < mix.small {
            let tmp = path.with_extension("o.tmp");
            let data = fsops::pseudo_random((i as u64) << 32 | 1, mix.small_bytes);
            fsops::write(&tmp, &data)?;
            io_ctx(fs::rename(&tmp, &path), path.display())?;
        } else {
            let f = io_ctx(OpenOptions::new().append(true).open(&path), path.display())?;
            let mut done = 0;
            while done < mix.appended {
                let n = APPEND.min(mix.appended - done);
                write_random(&f, &path, (i as u64) << 40 | done, LARGE_START + done, n)?;
                done += n;
            }
        }
    }
    Ok(())
}

/// How many of `rels` have arrived on the right.
fn count_arrived(left: &Path, right: &Path, rels: &[PathBuf]) -> usize {
    rels.iter()
        .filter(|r| arrived(&left.join(r), &right.join(r)))
        .count()
}

/// Wait until every file is on the right; the time since `since`.
fn wait_all(left: &Path, right: &Path, rels: &[PathBuf], since: Instant) -> Res<Duration> {
    fsops::poll_until(
        Wait {
            since,
            limit: LIMIT,
            every: Duration::from_millis(5),
        },
        || Ok(count_arrived(left, right, rels) == rels.len()),
        || {
            let n = count_arrived(left, right, rels);
            format!("{n}/{} files caught up on the right", rels.len())
        },
    )
}

/// `tool` live on a fresh pair holding the tree; the build timed.
fn one(root: &TempRoot, tool: &Tool, mix: &Mix) -> Res<MixedRun> {
    let pair = root.pair(&format!("{}-mixed", tool.slug()))?;
    prepare(&pair.left, mix)?;
    let rels = files(mix);
    let mut running = tool.start(&pair)?;
    let r = (|| {
        scenarios::wait_ready(&pair, tool.two_way(), Some(LIMIT))?;
        wait_all(&pair.left, &pair.right, &rels, Instant::now())?;
        // The ready probes may have gone with a tool's first sync (lsyncd's
        // startup rsync): a probe written now goes by its live path.
        let live = || running.exited();
        scenarios::wait_probe_within(&pair.left, &pair.right, "live-lr", LIMIT, live)?;
        let since = Instant::now();
        build(&pair.left, mix)?;
        let write_secs = since.elapsed().as_secs_f64();
        let took = wait_all(&pair.left, &pair.right, &rels, since)?;
        for r in &rels {
            check_same(&pair.left.join(r), &pair.right.join(r))?;
        }
        Ok(MixedRun {
            write_secs,
            secs: took.as_secs_f64(),
        })
    })()
    .map_err(|f| running.explain(f));
    drop(running);
    r
}

/// twinsync, then lsyncd (`None`: not installed), both local.
pub fn run(root: &TempRoot, twinsync: &Tool, lsyncd: Option<&Tool>, mix: Mix) -> Res<MixedBench> {
    let mut notes = Vec::new();
    eprintln!("[bench] mixed: twinsync ...");
    let ours = keep(one(root, twinsync, &mix))?;
    let peer = match lsyncd {
        Some(t) => {
            eprintln!("[bench] mixed: lsyncd ...");
            Some(keep(one(root, t, &mix))?)
        }
        None => {
            notes.push("lsyncd not installed: no lsyncd figures".into());
            None
        }
    };
    Ok(MixedBench {
        mix,
        twinsync: ours,
        lsyncd: peer,
        notes,
    })
}
