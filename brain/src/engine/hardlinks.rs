//! Hard links in the decisions: the names each side gives one inode (the
//! groups), kept from listings, events and the helpers' answers, and what
//! they decide:
//! - a file to copy whose inode has another name that the destination
//!   already holds with its content (or gets in the same batch) is linked
//!   there ([`Op::Link`], no data sent) instead of copied;
//! - a report of one name is a report of every name of its inode on that
//!   side (the kernel reports a write, a chmod, a link or a rename under
//!   the name used only): the others take its content, attributes and
//!   stamp (all names of an inode share its inode number and ctime);
//! - names a merge finds equal on both sides, one inode on one side but
//!   separate inodes on the other (a tree copied without `-H`, then
//!   merged), are linked there into the group ([`Engine::plan_relinks`]):
//!   the group is carried, as `rsync -H` carries it.
//!
//! The groups are hints, checked where acted on: a link is only made to a
//! name the index holds with the very content to link, and the helper
//! checks that name's size and mtime before it links.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use twinsync_proto::{Expect, Kind, Op, RelPath, Sig, Stamp};

use super::{ancestors, Applied, Batch, Copied, Engine, Known, Side};

/// The names of the inodes with more than one name on one side.
#[derive(Debug, Default)]
pub(super) struct Groups {
    /// Per name: its inode and the ctime it was seen with.
    ino_of: BTreeMap<RelPath, (u64, i64)>,
    names: HashMap<u64, BTreeSet<RelPath>>,
}

impl Groups {
    pub(super) fn clear(&mut self) {
        *self = Groups::default();
    }

    /// `path` holds `sig`. A report older than what is known of the path
    /// (a ctime before the one seen last, such as the report of a copy
    /// taken before the batch linked other names to it) changes nothing.
    pub(super) fn note(&mut self, path: &RelPath, sig: &Sig) {
        if let Some(&(ino, ctime)) = self.ino_of.get(path) {
            if sig.ctime_ns < ctime {
                return;
            }
            if ino == sig.ino && sig.kind == Kind::File && sig.nlink > 1 {
                self.ino_of.insert(path.clone(), (ino, sig.ctime_ns));
                return;
            }
        }
        self.forget(path);
        if sig.kind == Kind::File && sig.nlink > 1 {
            self.ino_of.insert(path.clone(), (sig.ino, sig.ctime_ns));
            self.names.entry(sig.ino).or_default().insert(path.clone());
        }
    }

    fn forget(&mut self, path: &RelPath) -> Option<u64> {
        let (ino, _) = self.ino_of.remove(path)?;
        if let Some(n) = self.names.get_mut(&ino) {
            n.remove(path);
            if n.is_empty() {
                self.names.remove(&ino);
            }
        }
        Some(ino)
    }

    /// Everything at or below `dir` is gone: its names, with their inodes.
    pub(super) fn forget_within(&mut self, dir: &RelPath) -> Vec<(RelPath, u64)> {
        self.forget_within_seen(dir)
            .into_iter()
            .map(|(p, (ino, _))| (p, ino))
            .collect()
    }

    fn forget_within_seen(&mut self, dir: &RelPath) -> Vec<(RelPath, (u64, i64))> {
        let gone: Vec<RelPath> = super::keys_within(&self.ino_of, dir);
        gone.into_iter()
            .filter_map(|p| {
                let seen = *self.ino_of.get(&p)?;
                self.forget(&p).map(|_| (p, seen))
            })
            .collect()
    }

    /// Everything at or below `from` is now below `to`.
    pub(super) fn rekey(&mut self, from: &RelPath, to: &RelPath) {
        if from == to {
            return;
        }
        self.forget_within(to);
        for (p, (ino, ctime)) in self.forget_within_seen(from) {
            let q = p.rebase(from, to).expect("within from");
            self.ino_of.insert(q.clone(), (ino, ctime));
            self.names.entry(ino).or_default().insert(q);
        }
    }

    /// The names of `ino`.
    pub(super) fn names(&self, ino: u64) -> Vec<RelPath> {
        self.names
            .get(&ino)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The names of `ino` but `path`.
    pub(super) fn others(&self, ino: u64, path: &RelPath) -> Vec<RelPath> {
        self.names
            .get(&ino)
            .map(|n| n.iter().filter(|q| *q != path).cloned().collect())
            .unwrap_or_default()
    }
}

/// Files a merge found equal on both sides (same content, attributes
/// included) where either side's inode has other names: the candidates of
/// [`Engine::plan_relinks`], taken by the next plan.
#[derive(Debug, Default)]
pub(super) struct Relink {
    /// Each path with its left and right signatures.
    equal: Vec<(RelPath, [Sig; 2])>,
}

impl Relink {
    /// `path` holds `l` on the left and `r` on the right, found the same.
    pub(super) fn note(&mut self, path: &RelPath, l: Sig, r: Sig) {
        if l.kind == Kind::File && r.kind == Kind::File && (l.nlink > 1 || r.nlink > 1) {
            self.equal.push((path.clone(), [l, r]));
        }
    }

