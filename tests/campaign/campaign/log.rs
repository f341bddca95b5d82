//! The record of a run's operations, shared by the threads, and the
//! excerpts of it that a failure report shows.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The record of a run's operations, shared by the threads.
#[derive(Clone)]
pub(super) struct Log {
    pub(super) start: Instant,
    pub(super) ops: Arc<Mutex<Vec<String>>>,
}

impl Log {
    pub(super) fn push(&self, who: &str, what: impl AsRef<str>) {
        let ms = self.start.elapsed().as_millis();
        self.ops
            .lock()
            .unwrap()
            .push(format!("{ms:>6} ms {who}: {}", what.as_ref()));
    }

    pub(super) fn last(&self, n: usize) -> String {
        let ops = self.ops.lock().unwrap();
        let from = ops.len().saturating_sub(n);
        ops[from..].join("\n")
    }

    /// Every operation that names one of the (first few) paths quoted in
    /// `text`, for a failure report.
    pub(super) fn history_of(&self, text: &str) -> String {
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

    pub(super) fn len(&self) -> usize {
        self.ops.lock().unwrap().len()
    }
}
