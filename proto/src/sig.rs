//! What the protocol says of one entry: its kind, its signature (its lstat
//! and the digest of its extended attributes), its stamp, and what an
//! operation expects to find.

use serde::{Deserialize, Serialize};

use crate::{XattrDigest, XattrScope};

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
    /// together on both sides (see [`Op::Link`](crate::Op::Link)).
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
    /// An entry of this kind, whatever its version: what the brain expects
    /// of a directory (its stamp changes with every name made in it) or of
    /// an entry whose stamp it never observed. Nothing there, or another
    /// kind, is refused.
    Kind(Kind),
}

impl Expect {
    /// True when `found` (an lstat of the destination) is what is expected.
    #[must_use]
    pub fn holds(self, found: Option<&Sig>) -> bool {
        match (self, found) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::Version(s), Some(f)) => f.stamp() == s,
            (Expect::Kind(k), Some(f)) => f.kind == k,
            _ => false,
        }
    }

    /// True when something must be there: a write that replaces it finds
    /// nothing (a user removed it, unreported yet) and is refused, since
    /// the brain could not tell that removal's report from one of what it
    /// puts there.
    #[must_use]
    pub fn wants_present(self) -> bool {
        matches!(self, Expect::Version(_) | Expect::Kind(_))
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
    /// what the reader finds (see [`FileData::extents`](crate::FileData::extents)).
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
    /// set (see [`Op::Install`](crate::Op::Install)).
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