    /// A listing supersedes what was found before it.
    pub(super) fn clear(&mut self) {
        self.equal.clear();
    }
}

impl Engine {
    /// Link into one inode, on side `t`, the names that side `s` holds as
    /// one inode and that a merge found equal on both sides but that `t`
    /// holds as separate inodes (each name of the group kept its own copy
    /// there: a tree copied without hard links). One name of `t`'s largest
    /// share of the group leads; the others are linked to it, each
    /// expecting the version the merge saw (what a link replaces goes to
    /// the trash, see the helper's `link`).
    ///
    /// Only where `t`'s inodes have no names outside the group (their link
    /// counts are the names of the group they hold): two sides that group
    /// the same names differently are left as they are, so that neither
    /// undoes the other's groups (no ping-pong), and a name the group lacks
    /// on `t` is never pulled into it.
    pub(super) fn plan_relinks(&mut self, b: &mut Batch) {
        let equal = std::mem::take(&mut self.relink.equal);
        if equal.is_empty() {
            return;
        }
        // Still as the merge found them: in the index with both stamps, and
        // nothing pending or in flight there.
        let equal: Vec<(RelPath, [Sig; 2])> = equal
            .into_iter()
            .filter(|(p, x)| {
                self.known.get(p).is_some_and(|k| {
                    k.kind == Kind::File
                        && k.same_content(&x[0])
                        && k.stamps == [x[0].stamp(), x[1].stamp()]
                }) && (0..2).all(|i| {
                    !self.inflight[i].contains_key(p) && !self.pending[i].state.contains_key(p)
                })
            })
            .collect();
        for s in Side::BOTH {
            let t = s.other();
            let (si, ti) = (s.idx(), t.idx());
            let mut groups: BTreeMap<u64, Vec<&(RelPath, [Sig; 2])>> = BTreeMap::new();
            for e in equal.iter().filter(|(_, x)| x[si].nlink > 1) {
                groups.entry(e.1[si].ino).or_default().push(e);
            }
            for names in groups.into_values().filter(|g| g.len() > 1) {
                let mut held: HashMap<u64, u32> = HashMap::new();
                for (_, x) in &names {
                    *held.entry(x[ti].ino).or_default() += 1;
                }
                if held.len() < 2 || names.iter().any(|(_, x)| x[ti].nlink != held[&x[ti].ino]) {
                    continue;
                }
                let Some((leader, lead)) = names
                    .iter()
                    .max_by_key(|(p, x)| (held[&x[ti].ino], Reverse(p)))
                    .map(|(p, x)| (p.clone(), x[ti]))
                else {
                    continue;
                };
                // A second name of one inode there: the first link changed
                // its ctime (the trash took a name of it).
                let mut replaced: HashSet<u64> = HashSet::new();
                for (path, x) in names.iter().filter(|(_, x)| x[ti].ino != lead.ino) {
                    let expect = if replaced.insert(x[ti].ino) {
                        Expect::Version(x[ti].stamp())
                    } else {
                        Expect::Any
                    };
                    b.trace(self.tracing, t, path, || {
                        format!(
                            "link to {leader} on {t} (one inode on {s}, same content as a \
                             separate file on {t}; no data sent)"
                        )
                    });
                    self.inflight[ti].insert(path.clone(), self.known.get(path).copied());
                    self.linking[ti].insert(path.clone(), leader.clone());
                    b.links[ti].push(Op::Link {
                        existing: leader.clone(),
                        path: path.clone(),
                        expect,
                        want: lead,
                    });
                }
            }
        }
    }

