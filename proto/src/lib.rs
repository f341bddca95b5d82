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
//!
//! # Layout
//! `sig` (what the protocol says of one entry), `message` (the messages each
//! way), `op` (helper operations and their results), `codec` (one message as
//! one frame), `frame` (frames on blocking streams), `path` (relative paths),
//! `xattr` (extended attributes), `bounded` (lists bounded while decoding).
#![deny(missing_docs)]

mod bounded;
mod codec;
mod frame;
mod message;
mod op;
mod path;
mod sig;
mod xattr;
pub use codec::{decode, encode, try_encode, FrameError};
pub use frame::{read_frame, read_frame_body, write_frame};
pub use message::{AgentOptions, Entry, Event, FromAgent, Request, Response, ToAgent, XattrSource};
pub use op::{Extent, FileData, Op, OpFail, OpResult};
pub use path::RelPath;
pub use sig::{owners_carried, set_owners_carried, Expect, Kind, Sig, Stamp};
pub use xattr::{Xattr, XattrDigest, XattrScope, Xattrs};

/// Identifies a twinsync peer in the handshake.
pub const MAGIC: &str = "twinsync";
/// The version of this protocol; both sides must speak the same one.
pub const PROTOCOL_VERSION: u32 = 15;
/// The largest frame either side accepts or sends (64 MiB); a bigger answer
/// is refused with an error, never sent (nor a panic).
pub const MAX_FRAME: usize = 64 << 20;
/// The most paths, files or operations one request may carry; the brain
/// splits longer lists, an agent refuses them while decoding.
pub const MAX_ITEMS: usize = 1 << 16;

#[cfg(test)]
mod tests;
