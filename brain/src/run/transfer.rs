//! Where a batch's copies go through: both replicas as rsync endpoints
//! (local paths, or a host over the ssh master connection), and rsync's
//! options.

use tracing::warn;

use super::Brain;
use crate::config::Settings;
use crate::link::Transport;
use crate::rsync::{self, End, RsyncOptions};
use crate::side::Side;

fn end_of(t: &Transport, root: &std::path::Path, settings: &Settings) -> End {
    match t {
        Transport::Local => End::Local(root.to_path_buf()),
        Transport::Ssh {
            session,
            host,
            program,
        } => End::Remote {
            host: host.clone(),
            path: root.to_path_buf(),
            ctl: session.control_socket().to_path_buf(),
            config: settings.ssh_config.clone(),
            program: program.clone(),
        },
    }
}

/// rsync's options from the settings. `TWINSYNC_RSYNC` names another rsync
/// binary (or a missing one, to exercise the fallback).
pub(super) fn rsync_options(settings: &Settings) -> RsyncOptions {
    let rsync_program = std::env::var("TWINSYNC_RSYNC").unwrap_or_else(|_| "rsync".into());
    RsyncOptions {
        program: rsync_program.clone(),
        extra: settings.rsync_extra.clone(),
        bwlimit: settings.bwlimit,
        available: {
            let found = rsync::on_path(&rsync_program);
            if !found {
                warn!(
                    "rsync is not installed: local copies are made by twinsync's own helper \
                     (no delta transfer). Install rsync (apt-get install rsync) for that, and \
                     for large files to or from a remote replica"
                );
            }
            found
        },
    }
}

impl Brain {
    /// Both replicas as rsync endpoints (from their transports).
    pub(super) fn ends(&self) -> [End; 2] {
        [Side::Left, Side::Right]
            .map(|s| end_of(&self.transports[s], &self.roots[s], &self.settings))
    }
}