    /// Side `p` reported `sig` at `path`: every other name of its inode
    /// there holds it too. Those the index has with that content take its
    /// stamp (the names of an inode share it); the others are queued as
    /// changed with it (a write or chmod through one name).
    pub(super) fn link_siblings(&mut self, p: usize, path: &RelPath, sig: &Sig) {
        if sig.kind != Kind::File || sig.nlink < 2 {
            return;
        }
        for q in self.groups[p].others(sig.ino, path) {
            if self.inflight[p].contains_key(&q) || self.excludes.excluded(&q) {
                // The running batch writes there: its answer decides.
                continue;
            }
            if let Some(slot) = self.pending[p].state.get_mut(&q) {
                if slot.is_some_and(|x| x.ino == sig.ino) {
                    *slot = Some(*sig);
                }
                continue;
            }
            let Some(origin) = self.pending[p].origin(&q).map(std::borrow::Cow::into_owned) else {
                continue;
            };
            match self.known.get(&origin).copied() {
                Some(k)
                    if k.kind == Kind::File
                        && k.same_content(sig)
                        && k.stamps[p] != sig.stamp() =>
                {
                    self.k_insert(origin, k.with_stamp(p, sig.stamp()));
                }
                Some(k) if k.kind == Kind::File && k.same_content(sig) => {}
                Some(k) if k.kind == Kind::File => {
                    self.pending[p].state.insert(q, Some(*sig));
                }
                _ => {}
            }
        }
    }

    /// Side `p` lost the names at or below `dir`: the other names of their
    /// inodes there changed (the link count is in the ctime) to a state not
    /// reported; their stamps there are forgotten (a write there expects
    /// whatever version, the next report is compared by content).
    pub(super) fn unlink_siblings(&mut self, p: usize, dir: &RelPath) {
        for (_, ino) in self.groups[p].forget_within(dir) {
            for q in self.groups[p].others(ino, dir) {
                let Some(origin) = self.pending[p].origin(&q).map(std::borrow::Cow::into_owned)
                else {
                    continue;
                };
                if let Some(k) = self.known.get(&origin).copied() {
                    if k.kind == Kind::File && k.stamps[p].is_known() {
                        self.k_insert(origin, k.with_stamp(p, Stamp::UNKNOWN));
                    }
                }
            }
        }
    }

    /// The groups of side `t` after the batch's operations there, as its
    /// helper answered them (moves, removals, new names).
    pub(super) fn regroup(&mut self, t: usize, applied: &[Applied]) {
        for a in applied {
            match a {
                Applied::Done(path, Some(sig)) => {
                    if let Some(from) = self.moving[t].get(path) {
                        self.groups[t].rekey(from, path);
                    }
                    self.groups[t].note(path, sig);
                    if let Some(existing) = self.linking[t].get(path) {
                        self.groups[t].note(existing, sig);
                    }
                }
                Applied::Removed(path, _) => {
                    self.groups[t].forget_within(path);
                }
                _ => {}
            }
        }
    }

    /// The names of each inode the batch's operations on side `t` wrote,
    /// linked, moved or trashed take the stamp of the last answer about
    /// that inode, when the index holds them with that content: each
    /// operation changed the ctime of all of them (a chmod of one name then
    /// of another left the first with the stamp of its own answer, older).
    pub(super) fn restamp_siblings(&mut self, t: usize, applied: &[Applied]) {
        let mut last: HashMap<u64, Sig> = HashMap::new();
        for a in applied {
            if let Applied::Done(_, Some(sig)) | Applied::Removed(_, Some(sig)) = a {
                if sig.kind == Kind::File {
                    last.insert(sig.ino, *sig);
                }
            }
            if let Applied::Done(path, Some(sig)) = a {
                self.written_through(t, path, sig);
            }
        }
        for (ino, sig) in last {
            for q in self.groups[t].names(ino) {
                if let Some(k) = self.known.get(&q).copied() {
                    if k.kind == Kind::File && k.same_content(&sig) && k.stamps[t] != sig.stamp() {
                        self.k_insert(q, k.with_stamp(t, sig.stamp()));
                    }
                }
            }
        }
    }

    /// The batch wrote `sig` in place at `path` on side `t` (an attribute
    /// set): the other names of that inode there hold it too. Those that
    /// were one inode with `path` on both sides when last synced (same
    /// content, same stamps on both sides) take the new version in the
    /// index, with `path`'s stamps: the write came from the other side's
    /// change of that inode, which is theirs too (had the other side
    /// unlinked one first, its removal is reported and still wins). Their
    /// next report there is then our write, not a change of that side that
    /// would win over the other side's removal or change of them.
    fn written_through(&mut self, t: usize, path: &RelPath, sig: &Sig) {
        if sig.kind != Kind::File || sig.nlink < 2 {
            return;
        }
        let (Some(Some(base)), Some(now)) = (
            self.inflight[t].get(path).copied(),
            self.known.get(path).copied(),
        ) else {
            return;
        };
        if base.kind != Kind::File || !now.same_content(sig) || base.same_content(sig) {
            return;
        }
        for q in self.groups[t].others(sig.ino, path) {
            if self.inflight[t].contains_key(&q) || self.pending[t].state.contains_key(&q) {
                continue;
            }
            if self.known.get(&q).is_some_and(|k| {
                k.kind == Kind::File && k.same_content(&base.sig) && k.stamps == base.stamps
            }) {
                self.k_insert(q, now);
            }
        }
    }

