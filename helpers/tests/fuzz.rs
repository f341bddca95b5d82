//! Fuzz of the agent's frame decoder and request handler (proptest-driven,
//! bounded: a fixed number of cases, each a fresh replica). A restricted
//! agent is served in-process a valid hello, then arbitrary requests with
//! hostile paths (`..`, absolute, `.twinsync/…`, NUL bytes, a symlink out
//! of the root), other roots, and arbitrary bytes. It must never panic,
//! answer each request it decoded exactly once, in order, and leave
//! everything outside the root as it was.
//!
//! Failing cases are kept by proptest in `tests/fuzz.proptest-regressions`
//! (the corpus, committed with the repository) and replayed first.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use twinsync_proto::{
    encode, read_frame, AgentOptions, Expect, Extent, FileData, FromAgent, Kind, Op, RelPath,
    Request, Sig, Stamp, ToAgent, Xattr, XattrScope, XattrSource, Xattrs, MAGIC, PROTOCOL_VERSION,
};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(b".twinsync".to_vec()),
        Just(b"stage".to_vec()),
        Just(b"trash".to_vec()),
        Just(b"lock".to_vec()),
        Just(b"link".to_vec()),
        Just(b"d".to_vec()),
        Just(b"f".to_vec()),
        Just(b"fifo".to_vec()),
        Just(Vec::new()),
        Just(b"a\0b".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..6),
    ]
}

fn path() -> impl Strategy<Value = RelPath> {
    (any::<bool>(), proptest::collection::vec(component(), 0..4)).prop_map(|(abs, c)| {
        let mut b = if abs { b"/".to_vec() } else { Vec::new() };
        b.extend(c.join(&b'/'));
        RelPath::from_bytes(b)
    })
}

fn paths() -> impl Strategy<Value = Vec<RelPath>> {
    proptest::collection::vec(path(), 0..4)
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::Absent),
        any::<u64>().prop_map(|s| Expect::Version(Stamp(s)))
    ]
}

fn sig() -> impl Strategy<Value = Sig> {
    (0u64..16, any::<i64>(), 0u32..0o10000).prop_map(|(size, mtime_ns, mode)| Sig {
        kind: Kind::File,
        size,
        mtime_ns,
        mode,
        ino: 0,
        ctime_ns: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: Default::default(),
    })
}

fn scope() -> impl Strategy<Value = XattrScope> {
    prop_oneof![Just(XattrScope::Owner), Just(XattrScope::Root)]
}

/// Lists of attributes, in and out of their scope, in and out of order.
fn xattrs() -> impl Strategy<Value = Xattrs> {
    let name = prop_oneof![
        Just(b"user.x".to_vec()),
        Just(b"trusted.x".to_vec()),
        Just(b"security.capability".to_vec()),
        Just(b"system.posix_acl_access".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    let one = (name, proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(n, v)| Xattr {
        name: serde_bytes::ByteBuf::from(n),
        value: serde_bytes::ByteBuf::from(v),
    });
    (scope(), proptest::collection::vec(one, 0..3)).prop_map(|(scope, list)| Xattrs { scope, list })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (path(), expect(), path(), expect()).prop_map(|(from, source, to, expect)| Op::Move {
            from,
            source,
            to,
            expect
        }),
        (path(), expect()).prop_map(|(path, expect)| Op::Trash { path, expect }),
        path().prop_map(|path| Op::KeepConflict { path }),
        (path(), 0u32..0o10000, proptest::option::of(xattrs())).prop_map(|(path, mode, xattrs)| {
            Op::Mkdir {
                path,
                mode,
                owner: None,
                xattrs,
            }
        }),
        (
            path(),
            proptest::option::of(0u32..0o10000),
            proptest::option::of(any::<i64>()),
            proptest::option::of(xattrs())
        )
            .prop_map(|(path, mode, mtime_ns, xattrs)| Op::SetAttr {
                path,
                expect: Expect::Any,
                mode,
                mtime_ns,
                owner: None,
                xattrs,
            }),
        (
            path(),
            proptest::collection::vec(any::<u8>(), 0..8),
            any::<i64>(),
            expect()
        )
            .prop_map(|(path, target, mtime_ns, expect)| Op::Symlink {
                path,
                target,
                mtime_ns,
                owner: None,
                xattrs: Default::default(),
                expect,
            }),
        (path(), path(), expect(), sig()).prop_map(|(existing, path, expect, want)| Op::Link {
            existing,
            path,
            expect,
            want,
        }),
        (path(), path(), expect(), sig(), xattrs()).prop_map(
            |(staged, path, expect, want, xattrs)| Op::Install {
                staged,
                path,
                expect,
                want,
                xattrs,
            }
        ),
    ]
}

/// A root a request names to read from: the one served, or another.
fn other_root(root: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(root.as_bytes().to_vec()),
        Just(b"/".to_vec()),
        Just(b"/tmp".to_vec())
    ]
}

