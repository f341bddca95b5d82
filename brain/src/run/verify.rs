//! Background verification: once a burst has settled, and now and then, both
//! replicas are listed again and compared with the index.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};
use twinsync_proto::{Event, RelPath};

use super::{Brain, Rescan};
use crate::link::Notice;
use crate::side::Side;
use crate::state::State;

/// How long a verification waits for the marks that close the reports of
/// what happened while it listed (an agent answers a mark at once; its
/// filter may be busy with a big tree).
const MARK_WAIT: Duration = Duration::from_secs(30);

/// A burst is over when nothing happened for this long: verification
/// follows (at least [`VERIFY_SCANS`] times the last scan's duration).
const VERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// The quiet time before a verification is at least this many times the
/// last full listing's duration: a verification is a full listing, so on a
/// big tree it takes at most about a tenth of the time (bounded CPU).
const VERIFY_SCANS: u32 = 10;
/// Verification also runs this often when nothing happens.
const VERIFY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// The differences a verification names in the log, one line each (all are
/// counted): enough to see what was missed, without a line per file of a
/// whole subtree.
const REPAIRS_LOGGED: usize = 20;

impl Brain {
    /// When the next verification is due: once a burst has settled, and now
    /// and then; a flush waits for one, after a quiet time since it was
    /// asked for.
    pub(super) fn verify_at(&self) -> Instant {
        let quiet = VERIFY_AFTER.max(self.scan_time * VERIFY_SCANS);
        if let Some(asked) = self.control.flush_asked_at() {
            self.last_activity.max(asked) + quiet
        } else if self.verified {
            self.last_verify + VERIFY_EVERY
        } else {
            self.last_activity + quiet
        }
    }

    /// Background verification: both replicas are listed again and
    /// compared with the index; what differs (and was not reported by
    /// events) is repaired by the batches that follow, and counted as
    /// `repairs`: each one is a bug elsewhere. A user's change made while
    /// the listing ran is in the listing before its event arrives: each
    /// side is asked for a mark, and what its filter reports up to the
    /// mark is a live change, not a repair.
    pub(super) async fn verify(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
    ) -> Result<()> {
        self.show(State::Verifying);
        let ticket = self.control.ticket();
        self.counters.verifications += 1;
        self.rescan(Rescan::Verify).await?;
        self.compare_content().await?;
        let found = self.engine.queue_depth();
        self.last_verify = Instant::now();
        if found == 0 {
            // Settled means durable too.
            self.sync_index();
            self.control.flushed(ticket);
            self.verified = true;
            self.phase.merged();
            return Ok(());
        }
        let suspects = self.engine.pending_paths();
        let reported = self
            .reported_until_marks(notices)
            .await?
            .map(|paths| Reported::new(&paths));
        let missed: Vec<(Side, RelPath)> = suspects
            .into_iter()
            .filter(|(side, path)| {
                let live = reported[*side].touches(path);
                if live {
                    debug!(%side, %path, "verification: changed while listed (a live change)");
                }
                !live
            })
            .collect();
        if missed.is_empty() {
            return Ok(());
        }
        self.counters.repairs += missed.len() as u64;
        for (side, path) in missed.iter().take(REPAIRS_LOGGED) {
            warn!(%side, %path, "verification: differs from the index (repairing)");
        }
        error!(
            repairs = missed.len(),
            "verification found differences the live sync had missed; repairing them (a bug: \
             please report it with the log)"
        );
        Ok(())
    }

    /// Ask each side for a mark and take in its reports until the mark's:
    /// the paths each side reported meanwhile (`None` of a side without
    /// marks: nothing waited for there).
    async fn reported_until_marks(
        &mut self,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
    ) -> Result<[HashSet<RelPath>; 2]> {
        let mut awaited: [Option<u64>; 2] = [None, None];
        for side in Side::BOTH {
            let n = self.links[side].mark().await.ok().flatten();
            self.engine.marked(side, n);
            awaited[side] = n;
        }
        let mut reported: [HashSet<RelPath>; 2] = Default::default();
        let deadline = tokio::time::Instant::now() + MARK_WAIT;
        while awaited.iter().any(Option::is_some) {
            let n = tokio::select! {
                n = notices.recv() => n,
                () = tokio::time::sleep_until(deadline) => {
                    warn!("verification: no mark from an agent within {MARK_WAIT:?}; \
                           what differs counts as repairs");
                    break;
                }
            };
            let Some(n) = n else { break };
            if let Notice::Events(side, id, events) = &n {
                if *id == self.links[*side].id {
                    for ev in events {
                        match ev {
                            Event::Changed { path, .. } | Event::Removed { path } => {
                                reported[*side].insert(path.clone());
                            }
                            Event::Moved { from, to, .. } => {
                                reported[*side].insert(from.clone());
                                reported[*side].insert(to.clone());
                            }
                            Event::Mark { n } if awaited[*side].is_some_and(|a| *n >= a) => {
                                awaited[*side] = None;
                            }
                            Event::RescanNeeded { .. } => {
                                reported[*side].insert(RelPath::root());
                            }
                            _ => {}
                        }
                    }
                }
            }
            self.on_notice(n)?;
        }
        Ok(reported)
    }
}

/// The paths a side reported while a verification listed, for the question
/// asked of each path the verification found changed: was it, or a
/// directory above or below it, reported? Two sets answer it in a lookup
/// per component of the path (comparing each path with each report is
/// quadratic: 18k changes of a flood took 20 s, and the agents, hearing
/// nothing meanwhile, left).
struct Reported {
    /// The paths reported.
    paths: HashSet<RelPath>,
    /// The paths reported and every directory above them.
    within: HashSet<RelPath>,
}

/// `path`, then each directory above it, up to the root.
fn self_and_above(path: &RelPath) -> impl Iterator<Item = RelPath> {
    std::iter::successors(Some(path.clone()), RelPath::parent)
}

impl Reported {
    fn new(paths: &HashSet<RelPath>) -> Reported {
        let mut within = HashSet::new();
        for p in paths {
            for q in self_and_above(p) {
                if !within.insert(q) {
                    break; // what is above it is in already
                }
            }
        }
        Reported {
            paths: paths.clone(),
            within,
        }
    }

    /// Whether a path reported is `path`, is above it or is below it.
    fn touches(&self, path: &RelPath) -> bool {
        self.within.contains(path) || self_and_above(path).any(|q| self.paths.contains(&q))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use twinsync_proto::RelPath;

    use super::Reported;

    #[test]
    fn a_reported_path_touches_itself_what_is_above_and_below_it() {
        let reports: Vec<Vec<&str>> = vec![vec![], vec!["a/b"], vec!["a/b", "c"], vec![""]];
        let asked = ["", "a", "a/b", "a/b/c", "a/bc", "ab", "c", "c/d", "d"];
        for r in reports {
            let paths: HashSet<RelPath> = r.iter().map(|p| RelPath::from(*p)).collect();
            let reported = Reported::new(&paths);
            for p in asked {
                let p = RelPath::from(p);
                // The rule as first written: one comparison per report.
                let expected = paths.iter().any(|r| p.is_within(r) || r.is_within(&p));
                assert_eq!(reported.touches(&p), expected, "{p:?} with reports {r:?}");
            }
        }
    }
}