    /// A copy into side `t` that did not arrive, whose destination holds
    /// what the batch wrote there through another name of its inode (a
    /// chmod or xattr change of the group, while the copy to this name
    /// found its source gone): the destination's state is the batch's, not
    /// a change of that side. The index takes it for `t`; the source's
    /// state there (removed, or another version) is its change. True when
    /// so (the copy is then dealt with).
    pub(super) fn missed_sibling(&mut self, t: usize, applied: &[Applied], c: &Copied) -> bool {
        let Some(b) = c.dst.filter(|b| b.kind == Kind::File && b.nlink > 1) else {
            return false;
        };
        let ours = applied.iter().any(|a| {
            matches!(a, Applied::Done(p, Some(x))
                if *p != c.path && x.ino == b.ino && x.same_content(&b))
        });
        if !ours {
            return false;
        }
        let s = 1 - t;
        self.k_insert(c.path.clone(), Known::new(b).with_stamp(t, b.stamp()));
        match c.src {
            None => {
                self.pending[s].state.insert(c.path.clone(), None);
            }
            Some(a) if !a.same_content(&b) => {
                self.pending[s]
                    .state
                    .entry(c.path.clone())
                    .or_insert(Some(a));
            }
            Some(a) => {
                self.k_insert(
                    c.path.clone(),
                    Known::new(b)
                        .with_stamp(t, b.stamp())
                        .with_stamp(s, a.stamp()),
                );
            }
        }
        true
    }

    /// Turn the batch's copies of files whose source inode has another
    /// name that the destination holds already (or gets by another copy of
    /// the batch) into links there (run after the copies).
    pub(super) fn plan_links(&mut self, b: &mut Batch) {
        for t in Side::BOTH {
            let (ti, si) = (t.idx(), t.other().idx());
            let mut replaced = self.changed_versions(ti, &mut b.ops[ti]);
            if !b.copies[ti]
                .iter()
                .any(|c| c.sig.kind == Kind::File && c.sig.nlink > 1)
            {
                continue;
            }
            let mut leaders: HashMap<u64, (RelPath, Sig)> = HashMap::new();
            let copies = std::mem::take(&mut b.copies[ti]);
            let mut kept = Vec::with_capacity(copies.len());
            for c in copies {
                let mut expect = c.expect;
                if let Expect::Version(v) = c.expect {
                    if !replaced.insert(v) {
                        expect = Expect::Any;
                    }
                }
                if c.sig.kind != Kind::File || c.sig.nlink < 2 {
                    kept.push(super::Copy { expect, ..c });
                    continue;
                }
                let existing = leaders
                    .get(&c.sig.ino)
                    .filter(|(_, x)| x.same_content(&c.sig))
                    .map(|(l, _)| l.clone())
                    .or_else(|| self.synced_name(si, ti, &c.path, &c.sig));
                match existing {
                    None => {
                        leaders.insert(c.sig.ino, (c.path.clone(), c.sig));
                        kept.push(super::Copy { expect, ..c });
                    }
                    Some(existing) => {
                        b.trace(self.tracing, t, &c.path, || {
                            format!(
                                "link to {existing} on {t} (one inode on {}; no data sent)",
                                t.other()
                            )
                        });
                        self.linking[ti].insert(c.path.clone(), existing.clone());
                        b.links[ti].push(Op::Link {
                            existing,
                            path: c.path,
                            expect,
                            want: c.sig,
                        });
                    }
                }
            }
            b.copies[ti] = kept;
        }
    }

    /// The versions of files the batch's operations on side `t` rename,
    /// trash or change the attributes of, in their order: another name of
    /// one of those inodes changes with it (its ctime), so an operation
    /// after it that expects that version at another name expects whatever
    /// is there instead (a chmod of one name then a removal of another was
    /// refused, and the removed name came back as a modification winning).
    fn changed_versions(&self, t: usize, ops: &mut [Op]) -> HashSet<Stamp> {
        let mut changed: HashSet<Stamp> = self.renaming[t].clone();
        // The versions the operations before this one change: a move of
        // another name of one of them finds it with a new ctime.
        let mut earlier: HashSet<Stamp> = HashSet::new();
        for op in ops {
            if let Op::Move { source, .. } = op {
                if let Expect::Version(v) = *source {
                    if !earlier.insert(v) {
                        *source = Expect::Any;
                    }
                }
            }
            match op {
                Op::Trash { expect, .. } | Op::Move { expect, .. } => {
                    if let Expect::Version(v) = *expect {
                        earlier.insert(v);
                    }
                    if let Expect::Version(v) = *expect {
                        if !changed.insert(v) {
                            *expect = Expect::Any;
                        }
                    }
                }
                Op::SetAttr { path, .. } => {
                    if let Some(Some(before)) = self.inflight[t].get(path) {
                        if before.kind == Kind::File && before.stamps[t].is_known() {
                            earlier.insert(before.stamps[t]);
                            changed.insert(before.stamps[t]);
                        }
                    }
                }
                _ => {}
            }
        }
        changed.retain(|v| v.is_known());
        changed
    }

