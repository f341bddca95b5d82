//! The bandwidth limit (`--bwlimit`) of file contents sent without rsync:
//! a pacer that says how long to wait before sending the next bytes so that
//! the average rate stays at the limit. It does no I/O and takes the clock
//! as an argument; the brain's writer (contents to a remote agent) sleeps
//! asynchronously, the agent's (contents to the brain) blocks.

use std::time::{Duration, Instant};

/// Bytes sent between two waits: small enough that the rate holds within a
/// frame, large enough that the sleeps stay few.
pub const SLICE: usize = 16 * 1024;

/// Paces a stream of bytes at `rate` bytes per second. No credit is saved
/// while idle: a burst after a quiet spell is paced from its first slice.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    /// When the bytes accounted so far have been sent at the rate.
    free_at: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rate` bytes per second (at least 1).
    #[must_use]
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            free_at: None,
        }
    }

    /// The limit, in bytes per second.
    #[must_use]
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Account `bytes` about to be sent at `now`; returns how long to wait
    /// before sending them.
    pub fn delay(&mut self, bytes: usize, now: Instant) -> Duration {
        let start = self.free_at.map_or(now, |t| t.max(now));
        #[allow(clippy::cast_precision_loss)] // a rate and a slice: far below 2^52
        let takes = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        self.free_at = Some(start + takes);
        start - now
    }

    /// How long from `now` until the bytes accounted so far have had their
    /// time (zero when they have).
    #[must_use]
    pub fn drained_in(&self, now: Instant) -> Duration {
        self.free_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// Write `buf` to `w` at the rate, in [`SLICE`]s, sleeping between them.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_all(&mut self, w: &mut impl std::io::Write, buf: &[u8]) -> std::io::Result<()> {
        for slice in buf.chunks(SLICE) {
            let wait = self.delay(slice.len(), Instant::now());
            if !wait.is_zero() {
                // What is buffered goes out before the pause.
                w.flush()?;
                std::thread::sleep(wait);
            }
            w.write_all(slice)?;
        }
        Ok(())
    }

    /// How many bytes of contents one request may carry so that sending it
    /// takes about `within` (never less than one slice, never more than
    /// `max`): a frame that trickles for longer would starve the pings that
    /// share its stream and have the link taken for dead.
    #[must_use]
    pub fn budget(&self, within: Duration, max: u64) -> u64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let b = (self.rate as f64 * within.as_secs_f64()) as u64;
        b.clamp(SLICE as u64, max.max(SLICE as u64))
    }
}

/// A bandwidth limit as rsync's `--bwlimit` takes it: a number of KiB per
/// second, or a number with a suffix `B`, `K`, `M` or `G` (powers of 1024;
/// case ignored; `KiB`, `MB/s`-style tails are not). `0` means no limit
/// (`None`).
///
/// # Errors
/// What was expected, when `s` is not such a rate.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "K"),
    };
    let mult: f64 = match unit.to_ascii_uppercase().as_str() {
        "B" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(expected(s)),
    };
    let n: f64 = num.parse().map_err(|_| expected(s))?;
    let bytes = n * mult;
    if !(0.0..=1e15).contains(&bytes) {
        return Err(expected(s));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bytes = bytes.round() as u64;
    Ok((bytes > 0).then_some(bytes))
}

fn expected(s: &str) -> String {
    format!(
        "expected a rate in KiB/s, or with a suffix B, K, M or G (\"500\", \"2M\"; 0: no limit), \
         found {s:?}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_takes_its_bytes_over_the_rate() {
        let mut p = Pacer::new(1000);
        let t0 = Instant::now();
        // Sent as fast as allowed: each slice waits for the one before.
        let mut now = t0;
        for _ in 0..10 {
            now += p.delay(100, now);
        }
        // The tenth 100 bytes start after 900 bytes at 1000 B/s.
        assert_eq!(now - t0, Duration::from_millis(900));
    }

    #[test]
    fn no_credit_is_saved_while_idle() {
        let mut p = Pacer::new(1000);
        let t0 = Instant::now();
        assert_eq!(p.delay(500, t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(p.delay(500, later), Duration::ZERO);
        assert_eq!(p.delay(500, later), Duration::from_millis(500));
    }

    #[test]
    fn write_all_paces_a_buffer() {
        let mut p = Pacer::new(200 * 1024);
        let buf = vec![7u8; 100 * 1024];
        let mut out = Vec::new();
        let t = Instant::now();
        p.write_all(&mut out, &buf).unwrap();
        // The last slice starts once the others have had their time.
        let floor = (buf.len() - SLICE) as f64 / (200.0 * 1024.0);
        assert!(t.elapsed().as_secs_f64() >= floor, "{:?}", t.elapsed());
        assert_eq!(out, buf);
    }

    #[test]
    fn rates_as_rsync_reads_them() {
        assert_eq!(parse_rate("100"), Ok(Some(102_400)));
        assert_eq!(parse_rate("1.5m"), Ok(Some(1_572_864)));
        assert_eq!(parse_rate("512B"), Ok(Some(512)));
        assert_eq!(parse_rate("2G"), Ok(Some(2 << 30)));
        assert_eq!(parse_rate("0"), Ok(None));
        for bad in ["", "fast", "10 KiB", "-1", "1e9", "5X"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_budget_fits_the_time() {
        let p = Pacer::new(100 * 1024);
        assert_eq!(p.budget(Duration::from_secs(2), 8 << 20), 200 * 1024);
        assert_eq!(p.budget(Duration::from_secs(2), 64 * 1024), 64 * 1024);
        assert_eq!(
            Pacer::new(1).budget(Duration::from_secs(2), 8 << 20),
            SLICE as u64
        );
    }
}
