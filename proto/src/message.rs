//! The messages: a brain's to its agent (the hello, requests) and an
//! agent's to its brain (the hello, events, listings, answers).

use serde::{Deserialize, Serialize};

use crate::bounded;
use crate::{Expect, FileData, Op, OpFail, OpResult, RelPath, Sig, Stamp, XattrScope, Xattrs};

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
        /// Must be [`MAGIC`](crate::MAGIC).
        magic: String,
        /// Must be [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
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
        /// Must be [`MAGIC`](crate::MAGIC).
        magic: String,
        /// The agent's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
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