    /// Another name that side `s` gives the inode of `sig` (at `path`),
    /// which the index holds with that content and this batch leaves as it
    /// is on side `t`.
    fn synced_name(&self, s: usize, t: usize, path: &RelPath, sig: &Sig) -> Option<RelPath> {
        self.groups[s].others(sig.ino, path).into_iter().find(|q| {
            !self.inflight[t].contains_key(q)
                && self.pending[s]
                    .state
                    .get(q)
                    .is_none_or(|x| x.is_some_and(|x| x.same_content(sig)))
                && !ancestors(q, true).any(|a| self.leaving[t].contains(&a))
                && self
                    .known
                    .get(q)
                    .is_some_and(|k| k.kind == Kind::File && k.same_content(sig))
        })
    }
}

#[cfg(test)]
mod tests {
    use twinsync_filter::Excludes;
    use twinsync_proto::{Entry, Event};

    use super::super::{Policy, Report};
    use super::*;

    /// A file of inode `ino` with `nlink` names.
    fn file(size: u64, ino: u64, nlink: u32) -> Sig {
        Sig {
            kind: Kind::File,
            size,
            mtime_ns: 10,
            mode: 0o644,
            ino,
            ctime_ns: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            nlink,
            allocated: 0,
            xattrs: Default::default(),
        }
    }

    fn listing(v: &[(&str, Sig)]) -> Vec<Entry> {
        v.iter()
            .map(|(p, s)| Entry {
                path: (*p).into(),
                sig: *s,
            })
            .collect()
    }

    fn engine() -> Engine {
        Engine::new(Excludes::default(), Policy::default())
    }

    fn synced(v: &[(&str, Sig)]) -> Engine {
        let mut e = engine();
        e.load_scan(Side::Left, listing(v));
        e.load_scan(Side::Right, listing(v));
        assert!(e.plan(0).is_empty());
        e
    }

    fn changed(e: &mut Engine, side: Side, path: &str, sig: Sig) {
        e.on_event(
            side,
            Event::Changed {
                path: path.into(),
                sig,
            },
        );
    }

    /// (existing, path, expect) of the batch's links into `t`.
    fn links(b: &Batch, t: Side) -> Vec<(RelPath, RelPath, Expect)> {
        b.links[t]
            .iter()
            .map(|op| match op {
                Op::Link {
                    existing,
                    path,
                    expect,
                    ..
                } => (existing.clone(), path.clone(), *expect),
                op => panic!("not a link: {op:?}"),
            })
            .collect()
    }

    /// The runner compares the bytes of the files to compare: all equal.
    fn all_equal(e: &mut Engine) {
        let same = e
            .to_compare()
            .into_iter()
            .map(|p| (p, Some([1; 32]), Some([1; 32])))
            .collect();
        e.compared(same);
    }

    fn copied(b: &Batch, t: Side) -> Vec<RelPath> {
        b.copies[t].iter().map(|c| c.path.clone()).collect()
    }

    #[test]
    fn a_group_of_three_at_a_first_merge_is_one_copy_and_two_links() {
        let mut e = engine();
        let g = file(5, 7, 3);
        e.load_scan(Side::Left, listing(&[("a", g), ("b", g), ("d/c", g)]));
        e.load_scan(Side::Right, Vec::new());
        let b = e.plan(0);
        assert_eq!(copied(&b, Side::Right), vec![RelPath::from("a")]);
        assert_eq!(
            links(&b, Side::Right),
            vec![
                ("a".into(), "b".into(), Expect::Absent),
                ("a".into(), "d/c".into(), Expect::Absent)
            ]
        );
    }

