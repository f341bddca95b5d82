//! Installing the remote agent, as Mutagen does: when the remote host has no
//! agent of this protocol (`--remote-path`, default `twinsync` on its PATH),
//! and its system and architecture are the ones this binary is built for,
//! this very binary is copied over the open ssh connection into
//! `~/.cache/twinsync/agents/VERSION/twinsync` there (written to a temporary
//! name, mode 0755, then renamed: a reader never sees half a binary), and
//! that one is started. The next connection finds it there and copies
//! nothing. `--no-agent-install` turns the copy off; a host it cannot run on
//! gets a message that says exactly what to install.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::info;
use twinsync_proto::{AgentOptions, PROTOCOL_VERSION};

use crate::link::{Link, NoMatchingAgent, Notice, Transport};
use crate::side::Side;

/// Where the agents are kept on a remote host, relative to the home
/// directory ssh sessions start in. `TWINSYNC_REMOTE_AGENT_DIR` (in the
/// brain's environment) names another directory (the tests use it).
pub const AGENT_DIR: &str = ".cache/twinsync/agents";

/// This binary's version.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What starts the right agent over an ssh connection.
pub struct Remote<'a> {
    /// The connection.
    pub session: Arc<openssh::Session>,
    /// `[user@]host`, for messages and rsync.
    pub host: String,
    /// The agent to try first (`--remote-path`).
    pub program: &'a str,
    /// Copy this binary there when that one does not match.
    pub install: bool,
}

/// The directory holding this version's agent on the remote host.
fn version_dir() -> String {
    let base = std::env::var("TWINSYNC_REMOTE_AGENT_DIR").unwrap_or_else(|_| AGENT_DIR.into());
    format!("{}/{VERSION}", base.trim_end_matches('/'))
}

/// The system and architecture this binary runs on, as `uname -sm` says
/// them (`Linux x86_64`).
#[must_use]
pub fn local_system() -> String {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        other => other,
    };
    format!("{os} {}", std::env::consts::ARCH)
}

/// Whether a host whose `uname -sm` is `remote` runs this binary.
#[must_use]
pub fn runs_here(remote: &str) -> bool {
    let mut words = remote.split_whitespace();
    let (Some(os), Some(machine)) = (words.next(), words.next()) else {
        return false;
    };
    let local = local_system();
    let (local_os, arch) = local.split_once(' ').unwrap_or_default();
    os == local_os
        && match arch {
            "x86_64" => matches!(machine, "x86_64" | "amd64"),
            "aarch64" => matches!(machine, "aarch64" | "arm64"),
            "x86" => matches!(machine, "i386" | "i486" | "i586" | "i686"),
            "arm" => machine.starts_with("armv"),
            other => machine == other,
        }
}

/// What to install on `host` (whose `uname -sm` is `remote`), when this
/// binary cannot be copied there.
#[must_use]
pub fn what_to_install(host: &str, remote: &str, why_not: &str) -> String {
    format!(
        "install twinsync {VERSION} (protocol {PROTOCOL_VERSION}) built for {remote} on {host}, \
         as twinsync on its PATH or where --remote-path points ({why_not})"
    )
}

