//! The campaign's runs: how a run is set up (`Mode`, `Knobs`), the seeds of
//! a bounded campaign, the loop over its runs and the replay line of each.
//! One run is `run::run`: a seeded schedule of file operations on both
//! replicas of a live pair (private subtrees with an exact model, shared
//! paths hammered from both sides at once), optionally with kills of the
//! brain, an agent or the ssh link; then a bounded wait for the pair to
//! settle with equal trees, and the invariants.

// The parts of a run, by job.
mod check; // the invariants, checked once the pair settled
mod content; // random contents, modes and mtimes of the schedule's writes
mod kills; // process control: kills, restarts, what is left behind
mod log; // the record of a run's operations, for failure reports
mod private; // the private subtrees and their exact models
mod run; // one run, start to end
mod shared; // the shared paths and each side's worker

use std::time::Instant;

use rand::SeedableRng;
use rand_xorshift::XorShiftRng;

use crate::harness;
use private::Private;
pub use run::run;

/// How a run is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Local,
    Ssh,
    LocalKills,
    SshKills,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Local, Mode::Ssh, Mode::LocalKills, Mode::SshKills];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Ssh => "ssh",
            Mode::LocalKills => "local+kills",
            Mode::SshKills => "ssh+kills",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    fn ssh(self) -> bool {
        matches!(self, Mode::Ssh | Mode::SshKills)
    }

    fn kills(self) -> bool {
        matches!(self, Mode::LocalKills | Mode::SshKills)
    }
}

/// Knobs of a run (the campaign uses the defaults; regressions narrow them).
#[derive(Clone, Copy, Debug, Default)]
pub struct Knobs {
    /// Shared paths get only plain writes (no deletes, renames, ties).
    pub gentle_shared: bool,
}

/// The one-line command that replays a run.
pub fn replay_command(seed: u64, mode: Mode) -> String {
    format!(
        "CAMPAIGN_SEED={seed} CAMPAIGN_MODE={} cargo test -p twinsync --test campaign -- replay --nocapture",
        mode.name()
    )
}

/// Seeds of a bounded campaign test: `CAMPAIGN_SEEDS` of them (else
/// `default`), from `CAMPAIGN_SEED_BASE` (else a fixed base, so CI is
/// reproducible; `CAMPAIGN_SEED_BASE=$RANDOM` gives fresh ones).
pub fn seeds(default: u64, salt: u64) -> Vec<u64> {
    let n = std::env::var("CAMPAIGN_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let base: u64 = std::env::var("CAMPAIGN_SEED_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    (0..n).map(|i| base * 100 + salt * 10 + i).collect()
}

/// Run every (seed, mode); panic listing every failure with its replay line.
pub fn campaign(runs: &[(u64, Mode)]) {
    let t = Instant::now();
    let mut failures = Vec::new();
    for &(seed, mode) in runs {
        match run(seed, mode, Knobs::default()) {
            Ok(d) => eprintln!("campaign: seed={seed} mode={} ok in {d:.1?}", mode.name()),
            Err(report) => {
                eprintln!("{report}");
                failures.push(format!(
                    "seed={seed} mode={}: {}",
                    mode.name(),
                    replay_command(seed, mode)
                ));
            }
        }
    }
    eprintln!(
        "campaign: {} runs in {:.1?}, {} failed",
        runs.len(),
        t.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} campaign runs failed (reports above); replay with:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}

/// The private-subtree model against the disk with no sync running: a
/// check of the campaign itself (its model must be exact for invariant 2).
pub fn model_self_check(seed: u64, steps: usize) {
    let dir = harness::temp_dir("twinsync-campaign-model-", false);
    let mut p = Private::new(dir.path(), "priv-L");
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let mut ops = Vec::new();
    for _ in 0..steps {
        ops.push(p.op(&mut rng, "L"));
    }
    let t = harness::tree(dir.path(), true);
    let problems = p.check(&t, "disk");
    assert!(
        problems.is_empty(),
        "the campaign's model differs from the disk with no sync at all:\n{}\nlast ops:\n{}",
        problems.join("\n"),
        ops[ops.len().saturating_sub(30)..].join("\n")
    );
}
