//! The remote link lost: reconnect with backoff, then merge again.

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{info, warn};
use twinsync_proto::Event;

use super::start::start_remote;
use super::{Brain, Rescan};
use crate::link::Notice;
use crate::side::Side;
use crate::state::State;

/// The wait before the first try: a remote agent restarting or a network
/// blip is often over by then, and a connection refused at once does not
/// turn into a busy loop.
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(500);
/// The wait doubles after each failed try, up to this: a long outage costs
/// one connection attempt every half-minute, and the replicas are
/// reconciled at most that long after the host is back.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);
/// A try with no answer within this long is given up and made again: a
/// connection that hangs half-open would otherwise block the reconnection
/// for good. Enough for an ssh handshake and an agent start on a slow link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

impl Brain {
    /// The remote link is gone: reconnect with backoff, then reconcile what
    /// changed on either side while apart by a full merge against the index
    /// (nothing made during the outage is lost, no deletion comes back).
    pub(super) async fn reconnect(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
    ) -> Result<()> {
        let side = Side::Right;
        let Some(spec) = self.settings.remote.clone() else {
            bail!("the right agent is gone");
        };
        let mut delay = RECONNECT_FIRST_DELAY;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        loop {
            // Drop the stale link (its agent, if still alive remotely, exits
            // on its own watchdog).
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = sigterm.recv() => bail!("stopped while reconnecting"),
                _ = sigint.recv() => bail!("stopped while reconnecting"),
            }
            // Events of the live side keep queueing; a full rescan follows.
            // Meanwhile they are changes waiting: the lag shows the outage
            // (the metrics, the status, the OCF monitor's max_lag).
            while let Ok(n) = notices.try_recv() {
                if let Notice::Events(Side::Left, _, evs) = n {
                    if !evs.is_empty() {
                        self.note_change_waits();
                    }
                    for ev in evs {
                        if matches!(ev, Event::RootGone) {
                            bail!("the left replica root vanished; stopping");
                        }
                    }
                }
            }
            info!(host = %spec.display_host(), "reconnecting");
            self.show(State::Reconnecting);
            let attempt = start_remote(
                &spec,
                &self.settings,
                self.roots[side].as_os_str().as_bytes(),
                self.options.clone(),
                self.notices_tx.clone(),
            );
            // Bounded: a connection that hangs half-open is retried.
            let attempt = async {
                tokio::time::timeout(CONNECT_TIMEOUT, attempt)
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("no answer within {} s", CONNECT_TIMEOUT.as_secs())
                    })?
            };
            match attempt.await {
                Ok((transport, link)) => {
                    self.transports[side] = transport;
                    self.links[side] = Arc::new(link);
                    twinsync_proto::set_owners_carried(self.links.iter().all(|l| l.root));
                    self.phase.reconnected();
                    info!("reconnected; reconciling both replicas");
                    // Stale notices of the old link are dropped.
                    while notices.try_recv().is_ok() {}
                    self.load_installed().await?;
                    return self.rescan(Rescan::Merge).await;
                }
                Err(e) => {
                    warn!("reconnect failed: {e:#}");
                    delay = (delay * 2).min(RECONNECT_MAX_DELAY);
                }
            }
        }
    }
}
