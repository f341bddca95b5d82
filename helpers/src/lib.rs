//! Helpers: the operations applied in place on one replica (move, trash,
//! mkdir, set attributes, stat), and the agent that serves them, with the
//! filter, over the framed protocol.
//!
//! Every operation works on paths relative to the replica root, refuses paths
//! that could escape it (`..`, absolute paths) or that name the replica's own
//! `.twinsync/`, has the kernel resolve them beneath the root without
//! following any symlink, acts through directory descriptors (`*at` calls),
//! and never builds a shell command line.
#![deny(missing_docs)]

pub mod agent;
pub mod beneath;
pub mod confine;
pub mod lock;
pub mod ops;
pub mod pace;
pub mod sparse;
pub mod time;
pub mod xattr;

pub use ops::{Replica, STAGE_DIR};
