//! Helpers: the operations applied in place on one replica (move, trash,
//! mkdir, set attributes, stat), and the agent that serves them, with the
//! filter, over the framed protocol.
//!
//! Every operation works on paths relative to the replica root, refuses paths
//! that could escape it (`..`, absolute paths, a walk through a symlink), and
//! never builds a shell command line.
#![deny(missing_docs)]

pub mod agent;
pub mod lock;
pub mod ops;
pub mod time;

pub use ops::{Replica, STAGE_DIR};
