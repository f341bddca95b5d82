//! One randomized run, start to end: the pair set up, the schedule's rounds
//! of concurrent operations (with this run's kills), the bounded wait for
//! the pair to settle with equal trees, then the invariants.

use std::ffi::OsString;
use std::fs;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;

use super::kills::{self, Kill};
use super::log::Log;
use super::private::Private;
use super::shared::{Shared, Side, SHARED_DIR_FILE};
use super::{check, replay_command, Knobs, Mode};
use crate::harness::{self, Brain, Stopped};
use crate::sshd::Sshd;

/// The outcome of one run: Ok(duration) or the failure report.
pub fn run(seed: u64, mode: Mode, knobs: Knobs) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut rng = XorShiftRng::seed_from_u64(seed ^ 0x0077_696e_7379_6e63);
    let tmpfs = rng.random_bool(0.3);
    let dir = harness::temp_dir("twinsync-campaign-", tmpfs);
    let base = dir.path().to_path_buf();
    let left = base.join("left");
    let right = base.join("right");
    let stage = base.join("stage");
    for d in [&left, &right, &stage] {
        fs::create_dir(d).unwrap();
    }
    let log = Log {
        start: Instant::now(),
        ops: Arc::new(Mutex::new(Vec::new())),
    };
    log.push(
        "run",
        format!(
            "seed={seed} mode={} fs={} dir={}",
            mode.name(),
            if tmpfs { "tmpfs" } else { "disk" },
            base.display()
        ),
    );

    let n_shared = rng.random_range(3..=5);
    let mut names: Vec<String> = (0..n_shared - 1).map(|i| format!("shared/s{i}")).collect();
    names.push(SHARED_DIR_FILE.into());
    let shared = Shared {
        names,
        seq: AtomicU64::new(0),
        ops: Mutex::new(Vec::new()),
    };

    let shared_w = [
        rng.random_range(5..20),
        rng.random_range(0..15),
        rng.random_range(0..10),
        rng.random_range(0..6),
        rng.random_range(0..5),
        rng.random_range(0..3),
        rng.random_range(0..4),
    ];
    let mut sides =
        [("L", &left, "priv-L"), ("R", &right, "priv-R")].map(|(tag, root, top)| Side {
            idx: usize::from(tag == "R"),
            tag,
            root: root.clone(),
            stage: stage.clone(),
            private: Private::new(root, top),
            rng: XorShiftRng::seed_from_u64(rng.random()),
            counter: 0,
            shared_w,
        });
    fs::create_dir_all(left.join("shared")).unwrap();
    fs::create_dir_all(right.join("shared")).unwrap();

    // Some content before the first start (merged as a union).
    for s in &mut sides {
        for _ in 0..rng.random_range(0..15) {
            let d = s.private.op(&mut s.rng, s.tag);
            log.push(s.tag, format!("(before start) {d}"));
        }
    }

    let sshd = if mode.ssh() {
        Some(
            Sshd::start()
                .expect("sshd is required for the ssh modes (.ci/run installs openssh-server)"),
        )
    } else {
        None
    };
    let marker = format!("campaign-{seed}-{}-{}", mode.name(), std::process::id());
    // A restart after a kill merges what changed while the brain was down:
    // the random churn may delete most of a small tree then, which the
    // mass-deletion safety net (its own e2e test) would rightly refuse.
    let net: &[&str] = if mode.kills() {
        &["--max-delete", "100"]
    } else {
        &[]
    };
    let args = match &sshd {
        None => harness::args(net, &left, &right),
        Some(s) => {
            let mut a: Vec<OsString> = net.iter().map(OsString::from).collect();
            a.extend([
                "--ssh-config".into(),
                s.ssh_config.clone().into(),
                "--remote-path".into(),
                harness::bin().into(),
            ]);
            a.push(left.clone().into());
            a.push(format!("{}:{}", s.host, right.display()).into());
            a
        }
    };
    let mut brain = Brain::new(&base, args, &marker);

    let fail = |brain: &Brain, what: &str, details: &str| -> String {
        let kept = base.display();
        // Every operation, for a look at what the report leaves out.
        let _ = std::fs::write(base.join("operations.log"), log.last(usize::MAX) + "\n");
        format!(
            "\n=== campaign FAILED: seed={seed} mode={} fs={} ===\n{what}\n{details}\n{}--- last 50 operations (of {}) ---\n{}\n--- brain log tail ---\n{}\n--- run dir: {kept} (kept; every operation in operations.log) ---\nreplay: {}\n",
            mode.name(),
            if tmpfs { "tmpfs" } else { "disk" },
            log.history_of(&format!("{what}\n{details}")),
            log.len(),
            log.last(50),
            brain.log_tail(40),
            replay_command(seed, mode)
        )
    };
    // On failure the run dir is kept (forgotten, not deleted) for a look.
    let failed = |brain: &Brain, what: &str, details: &str| -> Result<Duration, String> {
        Err(fail(brain, what, details))
    };

    brain.spawn();
    log.push("run", "brain started");
    // Going live is not waited for: the churn starts at once in some seeds.
    if rng.random_bool(0.7) {
        let why = match brain.until_live(Duration::from_secs(30)) {
            Ok(()) => None,
            Err(Stopped::Failed(st)) => Some(format!("the brain exited with {st} at start-up")),
            Err(Stopped::TimedOut) => Some("the brain did not go live within 30 s".to_string()),
        };
        if let Some(why) = why {
            let r = failed(&brain, &why, "");
            std::mem::forget(dir);
            return r;
        }
        log.push("run", "brain live");
    }

    // The schedule: rounds of concurrent operations on both sides.
    let rounds = rng.random_range(3..=6);
    let kills = kills::schedule(&mut rng, mode, rounds);
    let mut may_restart = false;
    for round in 0..rounds {
        let ops = rng.random_range(10..40);
        let shared_share = rng.random_range(0.1..0.6);
        log.push("run", format!("round {round}: {ops} ops per side"));
        let my_kills: Vec<(Kill, u64)> = kills
            .iter()
            .filter(|k| k.0 == round)
            .map(|k| (k.1, k.2))
            .collect();
        let mut err = None;
        std::thread::scope(|sc| {
            for s in sides.iter_mut() {
                let (shared, log) = (&shared, &log);
                sc.spawn(move || {
                    for _ in 0..ops {
                        if s.rng.random_bool(shared_share) {
                            s.shared_op(shared, log, knobs.gentle_shared);
                        } else {
                            let d = s.private.op(&mut s.rng, s.tag);
                            log.push(s.tag, d);
                        }
                        let pause = s.rng.random_range(0..5);
                        std::thread::sleep(Duration::from_millis(pause));
                    }
                });
            }
            // Meanwhile, this round's kills.
            for (kill, delay) in my_kills {
                std::thread::sleep(Duration::from_millis(delay));
                kills::make(kill, &mut brain, &mut rng, &log, &marker, &mut may_restart);
            }
        });
        // Between rounds: a brain our schedule brought down is restarted.
        if let Err(st) = kills::restart_if_ours(&mut brain, &mut may_restart, &log) {
            err = Some(format!("the brain exited with {st} during the churn"));
        }
        if let Some(e) = err {
            let r = failed(&brain, &e, "");
            std::mem::forget(dir);
            return r;
        }
        let pause = rng.random_range(0..400);
        std::thread::sleep(Duration::from_millis(pause));
    }
    log.push(
        "run",
        "churn over; waiting for the pair to settle with equal trees",
    );

    // Converge: settled (live, empty queue) and equal trees, twice in a row.
    let bound = Duration::from_secs(if mode.kills() { 45 } else { 30 });
    let t = Instant::now();
    let mut ok_once = false;
    let (lt, rt) = loop {
        if let Err(st) = kills::restart_if_ours(&mut brain, &mut may_restart, &log) {
            let r = failed(
                &brain,
                &format!("the brain exited with {st} while converging"),
                "",
            );
            std::mem::forget(dir);
            return r;
        }
        let settled = brain.settled();
        let (lt, rt) = (harness::tree(&left, true), harness::tree(&right, true));
        if settled && lt == rt {
            if ok_once {
                break (lt, rt);
            }
            ok_once = true;
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        ok_once = false;
        if t.elapsed() > bound {
            let st = brain
                .status()
                .map_or("(no status)".into(), |s| s.to_string());
            let r = failed(
                &brain,
                &format!("invariant 1: not converged within {bound:?} (settled by status: {settled}; status: {st})"),
                &format!("--- tree differences (L vs R) ---\n{}", harness::diff(&lt, &rt, 40).join("\n")),
            );
            std::mem::forget(dir);
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log.push("run", format!("converged after {:?}", t.elapsed()));
    let last_status = brain.status();

    let mut problems = check::invariants(
        &sides,
        &shared,
        (&lt, &rt),
        (&left, &right),
        last_status.as_ref(),
    );

    // 5: stopped by SIGTERM, nothing is left behind.
    let port = sshd.as_ref().map(|s| s.port);
    problems.extend(kills::stop(&mut brain, &log, &marker, &base, port));

    if problems.is_empty() {
        Ok(t0.elapsed())
    } else {
        let first = problems[0].clone();
        let r = failed(
            &brain,
            &first,
            &problems[1..]
                .iter()
                .take(60)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
        );
        std::mem::forget(dir);
        r
    }
}
