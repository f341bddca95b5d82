use std::fs;

use crate::harness::Pair;

fn odd_names() -> Vec<Vec<u8>> {
    vec![
        b"new\nline".to_vec(),
        b"bad\xff\xfeutf8".to_vec(),
        b"-leading-dash".to_vec(),
        b"--rsync-option-lookalike".to_vec(),
        b"with spaces  and\ttab".to_vec(),
        b"co:lon".to_vec(),
        b"host:path".to_vec(),
        vec![b'n'; 255],
        b"quote\"and'apos\\back".to_vec(),
        "ünïcödé-名前".as_bytes().to_vec(),
    ]
}

#[test]
fn odd_names_sync_both_ways_and_rename_and_delete() {
    let mut p = Pair::new();
    p.start(&[]);
    for (i, name) in odd_names().into_iter().enumerate() {
        let (a, b) = if i % 2 == 0 {
            (&p.left, &p.right)
        } else {
            (&p.right, &p.left)
        };
        a.write(&name, &name);
        b.eventually_has(&name, &name);
        let mut dir = name.clone();
        dir.truncate(250);
        dir.extend_from_slice(b".d");
        let mut inner = dir.clone();
        inner.extend_from_slice(b"/");
        inner.extend_from_slice(&name);
        a.write(&inner, b"inside");
        b.eventually_has(&inner, b"inside");
    }
    p.eventually_equal();
    for name in odd_names() {
        let mut renamed = name.clone();
        renamed.truncate(250);
        renamed.extend_from_slice(b".mv");
        fs::rename(p.right.path(&name), p.right.path(&renamed)).unwrap();
        p.left.eventually_has(&renamed, &name);
        p.left.eventually_gone(&name);
        fs::remove_file(p.left.path(&renamed)).unwrap();
        p.right.eventually_gone(&renamed);
    }
    p.eventually_equal();
}