    #[test]
    fn a_new_name_of_a_synced_file_is_linked_and_its_stamp_shared() {
        let mut e = synced(&[("x", file(5, 7, 1))]);
        // `ln x y`: the filter reports y, then x (its ctime changed).
        let now = Sig {
            ctime_ns: 2,
            ..file(5, 7, 2)
        };
        changed(&mut e, Side::Left, "y", now);
        changed(&mut e, Side::Left, "x", now);
        let b = e.plan(0);
        assert!(copied(&b, Side::Right).is_empty(), "{b:?}");
        assert_eq!(
            links(&b, Side::Right),
            vec![("x".into(), "y".into(), Expect::Absent)]
        );
        let made = Sig {
            ino: 70,
            ctime_ns: 3,
            ..now
        };
        let mut r = Report::default();
        r.applied[1].push(Applied::Done("y".into(), Some(made)));
        e.complete(r);
        // x on the right has the link's ctime too: what expects it there
        // expects that.
        assert_eq!(e.known()[&RelPath::from("x")].stamps[1], made.stamp());
        assert_eq!(e.known()[&RelPath::from("y")].stamps[1], made.stamp());
    }

    #[test]
    fn a_write_through_one_name_is_one_copy_and_links_of_the_others() {
        let g = file(5, 7, 2);
        let mut e = synced(&[("a", g), ("b", g)]);
        let new = Sig {
            size: 9,
            ctime_ns: 4,
            ..g
        };
        changed(&mut e, Side::Right, "b", new);
        let b = e.plan(0);
        assert_eq!(copied(&b, Side::Left), vec![RelPath::from("a")]);
        // The copy to a replaces the inode b shares there: b expects
        // whatever is there then.
        assert_eq!(
            links(&b, Side::Left),
            vec![("a".into(), "b".into(), Expect::Any)]
        );
    }

    /// The report of a copy, taken before the batch linked the other names
    /// to it (one name then), came after the links' answers and took the
    /// copy out of its group: a write in place through another name then
    /// reached the other names but that one (found by the verification).
    #[test]
    fn a_late_report_of_a_copy_does_not_take_it_out_of_the_group_linked_to_it() {
        let mut e = engine();
        let g = file(5, 7, 3);
        e.load_scan(Side::Left, listing(&[("a", g), ("b", g), ("c", g)]));
        e.load_scan(Side::Right, Vec::new());
        let b = e.plan(0);
        assert_eq!(links(&b, Side::Right).len(), 2);
        let at = |ctime_ns, nlink| Sig {
            ino: 70,
            ctime_ns,
            ..file(5, 70, nlink)
        };
        let mut r = Report::default();
        r.applied[1].push(Applied::Done("a".into(), Some(at(5, 1))));
        r.applied[1].push(Applied::Done("b".into(), Some(at(6, 2))));
        r.applied[1].push(Applied::Done("c".into(), Some(at(7, 3))));
        e.complete(r);
        changed(&mut e, Side::Right, "a", at(5, 1));
        let new = Sig {
            size: 9,
            ..at(8, 3)
        };
        changed(&mut e, Side::Right, "b", new);
        let b = e.plan(0);
        let mut to_left = copied(&b, Side::Left);
        to_left.extend(links(&b, Side::Left).into_iter().map(|(_, p, _)| p));
        assert_eq!(
            to_left,
            vec![RelPath::from("a"), "b".into(), "c".into()],
            "{b:?}"
        );
    }

    /// A rename of one name replayed in the batch that copies the group's
    /// new content changes the inode's ctime on the destination before the
    /// copy: the copy to another name of it expects whatever is there
    /// (found by the root file system test: the copy was refused and the
    /// group's names became conflicts).
    #[test]
    fn a_copy_to_a_name_of_an_inode_the_batch_renames_expects_any_version() {
        let g = file(5, 7, 2);
        let mut e = synced(&[("a", g), ("m", g)]);
        let new = Sig {
            size: 9,
            ctime_ns: 4,
            ..g
        };
        changed(&mut e, Side::Left, "a", new);
        e.on_event(
            Side::Left,
            Event::Moved {
                from: "m".into(),
                to: "n".into(),
                sig: Sig { ctime_ns: 5, ..new },
            },
        );
        let b = e.plan(0);
        assert!(matches!(b.ops[1][0], Op::Move { .. }), "{b:?}");
        assert_eq!(copied(&b, Side::Right), vec![RelPath::from("a")]);
        assert_eq!(b.copies[1][0].expect, Expect::Any);
    }

    /// A chmod through one name and the removal of another, planned
    /// together: the chmod changes the ctime of the name to trash first
    /// (the removal was refused, and the name came back as a modification
    /// winning over the deletion; found by the root file system test).
    #[test]
    fn a_removal_after_a_chmod_of_another_name_expects_any_version() {
        let g = file(5, 7, 2);
        let mut e = synced(&[("a", g), ("b", g)]);
        let chmod = Sig {
            mode: 0o600,
            ctime_ns: 4,
            ..g
        };
        changed(&mut e, Side::Left, "a", chmod);
        e.on_event(Side::Left, Event::Removed { path: "b".into() });
        // The runner compares the bytes of a file of the indexed size and
        // mtime under another stamp: the same.
        all_equal(&mut e);
        let b = e.plan(0);
        assert!(matches!(b.ops[1][0], Op::SetAttr { .. }), "{b:?}");
        assert!(
            matches!(
                b.ops[1][1],
                Op::Trash {
                    expect: Expect::Any,
                    ..
                }
            ),
            "{b:?}"
        );
    }

