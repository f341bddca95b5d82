//! The twinsync wire protocol: the messages a brain and its agents exchange,
//! and how they are framed.
//!
//! # Framing
//! Every message is one frame: a 4-byte big-endian length followed by that
//! many bytes of MessagePack (`rmp-serde`, compact/array encoding). Frames
//! larger than [`MAX_FRAME`] are refused, and so are requests whose lists
//! are longer than [`MAX_ITEMS`]. Both directions use the same framing
//! over the agent's stdin/stdout, whether the agent is a local child process
//! or runs on a remote host behind ssh.
//!
//! # Ordering and versioning
//! - The brain speaks first with [`ToAgent::Hello`]; the agent answers with
//!   [`FromAgent::Hello`] (or [`FromAgent::Fatal`]). Both carry [`MAGIC`] and
//!   [`PROTOCOL_VERSION`]; a peer that sees another version stops with an
//!   error that names both versions. Nothing else is sent before the hellos.
//! - Requests carry an id chosen by the brain; the agent answers each with
//!   exactly one [`FromAgent::Response`] of the same id, in the order the
//!   requests were received. A scan streams [`FromAgent::ScanChunk`] frames
//!   with the request's id before its response.
//! - [`FromAgent::Events`] may be interleaved anywhere after the hello. Events
//!   of one agent are in the order the kernel reported them.
//! - Any change to a message's shape bumps [`PROTOCOL_VERSION`]; golden
//!   snapshots in the tests pin the encoding.
#![deny(missing_docs)]

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

mod bounded;
mod path;
mod xattr;
pub use path::RelPath;
pub use xattr::{Xattr, XattrDigest, XattrScope, Xattrs};

/// Identifies a twinsync peer in the handshake.
pub const MAGIC: &str = "twinsync";
/// The version of this protocol; both sides must speak the same one.
pub const PROTOCOL_VERSION: u32 = 12;
/// The largest frame either side accepts or sends (64 MiB); a bigger answer
/// is refused with an error, never sent (nor a panic).
pub const MAX_FRAME: usize = 64 << 20;
/// The most paths, files or operations one request may carry; the brain
/// splits longer lists, an agent refuses them while decoding.
pub const MAX_ITEMS: usize = 1 << 16;

/// What kind of file system entry a [`Sig`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A named pipe: made with `mknod`, never opened.
    Fifo,
    /// A character device (its numbers in [`Sig::rdev`]): made with `mknod`
    /// where both agents run as root, never opened.
    CharDev,
    /// A block device, likewise.
    BlockDev,
    /// Anything else (a socket: it belongs to the process serving it):
    /// never synced.
    Other,
}

impl Kind {
    /// A fifo or a device: made by `mknod`, never read.
    #[must_use]
    pub fn is_special(self) -> bool {
        matches!(self, Kind::Fifo | Kind::CharDev | Kind::BlockDev)
    }

    /// Not synchronised here: sockets, and devices unless owners are
    /// carried (both agents run as root: only root can make a device).
    #[must_use]
    pub fn unsynced(self) -> bool {
        match self {
            Kind::Other => true,
            Kind::CharDev | Kind::BlockDev => !owners_carried(),
            _ => false,
        }
    }
}

/// The lstat signature of an entry: what the brain compares to tell a real
/// change from an echo of its own write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sig {
    /// Entry kind.
    pub kind: Kind,
    /// Size in bytes (for a symlink: the length of its target).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Inode number on its replica.
    pub ino: u64,
    /// Status-change time (ctime), nanoseconds since the epoch. No user can
    /// set it: with the inode it tells one version of an entry from another
    /// even when size and mtime are equal (a `cp -p` restore, a tie).
    pub ctime_ns: i64,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Device numbers of a device (`st_rdev`), else 0.
    pub rdev: u64,
    /// Digests of its extended attributes (see [`XattrDigest`]).
    pub xattrs: XattrDigest,
    /// Number of names of its inode (hard links). Not part of its content
    /// ([`Sig::same_content`]): the brain keeps the names of one inode
    /// together on both sides (see [`Op::Link`]).
    pub nlink: u32,
    /// Bytes allocated on disk (`st_blocks * 512`): less than `size` for a
    /// file with holes. Not part of its content (the destination's
    /// filesystem allocates as it likes); the brain routes a copy by it
    /// (see [`Sig::data_size`]). Last, and 0 when absent, so an index
    /// written before it still loads.
    #[serde(default)]
    pub allocated: u64,
}

