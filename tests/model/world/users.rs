//! Users acting on a replica: an action applied to its tree, the events
//! its filter reports, and what the invariants need to remember of it.

use std::fmt::Write as _;

use twinsync::side::Side;
use twinsync_proto::{Event, RelPath};

use super::{l, World};
use crate::actions::{Action, Hit, How};
use crate::tree::{ancestors, subtree, within, Node};
use crate::{DIR_MODES, FILE_MODES, MAX_DEPTH, NAMES};

impl World {
    pub(crate) fn dirs(&self, s: Side) -> Vec<RelPath> {
        let mut v = vec![RelPath::root()];
        v.extend(
            self.tree(s)
                .iter()
                .filter(|(_, n)| n.is_dir())
                .map(|(k, _)| k.clone()),
        );
        v
    }

    fn pick(list: &[RelPath], sel: u8) -> Option<RelPath> {
        (!list.is_empty()).then(|| list[sel as usize % list.len()].clone())
    }

    fn pick_where(&self, s: Side, sel: u8, f: impl Fn(&Node) -> bool) -> Option<RelPath> {
        let v: Vec<RelPath> = self
            .tree(s)
            .iter()
            .filter(|(_, n)| f(n))
            .map(|(k, _)| k.clone())
            .collect();
        Self::pick(&v, sel)
    }

    fn new_path(&self, s: Side, dir: u8, name: u8) -> Option<RelPath> {
        let d = Self::pick(&self.dirs(s), dir)?;
        let p = d.join(NAMES[name as usize % NAMES.len()].as_bytes());
        (!self.tree(s).contains_key(&p)).then_some(p)
    }

    /// Record that a user on `s` changed `paths` (outstanding until planned).
    fn touch(&mut self, s: Side, paths: &[RelPath]) {
        let r = &mut self.reps[s.idx()];
        let seq = r.seq;
        r.touches.extend(paths.iter().map(|p| (seq, p.clone())));
    }

    /// A user wrote at `p`: it and its parents may exist again.
    fn wrote(&mut self, p: &RelPath) {
        self.deleted.remove(p);
        for a in ancestors(p) {
            self.deleted.remove(&a);
        }
    }

    /// True when removing `p` on `s` is a plain deletion: the other side has
    /// the same thing there and no change of it is waiting to be planned.
    fn clean_removal(&self, s: Side, p: &RelPath) -> bool {
        let o = &self.reps[s.other().idx()];
        subtree(self.tree(s), p) == subtree(&o.tree, p)
            && !o
                .touches
                .iter()
                .any(|(seq, q)| *seq > o.planned && q.is_within(p))
    }

    /// A user on `s` is about to remove `p` and everything below it.
    fn removing(&mut self, s: Side, p: &RelPath, how: &str) {
        for q in within(self.tree(s), p) {
            if self.clean_removal(s, &q) {
                let what = self.tree(s)[&q].identity();
                let how = format!("{how} on {s} at t{}", self.clock);
                self.deleted.insert(q, (how, what));
            }
        }
    }

    pub(crate) fn user(&mut self, s: Side, a: &Action) {
        let done = self.user_inner(s, a);
        if let Some(d) = done {
            self.log.push(format!("{}: {d}", l(s)));
        }
    }