    /// Two names of one inode given attributes by one batch: both take the
    /// stamp of the last answer (the first kept its own, older one, and its
    /// report, taken for a change, then won over the other side's removal
    /// of it; found by the root file system test).
    #[test]
    fn names_of_one_inode_written_by_one_batch_take_the_last_stamp() {
        let g = file(5, 7, 2);
        let mut e = synced(&[("a", g), ("b", g)]);
        let chmod = Sig {
            mode: 0o600,
            ctime_ns: 4,
            ..g
        };
        changed(&mut e, Side::Left, "a", chmod);
        all_equal(&mut e);
        let b = e.plan(0);
        assert_eq!(b.ops[1].len(), 2, "{b:?}");
        let at = |ctime_ns| Sig {
            ino: 70,
            ctime_ns,
            ..chmod
        };
        let mut r = Report::default();
        r.applied[1].push(Applied::Done("a".into(), Some(at(5))));
        r.applied[1].push(Applied::Done("b".into(), Some(at(6))));
        e.complete(r);
        for n in ["a", "b"] {
            assert_eq!(e.known()[&RelPath::from(n)].stamps[1], at(6).stamp(), "{n}");
        }
    }

    /// Both listings of a first merge, then the comparison of the files
    /// of equal size (all equal), then the plan.
    fn first_merge(left: &[(&str, Sig)], right: &[(&str, Sig)]) -> (Engine, Batch) {
        let mut e = engine();
        e.load_scan(Side::Left, listing(left));
        e.load_scan(Side::Right, listing(right));
        all_equal(&mut e);
        let b = e.plan(0);
        (e, b)
    }

    /// A group of three names on the left, separate equal files on the
    /// right (a copy made without `-H`): the first merge links the right's
    /// into one inode, each expecting the file it found there (it came out
    /// as three inodes, and `rsync -H` found the group split).
    #[test]
    fn a_group_on_one_side_held_as_separate_equal_files_on_the_other_is_linked() {
        let g = file(5, 7, 3);
        let sep = |ino| file(5, ino, 1);
        let (mut e, b) = first_merge(
            &[("a", g), ("b", g), ("d/c", g)],
            &[("a", sep(20)), ("b", sep(21)), ("d/c", sep(22))],
        );
        assert!(copied(&b, Side::Right).is_empty(), "{b:?}");
        assert!(links(&b, Side::Left).is_empty(), "{b:?}");
        assert_eq!(
            links(&b, Side::Right),
            vec![
                ("a".into(), "b".into(), Expect::Version(sep(21).stamp())),
                ("a".into(), "d/c".into(), Expect::Version(sep(22).stamp()))
            ]
        );
        // The answers: one inode there now; in sync, nothing more to do.
        let made = |ctime_ns| Sig {
            ctime_ns,
            ..file(5, 20, 3)
        };
        let mut r = Report::default();
        r.applied[1].push(Applied::Done("b".into(), Some(made(3))));
        r.applied[1].push(Applied::Done("d/c".into(), Some(made(4))));
        e.complete(r);
        for n in ["a", "b", "d/c"] {
            assert_eq!(
                e.known()[&RelPath::from(n)].stamps[1],
                made(4).stamp(),
                "{n}"
            );
        }
        assert!(e.plan(0).is_empty());
    }

    /// Two names of one inode on the right and a third alone join the
    /// leader's inode; the second name of an inode already linked away
    /// expects whatever is there (the first link changed its ctime).
    #[test]
    fn the_largest_share_of_the_group_leads() {
        let g = file(5, 7, 3);
        let pair = file(5, 30, 2);
        let (_, b) = first_merge(
            &[("a", g), ("b", g), ("c", g)],
            &[("a", file(5, 20, 1)), ("b", pair), ("c", pair)],
        );
        assert_eq!(
            links(&b, Side::Right),
            vec![(
                "b".into(),
                "a".into(),
                Expect::Version(file(5, 20, 1).stamp())
            )]
        );
    }

