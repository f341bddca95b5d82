//! A remote right replica over a real sshd on loopback.

use std::fs;
use std::time::{Duration, Instant};

use crate::harness::{bin, eventually, run_once, Pair};
use crate::sshd::Sshd;

fn remote_pair(sshd: &Sshd) -> Pair {
    let mut p = Pair::new();
    p.remote_right(sshd);
    p
}

fn ssh_args(sshd: &Sshd) -> Vec<String> {
    vec![
        "--ssh-config".into(),
        sshd.ssh_config.display().to_string(),
        "--remote-path".into(),
        bin().into(),
    ]
}

/// Run `twinsync [extra] LEFT host:RIGHT` once over `sshd`, with the agent
/// at `remote_path`; (status, stderr).
fn run_remote_once(
    sshd: &Sshd,
    p: &Pair,
    remote_path: &str,
    extra: &[&str],
) -> (std::process::ExitStatus, String) {
    let cfg = sshd.ssh_config.display().to_string();
    let left = p.left.root.display().to_string();
    let right = p.right_arg.clone().expect("a remote pair");
    let mut args = vec!["--ssh-config", &cfg, "--remote-path", remote_path];
    args.extend_from_slice(extra);
    args.extend([left.as_str(), right.as_str()]);
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    run_once(&refs)
}

fn start(p: &mut Pair, sshd: &Sshd, extra: &[&str]) {
    let mut args = ssh_args(sshd);
    args.extend(extra.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    p.start(&args);
}

#[test]
fn live_sync_both_ways_over_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let mut p = remote_pair(&sshd);
    p.left.write("start/l", b"from left");
    p.right.write("start/r", b"from right");
    start(&mut p, &sshd, &[]);
    p.eventually_equal();
    p.left.write("a/new", b"L1");
    p.right.eventually_has("a/new", b"L1");
    // nothing comes back from the right
    std::thread::sleep(Duration::from_millis(300));
    let log = p.log_text();
    let back: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("copy R→L") && l.contains("path=a/new"))
        .collect();
    assert!(back.is_empty(), "echo: {back:?}");
    p.right.write("a/new", b"R2 longer");
    p.left.eventually_has("a/new", b"R2 longer");
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    p.right.write("big.bin", &big);
    p.left.eventually_has("big.bin", &big);
    std::os::unix::fs::symlink("a/new", p.right.path("link")).unwrap();
    fs::create_dir_all(p.left.path("empty/dir")).unwrap();
    fs::remove_file(p.right.path("start/l")).unwrap();
    p.left.eventually_gone("start/l");
    p.eventually_equal();
}

#[test]
fn a_renamed_directory_is_moved_remotely_without_sending_data() {
    let Some(sshd) = Sshd::start() else { return };
    let mut p = remote_pair(&sshd);
    for i in 0..20 {
        p.left.write(format!("d/f{i}"), &vec![b'x'; 100_000]);
    }
    start(&mut p, &sshd, &[]);
    p.eventually_equal();
    let inos: Vec<u64> = (0..20).map(|i| p.right.ino(format!("d/f{i}"))).collect();
    let t = Instant::now();
    fs::rename(p.left.path("d"), p.left.path("moved")).unwrap();
    eventually("moved on the remote", || {
        p.right.exists("moved/f19") && !p.right.exists("d")
    });
    eprintln!("remote directory rename reflected in {:?}", t.elapsed());
    let after: Vec<u64> = (0..20)
        .map(|i| p.right.ino(format!("moved/f{i}")))
        .collect();
    assert_eq!(inos, after, "re-copied instead of moved");
}

#[test]
fn sync_only_over_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let p = remote_pair(&sshd);
    p.left.write("x/l", b"l");
    p.right.write("y/r", b"r");
    let (st, err) = run_remote_once(&sshd, &p, bin(), &["--sync-only"]);
    assert!(st.success(), "{err}");
    assert_eq!(p.left.tree(), p.right.tree());
}