    pub(crate) fn user_inner(&mut self, s: Side, a: &Action) -> Option<String> {
        let now = self.tick();
        match *a {
            Action::Create { dir, name, mode } => {
                let p = self.new_path(s, dir, name)?;
                self.create_at(s, &p, FILE_MODES[mode as usize % FILE_MODES.len()], now)
            }
            Action::Symlink { dir, name } => {
                let p = self.new_path(s, dir, name)?;
                if self.unconditional_avoided(s, &p) {
                    return None;
                }
                let content = self.fresh_content(None);
                self.written.insert(content);
                let (ino, ctime) = (self.ino(), self.ctime());
                self.tree_mut(s).insert(
                    p.clone(),
                    Node::Symlink {
                        content,
                        mtime: now,
                        ino,
                        ctime,
                    },
                );
                self.emit_changed(s, &p);
                self.touch(s, std::slice::from_ref(&p));
                self.wrote(&p);
                Some(format!("symlink {p} -> #{content}"))
            }
            Action::Write { file } => {
                let p = self.pick_where(s, file, |n| matches!(n, Node::File { .. }))?;
                self.rewrite(s, &p, How::New, now)
            }
            Action::Tie { file } => {
                let p = self.pick_where(s, file, |n| matches!(n, Node::File { .. }))?;
                self.rewrite(s, &p, How::Tie, now)
            }
            Action::Restore { file, same } => {
                let p = self.pick_where(s, file, |n| matches!(n, Node::File { .. }))?;
                self.rewrite(s, &p, How::Restore { same }, now)
            }
            Action::Chmod { entry, mode } => {
                let p = self.pick_where(s, entry, |n| !matches!(n, Node::Symlink { .. }))?;
                if self.unconditional_avoided(s, &p) {
                    return None;
                }
                let ctime = self.ctime();
                let n = self.tree_mut(s).get_mut(&p).expect("picked");
                n.set_ctime(ctime);
                let new = match n {
                    Node::Dir { mode: m, .. } => {
                        *m = DIR_MODES[mode as usize % DIR_MODES.len()];
                        *m
                    }
                    Node::File { mode: m, .. } => {
                        *m = FILE_MODES[mode as usize % FILE_MODES.len()];
                        *m
                    }
                    Node::Symlink { .. } => unreachable!(),
                };
                self.emit_changed(s, &p);
                self.touch(s, std::slice::from_ref(&p));
                self.wrote(&p);
                Some(format!("chmod {new:o} {p}"))
            }
            Action::Mkdir { dir, name, mode } => {
                let p = self.new_path(s, dir, name)?;
                if p.depth() > MAX_DEPTH || self.unconditional_avoided(s, &p) {
                    return None;
                }
                let (ino, ctime) = (self.ino(), self.ctime());
                let mode = DIR_MODES[mode as usize % DIR_MODES.len()];
                let id = self.fresh_content(None);
                self.tree_mut(s).insert(
                    p.clone(),
                    Node::Dir {
                        mode,
                        mtime: now,
                        ino,
                        ctime,
                        id,
                    },
                );
                self.emit_changed(s, &p);
                self.touch(s, std::slice::from_ref(&p));
                self.wrote(&p);
                Some(format!("mkdir {p} ({mode:o})"))
            }
            Action::Rm { entry } => {
                let p = self.pick_where(s, entry, |n| !n.is_dir())?;
                self.rm_at(s, &p)
            }
            Action::RmDir { dir } => {
                let p = self.pick_where(s, dir, Node::is_dir)?;
                self.rm_at(s, &p)
            }
            Action::Rename { entry, dir, name } => {
                let from = self.pick_where(s, entry, |_| true)?;
                let d = Self::pick(&self.dirs(s), dir)?;
                let to = d.join(NAMES[name as usize % NAMES.len()].as_bytes());
                if to.is_within(&from) || to.depth() > MAX_DEPTH + 1 {
                    return None;
                }
                if self.unconditional_avoided(s, &from) || self.unconditional_avoided(s, &to) {
                    return None;
                }
                let src = self.tree(s)[&from].clone();
                if src.is_dir()
                    && within(self.tree(s), &from)
                        .iter()
                        .any(|q| q.depth() - from.depth() + to.depth() > MAX_DEPTH + 1)
                {
                    return None;
                }
                let mut what = format!("mv {from} {to}");
                match self.tree(s).get(&to) {
                    None => {}
                    Some(Node::Dir { .. }) => {
                        // Only a directory over an empty directory.
                        if !src.is_dir() || within(self.tree(s), &to).len() > 1 {
                            return None;
                        }
                        what.push_str(" (over an empty directory)");
                        self.tree_mut(s).remove(&to);
                    }
                    Some(n) => {
                        if src.is_dir() {
                            return None;
                        }
                        let c = n.content().expect("not a dir");
                        self.exempt.insert(c);
                        let _ = write!(what, " (over #{c})");
                        self.tree_mut(s).remove(&to);
                    }
                }
                self.removing(s, &from, "mv");
                let moved: Vec<(RelPath, Node)> = within(self.tree(s), &from)
                    .into_iter()
                    .map(|k| {
                        let n = self.tree_mut(s).remove(&k).expect("listed");
                        (k, n)
                    })
                    .collect();
                let mut paths: Vec<RelPath> = Vec::new();
                for (k, n) in moved {
                    let nk = k.rebase(&from, &to).expect("within");
                    paths.push(k);
                    paths.push(nk.clone());
                    self.wrote(&nk);
                    self.tree_mut(s).insert(nk, n);
                }
                // A rename changes the moved inode's ctime.
                let ctime = self.ctime();
                let moved = self.tree_mut(s).get_mut(&to).expect("moved");
                moved.set_ctime(ctime);
                let sig = moved.sig();
                self.emit(
                    s,
                    Event::Moved {
                        from: from.clone(),
                        to: to.clone(),
                        sig,
                    },
                );
                self.touch(s, &paths);
                Some(what)
            }
        }
    }

