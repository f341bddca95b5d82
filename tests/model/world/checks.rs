//! The invariants checked after every settle, and the history shown when
//! one fails.

use std::collections::BTreeSet;

use twinsync::side::Side;
use twinsync_proto::RelPath;

use super::World;
use crate::tree::{show_tree, Node};

/// When and what is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Check {
    /// Check once a rescan of both replicas was reconciled too, not as soon
    /// as the engine has nothing left to do.
    pub(crate) after_rescan: bool,
    /// Check that no deletion came back (invariant 3).
    pub(crate) deletions: bool,
    /// A version no user deleted or overwrote may be in a trash (not lost).
    pub(crate) trash_ok: bool,
}

pub(crate) const STRICT: Check = Check {
    after_rescan: false,
    deletions: true,
    trash_ok: false,
};

impl World {
    pub(crate) fn check(&self, deletions: bool, trash_ok: bool) -> Result<(), String> {
        let mut errs: Vec<String> = Vec::new();
        let (lt, rt) = (self.tree(Side::Left), self.tree(Side::Right));
        // 1. Equal trees.
        let keys: BTreeSet<&RelPath> = lt.keys().chain(rt.keys()).collect();
        for k in keys {
            let a = lt.get(k).map(Node::norm);
            let b = rt.get(k).map(Node::norm);
            if a != b {
                errs.push(format!("replicas differ at {k}: left {a:?}, right {b:?}"));
            }
        }
        // 2. No version lost.
        let in_tree: BTreeSet<u64> = lt
            .values()
            .chain(rt.values())
            .chain(
                self.reps
                    .iter()
                    .flat_map(|r| r.conflicts.iter().map(|(_, n)| n)),
            )
            .filter_map(Node::content)
            .collect();
        let in_trash: BTreeSet<u64> = self
            .reps
            .iter()
            .flat_map(|r| r.trash.iter().filter_map(|(_, n)| n.content()))
            .collect();
        for c in self.written.difference(&self.exempt) {
            if in_tree.contains(c) || self.avoid_known_bugs && self.bug_trashed.contains(c) {
                continue;
            }
            if in_trash.contains(c) {
                if !trash_ok {
                    errs.push(format!(
                        "version #{c} (neither deleted nor overwritten by a user) was trashed"
                    ));
                }
                continue;
            }
            errs.push(format!(
                "version #{c} (neither deleted nor overwritten by a user) is lost"
            ));
        }
        // 3. No deletion resurrected.
        for (p, (how, what)) in self.deleted.iter().filter(|_| deletions) {
            for (s, t) in [(Side::Left, lt), (Side::Right, rt)] {
                if let Some(n) = t.get(p).filter(|n| n.identity() == *what) {
                    errs.push(format!(
                        "{p} ({how}) was resurrected on {s}: {:?}",
                        n.norm()
                    ));
                }
            }
        }
        // 4. The index describes the replicas.
        let known = self.engine.known();
        for (k, n) in lt {
            match known.get(k) {
                Some(sig) if sig.same_content(&n.sig()) => {}
                other => errs.push(format!(
                    "index at {k}: {other:?}, replicas have {:?}",
                    n.norm()
                )),
            }
        }
        for k in known.keys() {
            if !lt.contains_key(k) {
                errs.push(format!("index lists {k}, missing from the replicas"));
            }
        }
        // 4b. A file's stamps in the index are its versions' on each side
        // (or not observed yet): a stale one would refuse the next write or
        // deletion there.
        for (k, kn) in known {
            for s in Side::BOTH {
                let Some(n @ Node::File { .. }) = self.tree(s).get(k) else {
                    continue;
                };
                let st = kn.stamps[s.idx()];
                if st.is_known() && st != n.sig().stamp() {
                    errs.push(format!(
                        "index at {k}: the stamp on {s} is not the file's ({:?})",
                        n.norm()
                    ));
                }
            }
        }
        // 6. No path goes back and forth.
        errs.extend(self.loops.iter().cloned());
        // Without races every helper op succeeds and every copy arrives.
        if !self.races {
            for m in &self.mishaps {
                errs.push(format!("without races: {m}"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }

    pub(crate) fn report(&self, err: &str) -> String {
        format!(
            "{err}\n--- left:{}\n--- right:{}\n--- history:\n{}",
            show_tree(self.tree(Side::Left)),
            show_tree(self.tree(Side::Right)),
            self.log.join("\n")
        )
    }
}