/// Whether owners and groups are part of an entry's state in this process
/// (see [`set_owners_carried`]).
static OWNERS_CARRIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Make numeric owners and groups part of the state compared by
/// [`Sig::same_content`]: set once by the brain when both agents run as root
/// (only root can give an entry another owner; otherwise a difference could
/// never be repaired and would be copied back and forth).
pub fn set_owners_carried(on: bool) {
    OWNERS_CARRIED.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// See [`set_owners_carried`].
#[must_use]
pub fn owners_carried() -> bool {
    OWNERS_CARRIED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The identity of one version of an entry on one replica: a fingerprint of
/// its inode and ctime, which the kernel changes on every write, attribute
/// change or rename of the inode and which no user can set. `Stamp::UNKNOWN`
/// (0) when not observed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Stamp(pub u64);

impl Stamp {
    /// Not observed.
    pub const UNKNOWN: Stamp = Stamp(0);

    /// True when observed.
    #[must_use]
    pub fn is_known(self) -> bool {
        self != Stamp::UNKNOWN
    }
}

/// What a conditional write, replace or trash expects to find at its
/// destination right before it acts (compare-and-swap at the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// Nothing at the path.
    Absent,
    /// The version with this stamp.
    Version(Stamp),
    /// Whatever is there (the brain has no observation to compare with).
    Any,
}

impl Expect {
    /// True when `found` (an lstat of the destination) is what is expected.
    #[must_use]
    pub fn holds(self, found: Option<&Sig>) -> bool {
        match (self, found) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::Version(s), Some(f)) => f.stamp() == s,
            _ => false,
        }
    }
}

impl Sig {
    /// The identity of this version on its replica (see [`Stamp`]).
    #[must_use]
    pub fn stamp(&self) -> Stamp {
        // splitmix64 of both words: a 64-bit fingerprint; never 0.
        let mut z = self
            .ino
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(self.ctime_ns as u64);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Stamp(z.max(1))
    }

    /// At most how many bytes of data a copy of this file carries: its
    /// size, or less when it has holes (its allocation; none allocated is
    /// taken for unknown, as some filesystems report every file, and means
    /// its size). A guess from the stat, for routing only: what is sent is
    /// what the reader finds (see [`FileData::extents`]).
    #[must_use]
    pub fn data_size(&self) -> u64 {
        if self.allocated == 0 {
            self.size
        } else {
            self.size.min(self.allocated)
        }
    }

    /// True when the file may have holes: fewer bytes allocated than its
    /// size (none at all: all holes, or a filesystem that does not say).
    #[must_use]
    pub fn has_holes(&self) -> bool {
        self.allocated < self.size
    }

    /// True when the owners and groups are equal, or not carried (see
    /// [`set_owners_carried`]).
    #[must_use]
    pub fn same_owner(&self, other: &Sig) -> bool {
        !owners_carried() || (self.uid, self.gid) == (other.uid, other.gid)
    }

    /// True when the extended attributes carried (see
    /// [`XattrScope::current`]) are equal.
    #[must_use]
    pub fn same_xattrs(&self, other: &Sig) -> bool {
        let scope = XattrScope::current();
        self.xattrs.of(scope) == other.xattrs.of(scope)
    }

    /// The owner and group to give a copy of this entry, when carried.
    #[must_use]
    pub fn owner(&self) -> Option<(u32, u32)> {
        owners_carried().then_some((self.uid, self.gid))
    }

    /// True when two signatures describe the same content and attributes,
    /// whatever their inodes: kind, mode, owner (when carried), extended
    /// attributes (those carried), and size and mtime (devices: their
    /// numbers). Directories compare by kind, mode, owner and attributes
    /// only: a directory's mtime changes whenever an entry inside it does.
    #[must_use]
    pub fn same_content(&self, other: &Sig) -> bool {
        self.same_xattrs(other) && self.same_stat(other)
    }