    /// KNOWN BUG (reported; `a_file_made_where_a_batch_makes_a_directory_is_kept`):
    /// the helper operations `Mkdir`, `Move`, `SetAttr`, `KeepConflict`,
    /// and trashes, symlinks and copies expecting `Any`, act on
    /// whatever is there: a user's write there while the batch runs, before
    /// the operation, is trashed (or, under a symlink, gone). The random
    /// schedules do not act on those paths then: true when `p` on `s` is
    /// one of them (or above or below one).
    ///
    /// KNOWN ENGINE BUG (reported; `a_file_changed_again_after_its_refusal_keeps_its_stamp`):
    /// `complete` takes what a refused write found as the side's state,
    /// over a later report of the same path: a user's change there after the
    /// refusal and before `complete` leaves a stale stamp in the index. The
    /// random schedules do not change such a path then either.
    fn unconditional_avoided(&self, s: Side, p: &RelPath) -> bool {
        self.avoid_known_bugs
            && self
                .unconditional
                .iter()
                .chain(&self.refused)
                .any(|(t, q)| *t == s && (q.is_within(p) || p.is_within(q)))
    }

    /// KNOWN BUG (as [`World::unconditional_avoided`]): an operation without
    /// `Expect` is about to trash or replace what is at or below `p` on `s`;
    /// the versions there that the index did not have when the batch was
    /// planned (a user's write whose report had not reached the engine yet)
    /// are noted: losing them is that bug.
    pub(crate) fn unconditional_loss(&mut self, s: Side, p: &RelPath, what: &str) {
        for k in within(self.tree(s), p) {
            let n = &self.tree(s)[&k];
            let Some(c) = n.content() else { continue };
            let seen = self.known_before.get(&k).is_some_and(|kn| match n {
                Node::File { .. } => kn.stamps[s.idx()] == n.sig().stamp(),
                _ => kn.same_content(&n.sig()),
            });
            if !seen && !self.exempt.contains(&c) {
                self.log.push(format!(
                    "  !! (known bug: unconditional {what}) {} {k} #{c} replaced unseen",
                    l(s)
                ));
                self.bug_trashed.insert(c);
            }
        }
    }

    /// A user creates the file `p` on `s` (its parent exists).
    fn create_at(&mut self, s: Side, p: &RelPath, mode: u32, now: i64) -> Option<String> {
        if self.unconditional_avoided(s, p) {
            return None;
        }
        let content = self.fresh_content(None);
        self.written.insert(content);
        let (ino, ctime) = (self.ino(), self.ctime());
        self.tree_mut(s).insert(
            p.clone(),
            Node::File {
                content,
                mtime: now,
                mode,
                ino,
                ctime,
            },
        );
        self.emit_changed(s, p);
        self.touch(s, std::slice::from_ref(p));
        self.wrote(p);
        Some(format!("create {p} = #{content} ({mode:o})"))
    }

