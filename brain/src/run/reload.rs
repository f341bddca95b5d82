//! SIGHUP: re-read the excludes, restart both agents with new ones.

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use anyhow::Result;
use tracing::{error, info};

use super::{Brain, Rescan};
use crate::link::Link;
use crate::side::Side;

impl Brain {
    /// SIGHUP: re-read the excludes from the config file; when they changed,
    /// restart both agents with them and reconcile.
    pub(super) async fn reload(&mut self) -> Result<()> {
        let Some(path) = self.settings.config_file.clone() else {
            info!("SIGHUP: no config file to reload (-c)");
            return Ok(());
        };
        let excludes = match crate::config_file::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|file| self.settings.excludes.reread(&file))
        {
            Ok(x) => x,
            Err(e) => {
                error!("SIGHUP: keeping the current excludes: {e}");
                return Ok(());
            }
        };
        if excludes.patterns() == self.settings.excludes.patterns() {
            info!("SIGHUP: excludes unchanged");
            return Ok(());
        }
        info!(excludes = ?excludes.patterns(), "SIGHUP: new excludes; restarting the agents");
        self.options.excludes = excludes.patterns().to_vec();
        self.engine.set_excludes(excludes.compiled().clone());
        self.settings.excludes = excludes;
        for side in Side::BOTH {
            self.links[side].shutdown().await;
            let link = Link::start(
                side,
                &self.transports[side],
                self.settings.agent_log.as_deref(),
                self.roots[side].as_os_str().as_bytes(),
                self.options.clone(),
                self.notices_tx.clone(),
            )
            .await?;
            self.links[side] = Arc::new(link);
        }
        twinsync_proto::set_owners_carried(self.links.iter().all(|l| l.root));
        self.rescan(Rescan::Merge).await
    }
}
