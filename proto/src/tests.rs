//! Tests of the protocol: a golden snapshot of the wire format, frames and
//! their limits, signatures, stamps and paths.

use super::*;

fn sig() -> Sig {
    Sig {
        kind: Kind::File,
        size: 3,
        mtime_ns: 1_700_000_000_123_456_789,
        mode: 0o644,
        ino: 42,
        ctime_ns: 1_700_000_001_000_000_007,
        uid: 0,
        gid: 0,
        rdev: 0,
        nlink: 1,
        allocated: 0,
        xattrs: XattrDigest::NONE,
    }
}

#[test]
fn frames_roundtrip_through_a_stream() {
    let msgs = vec![
        FromAgent::Events(vec![
            Event::Changed {
                path: RelPath::from_bytes(b"a\nb\xff".to_vec()),
                sig: sig(),
            },
            Event::Moved {
                from: "x".into(),
                to: "-y".into(),
                sig: sig(),
            },
            Event::Removed { path: "z".into() },
        ]),
        FromAgent::Pong,
    ];
    let mut buf = Vec::new();
    for m in &msgs {
        write_frame(&mut buf, m).unwrap();
    }
    let mut r = &buf[..];
    for m in &msgs {
        let got: FromAgent = read_frame(&mut r).unwrap();
        assert_eq!(&got, m);
    }
    assert!(matches!(
        read_frame::<_, FromAgent>(&mut r),
        Err(FrameError::Eof)
    ));
}

#[test]
fn oversized_frame_is_refused() {
    let mut buf = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(&[0; 8]);
    assert!(matches!(
        read_frame_body(&mut &buf[..]),
        Err(FrameError::TooLarge(_))
    ));
}

/// Golden snapshot: pins the encoding of the hello and of one event. A change
/// here must bump `PROTOCOL_VERSION`.
#[test]
fn golden_wire_format() {
    let hello = ToAgent::Hello {
        magic: MAGIC.into(),
        version: PROTOCOL_VERSION,
        root: b"/r".to_vec(),
        options: AgentOptions {
            excludes: vec![],
            watch: true,
            trash_days: None,
            lock: None,
            owners: false,
            bwlimit: None,
            poll_ms: None,
        },
    };
    let hex: String = encode(&hello).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "0000001e81a548656c6c6f94a87477696e73796e630fc4022f729790c3c0c0c2c0c0"
    );
    let ev = Event::Removed { path: "a".into() };
    let hex: String = encode(&ev).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0000000d81a752656d6f76656491c40161");
    let chunk = FromAgent::ScanChunk {
        id: 7,
        entries: vec![],
        unreadable: vec!["d".into()],
    };
    let hex: String = encode(&chunk).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0000001281a95363616e4368756e6b93079091c40164");
    let ev = Event::Changed {
        path: "a".into(),
        sig: sig(),
    };
    let hex: String = encode(&ev).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0000003281a74368616e67656492c401619ca446696c6503cf17979cfe3d85cd15cd01a42acf17979cfe71c4ca070000009200000100");
    let op = Op::Trash {
        path: "a".into(),
        expect: Expect::Version(Stamp(5)),
    };
    let hex: String = encode(&op).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0000001581a5547261736892c4016181a756657273696f6e05");
    let op = Op::SetAttr {
        path: "a".into(),
        expect: Expect::Any,
        mode: None,
        mtime_ns: None,
        owner: None,
        xattrs: Some(Xattrs {
            scope: XattrScope::Root,
            list: vec![Xattr {
                name: serde_bytes::ByteBuf::from(b"user.x".to_vec()),
                value: serde_bytes::ByteBuf::from(b"1".to_vec()),
            }],
        }),
    };
    let hex: String = encode(&op).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "0000002781a75365744174747296c40161a3416e79c0c0c092a4526f6f749192c406757365722e78c40131"
    );
    let req = Request::Apply {
        ops: vec![Op::KeepConflict { path: "a".into() }],
        xattrs_from: Some(XattrSource {
            root: b"/l".to_vec(),
            scope: XattrScope::Owner,
        }),
    };
    let hex: String = encode(&req).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "0000002681a54170706c79929181ac4b656570436f6e666c69637491c4016192c4022f6ca54f776e6572"
    );
    let file = FileData {
        path: "a".into(),
        extents: vec![
            Extent {
                offset: 0,
                data: serde_bytes::ByteBuf::from(b"x".to_vec()),
            },
            Extent {
                offset: 1 << 30,
                data: serde_bytes::ByteBuf::from(b"y".to_vec()),
            },
        ],
        sig: Sig {
            size: (1 << 30) + 1,
            allocated: 8192,
            ..sig()
        },
        xattrs: Xattrs::default(),
        expect: Expect::Absent,
    };
    let hex: String = encode(&file).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0000004d95c40161929200c4017892ce40000000c401799ca446696c65ce40000001cf17979cfe3d85cd15cd01a42acf17979cfe71c4ca0700000092000001cd200092a54f776e657290a6416273656e74");
}

/// An index written before `Sig::allocated` (its signatures one field
/// shorter) still loads: the allocation is 0, unknown.
#[test]
fn a_signature_without_its_allocation_decodes_as_unknown() {
    let s = Sig {
        allocated: 4096,
        ..sig()
    };
    let mut body = encode(&s)[4..].to_vec();
    // Drop the last field (4096: cd 10 00) and shorten the array.
    assert_eq!(body[0], 0x9c);
    body[0] = 0x9b;
    body.truncate(body.len() - 3);
    let old: Sig = decode(&body).unwrap();
    assert_eq!(old, Sig { allocated: 0, ..s });
    assert_eq!(old.data_size(), old.size);
}

