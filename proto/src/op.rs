//! The helper operations a brain asks an agent to apply, their results,
//! and the files carried inline.

use serde::{Deserialize, Serialize};

use crate::bounded;
use crate::{Expect, Kind, RelPath, Sig, Xattrs};

/// A helper operation applied in place on a replica, without moving data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Rename `from` to `to` (through the ignore-suffix dance), if `from`
    /// holds what `source` says (a file a user changed since the brain saw
    /// it is not carried to another name as if it were the version moved:
    /// the move is refused). An entry already at `to` is moved to the trash
    /// first, if it is what `expect` says (else the move is refused).
    /// Parents of `to` are created as needed.
    Move {
        /// Existing path.
        from: RelPath,
        /// What must be at `from`.
        source: Expect,
        /// New path.
        to: RelPath,
        /// What must be at `to`.
        expect: Expect,
    },
    /// Move the entry (with everything below it) to the replica's trash,
    /// if it is the expected version (a file changed since the brain saw it
    /// is refused: a modification wins over a deletion).
    Trash {
        /// The entry.
        path: RelPath,
        /// What must be there.
        expect: Expect,
    },
    /// Install a file staged (by rsync) at `staged`, a path relative to
    /// the replica's `.twinsync/stage/`, at `path`, if the destination
    /// holds what is expected; what it replaces goes to the trash.
    Install {
        /// The staged file, below `.twinsync/stage/`.
        staged: RelPath,
        /// Where it goes.
        path: RelPath,
        /// What must be there.
        expect: Expect,
        /// The version the brain decided to copy: what is staged must be
        /// it (size and mtime), or the source changed meanwhile.
        want: Sig,
        /// Its extended attributes, read from the source (rsync copies
        /// none: one rule for every way a file arrives).
        xattrs: Xattrs,
    },
    /// Move the losing version of a conflict into the replica's
    /// `.twinsync/conflicts/` (when conflict copies are not kept beside).
    KeepConflict {
        /// The entry.
        path: RelPath,
    },
    /// Create a directory (and missing parents) with this mode; an existing
    /// directory just gets the mode; anything else in the way refuses it
    /// (the brain trashes what it expects there first).
    Mkdir {
        /// The directory.
        path: RelPath,
        /// Permission bits.
        mode: u32,
        /// Numeric owner and group to give it (an existing one too).
        owner: Option<(u32, u32)>,
        /// Its extended attributes, if to be set (after the owner).
        xattrs: Option<Xattrs>,
    },
    /// Create (or replace) a symlink, with its mtime, atomically: it is made
    /// under an ignore-suffix name and renamed into place, if the path
    /// holds what `expect` says (else refused; a directory expected there
    /// goes to the trash first).
    Symlink {
        /// The link.
        path: RelPath,
        /// Its target, as bytes.
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
        /// Its modification time in ns.
        mtime_ns: i64,
        /// Numeric owner and group to give it.
        owner: Option<(u32, u32)>,
        /// Its extended attributes (after the owner).
        xattrs: Xattrs,
        /// What must be at `path`.
        expect: Expect,
    },
    /// Create (or replace) a fifo or a device, with its mode, owner and
    /// mtime, atomically: made under an ignore-suffix name and renamed into
    /// place.
    Mknod {
        /// The entry.
        path: RelPath,
        /// [`Kind::Fifo`], [`Kind::CharDev`] or [`Kind::BlockDev`].
        kind: Kind,
        /// Permission bits.
        mode: u32,
        /// Device numbers (devices only).
        rdev: u64,
        /// Modification time in ns.
        mtime_ns: i64,
        /// Numeric owner and group to give it.
        owner: Option<(u32, u32)>,
        /// Its extended attributes (after the owner).
        xattrs: Xattrs,
    },
    /// Make `path` another name of the file at `existing` (a hard link),
    /// atomically: linked under an ignore-suffix name in `path`'s directory
    /// and renamed into place, if `path` holds what `expect` says (else
    /// refused; a directory expected there goes to the trash first) and
    /// `existing` is a regular file of `want`'s size and mtime (else the
    /// operation fails). Both paths are resolved beneath the replica's
    /// root, neither through a symlink: no data is sent.
    Link {
        /// A name the file already has.
        existing: RelPath,
        /// The new name.
        path: RelPath,
        /// What must be at `path`.
        expect: Expect,
        /// The version `existing` must hold (size and mtime compared).
        want: Sig,
    },
    /// Set owner, extended attributes, permission bits and/or mtime.
    SetAttr {
        /// The entry.
        path: RelPath,
        /// What must be there (another kind of entry, or nothing: a user
        /// replaced or removed it since the brain saw it; refused).
        expect: Expect,
        /// Permission bits, if to be set.
        mode: Option<u32>,
        /// Modification time in ns, if to be set.
        mtime_ns: Option<i64>,
        /// Numeric owner and group, if to be set (before the mode: a chown
        /// clears the set-user-ID bit).
        owner: Option<(u32, u32)>,
        /// The whole list of extended attributes of its scope, if to be set
        /// (after the owner: a chown clears `security.capability`).
        xattrs: Option<Xattrs>,
    },
}

