//! A hostile agent against the real brain (issue 11, "the brain trusts no
//! agent"): the brain syncs with a remote replica over the loopback sshd,
//! but its remote agent is a man in the middle that runs the real agent and
//! tampers with what it answers — a listing entry or an event naming a path
//! out of the root or in the brain's own `.twinsync/`, a file read back for
//! another path or with more bytes than its signature says. The brain must
//! write nothing outside its root nor in its `.twinsync/`, and must not take
//! the tampered data for a replica's.
//!
//! The man in the middle is this test binary run again as the remote
//! program (through a small script): [`hostile_agent_entry`] relays frames
//! between the brain (stdin, and fd 3 for its answers: libtest writes to
//! stdout) and `twinsync agent`.

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use twinsync_proto::{
    encode, read_frame, Entry, Event, FromAgent, Kind, Request, Response, ToAgent,
};

use crate::harness::{bin, run_once, Pair};
use crate::sshd::Sshd;

/// How the man in the middle tampers.
const MODES: &[&str] = &["listing", "event", "read-path", "read-size"];

/// The path each tampering names, relative to the brain's left root.
const ESCAPES: &[&str] = &["../escape", ".twinsync/evil"];

fn tamper(mode: &str, m: FromAgent, reads: &Mutex<Vec<u64>>, n: &mut u64) -> Vec<FromAgent> {
    *n += 1;
    let escape = ESCAPES[(*n as usize) % ESCAPES.len()];
    let sig = |size| twinsync_proto::Sig {
        kind: Kind::File,
        size,
        mtime_ns: 1,
        mode: 0o644,
        ino: 7,
        ctime_ns: 7,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: Default::default(),
    };
    match (mode, m) {
        (
            "listing",
            FromAgent::ScanChunk {
                id,
                mut entries,
                unreadable,
            },
        ) => {
            entries.insert(
                0,
                Entry {
                    path: escape.into(),
                    sig: sig(3),
                },
            );
            vec![FromAgent::ScanChunk {
                id,
                entries,
                unreadable,
            }]
        }
        ("event", m @ FromAgent::Response { .. }) => vec![
            m,
            FromAgent::Events(vec![Event::Changed {
                path: escape.into(),
                sig: sig(3),
            }]),
        ],
        (
            "read-path" | "read-size",
            FromAgent::Response {
                id,
                result: Ok(Response::Files(files)),
            },
        ) if reads.lock().unwrap().contains(&id) => {
            let files = files
                .into_iter()
                .map(|f| {
                    f.map(|mut f| {
                        if mode == "read-path" {
                            f.path = escape.into();
                        } else {
                            // Data past the size its signature says.
                            f.extents.push(twinsync_proto::Extent {
                                offset: f.sig.size,
                                data: serde_bytes::ByteBuf::from(b" and more".to_vec()),
                            });
                        }
                        f
                    })
                })
                .collect();
            vec![FromAgent::Response {
                id,
                result: Ok(Response::Files(files)),
            }]
        }
        (_, m) => vec![m],
    }
}