#[test]
fn a_stamp_tells_versions_apart_and_expectations_hold_only_on_them() {
    let a = sig();
    let restored = Sig { ino: 43, ..a };
    let touched = Sig {
        ctime_ns: a.ctime_ns + 1,
        ..a
    };
    assert!(a.same_content(&restored) && a.same_content(&touched));
    assert_ne!(a.stamp(), restored.stamp());
    assert_ne!(a.stamp(), touched.stamp());
    assert!(Stamp::UNKNOWN != a.stamp());
    assert!(Expect::Version(a.stamp()).holds(Some(&a)));
    assert!(!Expect::Version(a.stamp()).holds(Some(&touched)));
    assert!(!Expect::Version(a.stamp()).holds(None));
    assert!(Expect::Absent.holds(None));
    assert!(!Expect::Absent.holds(Some(&a)));
    assert!(Expect::Any.holds(Some(&a)) && Expect::Any.holds(None));
}

#[test]
fn relpath_operations() {
    let p = RelPath::from("a/b/c");
    assert_eq!(p.parent(), Some("a/b".into()));
    assert_eq!(p.file_name(), b"c");
    assert!(p.is_within(&"a".into()));
    assert!(p.is_within(&"a/b/c".into()));
    assert!(!p.is_within(&"a/b/cd".into()));
    assert!(!RelPath::from("ab").is_within(&"a".into()));
    assert_eq!(p.rebase(&"a/b".into(), &"x".into()), Some("x/c".into()));
    assert_eq!(
        RelPath::from("a").rebase(&"a".into(), &"q/r".into()),
        Some("q/r".into())
    );
    assert!(!RelPath::from("a/../b").is_safe());
    assert!(!RelPath::from("/etc").is_safe());
    assert!(RelPath::from("-x/ y:z").is_safe());
    assert_eq!(
        RelPath::from_bytes(b"n\nx\xfe".to_vec()).to_string(),
        "n\\nx\\xfe"
    );
}

#[test]
fn a_frame_over_the_limit_is_refused_not_sent_nor_a_panic() {
    let big = FileData {
        path: "f".into(),
        extents: Extent::dense(vec![1u8; MAX_FRAME + 1]),
        sig: sig(),
        xattrs: Xattrs::default(),
        expect: Expect::Any,
    };
    assert!(matches!(try_encode(&big), Err(FrameError::TooLarge(_))));
    let mut out = Vec::new();
    assert!(write_frame(&mut out, &big).is_err());
    assert!(out.is_empty());
}

#[test]
fn a_request_with_too_many_paths_is_refused_while_decoding() {
    let ok = ToAgent::Request {
        id: 1,
        req: Request::Stat {
            paths: vec!["a".into(); MAX_ITEMS],
        },
    };
    let frame = encode(&ok);
    assert_eq!(decode::<ToAgent>(&frame[4..]).unwrap(), ok);
    let too_many = ToAgent::Request {
        id: 1,
        req: Request::Hash {
            paths: vec!["a".into(); MAX_ITEMS + 1],
        },
    };
    let frame = encode(&too_many);
    assert!(matches!(
        decode::<ToAgent>(&frame[4..]),
        Err(FrameError::Decode(_))
    ));
}

#[test]
fn attributes_carried_depend_on_the_scope() {
    use XattrScope::{Owner, Root};
    for name in [
        &b"user.x"[..],
        b"system.posix_acl_access",
        b"system.posix_acl_default",
    ] {
        assert!(Owner.covers(name) && Root.covers(name));
    }
    for name in [
        &b"trusted.x"[..],
        b"security.capability",
        b"security.selinux",
    ] {
        assert!(!Owner.covers(name) && Root.covers(name));
    }
    for name in [
        &b"system.nfs4_acl"[..],
        b"system.posix_acl_accessx",
        b"userx",
    ] {
        assert!(!Owner.covers(name) && !Root.covers(name));
    }
    let x = |n: &str| Xattr {
        name: serde_bytes::ByteBuf::from(n.as_bytes().to_vec()),
        value: serde_bytes::ByteBuf::from(b"v".to_vec()),
    };
    let list = |scope, names: &[&str]| Xattrs {
        scope,
        list: names.iter().map(|n| x(n)).collect(),
    };
    assert!(list(Owner, &["user.a", "user.b"]).is_valid());
    assert!(!list(Owner, &["user.b", "user.a"]).is_valid());
    assert!(!list(Owner, &["user.a", "user.a"]).is_valid());
    assert!(!list(Owner, &["trusted.a"]).is_valid());
    assert!(list(Root, &["security.capability", "trusted.a"]).is_valid());
}

#[test]
fn an_attribute_change_alone_is_a_change_of_content_and_attributes() {
    let a = sig();
    let tagged = Sig {
        xattrs: XattrDigest { owner: 1, root: 2 },
        ..a
    };
    assert!(!a.same_content(&tagged));
    // Only root's attributes differ: the same unless owners are carried.
    let capable = Sig {
        xattrs: XattrDigest { owner: 0, root: 3 },
        ..a
    };
    assert!(a.same_content(&capable));
}
