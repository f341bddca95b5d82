//! The remote agent installed as Mutagen does: a remote host with no
//! twinsync agent gets a copy of this binary in its per-version agents
//! directory (here `TWINSYNC_REMOTE_AGENT_DIR`, a temp dir, instead of
//! `~/.cache/twinsync/agents`), and starts that; `--no-agent-install` says
//! what to install instead.
//!
//! The remote PATH has no `twinsync-not-installed` (the agent asked for
//! with `--remote-path`): the same as a host without twinsync on its PATH,
//! whatever this machine has installed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::harness::{bin, Pair};
use crate::sshd::Sshd;

const MISSING: &str = "twinsync-not-installed";

/// A pair whose right side is remote over `sshd`, with the agents kept in
/// the pair's own `agents/`.
fn pair(sshd: &Sshd) -> (Pair, PathBuf) {
    let mut p = Pair::new();
    p.remote_right(sshd);
    let agents = p.dir.path().join("agents");
    p.envs
        .push(("TWINSYNC_REMOTE_AGENT_DIR".into(), agents.clone()));
    (p, agents)
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[test]
fn a_remote_without_twinsync_gets_this_binary_installed_once() {
    let Some(sshd) = Sshd::start() else { return };
    assert!(
        !sshd.ssh(&format!("command -v {MISSING}")).status.success(),
        "{MISSING} must not be on the remote PATH"
    );
    let (mut p, agents) = pair(&sshd);
    let cfg = sshd.ssh_config.display().to_string();
    let args = ["--ssh-config", cfg.as_str(), "--remote-path", MISSING];
    p.left.write("before", b"made before the start");
    p.start(&args);
    let installed = agents.join(version()).join("twinsync");
    let md = fs::metadata(&installed)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", installed.display(), p.log_text()));
    assert_eq!(md.permissions().mode() & 0o7777, 0o755);
    assert_eq!(fs::read(&installed).unwrap(), fs::read(bin()).unwrap());
    // No temporary file is left beside it.
    let names: Vec<_> = fs::read_dir(installed.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["twinsync"]);
    assert!(p
        .log_text()
        .contains("installing this twinsync as the remote agent"));
    // The installed agent serves the sync both ways, rsync's far end too.
    p.right.eventually_has("before", b"made before the start");
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 253) as u8).collect();
    p.left.write("big", &big);
    p.right.eventually_has("big", &big);
    p.right.write("back", b"from the right");
    p.left.eventually_has("back", b"from the right");
    assert!(!p.log_text().contains("rsync failed"), "{}", p.log_text());
    p.stop();
    // The next start finds it: nothing is copied again.
    let ino = md.ino();
    p.start(&args);
    assert!(
        !p.log_text().contains("installing this twinsync"),
        "{}",
        p.log_text()
    );
    assert_eq!(fs::metadata(&installed).unwrap().ino(), ino);
    p.stop();
}

#[test]
fn no_agent_install_refuses_the_copy_and_says_what_to_install() {
    let Some(sshd) = Sshd::start() else { return };
    let (p, agents) = pair(&sshd);
    let cfg = sshd.ssh_config.display().to_string();
    let right = p.right_arg.clone().unwrap();
    let left = p.left.root.display().to_string();
    let out = Command::new(bin())
        .args(["--ssh-config", cfg.as_str(), "--remote-path", MISSING])
        .args([
            "--no-agent-install",
            "--sync-only",
            left.as_str(),
            right.as_str(),
        ])
        .env("TWINSYNC_REMOTE_AGENT_DIR", &agents)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let uname = Command::new("uname").arg("-sm").output().unwrap();
    let system = String::from_utf8_lossy(&uname.stdout).trim().to_string();
    let wanted = format!(
        "--no-agent-install forbids copying this one: install twinsync {} (protocol",
        version()
    );
    assert!(err.contains(&wanted), "{err}");
    assert!(
        err.contains(&format!("built for {system} on {}", sshd.host)),
        "{err}"
    );
    assert!(!agents.exists(), "nothing was copied");
}

/// An agent of another protocol (an older twinsync) is not used: this
/// binary is installed beside it, in its own version's directory.
#[test]
fn an_agent_of_another_protocol_is_replaced_by_this_binary() {
    let Some(sshd) = Sshd::start() else { return };
    let (p, agents) = pair(&sshd);
    let hello = twinsync_proto::encode(&twinsync_proto::FromAgent::Hello {
        magic: twinsync_proto::MAGIC.into(),
        version: twinsync_proto::PROTOCOL_VERSION - 1,
        agent_version: "0.0.1".into(),
        root_dev: 0,
        root: false,
    });
    let frame = p.dir.path().join("old-hello.bin");
    fs::write(&frame, hello).unwrap();
    let old = p.dir.path().join("old-twinsync");
    fs::write(&old, format!("#!/bin/sh\ncat '{}'\n", frame.display())).unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
    p.left.write("l", b"left");
    p.right.write("r", b"right");
    let cfg = sshd.ssh_config.display().to_string();
    let out = Command::new(bin())
        .args(["--ssh-config", cfg.as_str(), "--remote-path"])
        .arg(&old)
        .arg("--sync-only")
        .arg(&p.left.root)
        .arg(p.right_arg.as_deref().unwrap())
        .env("TWINSYNC_REMOTE_AGENT_DIR", &agents)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("installing this twinsync as the remote agent"),
        "{err}"
    );
    assert!(agents.join(version()).join("twinsync").is_file());
    assert_eq!(p.left.read("r").as_deref(), Some(&b"right"[..]));
    assert_eq!(p.right.read("l").as_deref(), Some(&b"left"[..]));
}