    /// [`Sig::same_content`] but for the extended attributes: what an
    /// rsync copy (which carries none) must match before its attributes are
    /// set (see [`Op::Install`]).
    #[must_use]
    pub fn same_stat(&self, other: &Sig) -> bool {
        if self.kind != other.kind || self.mode != other.mode || !self.same_owner(other) {
            return false;
        }
        match self.kind {
            Kind::Dir => true,
            Kind::Symlink => self.size == other.size && self.mtime_ns == other.mtime_ns,
            k if k.is_special() => self.rdev == other.rdev && self.mtime_ns == other.mtime_ns,
            _ => self.size == other.size && self.mtime_ns == other.mtime_ns,
        }
    }
}

/// One entry of a scan: a path and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the replica root.
    pub path: RelPath,
    /// Its lstat signature.
    pub sig: Sig,
}

/// A change the filter saw on its replica, as a fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// An entry appeared or its content or attributes changed; `sig` is its
    /// lstat when the filter handled the event.
    Changed {
        /// The entry.
        path: RelPath,
        /// Its signature.
        sig: Sig,
    },
    /// An entry (and, for a directory, everything below it) is gone.
    Removed {
        /// The entry.
        path: RelPath,
    },
    /// An entry was renamed inside the tree (a directory with its contents).
    Moved {
        /// Old path.
        from: RelPath,
        /// New path.
        to: RelPath,
        /// Signature of the entry at its new path.
        sig: Sig,
    },
    /// The kernel queue overflowed: events were lost and the replica must be
    /// rescanned to be reconciled.
    RescanNeeded {
        /// Why.
        reason: String,
    },
    /// The replica root itself was deleted, moved or unmounted.
    RootGone,
    /// Mark `n` (made by [`Request::Mark`]) came through the kernel's
    /// queue: every event of what the replica's helper did before making it
    /// was reported before this one, so what is reported after it happened
    /// after (never an echo of those writes).
    Mark {
        /// The mark's number.
        n: u64,
    },
    /// A path the filter could not handle (it goes on with the rest).
    Error {
        /// The path concerned.
        path: RelPath,
        /// What went wrong.
        message: String,
    },
}

/// Options the brain hands to an agent in its hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentOptions {
    /// Exclude patterns (regexes matched against the relative path).
    pub excludes: Vec<String>,
    /// Whether to start watching (false for one-shot merges).
    pub watch: bool,
    /// Trash day-folders older than this many days are removed at start
    /// (`None`: keep everything).
    pub trash_days: Option<u32>,
    /// Take the replica's lock (`.twinsync/lock`) for this instance name.
    pub lock: Option<String>,
    /// Files this agent makes get the numeric owner and group of their
    /// source (when it runs as root).
    pub owners: bool,
    /// The contents of files this agent sends (its answers to
    /// [`Request::ReadFiles`]) are paced at this many bytes per second
    /// (`--bwlimit`; `None`: as fast as the stream takes them).
    pub bwlimit: Option<u64>,
    /// Watch by listing every watched directory this often (milliseconds)
    /// instead of taking the kernel's events (`None`).
    pub poll_ms: Option<u32>,
}

/// Messages from the brain to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAgent {
    /// First message: who we are and what to serve.
    Hello {
        /// Must be [`MAGIC`].
        magic: String,
        /// Must be [`PROTOCOL_VERSION`].
        version: u32,
        /// Absolute path of the replica root, as bytes.
        #[serde(with = "serde_bytes")]
        root: Vec<u8>,
        /// Options.
        options: AgentOptions,
    },
    /// A request, answered by one [`FromAgent::Response`] with the same id.
    Request {
        /// Chosen by the brain.
        id: u64,
        /// What to do.
        req: Request,
    },
    /// Liveness probe, answered by [`FromAgent::Pong`].
    Ping,
    /// Stop watching and exit.
    Shutdown,
}