    /// Names grouped differently on the two sides (a, b on the left; b, c
    /// on the right): nothing is relinked, neither way (either would undo
    /// the other side's group, and back again at the next merge).
    #[test]
    fn groups_that_differ_on_both_sides_are_left_alone() {
        let (_, b) = first_merge(
            &[
                ("a", file(5, 7, 2)),
                ("b", file(5, 7, 2)),
                ("c", file(5, 8, 1)),
            ],
            &[
                ("a", file(5, 20, 1)),
                ("b", file(5, 21, 2)),
                ("c", file(5, 21, 2)),
            ],
        );
        assert!(
            links(&b, Side::Right).is_empty() && links(&b, Side::Left).is_empty(),
            "{b:?}"
        );
    }

    #[test]
    fn the_removal_of_one_name_forgets_the_stamp_of_the_others() {
        let g = file(5, 7, 2);
        let mut e = synced(&[("a", g), ("b", g)]);
        e.on_event(Side::Left, Event::Removed { path: "a".into() });
        assert!(!e.known()[&RelPath::from("b")].stamps[0].is_known());
        let b = e.plan(0);
        assert_eq!(b.ops[1].len(), 1, "{b:?}");
    }

    /// An attribute set through one name of an inode reaches its other
    /// names on that side: their next report is of our write, not a change
    /// of that side. Found by the root file system test over ssh: the left
    /// set an xattr on `dash` and removed `sh` (one inode with it) before
    /// the filter listed `dash` (one name then); the batch set the xattr on
    /// the right's `dash`, the right then reported `sh` with it, which was
    /// taken for a change there and, against the left's removal, won.
    #[test]
    fn an_attribute_set_through_one_name_is_ours_on_the_others() {
        let g = file(5, 7, 2);
        let mut e = synced(&[("dash", g), ("sh", g)]);
        let xattr = Sig {
            mode: 0o600,
            ctime_ns: 4,
            nlink: 1,
            ..g
        };
        changed(&mut e, Side::Left, "dash", xattr);
        all_equal(&mut e);
        let b = e.plan(0);
        assert_eq!(b.ops[1].len(), 1, "{b:?}");
        assert!(matches!(b.ops[1][0], Op::SetAttr { .. }), "{b:?}");
        let answer = Sig {
            ctime_ns: 5,
            nlink: 2,
            ..xattr
        };
        let mut r = Report::default();
        r.applied[1].push(Applied::Done("dash".into(), Some(answer)));
        e.complete(r);
        // The right's filter lists the other name of the inode it changed.
        changed(&mut e, Side::Right, "sh", answer);
        changed(&mut e, Side::Right, "dash", answer);
        e.on_event(Side::Left, Event::Removed { path: "sh".into() });
        let b = e.plan(0);
        assert!(
            b.copies[0].is_empty() && b.ops[0].is_empty(),
            "nothing comes back: {b:?}"
        );
        assert!(
            matches!(&b.ops[1][..], [Op::Trash { path, .. }] if *path == RelPath::from("sh")),
            "the left's removal reaches the right: {b:?}"
        );
    }

    /// Two names of one inode given attributes by one batch, each reported
    /// in the state the first operation left (before the second): the
    /// reports show a stamp the batch's own answer gave, with the indexed
    /// content, so they are echoes, not changes that would win over the
    /// other side's removal of one name (CI's root file system test over
    /// ssh: `bin/sh-hl came back`).
    #[test]
    fn a_report_of_an_intermediate_state_of_our_writes_is_an_echo() {
        let g = file(5, 7, 2);
        let mut e = synced(&[("dash", g), ("sh", g)]);
        let xattr = Sig {
            mode: 0o600,
            ctime_ns: 4,
            ..g
        };
        changed(&mut e, Side::Left, "dash", xattr);
        all_equal(&mut e);
        let b = e.plan(0);
        assert_eq!(b.ops[1].len(), 2, "{b:?}");
        let at = |ctime_ns| Sig { ctime_ns, ..xattr };
        let mut r = Report::default();
        r.applied[1].push(Applied::Done("dash".into(), Some(at(5))));
        r.applied[1].push(Applied::Done("sh".into(), Some(at(6))));
        e.complete(r);
        changed(&mut e, Side::Right, "dash", at(5));
        changed(&mut e, Side::Right, "sh", at(5));
        e.on_event(Side::Left, Event::Removed { path: "sh".into() });
        all_equal(&mut e);
        let b = e.plan(0);
        assert!(
            b.copies[0].is_empty() && b.links[0].is_empty() && b.ops[0].is_empty(),
            "nothing comes back: {b:?}"
        );
        assert!(
            matches!(&b.ops[1][..], [Op::Trash { path, .. }] if *path == RelPath::from("sh")),
            "the left's removal reaches the right: {b:?}"
        );
    }
}