fn request(root: &'static str) -> impl Strategy<Value = Request> {
    let file = (
        path(),
        // Segments in and out of order, empty, past the size.
        proptest::collection::vec(
            (0u64..24, proptest::collection::vec(any::<u8>(), 0..8)),
            0..3,
        ),
        sig(),
        xattrs(),
        expect(),
    )
        .prop_map(|(path, extents, sig, xattrs, expect)| FileData {
            path,
            extents: extents
                .into_iter()
                .map(|(offset, data)| Extent {
                    offset,
                    data: serde_bytes::ByteBuf::from(data),
                })
                .collect(),
            sig,
            xattrs,
            expect,
        });
    prop_oneof![
        paths().prop_map(|paths| Request::Stat { paths }),
        paths().prop_map(|paths| Request::StatStaged { paths }),
        paths().prop_map(|paths| Request::ReadLinks { paths }),
        paths().prop_map(|paths| Request::Hash { paths }),
        (paths(), scope()).prop_map(|(paths, scope)| Request::ReadFiles { paths, scope }),
        (paths(), scope()).prop_map(|(paths, scope)| Request::ReadXattrs { paths, scope }),
        proptest::collection::vec(file, 0..3).prop_map(|files| Request::WriteFiles { files }),
        (
            other_root(root),
            proptest::collection::vec((path(), expect()), 0..3),
            scope()
        )
            .prop_map(|(src_root, paths, scope)| Request::CopyFrom {
                src_root,
                paths,
                scope
            }),
        any::<bool>().prop_map(|forget| Request::Installed { forget }),
        Just(Request::Intact),
        (
            proptest::collection::vec(op(), 0..5),
            proptest::option::of((other_root(root), scope()))
        )
            .prop_map(|(ops, from)| Request::Apply {
                ops,
                xattrs_from: from.map(|(root, scope)| XattrSource { root, scope }),
            }),
    ]
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::MetadataExt;
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

/// The replica of every case lives at one path for the run (requests name
/// it as a root), emptied between cases.
static DIRS: std::sync::LazyLock<(&'static str, &'static str)> = std::sync::LazyLock::new(|| {
    let base = std::env::temp_dir().join(format!("twinsync-fuzz-{}", std::process::id()));
    let s = |n: &str| &*base.join(n).to_string_lossy().into_owned().leak();
    (s("root"), s("outside"))
});

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_requests_never_panic_nor_leave_the_root(
        reqs in proptest::collection::vec(request(DIRS.0), 1..8),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (root, outside) = (Path::new(DIRS.0), Path::new(DIRS.1));
        let _ = fs::remove_dir_all(root);
        let _ = fs::remove_dir_all(outside);
        fs::create_dir_all(root.join("d")).unwrap();
        fs::create_dir_all(outside).unwrap();
        fs::write(root.join("f"), b"in").unwrap();
        fs::write(outside.join("f"), b"out").unwrap();
        std::os::unix::fs::symlink(outside, root.join("link")).unwrap();
        let before = snapshot(outside);

        let mut input = encode(&ToAgent::Hello {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION,
            root: DIRS.0.as_bytes().to_vec(),
            options: AgentOptions {
                excludes: vec![],
                watch: false,
                trash_days: Some(0),
                lock: Some("fuzz".into()),
                owners: false,
                bwlimit: None,
                poll_ms: None,
            },
        });
        for (id, req) in reqs.iter().enumerate() {
            input.extend(encode(&ToAgent::Request { id: id as u64, req: req.clone() }));
        }
        // Then arbitrary bytes: a torn or garbage frame ends the session.
        input.extend(&tail);
        let out = Sink::default();
        let r = twinsync_helpers::agent::serve(
            Box::new(std::io::Cursor::new(input)),
            Box::new(out.clone()),
            Some(root.to_path_buf()),
        );
        let _ = r;
        let bytes = out.0.lock().unwrap().clone();
        let mut rd = &bytes[..];
        let mut ids = Vec::new();
        while let Ok(m) = read_frame::<_, FromAgent>(&mut rd) {
            if let FromAgent::Response { id, .. } = m {
                ids.push(id);
            }
        }
        // One answer per request, in order (the garbage tail, in the rare
        // case it decodes as a request, may add one).
        let want: Vec<u64> = (0..reqs.len() as u64).collect();
        prop_assert!(ids.len() >= want.len());
        prop_assert_eq!(&ids[..want.len()], &want[..]);
        prop_assert_eq!(snapshot(outside), before);
        prop_assert!(root.join(".twinsync").is_dir());
        let _ = fs::remove_dir_all(Path::new(DIRS.0).parent().unwrap());
    }
}

