//! What the agents report: events (taken into the engine), errors, a root
//! gone, a link lost.

use std::time::Instant;

use anyhow::{bail, Result};
use tracing::warn;
use twinsync_proto::Event;

use super::Brain;
use crate::link::{Notice, Transport};

impl Brain {
    pub(super) fn on_notice(&mut self, n: Notice) -> Result<()> {
        match n {
            Notice::Events(side, id, _) if id != self.links[side].id => Ok(()),
            Notice::Lost(side, id, _) if id != self.links[side].id => Ok(()),
            Notice::Events(side, _, events) => {
                self.last_activity = Instant::now();
                self.verified = false;
                for ev in events {
                    match &ev {
                        Event::RootGone => bail!(
                            "the {side} replica root {} vanished (deleted, moved or unmounted); \
                             stopping without changing the other side",
                            self.roots[side].display()
                        ),
                        Event::Error { path, message } => {
                            self.counters.errors += 1;
                            warn!(%side, %path, "{message}");
                        }
                        _ => {}
                    }
                    let t = self.engine.on_event(side, ev);
                    self.note_traces(vec![t]);
                }
                self.note_pending(false);
                Ok(())
            }
            Notice::Lost(side, _, why) => {
                if matches!(self.transports[side], Transport::Ssh { .. })
                    && !self.links[side].refused()
                {
                    warn!(%side, "link lost: {why}");
                    self.phase.link_lost();
                    return Ok(());
                }
                if !self.roots[side].is_dir() {
                    bail!(
                        "the {side} replica root {} vanished; stopping without changing the other side",
                        self.roots[side].display()
                    );
                }
                bail!("{side} agent: {why}")
            }
        }
    }
}