/// An operation on the agent's replica. Paths are relative to its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Walk the tree (placing watches first when watching) and stream every
    /// entry back in [`FromAgent::ScanChunk`] frames.
    Scan,
    /// lstat each path.
    Stat {
        /// Paths to stat.
        #[serde(deserialize_with = "bounded::vec")]
        paths: Vec<RelPath>,
    },
    /// lstat files staged (by rsync) below the replica's
    /// `.twinsync/stage/` (paths relative to it), answered by
    /// [`Response::Stats`]. No other request can name anything in
    /// `.twinsync/`.
    StatStaged {
        /// Paths below the stage.
        #[serde(deserialize_with = "bounded::vec")]
        paths: Vec<RelPath>,
    },
    /// Whether the replica root's path still leads to the directory the
    /// agent serves, with its `.twinsync/` (answered by
    /// [`Response::Intact`]): false once it was deleted, moved away,
    /// unmounted, or its state dir swapped.
    Intact,
    /// Read the targets of symlinks (`None`: missing or not a link).
    ReadLinks {
        /// Paths to read.
        #[serde(deserialize_with = "bounded::vec")]
        paths: Vec<RelPath>,
    },
    /// Hash files (BLAKE3), to tell equal content under different mtimes.
    Hash {
        /// Paths to hash.
        #[serde(deserialize_with = "bounded::vec")]
        paths: Vec<RelPath>,
    },
    /// Read small files whole (content carried inline, for remote replicas),
    /// with their extended attributes of `scope`.
    ReadFiles {
        /// Paths to read.
        #[serde(deserialize_with = "bounded::vec")]
        paths: Vec<RelPath>,
        /// The attributes carried.
        scope: XattrScope,
    },
    /// Read the extended attributes of `scope` of entries (never following
    /// a symlink), answered by [`Response::Xattrs`].
    ReadXattrs {
        /// Paths to read.
        #[serde(deserialize_with = "bounded::vec")]
        paths: Vec<RelPath>,
        /// The attributes carried.
        scope: XattrScope,
    },
    /// Write small files whole: each is written to a temp file under
    /// `.twinsync/tmp`, given its mode and mtime, and renamed into place (a
    /// file it replaces is kept in the trash).
    WriteFiles {
        /// The files.
        #[serde(deserialize_with = "bounded::vec")]
        files: Vec<FileData>,
    },
    /// Copy files from another replica on the same host, with their
    /// extended attributes of `scope`, answered by [`Response::Written`].
    CopyFrom {
        /// The other replica's root, as bytes.
        #[serde(with = "serde_bytes")]
        src_root: Vec<u8>,
        /// Paths to copy, each with what its destination must hold.
        #[serde(deserialize_with = "bounded::vec")]
        paths: Vec<(RelPath, Expect)>,
        /// The attributes carried.
        scope: XattrScope,
    },
    /// The stamps of the files the helper installed since the last
    /// `forget` (kept in the replica's `.twinsync/installed`, so they
    /// outlive a brain killed in the middle of a batch); `forget` empties
    /// the record after reading it.
    Installed {
        /// Empty the record (the brain's index now holds them).
        forget: bool,
    },
    /// Apply a list of helper operations in order; each gets its own result.
    Apply {
        /// The operations.
        #[serde(deserialize_with = "bounded::vec")]
        ops: Vec<Op>,
        /// Another replica on the same host whose entries give the
        /// [`Op::SetAttr`] and [`Op::Mkdir`] operations without extended
        /// attributes theirs (read by the helper as [`Request::CopyFrom`]
        /// reads a source, right before each operation; an entry missing
        /// there keeps its own). `None`: those operations set none.
        xattrs_from: Option<XattrSource>,
    },
    /// Put a mark into the watcher's kernel queue, after everything the
    /// helper did before (answered by [`Response::Marked`] with its
    /// number; the filter reports [`Event::Mark`] when it reads it).
    Mark,
}

/// Where the helper of a local pair reads the extended attributes an
/// operation carries (see [`Request::Apply`]): the other replica, whose
/// helper would otherwise read them first, a round trip more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrSource {
    /// The other replica's root, as bytes (refused by a restricted agent as
    /// in [`Request::CopyFrom`]).
    #[serde(with = "serde_bytes")]
    pub root: Vec<u8>,
    /// The attributes carried.
    pub scope: XattrScope,
}