    /// A user rewrites the file `p` on `s`, as `how` says.
    fn rewrite(&mut self, s: Side, p: &RelPath, how: How, now: i64) -> Option<String> {
        let Some(Node::File {
            content: old,
            mtime,
            mode,
            ino,
            ..
        }) = self.tree(s).get(p).cloned()
        else {
            return None;
        };
        if self.unconditional_avoided(s, p) {
            return None;
        }
        let content = match how {
            How::Restore { same: true } => old,
            How::New => self.fresh_content(None),
            How::Tie | How::Restore { same: false } => self.fresh_content(Some(old % 5)),
        };
        let mtime = if how == How::New { now } else { mtime };
        let ino = if matches!(how, How::Restore { .. }) {
            self.ino()
        } else {
            ino
        };
        let ctime = self.ctime();
        self.tree_mut(s).insert(
            p.clone(),
            Node::File {
                content,
                mtime,
                mode,
                ino,
                ctime,
            },
        );
        if content != old {
            self.written.insert(content);
            self.exempt.insert(old);
        }
        self.emit_changed(s, p);
        self.touch(s, std::slice::from_ref(p));
        self.wrote(p);
        Some(match how {
            How::New => format!("write {p} = #{content} (was #{old})"),
            How::Tie => format!("tie {p} = #{content} (was #{old}; same size and mtime)"),
            How::Restore { .. } => format!(
                "cp -p restore {p} = #{content} (was #{old}; same size and mtime, new inode)"
            ),
        })
    }

    /// A user removes `p` on `s` (`rm`, or `rm -r` of a directory).
    fn rm_at(&mut self, s: Side, p: &RelPath) -> Option<String> {
        if self.unconditional_avoided(s, p) {
            return None;
        }
        if !self.tree(s)[p].is_dir() {
            self.removing(s, p, "rm");
            let n = self.tree_mut(s).remove(p).expect("there");
            self.exempt.extend(n.content());
            self.emit(s, Event::Removed { path: p.clone() });
            self.touch(s, std::slice::from_ref(p));
            return Some(format!("rm {p} (#{})", n.content().unwrap_or(0)));
        }
        self.removing(s, p, "rm -r");
        let paths = within(self.tree(s), p);
        // Post-order: children before their directory.
        let mut order = paths.clone();
        order.sort_by(|a, b| b.depth().cmp(&a.depth()).then(a.cmp(b)));
        for q in &order {
            let n = self.tree_mut(s).remove(q).expect("listed");
            self.exempt.extend(n.content());
            self.emit(s, Event::Removed { path: q.clone() });
        }
        self.touch(s, &paths);
        Some(format!("rm -r {p}"))
    }

    /// A user acts on a path the running batch writes or removes.
    pub(crate) fn hit(&mut self, targets: &[(Side, RelPath)], target: u8, hit: Hit) {
        let Some((s, p)) =
            (!targets.is_empty()).then(|| targets[target as usize % targets.len()].clone())
        else {
            return;
        };
        let now = self.tick();
        let done = match (hit, self.tree(s).get(&p)) {
            (Hit::Rm, Some(_)) => self.rm_at(s, &p),
            (Hit::Rewrite(how), Some(Node::File { .. })) => self.rewrite(s, &p, how, now),
            (Hit::Rewrite(_), None)
                if p.depth() <= MAX_DEPTH + 1
                    && p.parent().is_some_and(|d| {
                        d.is_root() || self.tree(s).get(&d).is_some_and(Node::is_dir)
                    }) =>
            {
                self.create_at(s, &p, FILE_MODES[0], now)
            }
            _ => None,
        };
        if let Some(d) = done {
            self.log
                .push(format!("{}: {d} (while the batch writes there)", l(s)));
        }
    }
}
