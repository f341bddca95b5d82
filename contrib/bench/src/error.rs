//! How a measurement can end without a figure, and the Ctrl-C flag that every
//! wait checks so an interrupted run still cleans up after itself.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM; polled by every wait loop.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turn SIGINT and SIGTERM into a flag, so that waits stop early and the
/// guards (processes, temp dirs) get dropped normally.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `signal` has no other preconditions.
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

/// Whether the bench was asked to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Why a cell has no figure.
#[derive(Debug, Clone)]
pub enum Failure {
    /// A bounded wait ran out; the text says what was still missing.
    Timeout(String),
    /// The bench itself got SIGINT/SIGTERM.
    Interrupted,
    /// A bounded wait ran out with the destination stuck in a wrong state
    /// that no longer changed (a renamed directory's old name left behind):
    /// `cell` is the table's short form, `detail` says what was left.
    Stuck { cell: &'static str, detail: String },
    /// Anything else (I/O error, a tool that would not start or died).
    Other(String),
}

impl Failure {
    /// A short form for a table cell.
    pub fn short(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "timeout",
            Failure::Interrupted => "interrupted",
            Failure::Stuck { cell, .. } => cell,
            Failure::Other(_) => "error",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout(what) => write!(f, "timeout: {what}"),
            Failure::Interrupted => f.write_str("interrupted"),
            Failure::Stuck { cell, detail } => write!(f, "{cell}: {detail}"),
            Failure::Other(what) => f.write_str(what),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Other(e.to_string())
    }
}

/// Result of anything that can fail inside a scenario.
pub type Res<T> = Result<T, Failure>;

/// Attach the path (or other context) to an I/O error.
pub fn io_ctx<T>(r: io::Result<T>, what: impl fmt::Display) -> Res<T> {
    r.map_err(|e| Failure::Other(format!("{what}: {e}")))
}