impl Remote<'_> {
    fn transport(&self, program: &str) -> Transport {
        Transport::Ssh {
            session: Arc::clone(&self.session),
            program: program.to_string(),
            host: self.host.clone(),
        }
    }

    /// Start the right agent: `--remote-path`'s, else the one installed in
    /// the version directory, else (when allowed and the host runs this
    /// binary) a copy of this binary installed there.
    ///
    /// # Errors
    /// The connection's, the agent's (a root it refuses), or no agent to
    /// run, saying what to install.
    pub async fn start(
        &self,
        agent_log: Option<&str>,
        root: &[u8],
        options: AgentOptions,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<(Transport, Link)> {
        let installed = format!("{}/twinsync", version_dir());
        let start = |program: String| {
            let transport = self.transport(&program);
            let (options, notices) = (options.clone(), notices.clone());
            async move {
                let link =
                    Link::start(Side::Right, &transport, agent_log, root, options, notices).await;
                link.map(|l| (transport, l))
            }
        };
        let first = match start(self.program.to_string()).await {
            Err(e) => match e.downcast::<NoMatchingAgent>() {
                Ok(no) => no.found,
                Err(e) => return Err(e),
            },
            done => return done,
        };
        // Said when no agent can be had: what was found, and what to do.
        let none = |what_to_do: String| NoMatchingAgent {
            message: format!(
                "no twinsync agent of this version on {}: {} {first}, and none is in {installed} \
                 there; {what_to_do}",
                self.host, self.program
            ),
            found: first.clone(),
        };
        if self.runs(&installed).await? {
            match start(installed.clone()).await {
                Err(e) if e.is::<NoMatchingAgent>() => {
                    // Another build of the same version: replaced below.
                    info!(host = %self.host, "the agent in {installed} does not match: {e:#}");
                }
                done => return done,
            }
        }
        let system = self.uname().await?;
        if !self.install {
            return Err(none(format!(
                "--no-agent-install forbids copying this one: {}",
                what_to_install(&self.host, &system, "or allow the copy")
            ))
            .into());
        }
        if !runs_here(&system) {
            return Err(none(format!(
                "this binary cannot be copied there ({} runs {system}, this binary is built for \
                 {}): {}",
                self.host,
                local_system(),
                what_to_install(
                    &self.host,
                    &system,
                    "the copy is made only to a matching system"
                )
            ))
            .into());
        }
        self.copy_self(&installed).await?;
        start(installed.clone()).await.with_context(|| {
            format!(
                "the copy of this binary in {installed} on {} did not start as an agent",
                self.host
            )
        })
    }

    /// Whether `program` is an executable file there.
    async fn runs(&self, program: &str) -> Result<bool> {
        let status = self
            .session
            .command("test")
            .arg("-x")
            .arg(program)
            .status()
            .await
            .with_context(|| format!("cannot look for {program} on {}", self.host))?;
        Ok(status.success())
    }

    /// `uname -sm` there.
    async fn uname(&self) -> Result<String> {
        let out = self
            .session
            .command("uname")
            .arg("-sm")
            .output()
            .await
            .with_context(|| format!("cannot run uname on {}", self.host))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || text.is_empty() {
            bail!(
                "cannot tell the system of {}: `uname -sm` failed ({})",
                self.host,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text)
    }

    /// Copy this binary to `dest` there: into a temporary name beside it,
    /// mode 0755, then renamed over it.
    async fn copy_self(&self, dest: &str) -> Result<()> {
        let exe = std::env::current_exe().context("cannot find this twinsync binary to copy")?;
        let path = exe.clone();
        let binary = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .context("reading this binary")?
            .with_context(|| format!("cannot read {}", exe.display()))?;
        info!(
            host = %self.host,
            to = dest,
            bytes = binary.len(),
            "installing this twinsync as the remote agent"
        );
        // `dest` is ours (the version directory and a fixed name): quoted
        // for the remote shell all the same.
        let dest_q = shell_words::quote(dest);
        let script = format!(
            "set -e; d=$(dirname {dest_q}); mkdir -p \"$d\"; t=\"$d/.twinsync.$$.tmp\"; \
             trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; chmod 0755 \"$t\"; mv -f \"$t\" {dest_q}; \
             trap - EXIT"
        );
        let mut child = self
            .session
            .shell(script)
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::null())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .with_context(|| format!("cannot copy the agent to {}", self.host))?;
        let mut stdin = child.stdin().take().expect("piped");
        let sent = async {
            stdin.write_all(&binary).await?;
            stdin.shutdown().await
        }
        .await;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .with_context(|| format!("copying the agent to {}", self.host))?;
        if sent.is_err() || !out.status.success() {
            bail!(
                "cannot install the agent in {dest} on {}: {}{}",
                self.host,
                String::from_utf8_lossy(&out.stderr).trim(),
                sent.err().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_runs_this_binary_when_its_system_and_machine_match() {
        let here = local_system();
        assert!(runs_here(&here), "{here}");
        let os = here.split_once(' ').unwrap().0;
        assert!(!runs_here(&format!("{os} riscv128")));
        assert!(!runs_here("Plan9 x86_64"));
        assert!(!runs_here(""));
    }

    #[test]
    fn a_mismatch_says_what_to_install() {
        let m = what_to_install(
            "db1",
            "Linux aarch64",
            "the copy is made only to a matching system",
        );
        assert!(
            m.starts_with(&format!(
                "install twinsync {VERSION} (protocol {PROTOCOL_VERSION}) built for Linux aarch64 \
                 on db1, as twinsync on its PATH or where --remote-path points"
            )),
            "{m}"
        );
    }
}