/// A helper operation applied in place on a replica, without moving data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Rename `from` to `to` (through the ignore-suffix dance). An entry
    /// already at `to` is moved to the trash first, if it is what `expect`
    /// says (else the move is refused). Parents of `to` are created as
    /// needed.
    Move {
        /// Existing path.
        from: RelPath,
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

/// A successful answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The scan is complete; `count` entries were streamed.
    ScanDone {
        /// Number of entries sent.
        count: u64,
    },
    /// Stat results, one per requested path (`None`: missing).
    Stats(Vec<Option<Sig>>),
    /// Apply results, one per op.
    Applied(Vec<OpResult>),
    /// Symlink targets, one per requested path.
    Links(Vec<Option<serde_bytes::ByteBuf>>),
    /// File contents, one per requested path (`None`: unreadable or gone;
    /// the reason is in the `String`).
    Files(Vec<Result<FileData, String>>),
    /// Digests, one per requested path (`None`: unreadable or not a file).
    Hashes(Vec<Option<serde_bytes::ByteBuf>>),
    /// Write results: the signature each file has now.
    Written(Vec<Result<Sig, OpFail>>),
    /// Answer to [`Request::Intact`].
    Intact(bool),
    /// What the helper installed: each path with the stamp it had right
    /// after (latest last).
    Installed(Vec<(RelPath, Stamp)>),
    /// Extended attributes, one list per requested path (`None`: missing
    /// or unreadable).
    Xattrs(Vec<Option<Xattrs>>),
    /// The number of the mark made (see [`Request::Mark`]); `None` when
    /// the agent does not watch (no event will report it).
    Marked(Option<u64>),
}

/// Messages from an agent to the brain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromAgent {
    /// Answer to the brain's hello.
    Hello {
        /// Must be [`MAGIC`].
        magic: String,
        /// The agent's [`PROTOCOL_VERSION`].
        version: u32,
        /// The agent's package version, for error messages.
        agent_version: String,
        /// Device number of the root, to notice a volume swapped underneath.
        root_dev: u64,
        /// The agent runs as root: it can give entries any owner.
        root: bool,
    },
    /// The answer to request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The outcome.
        result: Result<Response, String>,
    },
    /// Part of a scan's listing. The entries of all of a scan's chunks are
    /// in ascending order of their paths (bytes compared), so the brain can
    /// merge them with its index as they arrive.
    ScanChunk {
        /// The scan request's id.
        id: u64,
        /// Entries.
        entries: Vec<Entry>,
        /// Paths that could not be read (a directory that could not be
        /// listed, an entry that could not be stat'ed): the listing says
        /// nothing of what is at or below them, so the brain must not take
        /// their absence for a deletion. Sent no later than the first entry
        /// that follows them.
        unreadable: Vec<RelPath>,
    },
    /// Changes seen by the filter, in order.
    Events(Vec<Event>),
    /// Answer to [`ToAgent::Ping`].
    Pong,
    /// The agent cannot go on (bad root, watch limit, version mismatch).
    Fatal {
        /// What went wrong and what to do about it.
        message: String,
    },
}

/// Errors of framing and decoding.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended cleanly between frames.
    Eof,
    /// An I/O error.
    Io(io::Error),
    /// A frame larger than [`MAX_FRAME`].
    TooLarge(usize),
    /// Bytes that are not a valid message.
    Decode(rmp_serde::decode::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Eof => write!(f, "connection closed"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            FrameError::Decode(e) => write!(f, "undecodable message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Eof
        } else {
            FrameError::Io(e)
        }
    }
}

/// Encode a message into one frame (length prefix included).
///
/// # Panics
/// When the message is larger than [`MAX_FRAME`] (use [`try_encode`] for
/// what may be: answers, inline files).
#[must_use]
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    try_encode(msg).expect("a frame within the limit")
}

/// Encode a message into one frame, or refuse one larger than [`MAX_FRAME`].
///
/// # Errors
/// [`FrameError::TooLarge`].
pub fn try_encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write(&mut buf, msg).expect("protocol messages always serialize");
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    buf[..4].copy_from_slice(&len32.to_be_bytes());
    Ok(buf)
}

/// Decode the body of a frame (without its length prefix).
///
/// # Errors
/// When the bytes are not a valid message of type `T`.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    rmp_serde::from_slice(body).map_err(FrameError::Decode)
}

/// Write one message as a frame, without flushing.
///
/// # Errors
/// I/O errors of the writer; `InvalidInput` for a message larger than
/// [`MAX_FRAME`] (nothing is written).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let frame =
        try_encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&frame)
}

/// Read one frame's body from a blocking reader.
///
/// # Errors
/// [`FrameError::Eof`] at a clean end of stream, otherwise I/O or size errors.
pub fn read_frame_body<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Read and decode one message from a blocking reader.
///
/// # Errors
/// See [`read_frame_body`] and [`decode`].
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> Result<T, FrameError> {
    decode(&read_frame_body(r)?)
}

#[cfg(test)]
mod tests;
