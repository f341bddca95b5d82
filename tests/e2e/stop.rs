//! Stopping: a Ctrl-C to the terminal's process group is a clean stop (the
//! batch in flight finishes, both locks are released), and a brain killed
//! with -9 leaves no agent behind.

use std::os::unix::process::CommandExt;

use crate::harness::{eventually, running, Pair};

#[test]
fn ctrl_c_to_the_process_group_finishes_the_batch_and_releases_both_locks() {
    let mut p = Pair::new();
    // One merge batch with some copying to do.
    let files = 2000;
    for i in 0..files {
        p.left.write(format!("m/f{i:04}"), &[b'x'; 16 << 10]);
    }
    // As from a shell: the brain leads its own process group, and the
    // terminal's Ctrl-C goes to every process in it.
    p.spawn_with(&[], |c| {
        c.process_group(0);
    });
    let pgid = p.child.as_ref().unwrap().id() as i32;
    // The merge's batch has begun (its directories come before the copy).
    eventually("the merge to begin", || p.right.exists("m"));
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let st = p.wait_exit();
    assert_eq!(st.code(), Some(0), "{}", p.log_tail());
    assert_eq!(p.locked(), [false, false], "a lock was left behind");
    for i in 0..files {
        assert!(
            p.right.exists(format!("m/f{i:04}")),
            "the batch was cut short: m/f{i:04} missing on the right"
        );
    }
}

#[test]
fn kill_9_of_the_brain_leaves_no_agent_running_and_no_lock() {
    let mut p = Pair::new();
    p.start(&[]);
    let agents = p.agent_pids();
    assert_eq!(agents.len(), 2, "expected two agents");
    assert_eq!(p.locked(), [true, true]);
    let mut brain = p.child.take().unwrap();
    brain.kill().unwrap();
    brain.wait().unwrap();
    eventually("both agents to exit", || {
        agents.iter().all(|&a| !running(a))
    });
    assert_eq!(p.locked(), [false, false], "a lock was left behind");
}
