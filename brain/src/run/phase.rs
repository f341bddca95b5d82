//! The runner's phase: what the main loop does at its next turn, and the
//! transitions between phases.

use crate::state::State;

/// Where the runner is. The main loop matches on it at each turn; every
/// change goes through one of the transitions below, named after what
/// happened:
///
/// - start-up: `Merging` (the first listing is a merge);
/// - [`listed`](Phase::listed) (a listing of both replicas was merged):
///   `Merging` or `Live` to `Merging` when it found work, else to `Live`;
/// - [`merged`](Phase::merged) (a merge's last batch ran, or a verification
///   found nothing to do): `Merging` to `Live`;
/// - [`link_lost`](Phase::link_lost): any phase but `Stopping` to
///   `Reconnecting`;
/// - [`reconnected`](Phase::reconnected): `Reconnecting` to `Merging`;
/// - [`stop`](Phase::stop) (SIGTERM, SIGINT): any phase to `Stopping`, which
///   ends the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Batches apply what a full listing of both replicas found: at
    /// start-up, after a reconnection, on SIGHUP or SIGUSR1, or a rescan
    /// while live (asked for by the engine, or a verification that found
    /// differences). The listing passed the mass-deletion net as a whole,
    /// so its deletions are not held again; the index is compacted after
    /// each batch. A big merge takes several batches: the last one ends it.
    Merging,
    /// Batches apply the events as they come; live deletions wait for their
    /// side to be quiet and its root to be seen intact, under the live
    /// mass-deletion net. Verification runs once a burst has settled.
    Live,
    /// The remote link is lost: nothing is planned until it is back, then
    /// a merge reconciles what changed on either side meanwhile.
    Reconnecting,
    /// SIGTERM or SIGINT: the batch under way ends, the index is saved, the
    /// run returns.
    Stopping,
}

impl Phase {
    /// Whether batches may be planned: merging or live.
    pub(super) fn plans(self) -> bool {
        matches!(self, Phase::Merging | Phase::Live)
    }

    /// A listing of both replicas was merged against the index: its batches
    /// follow when it found work. A lost link or a stop asked for meanwhile
    /// still wins.
    pub(super) fn listed(&mut self, work: bool) {
        if self.plans() {
            *self = if work { Phase::Merging } else { Phase::Live };
        }
    }

    /// A merge's last batch ran, or a verification found the replicas equal
    /// to the index: the pair is live.
    pub(super) fn merged(&mut self) {
        if *self == Phase::Merging {
            *self = Phase::Live;
        }
    }

    /// The remote link is lost. A stop asked for still wins: the run ends
    /// without reconnecting.
    pub(super) fn link_lost(&mut self) {
        if *self != Phase::Stopping {
            *self = Phase::Reconnecting;
        }
    }

    /// The remote agent is back: a merge reconciles both replicas.
    pub(super) fn reconnected(&mut self) {
        *self = Phase::Merging;
    }

    /// A signal asked to stop.
    pub(super) fn stop(&mut self) {
        *self = Phase::Stopping;
    }
}

/// Each phase shows as the state of the same name (the steps inside one,
/// scanning and verifying, are shown by the runner as it takes them).
impl From<Phase> for State {
    fn from(p: Phase) -> State {
        match p {
            Phase::Merging => State::Merging,
            Phase::Live => State::Live,
            Phase::Reconnecting => State::Reconnecting,
            Phase::Stopping => State::Stopping,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Phase;

    #[test]
    fn a_listing_with_work_merges_and_the_last_batch_makes_it_live() {
        let mut p = Phase::Live;
        p.listed(true);
        assert_eq!(p, Phase::Merging);
        p.merged();
        assert_eq!(p, Phase::Live);
        p.listed(false);
        assert_eq!(p, Phase::Live);
    }

    #[test]
    fn a_lost_link_or_a_stop_outlasts_a_listing_and_a_merge() {
        for held in [Phase::Reconnecting, Phase::Stopping] {
            let mut p = held;
            p.listed(true);
            p.merged();
            assert_eq!(p, held);
        }
    }

    #[test]
    fn a_stop_wins_over_a_lost_link() {
        let mut p = Phase::Merging;
        p.stop();
        p.link_lost();
        assert_eq!(p, Phase::Stopping);
        let mut p = Phase::Live;
        p.link_lost();
        assert_eq!(p, Phase::Reconnecting);
        p.reconnected();
        assert_eq!(p, Phase::Merging);
    }
}