#[test]
fn arbitrary_bytes_never_panic_the_frame_decoder() {
    proptest!(ProptestConfig::with_cases(2000), |(b in proptest::collection::vec(any::<u8>(), 0..256))| {
        let _ = read_frame::<_, ToAgent>(&mut &b[..]);
        let _ = read_frame::<_, FromAgent>(&mut &b[..]);
        let _ = twinsync_proto::decode::<ToAgent>(&b);
    });
}

/// The seed corpus (`tests/fuzz-corpus/`, committed): one frame per kind of
/// request, each aimed at an escape (a path out of the root, through the
/// planted link, into `.twinsync/`, another root). The mutation fuzz below
/// starts from these real frames, so its mutations reach deep into the
/// handler instead of failing at the first length field.
fn corpus_requests() -> Vec<(&'static str, Request)> {
    let p = |s: &str| RelPath::from_bytes(s.as_bytes().to_vec());
    let sig = Sig {
        kind: Kind::File,
        size: 3,
        mtime_ns: 1,
        mode: 0o4755,
        ino: 0,
        ctime_ns: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: Default::default(),
    };
    let pwn = Xattrs {
        scope: XattrScope::Root,
        list: vec![
            Xattr {
                name: serde_bytes::ByteBuf::from(b"security.capability".to_vec()),
                value: serde_bytes::ByteBuf::from(vec![1, 0, 0, 2, 0, 0x20, 0, 0]),
            },
            Xattr {
                name: serde_bytes::ByteBuf::from(b"user.pwn".to_vec()),
                value: serde_bytes::ByteBuf::from(b"1".to_vec()),
            },
        ],
    };
    let file = |path: &str| FileData {
        path: p(path),
        extents: Extent::dense(b"pwn".to_vec()),
        sig,
        xattrs: pwn.clone(),
        expect: Expect::Any,
    };
    vec![
        ("scan", Request::Scan),
        (
            "stat",
            Request::Stat {
                paths: vec![p("link/f"), p("../outside/f"), p("f")],
            },
        ),
        (
            "stat-staged",
            Request::StatStaged {
                paths: vec![p("../lock"), p("f")],
            },
        ),
        ("intact", Request::Intact),
        (
            "read-links",
            Request::ReadLinks {
                paths: vec![p("link"), p(".twinsync/lock")],
            },
        ),
        (
            "hash",
            Request::Hash {
                paths: vec![p("link/f"), p("f")],
            },
        ),
        (
            "read-files",
            Request::ReadFiles {
                paths: vec![p("/etc/shadow"), p("link/f"), p("f")],
                scope: XattrScope::Root,
            },
        ),
        (
            "read-xattrs",
            Request::ReadXattrs {
                paths: vec![p("/etc/shadow"), p("link/f"), p("link"), p("f")],
                scope: XattrScope::Root,
            },
        ),
        (
            "write-files",
            Request::WriteFiles {
                files: vec![file("link/f"), file(".twinsync/tmp/x"), file("g")],
            },
        ),
        (
            "copy-from",
            Request::CopyFrom {
                src_root: b"/".to_vec(),
                paths: vec![(p("etc/shadow"), Expect::Absent)],
                scope: XattrScope::Root,
            },
        ),
        (
            "apply-xattrs-from",
            Request::Apply {
                ops: vec![
                    Op::SetAttr {
                        path: p("etc/shadow"),
                        expect: Expect::Any,
                        mode: None,
                        mtime_ns: None,
                        owner: None,
                        xattrs: None,
                    },
                    Op::Mkdir {
                        path: p("link/new"),
                        mode: 0o755,
                        owner: None,
                        xattrs: None,
                    },
                ],
                xattrs_from: Some(XattrSource {
                    root: b"/".to_vec(),
                    scope: XattrScope::Root,
                }),
            },
        ),
        ("installed", Request::Installed { forget: true }),
        (
            "apply",
            Request::Apply {
                ops: vec![
                    Op::Move {
                        from: p("f"),
                        source: Expect::Any,
                        to: p("link/f"),
                        expect: Expect::Any,
                    },
                    Op::Trash {
                        path: p("link/f"),
                        expect: Expect::Any,
                    },
                    Op::KeepConflict { path: p("link/f") },
                    Op::Mkdir {
                        path: p("link/new"),
                        mode: 0o777,
                        owner: None,
                        xattrs: Some(pwn.clone()),
                    },
                    Op::SetAttr {
                        path: p("link/f"),
                        expect: Expect::Any,
                        mode: Some(0o4777),
                        mtime_ns: Some(0),
                        owner: None,
                        xattrs: Some(pwn.clone()),
                    },
                    Op::Symlink {
                        path: p(".twinsync/trash"),
                        target: b"/etc".to_vec(),
                        mtime_ns: 0,
                        owner: None,
                        xattrs: Default::default(),
                        expect: Expect::Any,
                    },
                    Op::Link {
                        existing: p("link/f"),
                        path: p("g"),
                        expect: Expect::Any,
                        want: sig,
                    },
                    Op::Link {
                        existing: p("f"),
                        path: p("../outside/g"),
                        expect: Expect::Any,
                        want: sig,
                    },
                    Op::Link {
                        existing: p(".twinsync/lock"),
                        path: p("stolen"),
                        expect: Expect::Any,
                        want: sig,
                    },
                    Op::Install {
                        staged: p("../../outside/f"),
                        path: p("f"),
                        expect: Expect::Any,
                        want: sig,
                        xattrs: pwn,
                    },
                ],
                xattrs_from: None,
            },
        ),
    ]
}

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

