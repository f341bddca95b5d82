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
    encode, read_frame, AgentOptions, Expect, FileData, FromAgent, Kind, Op, RelPath, Request, Sig,
    Stamp, ToAgent, MAGIC, PROTOCOL_VERSION,
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
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (path(), path(), expect()).prop_map(|(from, to, expect)| Op::Move { from, to, expect }),
        (path(), expect()).prop_map(|(path, expect)| Op::Trash { path, expect }),
        path().prop_map(|path| Op::KeepConflict { path }),
        (path(), 0u32..0o10000).prop_map(|(path, mode)| Op::Mkdir { path, mode }),
        (
            path(),
            proptest::option::of(0u32..0o10000),
            proptest::option::of(any::<i64>())
        )
            .prop_map(|(path, mode, mtime_ns)| Op::SetAttr {
                path,
                mode,
                mtime_ns
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
                expect
            }),
        (path(), path(), expect(), sig()).prop_map(|(staged, path, expect, want)| Op::Install {
            staged,
            path,
            expect,
            want
        }),
    ]
}

fn request(root: &'static str) -> impl Strategy<Value = Request> {
    let file = (
        path(),
        proptest::collection::vec(any::<u8>(), 0..16),
        sig(),
        expect(),
    )
        .prop_map(|(path, data, sig, expect)| FileData {
            path,
            data: serde_bytes::ByteBuf::from(data),
            sig,
            expect,
        });
    prop_oneof![
        paths().prop_map(|paths| Request::Stat { paths }),
        paths().prop_map(|paths| Request::StatStaged { paths }),
        paths().prop_map(|paths| Request::ReadLinks { paths }),
        paths().prop_map(|paths| Request::Hash { paths }),
        paths().prop_map(|paths| Request::ReadFiles { paths }),
        proptest::collection::vec(file, 0..3).prop_map(|files| Request::WriteFiles { files }),
        (
            prop_oneof![
                Just(root.as_bytes().to_vec()),
                Just(b"/".to_vec()),
                Just(b"/tmp".to_vec())
            ],
            proptest::collection::vec((path(), expect()), 0..3)
        )
            .prop_map(|(src_root, paths)| Request::CopyFrom { src_root, paths }),
        any::<bool>().prop_map(|forget| Request::Installed { forget }),
        Just(Request::Intact),
        proptest::collection::vec(op(), 0..5).prop_map(|ops| Request::Apply { ops }),
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
