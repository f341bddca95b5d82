//! Progress of long work (start-up scans, big copies): bars on a terminal,
//! all in one [`indicatif::MultiProgress`] (so they stack instead of
//! fighting over the last line, and each leaves nothing behind when done),
//! a log line every couple of seconds otherwise. Log lines written while
//! bars are shown go through [`LogWriter`], which lifts the bars for the
//! line and draws them again under it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often progress is logged when not on a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(2);

/// The one display every bar joins (drawn on stderr).
fn multi() -> &'static indicatif::MultiProgress {
    static MULTI: OnceLock<indicatif::MultiProgress> = OnceLock::new();
    MULTI.get_or_init(indicatif::MultiProgress::new)
}

/// A count per second as people read it: `1,810/s`, `3.2/s`.
#[must_use]
pub fn rate(per_sec: f64) -> String {
    if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = per_sec.round() as u64;
        format!("{}/s", crate::human::count(n))
    }
}

/// One piece of long work. Its count may be advanced from several tasks
/// at once (the two halves of a split rsync): every method takes `&self`.
pub struct Progress {
    what: String,
    total: Option<u64>,
    bar: Option<indicatif::ProgressBar>,
    done: AtomicU64,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// Start showing `what` (with a known `total`, a bar; without, a spinner).
    #[must_use]
    pub fn new(what: impl Into<String>, total: Option<u64>) -> Progress {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let human = |key: &'static str| {
                move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let text = match key {
                        "pos" => crate::human::count(s.pos()),
                        "len" => crate::human::count(s.len().unwrap_or(0)),
                        _ => rate(s.per_sec()),
                    };
                    let _ = w.write_str(&text);
                }
            };
            let (template, fallback) = match total {
                Some(_) => (
                    "{msg} [{bar:30}] {count}/{total} ({rate}, {elapsed})",
                    indicatif::ProgressStyle::default_bar(),
                ),
                None => (
                    "{spinner} {msg}: {count} ({rate})",
                    indicatif::ProgressStyle::default_spinner(),
                ),
            };
            let style = indicatif::ProgressStyle::with_template(template)
                .map(|st| {
                    st.with_key("count", human("pos"))
                        .with_key("total", human("len"))
                        .with_key("rate", human("rate"))
                        .progress_chars("=> ")
                })
                .unwrap_or(fallback);
            let b = multi().add(match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            });
            b.set_style(style);
            b.set_message(what.clone());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            what,
            total,
            bar,
            done: AtomicU64::new(0),
            last_log: Mutex::new(Instant::now()),
        }
    }

    /// `n` items done so far.
    pub fn set(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
        self.show(n);
    }

    /// `n` more items done.
    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.show(done);
    }

    /// The items done so far.
    #[must_use]
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    fn show(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            return;
        }
        let mut last = self.last_log.lock().expect("progress");
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            match self.total {
                Some(t) => tracing::info!(done, of = t, "{}…", self.what),
                None => tracing::info!(done, "{}…", self.what),
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            multi().remove(&b);
        }
    }
}

/// stderr for the logs: each line is written with the bars lifted (a
/// `tracing` event is one write), so lines never land inside a bar.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        multi().suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_added_from_several_threads_add_up() {
        let p = Progress::new("copying", Some(4_000));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1_000).for_each(|_| p.add(1)));
            }
        });
        assert_eq!(p.done(), 4_000);
        p.set(10);
        assert_eq!(p.done(), 10);
    }

    #[test]
    fn rates_read_as_counts() {
        assert_eq!(rate(1_810.037_2), "1,810/s");
        assert_eq!(rate(3.25), "3.2/s");
        assert_eq!(rate(0.0), "0.0/s");
    }
}
