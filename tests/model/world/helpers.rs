//! The helper operations on a replica's tree, as `Replica::apply` does them:
//! paths resolved, parents made, what is replaced kept in the trash, and
//! `place`, which installs a copy only if the destination holds what it
//! expects.

use twinsync::side::Side;
use twinsync_proto::{Expect, Op, OpFail, RelPath, Sig};

use super::{blind, l, World};
use crate::tree::{ancestors, content_of_target, within, Node};
use crate::DEFAULT_DIR_MODE;

impl World {
    /// `Replica::resolve`: a symlink among the parents is refused.
    pub(crate) fn resolve(&self, s: Side, p: &RelPath) -> Result<(), String> {
        if p.is_root() {
            return Err(format!("refused path {p}"));
        }
        for a in ancestors(p) {
            if let Some(Node::Symlink { .. }) = self.tree(s).get(&a) {
                return Err(format!("refused path {p}: passes through a symlink"));
            }
        }
        Ok(())
    }

    /// The id of the directory at `p` on `s`, or a fresh one: what a
    /// directory the engine creates at `p` on the other side stands for.
    fn dir_id_from(&mut self, s: Side, p: &RelPath) -> u64 {
        let tree = self
            .before_ops
            .as_ref()
            .map_or(self.tree(s), |t| &t[s.idx()]);
        if let Some(Node::Dir { id, .. }) = tree.get(p) {
            return *id;
        }
        self.next_content += 1;
        self.next_content - 1
    }

    /// Move `p` (and what is below it) to the trash of `s`: the rename
    /// gives it a new ctime; its lstat there.
    fn trash(&mut self, s: Side, p: &RelPath) -> Option<Sig> {
        let mut top = None;
        for k in within(self.tree(s), p) {
            let mut n = self.tree_mut(s).remove(&k).expect("listed");
            if k == *p {
                n.set_ctime(self.ctime());
                top = Some(n.sig());
            }
            self.reps[s.idx()].trash.push((k, n));
        }
        top
    }

    /// `fs::create_dir_all` of `p` and its parents (new ones get `mode`
    /// only for `p` itself, when given).
    fn create_dir_all(&mut self, s: Side, p: &RelPath, mode: Option<u32>) -> Result<(), String> {
        let mut chain = ancestors(p);
        chain.push(p.clone());
        for a in chain {
            match self.tree(s).get(&a) {
                Some(Node::Dir { .. }) => {}
                Some(_) => return Err(format!("creating directory {a}: not a directory")),
                None => {
                    let (ino, ctime) = (self.ino(), self.ctime());
                    let mtime = self.tick();
                    let m = if a == *p {
                        mode.unwrap_or(DEFAULT_DIR_MODE)
                    } else {
                        DEFAULT_DIR_MODE
                    };
                    let id = self.dir_id_from(s.other(), &a);
                    self.tree_mut(s).insert(
                        a.clone(),
                        Node::Dir {
                            mode: m,
                            mtime,
                            ino,
                            ctime,
                            id,
                        },
                    );
                    self.dir_created(s, &a);
                }
            }
        }
        Ok(())
    }

