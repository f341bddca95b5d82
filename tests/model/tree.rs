//! The replica trees: entries with their inodes and stamps, what must agree
//! between the two sides, and the paths below, above and around an entry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use twinsync_proto::{Kind, RelPath, Sig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir {
        mode: u32,
        mtime: i64,
        ino: u64,
        ctime: u64,
        /// Which user `mkdir` this directory stands for (kept by moves and
        /// by the copies the engine makes of it on the other side).
        id: u64,
    },
    File {
        content: u64,
        mtime: i64,
        mode: u32,
        ino: u64,
        ctime: u64,
    },
    Symlink {
        content: u64,
        mtime: i64,
        ino: u64,
        ctime: u64,
    },
}

/// A node without its inode and (for directories) mtime: what must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Norm {
    Dir { mode: u32 },
    File { content: u64, mtime: i64, mode: u32 },
    Symlink { content: u64, mtime: i64 },
}

impl Node {
    pub(crate) fn sig(&self) -> Sig {
        match *self {
            Node::Dir {
                mode,
                mtime,
                ino,
                ctime,
                ..
            } => Sig {
                kind: Kind::Dir,
                size: 0,
                mtime_ns: mtime,
                mode,
                ino,
                ctime_ns: ctime as i64,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 1,
                allocated: 0,
                xattrs: Default::default(),
            },
            Node::File {
                content,
                mtime,
                mode,
                ino,
                ctime,
            } => Sig {
                kind: Kind::File,
                // Sizes collide on purpose: only mtimes (or, for a tie or a
                // `cp -p` restore, only stamps and bytes) tell edits apart.
                size: content % 5,
                mtime_ns: mtime,
                mode,
                ino,
                ctime_ns: ctime as i64,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 1,
                allocated: 0,
                xattrs: Default::default(),
            },
            Node::Symlink {
                content,
                mtime,
                ino,
                ctime,
            } => Sig {
                kind: Kind::Symlink,
                size: link_target(content).len() as u64,
                mtime_ns: mtime,
                mode: 0o777,
                ino,
                ctime_ns: ctime as i64,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 1,
                allocated: 0,
                xattrs: Default::default(),
            },
        }
    }

    pub(crate) fn norm(&self) -> Norm {
        match *self {
            Node::Dir { mode, .. } => Norm::Dir { mode },
            Node::File {
                content,
                mtime,
                mode,
                ..
            } => Norm::File {
                content,
                mtime,
                mode,
            },
            Node::Symlink { content, mtime, .. } => Norm::Symlink { content, mtime },
        }
    }

    /// What the node is, beyond its attributes: a directory's id or a
    /// file's or symlink's content.
    pub(crate) fn identity(&self) -> (bool, u64) {
        match *self {
            Node::Dir { id, .. } => (true, id),
            Node::File { content, .. } | Node::Symlink { content, .. } => (false, content),
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }

    pub(crate) fn content(&self) -> Option<u64> {
        match *self {
            Node::Dir { .. } => None,
            Node::File { content, .. } | Node::Symlink { content, .. } => Some(content),
        }
    }

    /// The same entry as a new inode (a copy renamed into place).
    pub(crate) fn reborn(&self, new_ino: u64, new_ctime: u64) -> Node {
        let mut n = self.clone();
        match &mut n {
            Node::Dir { ino, ctime, .. }
            | Node::File { ino, ctime, .. }
            | Node::Symlink { ino, ctime, .. } => {
                *ino = new_ino;
                *ctime = new_ctime;
            }
        }
        n
    }

    /// The inode's status changed (write, chmod, rename): a new ctime.
    pub(crate) fn set_ctime(&mut self, new: u64) {
        match self {
            Node::Dir { ctime, .. } | Node::File { ctime, .. } | Node::Symlink { ctime, .. } => {
                *ctime = new;
            }
        }
    }
}

pub(crate) type Tree = BTreeMap<RelPath, Node>;

/// The target of a symlink whose content is `c`.
pub(crate) fn link_target(c: u64) -> Vec<u8> {
    format!("t{c}").into_bytes()
}

pub(crate) fn content_of_target(target: &[u8]) -> Option<u64> {
    std::str::from_utf8(target.strip_prefix(b"t")?)
        .ok()?
        .parse()
        .ok()
}

/// `p` and everything below it, in path order.
pub(crate) fn within(tree: &Tree, p: &RelPath) -> Vec<RelPath> {
    let mut out: Vec<RelPath> = tree
        .get_key_value(p)
        .map(|(k, _)| k.clone())
        .into_iter()
        .collect();
    let (lo, hi) = p.children_range();
    out.extend(tree.range(lo..hi).map(|(k, _)| k.clone()));
    out
}

pub(crate) fn subtree(tree: &Tree, p: &RelPath) -> Vec<(RelPath, Norm)> {
    within(tree, p)
        .into_iter()
        .map(|k| {
            let n = tree[&k].norm();
            (k, n)
        })
        .collect()
}

/// The ancestors of `p` (root excluded), shallowest first.
pub(crate) fn ancestors(p: &RelPath) -> Vec<RelPath> {
    let mut v = Vec::new();
    let mut cur = p.parent();
    while let Some(a) = cur {
        if a.is_root() {
            break;
        }
        cur = a.parent();
        v.push(a);
    }
    v.reverse();
    v
}

/// The digest of a file's bytes (the model's content number).
pub(crate) fn digest(content: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&content.to_le_bytes());
    d[8] = 0xd1;
    d
}

pub(crate) fn show_tree(tree: &Tree) -> String {
    let mut s = String::new();
    for (k, n) in tree {
        let _ = write!(s, "\n      {k}: {:?}", n.norm());
    }
    s
}
