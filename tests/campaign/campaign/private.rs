//! One side's private subtree (`priv-L` or `priv-R`): random operations
//! on it, its exact model, and the check of the disk against the model
//! (invariants 2 and 4).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::RngExt;
use rand_xorshift::XorShiftRng;

use super::content::{content_len, mode_of, random_bytes};
use crate::harness::{self, Entry, Tree};

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
pub(super) struct Private {
    root: PathBuf,
    top: String,
    model: BTreeMap<String, MEntry>,
    next: u64,
}

impl Private {
    pub(super) fn new(root: &Path, top: &str) -> Private {
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
    pub(super) fn op(&mut self, rng: &mut XorShiftRng, tag: &str) -> String {
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
    pub(super) fn check(&self, tree: &Tree, side: &str) -> Vec<String> {
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
