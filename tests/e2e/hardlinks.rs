//! Hard links (issue 12): a group of names of one inode on one side is a
//! group on the other, made by linking (no data sent), at a first merge
//! and live, through renames, partial removals and writes in place through
//! one name; locally and over ssh.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use crate::fidelity::rsync_differences;
use crate::harness::{eventually, run_once, Pair, Replica};
use crate::sshd::Sshd;

/// `names` are all there, one inode with at least that many names (a name
/// removed by the sync is kept in the replica's trash, `.twinsync/`).
fn one_inode(r: &Replica, names: &[&str]) -> bool {
    let mds: Vec<_> = names
        .iter()
        .map(|n| std::fs::symlink_metadata(r.path(n)))
        .collect();
    mds.iter().all(|m| {
        m.as_ref().is_ok_and(|m| {
            m.is_file()
                && m.nlink() >= names.len() as u64
                && m.ino() == mds[0].as_ref().unwrap().ino()
        })
    })
}

fn eventually_one_inode(r: &Replica, names: &[&str], data: &[u8], what: &str) {
    eventually(
        &format!("{names:?} one inode holding {what} in {}", r.root.display()),
        || one_inode(r, names) && names.iter().all(|n| r.read(n).as_deref() == Some(data)),
    );
}

fn ln(r: &Replica, existing: &str, new: &str) {
    std::fs::hard_link(r.path(existing), r.path(new)).unwrap();
}

/// Write `data` into the file itself (same inode), as an editor writing in
/// place does: the kernel reports it under `name` only.
fn write_in_place(r: &Replica, name: &str, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(r.path(name))
        .unwrap();
    f.write_all(data).unwrap();
}

fn no_differences(p: &Pair) {
    eventually("rsync -aHAXS finds no difference either way", || {
        rsync_differences(&p.left.root, &p.right.root).is_empty()
            && rsync_differences(&p.right.root, &p.left.root).is_empty()
    });
}

/// The whole story, live: a group of three (two directories) at the start,
/// `ln` of a synced file, a rename of one name, a link into another
/// directory, a write in place through one name on the other side, the
/// removal of one name, a write through a name left.
fn groups_stay_groups(p: &mut Pair, extra: &[&str]) {
    let (l, r) = (p.left.clone(), p.right.clone());
    std::fs::create_dir(l.path("g")).unwrap();
    std::fs::create_dir(l.path("h")).unwrap();
    l.write("g/a", b"group of three");
    ln(&l, "g/a", "g/b");
    ln(&l, "g/a", "h/c");
    p.start(extra);
    let three = ["g/a", "g/b", "h/c"];
    eventually_one_inode(&r, &three, b"group of three", "the first merge's data");

    l.write("x", b"linked live");
    r.eventually_has("x", b"linked live");
    let ino = r.ino("x");
    ln(&l, "x", "y");
    eventually_one_inode(&r, &["x", "y"], b"linked live", "x's data");
    assert_eq!(r.ino("x"), ino, "ln sent x's data again instead of linking");

    std::fs::rename(l.path("y"), l.path("h/z")).unwrap();
    r.eventually_gone("y");
    eventually_one_inode(&r, &["x", "h/z"], b"linked live", "x's data after a rename");
    // A link into a directory holding no other name of the file.
    ln(&l, "x", "g/w");
    eventually_one_inode(&r, &["x", "h/z", "g/w"], b"linked live", "x's data");

    write_in_place(&r, "g/b", b"written in place through g/b on the right");
    eventually_one_inode(
        &l,
        &three,
        b"written in place through g/b on the right",
        "the new data",
    );

    std::fs::remove_file(l.path("x")).unwrap();
    r.eventually_gone("x");
    assert_eq!(r.read("h/z").as_deref(), Some(&b"linked live"[..]));
    // A later write through one of the names left reaches the other.
    write_in_place(&r, "h/z", b"changed after the removal of x");
    eventually_one_inode(
        &l,
        &["h/z", "g/w"],
        b"changed after the removal of x",
        "the new data",
    );
    no_differences(p);
    assert!(p.stop().success());
    let log = p.log_text();
    assert!(
        !log.contains("conflict") && !log.contains("verification found differences"),
        "a conflict or a repair:\n{}",
        p.log_tail()
    );
}

#[test]
fn hard_link_groups_stay_groups_locally() {
    let mut p = Pair::new();
    groups_stay_groups(&mut p, &[]);
}

#[test]
fn hard_link_groups_stay_groups_over_ssh() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    p.remote_right(&sshd);
    let cfg = sshd.ssh_config.display().to_string();
    groups_stay_groups(
        &mut p,
        &["--ssh-config", &cfg, "--remote-path", crate::harness::bin()],
    );
}

