//! The private OpenSSH server of the `ssh-*` scenarios: the test kit's
//! loopback sshd (127.0.0.1 only, fresh keys in a directory of the bench's
//! temp root), in its own process group, stopped by Ctrl-C, and taking
//! down on drop everything that runs in its sessions (e.g. twinsync's
//! remote agents).

use std::path::Path;

pub use twinsync_testkit::sshd::Sshd;
use twinsync_testkit::sshd::{self, Error, Options};

use crate::error::{interrupted, Failure, Res};

/// The `Host` alias in the client config.
pub const HOST: &str = "twinsync-bench";

/// Why the ssh scenarios cannot run here, if they cannot: the message to
/// print (and to show in place of the ssh section).
pub fn unavailable() -> Option<String> {
    sshd::missing()
        .map(|(program, package)| format!("{program}: not installed (apt-get install {package})"))
}

/// Generate keys and configs in `dir` (created if needed), start sshd on a
/// free port of 127.0.0.1 and wait until `ssh -F ssh_config
/// twinsync-bench true` works.
pub fn start(dir: &Path) -> Res<Sshd> {
    let opts = Options {
        // A Ctrl-C at the terminal reaches only the bench, which then
        // stops sshd itself.
        own_process_group: true,
        kill_sessions_on_drop: true,
        cancelled: interrupted,
        ..Options::new(HOST)
    };
    Sshd::start_in(dir, opts).map_err(|e| match e {
        Error::Cancelled => Failure::Interrupted,
        // On one line, for the report.
        e => Failure::Other(
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        ),
    })
}