    /// A helper operation on side `s`, as `Replica::apply` does it: the
    /// lstat of what it made or changed, or why it did not act.
    pub(crate) fn apply_op(&mut self, s: Side, op: &Op) -> Result<Option<Sig>, OpFail> {
        let failed = OpFail::Failed;
        match op {
            Op::Mknod { .. } => unreachable!("the model's users make no fifo or device"),
            Op::Link { .. } => unreachable!("the model's users make no hard link"),
            Op::Move {
                from,
                source,
                to,
                expect,
            } => {
                self.resolve(s, from).map_err(failed)?;
                self.resolve(s, to).map_err(failed)?;
                if !self.tree(s).contains_key(from) {
                    return Err(failed(format!("{from}: no such file or directory")));
                }
                let found = self.stat(s, from)?;
                if !source.holds(found.as_ref()) {
                    return Err(OpFail::Refused { found });
                }
                if from == to {
                    return self.stat(s, to);
                }
                if self.tree(s).contains_key(to) || expect.wants_present() {
                    let found = self.stat(s, to)?;
                    if !expect.holds(found.as_ref()) {
                        return Err(OpFail::Refused { found });
                    }
                    if blind(*expect) {
                        self.unconditional_loss(s, to, "move");
                    }
                    let _ = self.trash(s, to);
                }
                if let Some(parent) = to.parent().filter(|p| !p.is_root()) {
                    self.create_dir_all(s, &parent, None).map_err(failed)?;
                }
                if to.is_within(from) || !self.tree(s).contains_key(from) {
                    return Err(failed(format!("renaming {from} to {to}: invalid argument")));
                }
                for k in within(self.tree(s), from) {
                    let n = self.tree_mut(s).remove(&k).expect("listed");
                    self.tree_mut(s)
                        .insert(k.rebase(from, to).expect("within"), n);
                }
                let ctime = self.ctime();
                self.tree_mut(s)
                    .get_mut(to)
                    .expect("moved")
                    .set_ctime(ctime);
                self.stat(s, to)
            }
            Op::Trash { path, expect } => {
                self.resolve(s, path).map_err(failed)?;
                if *expect != Expect::Any {
                    let found = self.stat(s, path)?;
                    if !expect.holds(found.as_ref()) {
                        return Err(OpFail::Refused { found });
                    }
                }
                if self.tree(s).contains_key(path) {
                    if blind(*expect) {
                        self.unconditional_loss(s, path, "trash");
                    }
                    return Ok(self.trash(s, path));
                }
                Ok(None)
            }
            Op::KeepConflict { path } => {
                self.resolve(s, path).map_err(failed)?;
                for k in within(self.tree(s), path) {
                    let n = self.tree_mut(s).remove(&k).expect("listed");
                    self.reps[s.idx()].conflicts.push((k, n));
                }
                Ok(None)
            }
            Op::Mkdir { path, mode, .. } => {
                self.resolve(s, path).map_err(failed)?;
                match self.tree(s).get(path) {
                    Some(Node::Dir { .. }) => {
                        let ctime = self.ctime();
                        if let Some(n @ Node::Dir { .. }) = self.tree_mut(s).get_mut(path) {
                            n.set_ctime(ctime);
                            if let Node::Dir { mode: m, .. } = n {
                                *m = *mode;
                            }
                        }
                        self.emit_changed(s, path);
                    }
                    Some(_) => {
                        // Not what the brain expected there (it trashes what
                        // it expects first): refused, as the helper does.
                        let found = self.stat(s, path)?;
                        return Err(OpFail::Refused { found });
                    }
                    None => self.create_dir_all(s, path, Some(*mode)).map_err(failed)?,
                }
                self.stat(s, path)
            }
            Op::Symlink {
                path,
                target,
                mtime_ns,
                expect,
                ..
            } => {
                // Made under an ignore-suffix name and renamed into place:
                // unreported; if the path holds what is expected (a
                // directory there is trashed first, a file replaced).
                self.resolve(s, path).map_err(failed)?;
                let content = content_of_target(target)
                    .ok_or_else(|| failed(format!("symlink {path}: unknown target {target:?}")))?;
                let found = self.stat(s, path)?;
                if !expect.holds(found.as_ref()) {
                    return Err(OpFail::Refused { found });
                }
                if blind(*expect) && self.tree(s).contains_key(path) {
                    self.unconditional_loss(s, path, "symlink");
                }
                if self.tree(s).get(path).is_some_and(Node::is_dir) {
                    let _ = self.trash(s, path);
                }
                if let Some(parent) = path.parent().filter(|p| !p.is_root()) {
                    self.create_dir_all(s, &parent, None).map_err(failed)?;
                }
                if let Some(old) = self.tree(s).get(path) {
                    self.log.push(format!(
                        "  {} symlink {path} replaces {:?}",
                        l(s),
                        old.norm()
                    ));
                }
                let (ino, ctime) = (self.ino(), self.ctime());
                self.tree_mut(s).insert(
                    path.clone(),
                    Node::Symlink {
                        content,
                        mtime: *mtime_ns,
                        ino,
                        ctime,
                    },
                );
                self.stat(s, path)
            }
            Op::SetAttr {
                path,
                expect,
                mode,
                mtime_ns,
                ..
            } => {
                self.resolve(s, path).map_err(failed)?;
                let found = self.stat(s, path)?;
                if !expect.holds(found.as_ref()) {
                    return Err(OpFail::Refused { found });
                }
                let ctime = self.ctime();
                let Some(n) = self.tree_mut(s).get_mut(path) else {
                    return Err(failed(format!("{path}: no such file or directory")));
                };
                let mut touched = false;
                match n {
                    Node::Dir { mode: m, mtime, .. } | Node::File { mode: m, mtime, .. } => {
                        if let Some(mode) = mode {
                            *m = *mode;
                            touched = true;
                        }
                        if let Some(t) = mtime_ns {
                            *mtime = *t;
                            touched = true;
                        }
                    }
                    Node::Symlink { mtime, .. } => {
                        if let Some(t) = mtime_ns {
                            *mtime = *t;
                            touched = true;
                        }
                    }
                }
                if touched {
                    n.set_ctime(ctime);
                    self.emit_changed(s, path);
                }
                self.stat(s, path)
            }
            Op::Install { .. } => Err(failed("the engine makes no Install op".into())),
        }
    }

    /// `Replica::place`: install `src` (staged by rsync from the other
    /// side) at `p` on `t` if `p` holds what `expect` says; what it
    /// replaces is kept in the trash (a directory is trashed).
    pub(crate) fn place(
        &mut self,
        t: Side,
        p: &RelPath,
        src: &Node,
        expect: Expect,
    ) -> Result<Sig, OpFail> {
        self.resolve(t, p).map_err(OpFail::Failed)?;
        if let Some(parent) = p.parent().filter(|q| !q.is_root()) {
            self.create_dir_all(t, &parent, None)
                .map_err(OpFail::Failed)?;
        }
        let found = self.tree(t).get(p).map(Node::sig);
        if !expect.holds(found.as_ref()) {
            return Err(OpFail::Refused { found });
        }
        if blind(expect) && self.tree(t).contains_key(p) {
            self.unconditional_loss(t, p, "copy");
        }
        match self.tree(t).get(p).cloned() {
            Some(Node::Dir { .. }) => {
                let _ = self.trash(t, p);
            }
            Some(old) => self.reps[t.idx()].trash.push((p.clone(), old)),
            None => {}
        }
        let (ino, ctime) = (self.ino(), self.ctime());
        let node = src.reborn(ino, ctime);
        let sig = node.sig();
        self.tree_mut(t).insert(p.clone(), node);
        self.emit_changed(t, p);
        Ok(sig)
    }
}
