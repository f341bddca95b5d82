//! The shared paths, hammered from both sides at once, and the record of
//! what each side did to them; each side's worker.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rand::RngExt;
use rand_xorshift::XorShiftRng;

use super::content::{fixed_mtime, random_bytes};
use super::log::Log;
use super::private::Private;
use crate::harness;

/// What happened to a shared path, in the global order of `seq`.
#[derive(Clone, Debug)]
pub(super) struct SharedOp {
    pub(super) side: usize,
    pub(super) path: String,
    /// Taken before the operation started.
    pub(super) start: u64,
    /// Taken after it finished.
    pub(super) end: u64,
    /// The content it left there, for a write; None for a destructive op.
    pub(super) wrote: Option<Vec<u8>>,
    /// For a rename away from `path`: where the entry went.
    pub(super) moved_to: Option<String>,
}

/// The shared paths and the record of what each side did to them.
pub(super) struct Shared {
    pub(super) names: Vec<String>,
    pub(super) seq: AtomicU64,
    pub(super) ops: Mutex<Vec<SharedOp>>,
}

pub(super) const SHARED_DIR_FILE: &str = "shared/dir/x";

/// One side's worker: its replica root, private subtree and rng.
pub(super) struct Side {
    pub(super) idx: usize,
    pub(super) tag: &'static str,
    pub(super) root: PathBuf,
    pub(super) stage: PathBuf,
    pub(super) private: Private,
    pub(super) rng: XorShiftRng,
    pub(super) counter: u64,
    /// Weights of the shared operations (mixed by seed).
    pub(super) shared_w: [u32; 7],
}

impl Side {
    pub(super) fn shared_op(&mut self, shared: &Shared, log: &Log, gentle: bool) {
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