#[test]
fn a_missing_remote_agent_is_a_clear_error() {
    let Some(sshd) = Sshd::start() else { return };
    let p = remote_pair(&sshd);
    // Without the copy of this binary (`agent_install`), there is no agent.
    let (st, err) = run_remote_once(&sshd, &p, "/nonexistent/twinsync", &["--no-agent-install"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("/nonexistent/twinsync did not answer the handshake")
            && err.contains("install twinsync")
            && err.contains("--remote-path"),
        "{err}"
    );
}

#[test]
fn an_agent_of_another_protocol_version_is_refused_with_advice() {
    let Some(sshd) = Sshd::start() else { return };
    let p = remote_pair(&sshd);
    // A fake agent that answers the hello as protocol 999.
    let hello = twinsync_proto::encode(&twinsync_proto::FromAgent::Hello {
        magic: twinsync_proto::MAGIC.into(),
        version: 999,
        agent_version: "9.9.9".into(),
        root_dev: 0,
        root: false,
    });
    let frame = p.dir.path().join("hello999.bin");
    fs::write(&frame, hello).unwrap();
    let fake = p.dir.path().join("fake-agent");
    fs::write(
        &fake,
        format!("#!/bin/sh\ncat '{}'\nsleep 2\n", frame.display()),
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (st, err) = run_remote_once(
        &sshd,
        &p,
        &fake.display().to_string(),
        &["--no-agent-install"],
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("is twinsync 9.9.9, protocol 999")
            && err.contains(&format!(
                "install twinsync {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                twinsync_proto::PROTOCOL_VERSION
            )),
        "{err}"
    );
}

#[test]
fn path_escapes_are_refused_by_the_agent() {
    // Talk to an agent directly, as a hostile brain would, over ssh.
    let Some(sshd) = Sshd::start() else { return };
    let p = Pair::new();
    std::os::unix::fs::symlink(p.dir.path(), p.right.path("out")).unwrap();
    fs::write(p.dir.path().join("victim"), b"keep").unwrap();
    let mut child = sshd
        .command(&format!("{} agent", bin()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    use twinsync_proto::{read_frame, write_frame, FromAgent, Op, Request, Response, ToAgent};
    write_frame(
        &mut stdin,
        &ToAgent::Hello {
            magic: twinsync_proto::MAGIC.into(),
            version: twinsync_proto::PROTOCOL_VERSION,
            root: p.right.root.display().to_string().into_bytes(),
            options: Default::default(),
        },
    )
    .unwrap();
    let hello: FromAgent = read_frame(&mut stdout).unwrap();
    assert!(matches!(hello, FromAgent::Hello { .. }), "{hello:?}");
    let ops = vec![
        Op::Trash {
            path: "../victim".into(),
            expect: twinsync_proto::Expect::Any,
        },
        Op::Trash {
            path: "out/victim".into(),
            expect: twinsync_proto::Expect::Any,
        },
        Op::Move {
            from: "/etc/hostname".into(),
            source: twinsync_proto::Expect::Any,
            to: "x".into(),
            expect: twinsync_proto::Expect::Any,
        },
        Op::Mkdir {
            path: "out/evil".into(),
            mode: 0o755,
            owner: None,
            xattrs: None,
        },
    ];
    write_frame(
        &mut stdin,
        &ToAgent::Request {
            id: 1,
            req: Request::Apply {
                ops,
                xattrs_from: None,
            },
        },
    )
    .unwrap();
    let resp = loop {
        match read_frame::<_, FromAgent>(&mut stdout).unwrap() {
            FromAgent::Response { result, .. } => break result,
            _ => continue,
        }
    };
    let Ok(Response::Applied(results)) = resp else {
        panic!("{resp:?}")
    };
    for r in &results {
        assert!(
            matches!(r, Err(twinsync_proto::OpFail::Failed(_))),
            "{results:?}"
        );
    }
    assert_eq!(fs::read(p.dir.path().join("victim")).unwrap(), b"keep");
    assert!(!p.dir.path().join("evil").exists());
    drop(stdin);
    let _ = child.wait();
}

#[test]
fn a_dropped_connection_reconnects_and_converges() {
    let Some(sshd) = Sshd::start() else { return };
    let mut p = remote_pair(&sshd);
    p.left.write("before", b"b");
    start(&mut p, &sshd, &[]);
    p.eventually_equal();
    sshd.kill_connections();
    // Changes on both sides while the link is down.
    p.left.write("during/left", b"written while apart");
    p.right.write("during/right", b"also while apart");
    fs::remove_file(p.right.path("before")).unwrap();
    let t = Instant::now();
    p.right
        .eventually_has("during/left", b"written while apart");
    p.left.eventually_has("during/right", b"also while apart");
    p.left.eventually_gone("before");
    eprintln!("converged {:?} after the link was cut", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(20));
    p.eventually_equal();
    assert!(
        p.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "twinsync exited"
    );
}

#[test]
fn killing_the_remote_agent_or_restarting_sshd_ends_in_convergence() {
    let Some(mut sshd) = Sshd::start() else {
        return;
    };
    let mut p = remote_pair(&sshd);
    start(&mut p, &sshd, &[]);
    // 1. the remote agent dies (its brain-side link notices the stream end)
    let agents: Vec<i32> = twinsync_testkit::procs::processes()
        .into_iter()
        .filter(|p| p.has_arg(b"agent") && p.env_get("SSH_CONNECTION").is_some())
        .map(|p| p.pid)
        .collect();
    assert!(!agents.is_empty(), "no remote agent found");
    for a in &agents {
        unsafe { libc::kill(*a, libc::SIGKILL) };
    }
    p.left.write("after-agent-kill", b"1");
    p.right.write("from-right-too", b"2");
    p.right.eventually_has("after-agent-kill", b"1");
    p.left.eventually_has("from-right-too", b"2");
    // 2. sshd restarted and every connection cut
    sshd.kill_connections();
    sshd.restart();
    p.left.write("after-sshd-restart", b"3");
    p.right.eventually_has("after-sshd-restart", b"3");
    p.eventually_equal();
    assert!(
        p.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "twinsync exited"
    );
}

#[test]
fn remote_errors_come_back_with_the_path_and_the_sync_goes_on() {
    let Some(sshd) = Sshd::start() else { return };
    let mut p = remote_pair(&sshd);
    p.left.write("ro/keep", b"k");
    start(&mut p, &sshd, &[]);
    p.eventually_equal();
    // Make the remote directory refuse writes, even for root.
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(p.right.path("ro"))
            .status()
    };
    if !chattr("+i").is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: chattr +i is not supported here");
        return;
    }
    p.left.write("ro/inner", b"x");
    p.left.write("fine", b"ok");
    p.right.eventually_has("fine", b"ok");
    eventually("the remote error, with its path, in the log", || {
        let log = p.log_text();
        log.lines()
            .any(|l| l.contains("ro/inner") && (l.contains("WARN") || l.contains("ERROR")))
    });
    let _ = chattr("-i");
    assert!(
        p.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "twinsync exited"
    );
}

#[test]
fn kill_9_of_the_brain_leaves_no_ssh_process_and_releases_the_remote_lock() {
    let sshd = Sshd::start().expect("sshd is needed: apt-get install openssh-server");
    let mut p = remote_pair(&sshd);
    start(&mut p, &sshd, &[]);
    assert_eq!(p.locked(), [true, true]);
    // Every ssh of this pair reads this test's own client config.
    let config = sshd.ssh_config.as_os_str().as_encoded_bytes().to_vec();
    let ours = |args: &[&[u8]]| args[0].ends_with(b"ssh") && args.contains(&config.as_slice());
    assert!(
        !crate::harness::pids_where(ours).is_empty(),
        "no ssh master found for this pair"
    );
    let mut brain = p.child.take().unwrap();
    brain.kill().unwrap();
    brain.wait().unwrap();
    eventually("both agents to release their locks", || {
        p.locked() == [false, false]
    });
    eventually("no ssh process of this pair left", || {
        crate::harness::pids_where(ours).is_empty()
    });
}

#[test]
fn ctrl_c_stops_a_brain_that_is_reconnecting() {
    let sshd = Sshd::start().expect("sshd is needed: apt-get install openssh-server");
    let mut p = remote_pair(&sshd);
    let rt = p.dir.path().join("run");
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    let mut args = ssh_args(&sshd);
    args.extend(["--instance".into(), "reconnecting".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    p.spawn_with(&args, |c| {
        std::os::unix::process::CommandExt::process_group(c, 0);
    });
    p.wait_live();
    // The link drops, and reconnecting fails: the key is no longer accepted.
    fs::remove_file(sshd.dir.join("authorized_keys")).unwrap();
    sshd.kill_connections();
    let state = || {
        let out = std::process::Command::new(bin())
            .args(["status", "--json"])
            .env("TWINSYNC_RUNTIME_DIR", &rt)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["state"].as_str().unwrap_or_default().to_string())
    };
    eventually("the brain to be reconnecting", || {
        state().as_deref() == Some("reconnecting")
    });
    let pgid = p.child.as_ref().unwrap().id() as i32;
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    p.wait_exit();
    assert!(
        !p.left.exists(".twinsync/lock"),
        "the left lock was left behind"
    );
}
