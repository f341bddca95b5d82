//! Progress of long work (start-up scans, big copies): a bar on a terminal
//! (indicatif), a log line every couple of seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often progress is logged when not on a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(2);

/// One piece of long work.
pub struct Progress {
    what: String,
    total: Option<u64>,
    bar: Option<indicatif::ProgressBar>,
    last_log: Instant,
}

impl Progress {
    /// Start showing `what` (with a known `total`, a bar; without, a spinner).
    #[must_use]
    pub fn new(what: impl Into<String>, total: Option<u64>) -> Progress {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {pos}/{len} ({per_sec})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                ),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg}: {pos}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                ),
            };
            b.set_message(what.clone());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            what,
            total,
            bar,
            last_log: Instant::now(),
        }
    }

    /// `n` items done so far.
    pub fn set(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            match self.total {
                Some(t) => tracing::info!(done = n, of = t, "{}…", self.what),
                None => tracing::info!(done = n, "{}…", self.what),
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