/// A one-shot merge: a group of three on each side arrives as one inode
/// with three names (the right's group large enough to go by rsync over
/// ssh), and a second merge carries a removal of one name and a new link.
fn one_shot(p: &Pair, right: &OsStr, extra: &[&str]) {
    let (l, r) = (&p.left, &p.right);
    l.write("a", b"left group");
    ln(l, "a", "b");
    std::fs::create_dir(l.path("d")).unwrap();
    ln(l, "a", "d/c");
    let big = vec![7u8; 3 << 20];
    r.write("big1", &big);
    ln(r, "big1", "big2");
    ln(r, "big1", "big3");
    let merge = || {
        let mut args: Vec<&OsStr> = vec![OsStr::new("--sync-only")];
        args.extend(extra.iter().map(OsStr::new));
        args.push(l.root.as_os_str());
        args.push(right);
        let (st, err) = run_once(&args);
        assert!(st.success(), "{err}");
    };
    merge();
    assert!(
        one_inode(r, &["a", "b", "d/c"]),
        "the left's group on the right"
    );
    assert!(
        one_inode(l, &["big1", "big2", "big3"]),
        "the right's group on the left"
    );
    assert_eq!(l.read("big3").unwrap(), big);
    std::fs::remove_file(l.path("b")).unwrap();
    ln(r, "big1", "d/big4");
    merge();
    assert!(!r.exists("b"));
    assert!(one_inode(r, &["a", "d/c"]));
    assert!(one_inode(l, &["big1", "big2", "big3", "d/big4"]));
    assert_eq!(rsync_differences(&l.root, &r.root), Vec::<String>::new());
    assert_eq!(rsync_differences(&r.root, &l.root), Vec::<String>::new());
}

#[test]
fn hard_link_groups_arrive_whole_at_a_one_shot_merge() {
    let p = Pair::new();
    one_shot(&p, p.right.root.as_os_str(), &[]);
}

#[test]
fn hard_link_groups_arrive_whole_at_a_one_shot_merge_over_ssh() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let p = Pair::new();
    let right = format!("{}:{}", sshd.host, p.right.root.display());
    let cfg = sshd.ssh_config.display().to_string();
    one_shot(
        &p,
        OsStr::new(&right),
        &["--ssh-config", &cfg, "--remote-path", crate::harness::bin()],
    );
}

/// A tree copied without hard links (`cp -r`, `rsync -a` without `-H`)
/// and then merged: the left holds a group of three names, the right the
/// same bytes as three separate files. The first merge links the right's
/// into one inode (the group is carried, as `rsync -H` carries it), each
/// separate copy it replaced kept in the right's trash; and the other way
/// round for a group the right holds. Before, the merge found the names
/// equal and left the groups split (`rsync -aHAXS` found them apart).
#[test]
fn a_group_held_as_separate_copies_on_the_other_side_is_relinked_at_the_first_merge() {
    let p = Pair::new();
    let (l, r) = (&p.left, &p.right);
    l.write("a", b"left group");
    ln(l, "a", "b");
    std::fs::create_dir(l.path("d")).unwrap();
    ln(l, "a", "d/c");
    r.write("m", b"right group");
    ln(r, "m", "n");
    // The copies, with the same mtimes (as cp -p or rsync -a leave them).
    for (side, names, source) in [(r, &["a", "b", "d/c"][..], l), (l, &["m", "n"][..], r)] {
        for &n in names {
            std::fs::create_dir_all(side.path(n).parent().unwrap()).unwrap();
            std::fs::copy(source.path(n), side.path(n)).unwrap();
            let mtime = std::fs::metadata(source.path(n))
                .unwrap()
                .modified()
                .unwrap();
            std::fs::File::options()
                .write(true)
                .open(side.path(n))
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
    for d in [l, r] {
        let dm = std::fs::metadata(l.path("d")).unwrap().modified().unwrap();
        std::fs::File::open(d.path("d"))
            .unwrap()
            .set_modified(dm)
            .unwrap();
    }
    assert!(!one_inode(r, &["a", "b"]) && !one_inode(l, &["m", "n"]));
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert!(
        one_inode(r, &["a", "b", "d/c"]),
        "the left's group on the right"
    );
    assert!(one_inode(l, &["m", "n"]), "the right's group on the left");
    assert_eq!(r.read("d/c").as_deref(), Some(&b"left group"[..]));
    assert_eq!(
        r.trash_contents(),
        vec![b"left group".to_vec(), b"left group".to_vec()],
        "the right's separate copies it replaced"
    );
    assert_eq!(rsync_differences(&l.root, &r.root), Vec::<String>::new());
    assert_eq!(rsync_differences(&r.root, &l.root), Vec::<String>::new());
    // Nothing left to do: a second merge changes nothing.
    let ino = r.ino("b");
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    assert_eq!(r.ino("b"), ino);
}
