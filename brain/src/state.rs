//! The state an instance shows: one typed list, whose names are those of
//! `twinsync status` (text and JSON), the `twinsync_state` metric and the
//! `flush` timeout message.
//!
//! The runner's `Phase` is what its main loop does next; a
//! state is what a user is told, which also names the steps inside a phase
//! (`scanning`, `verifying`) and the time before the first (`starting`).
//! Each phase shows as the state of the same name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an instance is doing, as shown to users. The wire names (serde,
/// `Display`, `FromStr`) are the lowercase variant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Before the first listing.
    #[default]
    Starting,
    /// Listing both replicas.
    Scanning,
    /// Applying what a listing of both replicas found.
    Merging,
    /// Applying events as they come.
    Live,
    /// The background verification: a listing and a comparison of contents.
    Verifying,
    /// Paused by `twinsync pause`.
    Paused,
    /// The remote link is lost; waiting for it.
    Reconnecting,
    /// Asked to stop: the batch under way ends, the index is saved.
    Stopping,
}

impl State {
    /// Every state, in the order of the metrics' series.
    pub const ALL: [State; 8] = [
        State::Starting,
        State::Scanning,
        State::Merging,
        State::Live,
        State::Verifying,
        State::Paused,
        State::Reconnecting,
        State::Stopping,
    ];

    /// Its name on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Scanning => "scanning",
            State::Merging => "merging",
            State::Live => "live",
            State::Verifying => "verifying",
            State::Paused => "paused",
            State::Reconnecting => "reconnecting",
            State::Stopping => "stopping",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: the status table aligns it by width.
        f.pad(self.as_str())
    }
}

/// A name that is no [`State`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no such state: {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<State, UnknownState> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn the_wire_names_are_one_list() {
        for st in State::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{st}\""));
            assert_eq!(st.as_str().parse::<State>(), Ok(st));
            assert_eq!(serde_json::from_str::<State>(&json).unwrap(), st);
        }
        assert!("Live".parse::<State>().is_err());
        assert_eq!(format!("{:<6}|", State::Live), "live  |");
    }
}
