//! The agent's process: spawned locally or over ssh, in a process group of
//! its own, and stopped at shutdown.

use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};
use twinsync_proto::ToAgent;

use super::wire::{BoxRead, BoxWrite};
use super::{Link, Transport};
use crate::side::Side;

impl Transport {
    pub(super) fn describe(&self) -> String {
        match self {
            Transport::Local => "local".into(),
            Transport::Ssh { program, host, .. } => format!("ssh {host}: {program} agent"),
        }
    }
}

pub(super) enum Guard {
    Local(Child),
    Remote(Option<openssh::Child<Arc<openssh::Session>>>),
}

/// Start `twinsync agent` over `transport` (`what` names it in messages):
/// its process, and the pipes to read its frames from and write them to.
pub(super) async fn spawn(
    side: Side,
    transport: &Transport,
    what: &str,
    agent_log: Option<&str>,
) -> Result<(Guard, BoxRead, BoxWrite)> {
    let started: (Guard, BoxRead, BoxWrite) = match transport {
        Transport::Local => {
            let exe = std::env::current_exe().context("cannot find the twinsync executable")?;
            let mut cmd = Command::new(exe);
            cmd.arg("agent")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // Its own process group: the terminal's Ctrl-C (sent to
                // the whole foreground group) reaches the brain only,
                // which finishes its batch and then says goodbye.
                .kill_on_drop(true);
            own_group(&mut cmd);
            if let Some(level) = agent_log {
                cmd.env("TWINSYNC_LOG", level);
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("cannot start the {side} agent ({what})"))?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            (Guard::Local(child), Box::new(stdout), Box::new(stdin))
        }
        Transport::Ssh {
            session, program, ..
        } => {
            let mut child = Arc::clone(session)
                .arc_command(program.as_str())
                .arg("agent")
                .stdin(openssh::Stdio::piped())
                .stdout(openssh::Stdio::piped())
                .stderr(openssh::Stdio::inherit())
                .spawn()
                .await
                .with_context(|| format!("cannot start the {side} agent ({what})"))?;
            let stdin = child.stdin().take().expect("piped");
            let stdout = child.stdout().take().expect("piped");
            (
                Guard::Remote(Some(child)),
                Box::new(stdout),
                Box::new(stdin),
            )
        }
    };
    Ok(started)
}

impl Link {
    /// Ask the agent to exit and wait for it.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(ToAgent::Shutdown);
        let mut guard = self.guard.lock().await;
        let wait = std::time::Duration::from_secs(5);
        match &mut *guard {
            Guard::Local(child) => {
                let _ = tokio::time::timeout(wait, child.wait()).await;
            }
            Guard::Remote(child) => {
                if let Some(child) = child.take() {
                    let _ = tokio::time::timeout(wait, child.wait()).await;
                }
            }
        }
    }
}

/// Start `cmd` in a process group of its own, out of reach of the
/// terminal's Ctrl-C (sent to the whole foreground group): the brain
/// finishes its batch first. A Ctrl-C sent while the child is being made,
/// before it leaves the brain's group, is ignored too (it would otherwise
/// be delivered, with the default action, right before the program starts;
/// rsync installs its own handler again).
pub fn own_group(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    // SAFETY: signal(2) is async-signal-safe, as required between fork and
    // exec; nothing is allocated or locked.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
}
