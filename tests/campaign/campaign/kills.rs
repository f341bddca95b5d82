//! Process control: the kills of a run's schedule, the restart of a brain
//! our schedule brought down, and what is left behind once it stopped
//! (invariant 5).

use std::time::Duration;

use rand::RngExt;
use rand_xorshift::XorShiftRng;

use super::log::Log;
use super::Mode;
use crate::harness::{self, Brain};

/// What kills this run's schedule makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kill {
    Brain,
    Agent,
    SshClient,
}

/// The kills of a schedule of `rounds` rounds, as (round, kill, delay in
/// ms into the round): one of the brain, maybe one of an agent, and in ssh
/// modes maybe one of the ssh client; none unless `mode` kills.
pub(super) fn schedule(
    rng: &mut XorShiftRng,
    mode: Mode,
    rounds: usize,
) -> Vec<(usize, Kill, u64)> {
    if !mode.kills() {
        return Vec::new();
    }
    let mut k = vec![(
        rng.random_range(0..rounds),
        Kill::Brain,
        rng.random_range(0..150),
    )];
    if rng.random_bool(0.5) {
        k.push((
            rng.random_range(0..rounds),
            Kill::Agent,
            rng.random_range(0..150),
        ));
    }
    if mode.ssh() && rng.random_bool(0.6) {
        k.push((
            rng.random_range(0..rounds),
            Kill::SshClient,
            rng.random_range(0..150),
        ));
    }
    k
}

/// Makes one kill. An agent's kill lets the brain exit (it may: the
/// agent's link is lost): `may_restart` then says to restart it.
pub(super) fn make(
    kill: Kill,
    brain: &mut Brain,
    rng: &mut XorShiftRng,
    log: &Log,
    marker: &str,
    may_restart: &mut bool,
) {
    match kill {
        Kill::Brain => {
            brain.kill9();
            log.push("run", "kill -9 brain");
            std::thread::sleep(Duration::from_millis(rng.random_range(0..200)));
            brain.spawn();
            log.push("run", "brain restarted (same args)");
        }
        Kill::Agent => {
            let agents = brain.agent_pids();
            if let Some(&pid) = agents.get(rng.random_range(0..agents.len().max(1))) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                *may_restart = true;
                log.push("run", format!("kill -9 agent {pid}"));
            } else {
                log.push("run", "kill agent: no agent child found");
            }
        }
        Kill::SshClient => {
            let cut: Vec<i32> = harness::processes()
                .into_iter()
                .filter(|p| {
                    p.comm == "ssh" && p.env_has(format!("CAMPAIGN_MARKER={marker}").as_bytes())
                })
                .map(|p| p.pid)
                .collect();
            for &pid in &cut {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            log.push("run", format!("kill -9 ssh client {cut:?} (link cut)"));
        }
    }
}

/// A brain that exited after our schedule killed one of its agents (it
/// may: the agent's link is lost) is restarted, once per kill; any other
/// exit is returned.
pub(super) fn restart_if_ours(
    brain: &mut Brain,
    may_restart: &mut bool,
    log: &Log,
) -> Result<(), std::process::ExitStatus> {
    let Some(st) = brain.exited() else {
        return Ok(());
    };
    if !std::mem::take(may_restart) {
        return Err(st);
    }
    log.push(
        "run",
        format!("brain exited with {st} after the agent kill; restarted"),
    );
    brain.spawn();
    Ok(())
}

/// Invariant 5: stopped by SIGTERM, the brain exits 0 and leaves no
/// process behind (those of `marker`, below `base`, or of the sshd on
/// `port`). What is left is ended, by pid; the problems found are returned.
pub(super) fn stop(
    brain: &mut Brain,
    log: &Log,
    marker: &str,
    base: &std::path::Path,
    port: Option<u16>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match brain.stop() {
        Some(st) if st.success() => log.push("run", "brain stopped by SIGTERM (exit 0)"),
        Some(st) => problems.push(format!(
            "the brain exited with {st} on SIGTERM (expected 0)"
        )),
        None => problems.push("the brain did not exit within 15 s of SIGTERM".into()),
    }
    let mut left_behind = Vec::new();
    let gone = harness::wait_for(Duration::from_secs(10), || {
        left_behind = harness::leftovers(marker, base, port);
        left_behind.is_empty()
    });
    if !gone {
        problems.push("invariant 5: processes left behind 10 s after the brain exited:".into());
        for p in &left_behind {
            problems.push(format!("  pid {} ({}): {}", p.pid, p.comm, p.cmd()));
            // We started them (through the brain): end them, by pid.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
    problems
}