/// The committed corpus is the current protocol's encoding of
/// [`corpus_requests`] (`FUZZ_WRITE_CORPUS=1` writes it again after a
/// protocol change).
#[test]
fn the_corpus_is_current() {
    let dir = corpus_dir();
    for (name, req) in corpus_requests() {
        let bytes = encode(&ToAgent::Request { id: 0, req });
        let file = dir.join(format!("{name}.bin"));
        if std::env::var_os("FUZZ_WRITE_CORPUS").is_some() {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&file, &bytes).unwrap();
        }
        let on_disk = fs::read(&file).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} is not the current encoding: run `FUZZ_WRITE_CORPUS=1 cargo test -p \
             twinsync-helpers --test fuzz the_corpus_is_current` and commit the corpus",
            file.display()
        );
    }
}

/// The mutation fuzz's own replica (the tests run side by side).
static MUT_DIRS: std::sync::LazyLock<(&'static str, &'static str)> =
    std::sync::LazyLock::new(|| {
        let base = std::env::temp_dir().join(format!("twinsync-fuzz-mut-{}", std::process::id()));
        let s = |n: &str| &*base.join(n).to_string_lossy().into_owned().leak();
        (s("root"), s("outside"))
    });

/// One mutation of a corpus frame: bytes overwritten, a cut, a splice of
/// another corpus frame.
#[derive(Debug, Clone)]
struct Mutation {
    overwrite: Vec<(usize, u8)>,
    cut: Option<usize>,
    splice: Option<(usize, usize)>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        proptest::option::of(any::<usize>()),
        proptest::option::of((any::<usize>(), any::<usize>())),
    )
        .prop_map(|(overwrite, cut, splice)| Mutation {
            overwrite,
            cut,
            splice,
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    /// Corpus frames, mutated, after a valid hello to a restricted agent:
    /// no panic, nothing outside the root changed.
    #[test]
    fn mutated_corpus_frames_never_panic_nor_leave_the_root(
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let corpus: Vec<Vec<u8>> = {
            let mut files: Vec<_> = fs::read_dir(corpus_dir())
                .expect("the fuzz corpus (tests/fuzz-corpus)")
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files.iter().map(|f| fs::read(f).unwrap()).collect()
        };
        prop_assert!(corpus.len() >= 10);
        let (root, outside) = (Path::new(MUT_DIRS.0), Path::new(MUT_DIRS.1));
        let _ = fs::remove_dir_all(root);
        let _ = fs::remove_dir_all(outside);
        fs::create_dir_all(root.join("d")).unwrap();
        fs::create_dir_all(outside).unwrap();
        fs::write(root.join("f"), b"in").unwrap();
        fs::write(outside.join("f"), b"out").unwrap();
        std::os::unix::fs::symlink(outside, root.join("link")).unwrap();
        let before = snapshot(outside);
        let mut input = encode(&ToAgent::Hello {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION,
            root: MUT_DIRS.0.as_bytes().to_vec(),
            options: AgentOptions {
                excludes: vec![],
                watch: false,
                trash_days: Some(0),
                lock: Some("fuzz".into()),
                owners: false,
                bwlimit: None,
                poll_ms: None,
            },
        });
        for (i, m) in muts.iter().enumerate() {
            let mut frame = corpus[(i * 7 + m.overwrite.len()) % corpus.len()].clone();
            for &(at, b) in &m.overwrite {
                let n = frame.len();
                frame[at % n] = b;
            }
            if let Some((at, from)) = m.splice {
                let other = &corpus[from % corpus.len()];
                let at = at % frame.len();
                frame.splice(at..at, other[at % other.len()..].iter().copied());
            }
            if let Some(cut) = m.cut {
                frame.truncate(cut % (frame.len() + 1));
            }
            input.extend(frame);
        }
        let _ = twinsync_helpers::agent::serve(
            Box::new(std::io::Cursor::new(input)),
            Box::new(Sink::default()),
            Some(root.to_path_buf()),
        );
        prop_assert_eq!(snapshot(outside), before);
        let _ = fs::remove_dir_all(Path::new(MUT_DIRS.0).parent().unwrap());
    }
}
