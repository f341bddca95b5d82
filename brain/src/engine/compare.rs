//! Contents compared: files of the same size and mtime but another stamp
//! (a tie, a `cp -p` restore) hashed on both sides, and what the hashes decide.

use super::*;

/// Content checks: what size, mtime and stamps cannot tell, the bytes do.
impl Engine {
    /// Files whose content must be compared (hashed on both sides) before
    /// the next plan:
    /// - a file pending on one side with the indexed size, mtime and mode
    ///   but another stamp (a `cp -p` restore, or the same bytes written
    ///   again): another version only if its bytes differ from the other
    ///   side's;
    /// - files of the same size changed on both sides: equal bytes are no
    ///   conflict (only attributes to align), and a same-mtime tie with
    ///   other bytes is one.
    #[must_use]
    pub fn to_compare(&self) -> Vec<RelPath> {
        let mut out = BTreeSet::new();
        // True when what side `i`'s view has at `path` is not the index's
        // entry there: a pending move brought it, or took that one away.
        let moved_here = |i: usize, path: &RelPath| {
            self.pending[i]
                .origin(path)
                .is_none_or(|o| o.as_ref() != path)
        };
        for p in 0..2 {
            let o = 1 - p;
            for (path, x) in &self.pending[p].state {
                let Some(x) = x else { continue };
                if x.kind != Kind::File || self.pending[p].forced.contains(path) {
                    continue;
                }
                match self.pending[o].state.get(path) {
                    Some(Some(y)) => {
                        // Not where a pending move goes: equal bytes would
                        // take the path into the index while the move's
                        // replay still puts the moved entry there on the
                        // other side (it conflicts with the change there:
                        // a full merge sorts it out).
                        if y.kind == Kind::File
                            && y.size == x.size
                            && !self.pending[o].forced.contains(path)
                            && !moved_here(p, path)
                            && !moved_here(o, path)
                        {
                            out.insert(path.clone());
                        }
                    }
                    Some(None) => {}
                    None => {
                        // An entry a pending move brought here has a new
                        // stamp from the rename; the move's replay takes it
                        // (the other side has nothing here to compare yet).
                        if !moved_here(p, path)
                            && !self.pending[p].verified.contains(path)
                            && needs_compare(self.view_get(p, path).as_ref(), p, x)
                        {
                            out.insert(path.clone());
                        }
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// The digests of [`Engine::to_compare`]'s paths on the left and on the
    /// right (`None`: not a readable file there). Equal bytes: a file
    /// changed on one side only keeps the indexed version (its new stamp is
    /// recorded); files changed on both sides are the same (in sync, or
    /// only their mtime and mode to align, without a conflict copy).
    /// Different bytes: a real change, even under an equal size and mtime.
    pub fn compared(&mut self, results: Vec<Compared>) {
        self.epoch += 1;
        for (path, hl, hr) in results {
            let equal = hl.is_some() && hl == hr;
            let l = self.pending[0].state.get(&path).copied();
            let r = self.pending[1].state.get(&path).copied();
            match (l, r) {
                (Some(Some(a)), Some(Some(c))) if equal => {
                    self.pending[0].state.remove(&path);
                    self.pending[1].state.remove(&path);
                    if a.same_content(&c) {
                        let k = Known {
                            sig: a,
                            stamps: [a.stamp(), c.stamp()],
                        };
                        self.relink.note(&path, a, c);
                        self.k_insert(path, k);
                    } else {
                        let winner = match a.mtime_ns.cmp(&c.mtime_ns) {
                            std::cmp::Ordering::Greater => Side::Left,
                            std::cmp::Ordering::Less => Side::Right,
                            std::cmp::Ordering::Equal => self.policy.prefer,
                        };
                        let w = if winner == Side::Left { a } else { c };
                        self.attr_fixes.push((winner.other(), path, w));
                    }
                }
                (Some(Some(_)), Some(Some(_))) => {
                    self.pending[0].forced.insert(path.clone());
                    self.pending[1].forced.insert(path);
                }
                (Some(Some(x)), None) | (None, Some(Some(x))) => {
                    let p = usize::from(l.is_none());
                    if equal {
                        // The bytes the other side holds: the same version,
                        // or only its attributes changed.
                        match self.known.get(&path).copied() {
                            Some(k) if k.same_content(&x) => {
                                self.pending[p].state.remove(&path);
                                self.k_insert(path, k.with_stamp(p, x.stamp()));
                            }
                            _ => {
                                self.pending[p].verified.insert(path);
                            }
                        }
                    } else {
                        self.pending[p].forced.insert(path);
                    }
                }
                _ => {}
            }
        }
    }

    /// Paths found looping since the last call, and forget them: a rescan
    /// reconciles them from scratch.
    pub fn take_stuck(&mut self) -> Vec<RelPath> {
        std::mem::take(&mut self.stuck).into_iter().collect()
    }
}