impl Op {
    /// The path the operation makes, changes or removes (a move's
    /// destination): what its result's lstat is of.
    #[must_use]
    pub fn target(&self) -> &RelPath {
        match self {
            Op::Move { to, .. } => to,
            Op::Trash { path, .. }
            | Op::KeepConflict { path }
            | Op::Mkdir { path, .. }
            | Op::Symlink { path, .. }
            | Op::SetAttr { path, .. }
            | Op::Mknod { path, .. }
            | Op::Link { path, .. }
            | Op::Install { path, .. } => path,
        }
    }
}

/// A whole file carried inline: its data segments, the rest holes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData {
    /// Path relative to the root.
    pub path: RelPath,
    /// Its data, as segments in ascending order of offset, not
    /// overlapping, non-empty, within `sig.size`; every byte outside them (and after the
    /// last, up to `sig.size`: the apparent size) is a hole, read as zero.
    /// A dense file is one segment at 0, an empty one none.
    #[serde(deserialize_with = "bounded::vec")]
    pub extents: Vec<Extent>,
    /// Its signature when read (size, mode and mtime are applied on write).
    pub sig: Sig,
    /// Its extended attributes when read (set on write).
    pub xattrs: Xattrs,
    /// What the destination must hold right before the file replaces it.
    pub expect: Expect,
}

impl FileData {
    /// The bytes of data carried (the holes not counted).
    #[must_use]
    pub fn data_len(&self) -> u64 {
        self.extents.iter().map(|e| e.data.len() as u64).sum()
    }

    /// True when the segments are as [`FileData::extents`] says: in order,
    /// not overlapping, non-empty and within the file's size (what a reader may
    /// trust and a writer must check before it writes anything).
    #[must_use]
    pub fn extents_valid(&self) -> bool {
        let mut next = 0u64;
        for e in &self.extents {
            let Some(end) = e.offset.checked_add(e.data.len() as u64) else {
                return false;
            };
            if e.data.is_empty() || e.offset < next || end > self.sig.size {
                return false;
            }
            next = end;
        }
        true
    }
}

/// One data segment of a file sent inline (see [`FileData::extents`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Where it starts in the file.
    pub offset: u64,
    /// Its bytes.
    pub data: serde_bytes::ByteBuf,
}

impl Extent {
    /// The segments of a dense file holding `data`: one at 0, none when
    /// it is empty.
    #[must_use]
    pub fn dense(data: Vec<u8>) -> Vec<Extent> {
        if data.is_empty() {
            return Vec::new();
        }
        vec![Extent {
            offset: 0,
            data: serde_bytes::ByteBuf::from(data),
        }]
    }
}

/// Why an operation did not act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpFail {
    /// The destination did not hold what was expected: someone changed it.
    /// `found` is what it holds (its lstat).
    Refused {
        /// The destination's state.
        found: Option<Sig>,
    },
    /// The operation failed; the message names it and its path.
    Failed(String),
}

impl std::fmt::Display for OpFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpFail::Refused { .. } => f.write_str("refused: the destination changed meanwhile"),
            OpFail::Failed(m) => f.write_str(m),
        }
    }
}

/// Result of one [`Op`]: the lstat of the entry it made or changed (`None`
/// for a removal).
pub type OpResult = Result<Option<Sig>, OpFail>;
