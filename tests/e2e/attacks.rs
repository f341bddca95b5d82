//! Attacks on confinement (issue 11), each written as the attacker would run
//! it: a hostile brain speaking the framed protocol to
//! `twinsync agent --restrict ROOT`, a replica's unprivileged user planting
//! links while root syncs, a fifo in place of a synced file.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use twinsync_proto::{
    encode, read_frame, AgentOptions, Expect, FileData, FromAgent, Kind, Op, RelPath, Request,
    Response, Sig, ToAgent, XattrScope, XattrSource, MAGIC, MAX_ITEMS, PROTOCOL_VERSION,
};

use crate::harness::{bin, eventually, Pair, WAIT};

/// A hostile brain: it speaks the protocol to a restricted agent.
struct Hostile {
    child: Child,
    tx: Option<BufWriter<ChildStdin>>,
    rx: Option<mpsc::Receiver<FromAgent>>,
    next: u64,
    /// Set: the reader stops reading (and keeps the pipe open).
    deaf: Arc<std::sync::atomic::AtomicBool>,
}

impl Hostile {
    /// `twinsync agent --restrict root`, greeted for `root` (taking the lock
    /// when `lock`, which makes `.twinsync/`).
    fn start(root: &Path, lock: bool, trash_days: Option<u32>) -> Hostile {
        let mut child = Command::new(bin())
            .arg("agent")
            .arg("--restrict")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let tx = BufWriter::new(child.stdin.take().unwrap());
        let out: ChildStdout = child.stdout.take().unwrap();
        let (send, rx) = mpsc::channel();
        let deaf = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let deaf = Arc::clone(&deaf);
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                while let Ok(m) = read_frame::<_, FromAgent>(&mut r) {
                    while deaf.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    if send.send(m).is_err() {
                        return;
                    }
                }
            });
        }
        let mut h = Hostile {
            child,
            tx: Some(tx),
            rx: Some(rx),
            next: 1,
            deaf,
        };
        use std::os::unix::ffi::OsStrExt;
        h.send(&ToAgent::Hello {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION,
            root: root.as_os_str().as_bytes().to_vec(),
            options: AgentOptions {
                excludes: vec![],
                watch: false,
                trash_days,
                lock: lock.then(|| "attacker".into()),
                owners: false,
                bwlimit: None,
                poll_ms: None,
            },
        });
        match h.recv() {
            Some(FromAgent::Hello { .. }) => h,
            other => panic!("no hello: {other:?}"),
        }
    }

    fn send(&mut self, m: &ToAgent) {
        let tx = self.tx.as_mut().expect("writer");
        tx.write_all(&encode(m)).unwrap();
        tx.flush().unwrap();
    }

    /// The next frame that is not an event (`None`: the agent is gone).
    fn recv(&mut self) -> Option<FromAgent> {
        loop {
            match self.rx.as_ref().expect("reader").recv_timeout(WAIT) {
                Ok(FromAgent::Events(_) | FromAgent::Pong) => {}
                Ok(m) => return Some(m),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("no answer in {WAIT:?}"),
            }
        }
    }

    fn ask(&mut self, req: Request) -> Result<Response, String> {
        let id = self.next;
        self.next += 1;
        self.send(&ToAgent::Request { id, req });
        match self.recv() {
            Some(FromAgent::Response { id: got, result }) => {
                assert_eq!(got, id);
                result
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Still serving: a request answered.
    fn alive(&mut self) -> bool {
        matches!(
            self.ask(Request::Stat {
                paths: vec!["x".into()]
            }),
            Ok(Response::Stats(_))
        )
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sig(mode: u32, size: u64) -> Sig {
    Sig {
        kind: Kind::File,
        size,
        mtime_ns: 1_700_000_000_000_000_000,
        mode,
        ino: 0,
        ctime_ns: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: Default::default(),
    }
}

fn file(path: &str, data: &[u8], mode: u32) -> FileData {
    FileData {
        path: path.into(),
        extents: twinsync_proto::Extent::dense(data.to_vec()),
        sig: sig(mode, data.len() as u64),
        xattrs: Default::default(),
        expect: Expect::Any,
    }
}

/// A root and a directory outside it with a secret, side by side.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let outside = d.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"top secret").unwrap();
    (d, root, outside)
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
                md.mode(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Finding 1: `CopyFrom` names its own source root; a restricted agent
/// refuses any root but its own, so `/etc/shadow` (or any file) cannot be
/// pulled into the replica and read back.
#[test]
fn a_restricted_agent_copies_from_no_other_root() {
    let (_d, root, outside) = setup();
    let mut h = Hostile::start(&root, true, None);
    for src in ["/".as_bytes(), outside.as_os_str().as_encoded_bytes()] {
        let r = h.ask(Request::CopyFrom {
            src_root: src.to_vec(),
            paths: vec![
                ("etc/shadow".into(), Expect::Any),
                ("secret".into(), Expect::Any),
            ],
            scope: Default::default(),
        });
        assert!(
            r.is_err(),
            "copy from {:?} accepted: {r:?}",
            String::from_utf8_lossy(src)
        );
    }
    assert!(!root.join("secret").exists() && !root.join("etc").exists());
    let r = h.ask(Request::ReadFiles {
        paths: vec!["secret".into(), "etc/shadow".into()],
        scope: Default::default(),
    });
    match r {
        Ok(Response::Files(f)) => assert!(f.iter().all(Result::is_err), "{f:?}"),
        other => panic!("{other:?}"),
    }
}

/// The attribute names of `path` (not followed), `user.*` ones included.
fn xattr_names(path: &Path) -> Vec<u8> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(usize::try_from(n).unwrap_or(0));
    buf
}

fn set_user_xattr(path: &Path, name: &str, value: &[u8]) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setting {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Finding 1 again, for attributes: `Apply` names the root its `SetAttr`
/// and `Mkdir` read their extended attributes from (a local pair's other
/// replica); a restricted agent refuses any root but its own, so no
/// attribute of an entry outside can be pulled into the replica and read
/// back, and nothing is applied.
#[test]
fn a_restricted_agent_reads_attributes_from_no_other_root() {
    let (_d, root, outside) = setup();
    set_user_xattr(&outside.join("secret"), "user.secret", b"top");
    fs::write(root.join("secret"), b"mine").unwrap();
    let mut h = Hostile::start(&root, true, None);
    let ops = |path: &str| {
        vec![
            Op::SetAttr {
                path: path.into(),
                expect: Expect::Any,
                mode: Some(0o600),
                mtime_ns: None,
                owner: None,
                xattrs: None,
            },
            Op::Mkdir {
                path: "made".into(),
                mode: 0o755,
                owner: None,
                xattrs: None,
            },
        ]
    };
    let source = |src: &[u8]| {
        Some(XattrSource {
            root: src.to_vec(),
            scope: XattrScope::Owner,
        })
    };
    for src in ["/".as_bytes(), outside.as_os_str().as_encoded_bytes()] {
        let r = h.ask(Request::Apply {
            ops: ops("secret"),
            xattrs_from: source(src),
        });
        assert!(
            r.is_err(),
            "attributes read from {:?}: {r:?}",
            String::from_utf8_lossy(src)
        );
    }
    assert!(xattr_names(&root.join("secret")).is_empty());
    assert!(!root.join("made").exists());
    // Its own root it serves (each path read beneath it, as `CopyFrom`'s).
    set_user_xattr(&root.join("secret"), "user.mine", b"1");
    let own = root.as_os_str().as_encoded_bytes().to_vec();
    match h.ask(Request::Apply {
        ops: ops("secret"),
        xattrs_from: source(&own),
    }) {
        Ok(Response::Applied(r)) => assert!(r.iter().all(Result::is_ok), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(xattr_names(&root.join("secret")), b"user.mine\0");
    assert_eq!(xattr_names(&outside.join("secret")), b"user.secret\0");
}

/// Finding 2: nothing in `.twinsync/` can be named by a request, temp names
/// are unpredictable, and a symlink in the tree is replaced, never written
/// through: no byte or mode lands outside the root.
#[test]
fn writes_never_land_outside_the_root() {
    let (_d, root, outside) = setup();
    let mut h = Hostile::start(&root, true, None);
    let before = listing(&outside);
    std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("dirlink")).unwrap();
    // Whatever the lock says, the temp name cannot be guessed; and
    // `.twinsync/` itself cannot be addressed to plant anything there.
    let lock = fs::read_to_string(root.join(".twinsync/lock")).unwrap();
    let pid: u64 = lock
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .unwrap()
        .parse()
        .unwrap();
    let guesses: Vec<String> = (0..64)
        .map(|i| format!(".twinsync/tmp/w{:x}", (pid << 24) ^ i))
        .collect();
    let mut files: Vec<FileData> = guesses.iter().map(|g| file(g, b"pwn", 0o4755)).collect();
    files.push(file(".twinsync/lock", b"pid=1\n", 0o644));
    files.push(file(".twinsync/installed", b"x", 0o644));
    files.push(file("dirlink/secret", b"pwn", 0o4755));
    files.push(file("dirlink/new", b"pwn", 0o4755));
    files.push(file("../outside/secret", b"pwn", 0o4755));
    files.push(file("/tmp/twinsync-pwn", b"pwn", 0o4755));
    let n = files.len();
    match h.ask(Request::WriteFiles { files }) {
        Ok(Response::Written(r)) => {
            assert_eq!(r.len(), n);
            assert!(r.iter().all(Result::is_err), "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    // The symlink named itself is replaced by the file, not followed.
    match h.ask(Request::WriteFiles {
        files: vec![file("link", b"mine", 0o600)],
    }) {
        Ok(Response::Written(r)) => assert!(r[0].is_ok(), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(root.join("link")).unwrap(), b"mine");
    assert!(!fs::symlink_metadata(root.join("link"))
        .unwrap()
        .is_symlink());
    assert_eq!(listing(&outside), before);
    assert_eq!(
        fs::read_to_string(root.join(".twinsync/lock")).unwrap(),
        lock
    );
    assert!(!Path::new("/tmp/twinsync-pwn").exists());
    // Every other request naming `.twinsync/` is refused too.
    let state: RelPath = ".twinsync/lock".into();
    match h.ask(Request::Stat {
        paths: vec![state.clone(), ".twinsync".into()],
    }) {
        Ok(Response::Stats(s)) => assert_eq!(s, vec![None, None]),
        other => panic!("{other:?}"),
    }
    match h.ask(Request::Apply {
        ops: vec![
            Op::Trash {
                path: state.clone(),
                expect: Expect::Any,
            },
            Op::Move {
                from: state.clone(),
                source: Expect::Any,
                to: "stolen".into(),
                expect: Expect::Any,
            },
            Op::SetAttr {
                path: state.clone(),
                expect: Expect::Any,
                mode: Some(0o777),
                mtime_ns: None,
                owner: None,
                xattrs: None,
            },
            Op::Symlink {
                path: ".twinsync/trash".into(),
                target: b"/etc".to_vec(),
                mtime_ns: 0,
                owner: None,
                xattrs: Default::default(),
                expect: Expect::Any,
            },
            Op::Install {
                staged: "../lock".into(),
                path: "x".into(),
                expect: Expect::Any,
                want: sig(0o644, 0),
                xattrs: Default::default(),
            },
            Op::Mkdir {
                path: "dirlink/sub".into(),
                mode: 0o777,
                owner: None,
                xattrs: None,
            },
            Op::SetAttr {
                path: "dirlink/secret".into(),
                expect: Expect::Any,
                mode: Some(0o777),
                mtime_ns: None,
                owner: None,
                xattrs: None,
            },
        ],
        xattrs_from: None,
    }) {
        Ok(Response::Applied(r)) => assert!(r.iter().all(Result::is_err), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(listing(&outside), before);
    assert!(root.join(".twinsync/lock").exists() && !root.join("stolen").exists());
}

/// Finding 3: a trash day-folder (or the whole trash) replaced by a
/// symlink: trashing does not move files through it, and the start-up
/// cleaning removes the link, not what it points to.
#[test]
fn trash_links_are_never_followed() {
    let (_d, root, outside) = setup();
    // Made by a first agent, then tampered with while none runs.
    drop(Hostile::start(&root, true, None));
    let trash = root.join(".twinsync/trash");
    let today = {
        let mut h = Hostile::start(&root, true, None);
        fs::write(root.join("probe"), b"p").unwrap();
        assert!(matches!(
            h.ask(Request::Apply { ops: vec![Op::Trash { path: "probe".into(), expect: Expect::Any }], xattrs_from: None }),
            Ok(Response::Applied(r)) if r[0].is_ok()
        ));
        let day = fs::read_dir(&trash)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        fs::remove_dir_all(trash.join(&day)).unwrap();
        day
    };
    std::os::unix::fs::symlink(&outside, trash.join(&today)).unwrap();
    std::os::unix::fs::symlink(&outside, trash.join("2001-01-01")).unwrap();
    let old = outside.join("old-day");
    fs::create_dir(&old).unwrap();
    fs::write(old.join("keep"), b"keep").unwrap();
    std::os::unix::fs::symlink(&old, root.join(".twinsync/conflicts/2001-01-02")).unwrap();
    let before = listing(&outside);
    let mut h = Hostile::start(&root, true, Some(1));
    // The cleaning removes the old links themselves.
    eventually("old day links removed", || {
        !trash.join("2001-01-01").exists()
            && fs::symlink_metadata(trash.join("2001-01-01")).is_err()
            && fs::symlink_metadata(root.join(".twinsync/conflicts/2001-01-02")).is_err()
    });
    fs::write(root.join("victim"), b"v").unwrap();
    let r = h.ask(Request::Apply {
        ops: vec![Op::Trash {
            path: "victim".into(),
            expect: Expect::Any,
        }],
        xattrs_from: None,
    });
    assert!(
        matches!(&r, Ok(Response::Applied(x)) if x[0].is_err()),
        "{r:?}"
    );
    assert_eq!(fs::read(root.join("victim")).unwrap(), b"v");
    assert_eq!(listing(&outside), before);
    assert_eq!(fs::read(old.join("keep")).unwrap(), b"keep");
    // The whole trash a link: the same.
    fs::remove_file(trash.join(&today)).unwrap();
    fs::remove_dir(&trash).unwrap();
    std::os::unix::fs::symlink(&outside, &trash).unwrap();
    let r = h.ask(Request::Apply {
        ops: vec![Op::Trash {
            path: "victim".into(),
            expect: Expect::Any,
        }],
        xattrs_from: None,
    });
    assert!(
        matches!(&r, Ok(Response::Applied(x)) if x[0].is_err()),
        "{r:?}"
    );
    assert_eq!(listing(&outside), before);
}

fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Finding 8: a client that sends requests and never reads the answers is
/// slowed down (the agent stops reading), not fed memory; a request with
/// more paths than allowed is refused while it is decoded.
#[test]
fn a_client_that_does_not_read_meets_back_pressure() {
    let (_d, root, _outside) = setup();
    let h = Hostile::start(&root, false, None);
    let pid = h.child.id();
    let mut h = h;
    let mut tx = h.tx.take().unwrap();
    // Stop reading the answers (the pipe stays open): only the agent's
    // output pipe can buffer them.
    h.deaf.store(true, Ordering::SeqCst);
    let paths: Vec<RelPath> = (0..MAX_ITEMS)
        .map(|i| RelPath::from(format!("{i}").as_str()))
        .collect();
    let total = 400usize;
    let sent = Arc::new(AtomicUsize::new(0));
    {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            for id in 0..total {
                let req = ToAgent::Request {
                    id: id as u64,
                    req: Request::Stat {
                        paths: paths.clone(),
                    },
                };
                if tx
                    .write_all(&encode(&req))
                    .and_then(|()| tx.flush())
                    .is_err()
                {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    // Until the writer is stuck (no progress for a second) or done.
    let (mut last, mut since, mut peak) = (usize::MAX, Instant::now(), 0);
    let t = Instant::now();
    loop {
        peak = peak.max(rss_kb(pid));
        let now = sent.load(Ordering::SeqCst);
        if now == total || t.elapsed() > WAIT {
            break;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let now = sent.load(Ordering::SeqCst);
    assert!(
        now < total / 4,
        "{now} of {total} requests (each {MAX_ITEMS} paths) taken in"
    );
    assert!(peak < 300 * 1024, "agent grew to {peak} kB");
    drop(h);

    // One request with more paths than allowed: refused, the agent leaves.
    let mut h = Hostile::start(&root, false, None);
    let pid = h.child.id();
    let too_many = vec![RelPath::from("a"); MAX_ITEMS * 40];
    h.send(&ToAgent::Request {
        id: 1,
        req: Request::Hash { paths: too_many },
    });
    let got = h.recv();
    assert!(got.is_none(), "answered: {got:?}");
    assert!(rss_kb(pid) < 300 * 1024);
}

/// Finding 8: an answer larger than a frame is refused with an error (the
/// brain asks for less), never a panic; the agent goes on serving.
#[test]
fn an_oversize_answer_is_an_error_not_a_panic() {
    let (_d, root, _outside) = setup();
    let big = vec![7u8; 40 << 20];
    fs::write(root.join("a"), &big).unwrap();
    fs::write(root.join("b"), &big).unwrap();
    let mut h = Hostile::start(&root, false, None);
    let r = h.ask(Request::ReadFiles {
        paths: vec!["a".into(), "b".into()],
        scope: Default::default(),
    });
    assert!(
        matches!(&r, Err(e) if e.contains("too large")),
        "{:?}",
        r.map(|_| ())
    );
    assert!(h.alive());
}

/// Finding 6: a fifo (or anything not a regular file) where a file is
/// read, hashed or copied never blocks the agent.
#[test]
fn a_fifo_is_never_opened_for_reading() {
    let (_d, root, _outside) = setup();
    let fifo = root.join("f");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let mut h = Hostile::start(&root, true, None);
    match h.ask(Request::ReadFiles {
        paths: vec!["f".into()],
        scope: Default::default(),
    }) {
        Ok(Response::Files(f)) => assert!(f[0].is_err()),
        other => panic!("{other:?}"),
    }
    match h.ask(Request::Hash {
        paths: vec!["f".into()],
    }) {
        Ok(Response::Hashes(f)) => assert_eq!(f, vec![None]),
        other => panic!("{other:?}"),
    }
    let src = root.as_os_str().as_encoded_bytes().to_vec();
    match h.ask(Request::CopyFrom {
        src_root: src,
        paths: vec![("f".into(), Expect::Any)],
        scope: Default::default(),
    }) {
        Ok(Response::Written(w)) => assert!(w[0].is_err()),
        other => panic!("{other:?}"),
    }
    assert!(h.alive());
}

/// Finding 6, end to end: a synced file replaced by a fifo does not stop
/// the sync (later changes still arrive), and SIGTERM still ends it.
#[test]
fn a_fifo_in_place_of_a_synced_file_does_not_hang_the_sync() {
    let mut p = Pair::new();
    p.start(&[]);
    p.left.write("f", b"data");
    p.right.eventually_has("f", b"data");
    fs::remove_file(p.left.path("f")).unwrap();
    let c = std::ffi::CString::new(p.left.path("f").as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let c = std::ffi::CString::new(p.right.path("g").as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    p.left.write("after", b"still syncing");
    p.right.eventually_has("after", b"still syncing");
    p.right.write("back", b"both ways");
    p.left.eventually_has("back", b"both ways");
    assert!(p.stop().success());
}

/// Finding 4: root syncs a pair that an unprivileged user can write. The
/// user swaps the replica's `.twinsync/` for their own, with today's trash
/// folder a symlink to a root-only directory; a deletion on the other side
/// must not make root move the user's file into it.
#[test]
fn a_replica_user_cannot_aim_root_at_a_root_only_directory() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root (CI runs the tests as root) to drop privileges");
        return;
    }
    let mut p = Pair::new();
    let nobody = 65534;
    // The user may write both replicas (a shared folder).
    fs::set_permissions(p.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for r in [&p.left.root, &p.right.root] {
        fs::set_permissions(r, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let rootonly = p.dir.path().join("rootonly");
    fs::create_dir(&rootonly).unwrap();
    fs::set_permissions(&rootonly, fs::Permissions::from_mode(0o700)).unwrap();
    p.left.write("victim.sh", b"echo owned");
    p.start(&[]);
    p.right.eventually_has("victim.sh", b"echo owned");
    let today = {
        let out = Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // The attack, as the user (setuid in the child before exec).
    use std::os::unix::process::CommandExt;
    let script = format!(
        "set -e; cd '{}'; mv .twinsync .old-state; mkdir -p .twinsync/trash; \
         ln -s '{}' .twinsync/trash/{today}",
        p.left.root.display(),
        rootonly.display()
    );
    let st = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .uid(nobody)
        .gid(nobody)
        .status()
        .unwrap();
    assert!(st.success(), "the attacker's script failed");
    assert_eq!(
        fs::symlink_metadata(p.left.path(".twinsync"))
            .unwrap()
            .uid(),
        nobody
    );
    fs::remove_file(p.right.path("victim.sh")).unwrap();
    // Root trashes the left copy into its own state dir (held open since
    // the start), or stops; never into the user's link.
    eventually("the deletion handled", || {
        !p.left.exists("victim.sh") || p.child.as_mut().unwrap().try_wait().unwrap().is_some()
    });
    assert_eq!(
        listing(&rootonly),
        vec![],
        "root wrote into the root-only directory"
    );
    // A new agent refuses a state dir that is not root's.
    let _ = p.stop();
    let mut q = Command::new(bin())
        .arg("--sync-only")
        .arg(&p.left.root)
        .arg(&p.right.root)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = String::new();
    q.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let st = q.wait().unwrap();
    assert!(!st.success() && err.contains("uid 65534"), "{st:?}: {err}");
    assert_eq!(listing(&rootonly), vec![]);
}

/// A stand-in for ssh in front of a forced command: whatever command the
/// client asks for goes to `twinsync agent --restrict ROOT` as
/// `SSH_ORIGINAL_COMMAND`, as sshd does with a `command=` key.
fn forced_ssh(dir: &Path, root: &Path) -> PathBuf {
    let script = dir.join("forced-ssh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n# rsync calls: forced-ssh HOST COMMAND...\nshift\n\
             SSH_ORIGINAL_COMMAND=\"$*\" exec '{}' agent --restrict '{}'\n",
            bin(),
            root.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// rsync through the forced command, asking for `args`; its success.
fn rsync_via(ssh: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("rsync")
        .arg("-a")
        .arg("--protect-args")
        .arg("-e")
        .arg(ssh)
        .arg("--rsync-path=twinsync rsync-server --root / -- rsync")
        .args(args)
        .output()
        .expect("rsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Finding 9 and "restricted means restricted": behind a forced command, a
/// stolen key may run rsync transfers (so large files keep rsync's delta),
/// but rsync's server is confined to the root whatever root or paths the
/// client names, through links planted in the replica too: it reads
/// nothing outside the root and writes nowhere but the root's stage.
#[test]
fn a_forced_command_runs_rsync_confined_to_its_root() {
    let (d, root, outside) = setup();
    fs::create_dir_all(root.join(".twinsync/stage")).unwrap();
    fs::write(root.join("mine"), b"replica data").unwrap();
    fs::write(outside.join("secret"), b"not for you").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
    let ssh = forced_ssh(d.path(), &root);
    let got = d.path().join("got");
    fs::create_dir(&got).unwrap();
    let dst = |p: &Path| format!("{}/", p.display());
    let remote = |p: &Path| format!("h:{}", p.display());

    // What the brain does: read a file of the root, stage one in it.
    let (ok, err) = rsync_via(&ssh, &[&remote(&root.join("mine")), &dst(&got)]);
    assert!(ok, "{err}");
    assert_eq!(fs::read(got.join("mine")).unwrap(), b"replica data");
    let (ok, err) = rsync_via(
        &ssh,
        &[
            &got.join("mine").display().to_string(),
            &format!("h:{}", dst(&root.join(".twinsync/stage"))),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        fs::read(root.join(".twinsync/stage/mine")).unwrap(),
        b"replica data"
    );

    // Reading outside: through a planted link, by name, the host's files.
    for src in [
        root.join("d/secret"),
        outside.join("secret"),
        PathBuf::from("/etc/shadow"),
    ] {
        let (ok, _) = rsync_via(&ssh, &[&remote(&src), &dst(&got)]);
        assert!(!ok, "{} was read", src.display());
    }
    assert!(!got.join("secret").exists() && !got.join("shadow").exists());

    // Writing anywhere but the stage: outside, through the link, the root.
    fs::write(got.join("planted"), b"x").unwrap();
    let planted = got.join("planted").display().to_string();
    for to in [outside.clone(), root.join("d"), root.clone()] {
        let (ok, err) = rsync_via(&ssh, &[&planted, &format!("h:{}", dst(&to))]);
        assert!(!ok, "{} was written: {err}", to.display());
    }
    assert!(!outside.join("planted").exists() && !root.join("planted").exists());

    // Nothing but twinsync's own commands runs behind the key.
    let out = Command::new(&ssh)
        .args(["h", "cat", "/etc/shadow"])
        .output()
        .unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
    let out = Command::new(&ssh)
        .args(["h", "twinsync rsync-server --root / -- sh -c id"])
        .output()
        .unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
}
