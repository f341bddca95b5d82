//! Bounded waits: poll a condition until it holds or a deadline passes.
//! Every wait of the tests and the bench goes through [`poll_until`], so
//! none sleeps to show that nothing happens and none waits forever.

use std::convert::Infallible;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How a bounded poll runs: the deadline is `limit` after `since`, which
/// is also where the returned duration starts.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// When the wait (and the measured duration) started.
    pub since: Instant,
    /// How long after `since` the condition may take.
    pub limit: Duration,
    /// The pause between two checks.
    pub every: Duration,
}

impl Wait {
    /// A wait starting now.
    pub fn new(limit: Duration, every: Duration) -> Wait {
        Wait {
            since: Instant::now(),
            limit,
            every,
        }
    }
}

/// Why [`poll_until`] stopped without its condition.
#[derive(Debug)]
pub enum Stopped<E> {
    /// The deadline passed (the condition was checked once more after it).
    TimedOut,
    /// The condition returned this error.
    Failed(E),
}

/// Check `done` every `w.every` until it returns true; the time since
/// `w.since` then. An error from `done` ends the wait at once.
pub fn poll_until<E>(
    w: Wait,
    mut done: impl FnMut() -> Result<bool, E>,
) -> Result<Duration, Stopped<E>> {
    loop {
        if done().map_err(Stopped::Failed)? {
            return Ok(w.since.elapsed());
        }
        if w.since.elapsed() > w.limit {
            return Err(Stopped::TimedOut);
        }
        sleep(w.every);
    }
}

/// [`poll_until`] for a condition that cannot fail: whether it came true
/// within `limit`, checked every `every`.
pub fn wait_for(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    poll_until(Wait::new(limit, every), || Ok::<_, Infallible>(done())).is_ok()
}
