//! What the end-to-end tests (`tests/e2e`), the campaign (`tests/campaign`)
//! and the benchmark (`contrib/bench`) share, one implementation each:
//!
//! - [`sshd`]: a throwaway OpenSSH server on 127.0.0.1 with generated keys;
//! - [`wait`]: polling a condition until it holds or a deadline passes;
//! - [`tree`]: walking a replica into a map that two replicas compare by;
//! - [`procs`]: the process table, from `/proc`;
//! - [`tools`]: finding programs on `$PATH`.
//!
//! Errors are returned, not panicked on, except by the helpers meant for
//! tests only (they say so); the bench reports what the tests assert.

#![deny(missing_docs)]

pub mod procs;
pub mod sshd;
pub mod tools;
pub mod tree;
pub mod wait;
