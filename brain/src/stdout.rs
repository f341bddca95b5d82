//! Output of the printing subcommands (`man`, `completions`, `status`):
//! written whole, and a reader that stops early (`twinsync man | head`)
//! ends it quietly.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `EPIPE`
//! instead of killing the process; that is the reader's choice, not an
//! error: exit 0 with nothing on stderr (ripgrep does the same).

use std::io::Write;
use std::process::ExitCode;

/// Write `bytes` to stdout and flush. A closed pipe is success; any other
/// write error is printed and exits 1.
#[must_use]
pub fn emit(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // stderr may be closed too: nothing more to say then.
            let _ = writeln!(std::io::stderr(), "twinsync: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}