/// The man in the middle (run as a child process by [`the_brain_takes_nothing_a_hostile_agent_makes_up`]
/// through its script; does nothing when run with the suite).
#[test]
#[ignore = "not a test: the hostile agent process the hostile-agent test starts"]
fn hostile_agent_entry() {
    let Ok(mode) = std::env::var("HOSTILE_MODE") else {
        return;
    };
    let mut agent = Command::new(std::env::var("HOSTILE_AGENT").unwrap())
        .arg("agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_agent = BufWriter::new(agent.stdin.take().unwrap());
    let from_agent = agent.stdout.take().unwrap();
    // SAFETY: the script opened fd 3 as the brain's end (libtest owns stdout).
    let mut to_brain = BufWriter::new(unsafe { fs::File::from_raw_fd(3) });
    let reads = Arc::new(Mutex::new(Vec::new()));
    let tampered = Arc::new(AtomicBool::new(false));
    {
        let (reads, tampered) = (Arc::clone(&reads), Arc::clone(&tampered));
        std::thread::spawn(move || {
            let mut r = BufReader::new(from_agent);
            let mut n = 0;
            while let Ok(m) = read_frame::<_, FromAgent>(&mut r) {
                let before = encode(&m);
                for out in tamper(&mode, m, &reads, &mut n) {
                    let bytes = encode(&out);
                    if bytes != before {
                        tampered.store(true, Ordering::SeqCst);
                    }
                    if to_brain
                        .write_all(&bytes)
                        .and_then(|()| to_brain.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    let mut stdin = BufReader::new(std::io::stdin());
    while let Ok(m) = read_frame::<_, ToAgent>(&mut stdin) {
        if let ToAgent::Request {
            id,
            req: Request::ReadFiles { .. },
        } = &m
        {
            reads.lock().unwrap().push(*id);
        }
        if to_agent
            .write_all(&encode(&m))
            .and_then(|()| to_agent.flush())
            .is_err()
        {
            break;
        }
    }
    drop(to_agent);
    let _ = agent.wait();
    if tampered.load(Ordering::SeqCst) {
        fs::write(std::env::var("HOSTILE_MARK").unwrap(), b"tampered").unwrap();
    }
}

/// The script the brain runs as its remote agent: this test binary, as the
/// man in the middle, in `mode`.
fn hostile_script(dir: &Path, mode: &str, mark: &Path) -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let script = dir.join(format!("hostile-{mode}"));
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec 3>&1 1>&2\nHOSTILE_MODE='{mode}' HOSTILE_AGENT='{}' HOSTILE_MARK='{}' \
             exec '{}' --exact hostile_agent::hostile_agent_entry --include-ignored --nocapture -q\n",
            bin(),
            mark.display(),
            me.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Every file below `dir`, with its content.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_brain_takes_nothing_a_hostile_agent_makes_up() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    for mode in MODES {
        let mut p = Pair::new();
        p.remote_right(&sshd);
        p.left.write("l", b"left");
        p.right.write("r", b"from the right");
        p.right.write("d/r2", b"right again");
        let base = p.left.root.parent().unwrap().to_path_buf();
        let mark = base.join(format!("mark-{mode}"));
        let script = hostile_script(&base, mode, &mark);
        let before_base: Vec<_> = files_below(&base)
            .into_iter()
            .filter(|(f, _)| !f.starts_with(&p.left.root) && !f.starts_with(&p.right.root))
            .collect();
        let cfg = sshd.ssh_config.display().to_string();
        let left = p.left.root.display().to_string();
        let right = p.right_arg.clone().unwrap();
        let args = [
            "--sync-only",
            "--ssh-config",
            &cfg,
            "--remote-path",
            &script.display().to_string(),
            &left,
            &right,
        ];
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let (_status, stderr) = run_once(&refs);
        assert!(
            mark.exists(),
            "{mode}: the man in the middle never tampered: {stderr}"
        );
        // Nothing made up was written: not beside the root, not in the
        // brain's state, not at the tampered paths, and what was read with
        // another path or size is not in the left replica.
        let after_base: Vec<_> = files_below(&base)
            .into_iter()
            .filter(|(f, _)| {
                !f.starts_with(&p.left.root) && !f.starts_with(&p.right.root) && f != &mark
            })
            .collect();
        assert_eq!(
            after_base, before_base,
            "{mode}: files appeared beside the roots"
        );
        assert!(!base.join("escape").exists(), "{mode}");
        assert!(!p.left.path(".twinsync/evil").exists(), "{mode}");
        for (f, data) in files_below(&p.left.root) {
            assert!(
                !data.ends_with(b" and more"),
                "{mode}: {} holds bytes the agent made up",
                f.display()
            );
        }
        assert_eq!(p.left.read("l").as_deref(), Some(&b"left"[..]), "{mode}");
    }
}
