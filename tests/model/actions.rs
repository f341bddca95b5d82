//! What users do: actions as selectors into a replica's tree (resolved by
//! the world when they are applied), and their random strategies.

use proptest::prelude::*;
use twinsync::side::Side;

use crate::cases::U;
use crate::{DIR_MODES, FILE_MODES, NAMES};

#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Create a file `name` in the `dir`-th directory.
    Create { dir: u8, name: u8, mode: u8 },
    /// Create a symlink.
    Symlink { dir: u8, name: u8 },
    /// Write new content into the `file`-th regular file.
    Write { file: u8 },
    /// Overwrite the `file`-th regular file in place with other bytes of
    /// the same size, keeping its mtime (a same-mtime tie).
    Tie { file: u8 },
    /// Restore the `file`-th regular file `cp -p`-style (a new inode, the
    /// same size, mtime and mode) with other bytes or (`same`) its own.
    Restore { file: u8, same: bool },
    /// chmod the `entry`-th file or directory.
    Chmod { entry: u8, mode: u8 },
    /// Create a directory.
    Mkdir { dir: u8, name: u8, mode: u8 },
    /// Remove the `entry`-th file or symlink.
    Rm { entry: u8 },
    /// Remove the `dir`-th directory (not the root) recursively.
    RmDir { dir: u8 },
    /// Rename the `entry`-th entry to `name` in the `dir`-th directory
    /// (replacing a file there, or an empty directory by a directory).
    Rename { entry: u8, dir: u8, name: u8 },
}

/// How a user rewrites a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// New bytes, a new mtime.
    New,
    /// Other bytes of the same size, the same mtime, in place.
    Tie,
    /// A new inode with the same size, mtime and mode: other bytes, or
    /// (`same`) the same ones.
    Restore { same: bool },
}

/// A user action while a batch runs.
#[derive(Debug, Clone)]
pub(crate) enum During {
    /// Any random action.
    User(Side, Action),
    /// An action on the `target`-th path the batch writes or removes, on
    /// the side it acts on.
    Hit { target: u8, hit: Hit },
    /// A hand-written case's action, named by its paths.
    Named(Side, U),
}

/// What a user does to a path a batch is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// Rewrite the file (create one when there is none).
    Rewrite(How),
    /// Remove the entry (recursively).
    Rm,
}

pub(crate) fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Left), Just(Side::Right)]
}

/// A random user action; with `ties`, also same-size, same-mtime rewrites.
pub(crate) fn action(ties: bool) -> impl Strategy<Value = Action> {
    let tie = u32::from(ties);
    let sel = any::<u8>;
    let name = || 0..NAMES.len() as u8;
    prop_oneof![
        4 => (sel(), name(), 0..FILE_MODES.len() as u8)
            .prop_map(|(dir, name, mode)| Action::Create { dir, name, mode }),
        1 => (sel(), name()).prop_map(|(dir, name)| Action::Symlink { dir, name }),
        4 => sel().prop_map(|file| Action::Write { file }),
        tie => sel().prop_map(|file| Action::Tie { file }),
        tie => (sel(), any::<bool>()).prop_map(|(file, same)| Action::Restore { file, same }),
        2 => (sel(), 0..3u8).prop_map(|(entry, mode)| Action::Chmod { entry, mode }),
        3 => (sel(), name(), 0..DIR_MODES.len() as u8)
            .prop_map(|(dir, name, mode)| Action::Mkdir { dir, name, mode }),
        2 => sel().prop_map(|entry| Action::Rm { entry }),
        1 => sel().prop_map(|dir| Action::RmDir { dir }),
        3 => (sel(), sel(), name()).prop_map(|(entry, dir, name)| Action::Rename { entry, dir, name }),
    ]
}
