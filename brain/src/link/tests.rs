//! Tests of what the brain takes from an agent: unsafe paths and wrong read answers refused.

use super::checks::{check_paths, check_read};
use super::*;
use twinsync_proto::{Entry, FileData, Kind, RelPath, Sig};

fn sig(kind: Kind, size: u64) -> Sig {
    Sig {
        kind,
        size,
        mtime_ns: 0,
        mode: 0o644,
        ino: 1,
        ctime_ns: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: Default::default(),
    }
}

#[test]
fn a_hostile_agents_listing_and_events_are_refused() {
    let entry = |p: &str| Entry {
        path: p.into(),
        sig: sig(Kind::File, 0),
    };
    for bad in [
        "../etc/passwd",
        "/etc/passwd",
        ".twinsync/index",
        ".twinsync",
        "a/../b",
        "a//b",
        "",
    ] {
        let chunk = FromAgent::ScanChunk {
            id: 1,
            entries: vec![entry("ok"), entry(bad)],
            unreadable: vec![],
        };
        assert!(check_paths(&chunk).is_err(), "{bad:?}");
        let ev = FromAgent::Events(vec![Event::Changed {
            path: bad.into(),
            sig: sig(Kind::File, 0),
        }]);
        assert!(check_paths(&ev).is_err(), "{bad:?}");
        let mv = FromAgent::Events(vec![Event::Moved {
            from: "ok".into(),
            to: bad.into(),
            sig: sig(Kind::File, 0),
        }]);
        assert!(check_paths(&mv).is_err(), "{bad:?}");
    }
    let fine = FromAgent::ScanChunk {
        id: 1,
        entries: vec![entry("a/b"), entry("-x"), entry(".twinsyncx")],
        unreadable: vec![RelPath::root()],
    };
    assert!(check_paths(&fine).is_ok());
}

#[test]
fn a_read_answered_for_another_path_or_size_is_not_taken() {
    let at = |offset: u64, data: &[u8]| twinsync_proto::Extent {
        offset,
        data: serde_bytes::ByteBuf::from(data.to_vec()),
    };
    let file = |p: &str, data: &[u8], s: Sig| {
        Ok(FileData {
            path: p.into(),
            extents: if data.is_empty() {
                vec![]
            } else {
                vec![at(0, data)]
            },
            sig: s,
            xattrs: twinsync_proto::Xattrs::default(),
            expect: twinsync_proto::Expect::Any,
        })
    };
    let asked: Vec<RelPath> = vec!["a".into(), "b".into(), "c".into(), "d".into()];
    let got = vec![
        file(".twinsync/index", b"x", sig(Kind::File, 1)),
        file("b", b"xx", sig(Kind::File, 1)),
        file("c", b"", sig(Kind::Symlink, 0)),
        file("d", b"ok", sig(Kind::File, 2)),
    ];
    let r = check_read(Side::Left, &asked, got);
    assert!(r[0].is_err() && r[1].is_err() && r[2].is_err());
    assert_eq!(r[3].as_ref().unwrap().extents[0].data.as_slice(), b"ok");
    // Segments out of order, overlapping, empty or past the size.
    for extents in [
        vec![at(5, b"b"), at(0, b"a")],
        vec![at(0, b"aa"), at(1, b"b")],
        vec![at(3, b"")],
        vec![at(9, b"xy")],
        vec![at(u64::MAX, b"x")],
    ] {
        let mut f = file("s", b"", sig(Kind::File, 10));
        if let Ok(f) = &mut f {
            f.extents = extents;
        }
        assert!(check_read(Side::Left, &["s".into()], vec![f])[0].is_err());
    }
    let mut sparse = file("s", b"", sig(Kind::File, 1 << 30));
    if let Ok(f) = &mut sparse {
        f.extents = vec![at(0, b"a"), at(1, b"b"), at((1 << 30) - 1, b"z")];
    }
    assert!(check_read(Side::Left, &["s".into()], vec![sparse])[0].is_ok());
    // Attributes outside the scope carried (root's, while owners are
    // not carried): refused, never written.
    let mut f = file("e", b"", sig(Kind::File, 0));
    if let Ok(f) = &mut f {
        f.xattrs.list.push(twinsync_proto::Xattr {
            name: serde_bytes::ByteBuf::from(b"security.capability".to_vec()),
            value: serde_bytes::ByteBuf::from(vec![1]),
        });
    }
    assert!(check_read(Side::Left, &["e".into()], vec![f])[0].is_err());
}
