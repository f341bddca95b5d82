//! The twinsync brain: the coordinator on the left side. It receives both
//! replicas' event streams, drops echoes, batches the rest, decides direction
//! and conflicts (in [`engine`], pure), and applies them through the agents'
//! helpers and rsync.
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod config_file;
pub mod conflict;
pub mod control;
pub mod dir_mtimes;
pub mod engine;
pub mod excludes;
pub mod execute;
pub mod human;
pub mod index;
pub mod link;
pub mod man;
pub mod metrics;
pub mod options;
pub mod progress;
pub mod remote;
pub mod report;
pub mod rsync;
pub mod run;
pub mod side;
pub mod state;
pub mod status;
pub mod stdout;

pub use cli::main_with_args;
