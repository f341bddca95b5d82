//! Fidelity (issue 12): what a replica carries besides names and bytes.
//! Sparse files arrive with their holes, locally, over ssh and at a merge;
//! owners, fifos and devices, extended attributes (POSIX ACLs and file
//! capabilities among them) arrive too.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::harness::{eventually, Pair};
use crate::sshd::Sshd;

/// 256 MiB long, 1 MiB of data in two places.
const LEN: u64 = 256 << 20;

fn make_sparse(path: &Path) {
    let f = File::create(path).unwrap();
    f.set_len(LEN).unwrap();
    f.write_all_at(&[0x5a; 1 << 19], 3 << 20).unwrap();
    f.write_all_at(&[0xa5; 1 << 19], 200 << 20).unwrap();
    f.sync_all().unwrap();
}

/// Same length and data as [`make_sparse`] wrote, and few blocks allocated.
fn is_sparse_copy(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    let md = f.metadata().unwrap();
    if md.len() != LEN {
        return false;
    }
    let mut buf = vec![0u8; 1 << 19];
    let same = |at: u64, byte: u8, buf: &mut Vec<u8>| {
        f.read_exact_at(buf, at).is_ok() && buf.iter().all(|&b| b == byte)
    };
    same(3 << 20, 0x5a, &mut buf) && same(200 << 20, 0xa5, &mut buf) && same(100 << 20, 0, &mut buf)
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn check(p: &Pair, name: &str) {
    let dst = p.right.path(name);
    eventually(&format!("{} to arrive", dst.display()), || {
        is_sparse_copy(&dst)
    });
    assert!(
        allocated(&dst) <= 4 << 20,
        "{}: {} bytes allocated for 1 MiB of data",
        dst.display(),
        allocated(&dst)
    );
}

#[test]
fn a_sparse_file_arrives_sparse_live_and_at_a_merge() {
    let mut p = Pair::new();
    make_sparse(&p.left.path("before.img"));
    p.start(&[]);
    check(&p, "before.img");
    make_sparse(&p.left.path("live.img"));
    check(&p, "live.img");
}

#[test]
fn a_sparse_file_arrives_sparse_over_ssh() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    p.remote_right(&sshd);
    make_sparse(&p.left.path("before.img"));
    let cfg = sshd.ssh_config.display().to_string();
    p.start(&["--ssh-config", &cfg, "--remote-path", crate::harness::bin()]);
    check(&p, "before.img");
    make_sparse(&p.left.path("live.img"));
    check(&p, "live.img");
}

fn owner(path: &Path) -> Option<(u32, u32)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.uid(), m.gid()))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn eventually_owned(path: &Path, want: (u32, u32)) {
    eventually(&format!("{} owned by {want:?}", path.display()), || {
        owner(path) == Some(want)
    });
}

fn assert_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "owners can be carried by root only: run the suite as root (CI does)"
    );
}

/// Numeric owners and groups, of files, directories and symlinks: carried
/// at the first merge, then live both ways; a chown moves no content (the
/// destination keeps its inode).
fn owners_are_carried(p: &mut Pair, extra: &[&str]) {
    p.left.write("f", b"data");
    p.left.write("d/g", b"in d");
    std::os::unix::fs::symlink("f", p.left.path("l")).unwrap();
    chown(&p.left.path("f"), 1234, 2345);
    chown(&p.left.path("d"), 3456, 4567);
    chown(&p.left.path("l"), 5678, 6789);
    p.start(extra);
    eventually_owned(&p.right.path("f"), (1234, 2345));
    eventually_owned(&p.right.path("d"), (3456, 4567));
    eventually_owned(&p.right.path("l"), (5678, 6789));
    let ino = p.right.ino("f");
    chown(&p.left.path("f"), 1111, 2222);
    eventually_owned(&p.right.path("f"), (1111, 2222));
    assert_eq!(p.right.ino("f"), ino, "a chown sent the content again");
    chown(&p.right.path("d"), 3333, 4444);
    eventually_owned(&p.left.path("d"), (3333, 4444));
    p.right.write("d/new", b"made on the right");
    chown(&p.right.path("d/new"), 7777, 8888);
    p.left.eventually_has("d/new", b"made on the right");
    eventually_owned(&p.left.path("d/new"), (7777, 8888));
    p.eventually_equal();
}

#[test]
fn owners_and_groups_are_carried_locally() {
    assert_root();
    let mut p = Pair::new();
    owners_are_carried(&mut p, &[]);
}

#[test]
fn owners_and_groups_are_carried_over_ssh() {
    assert_root();
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    p.remote_right(&sshd);
    let cfg = sshd.ssh_config.display().to_string();
    owners_are_carried(
        &mut p,
        &["--ssh-config", &cfg, "--remote-path", crate::harness::bin()],
    );
}

fn mknod(path: &Path, kind: libc::mode_t, mode: libc::mode_t, dev: libc::dev_t) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), kind | mode, dev) },
        0,
        "mknod"
    );
}

/// Kind, device numbers, mode and owner of a special file.
fn special(path: &Path) -> Option<(u32, u64, u32, u32)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.mode(), m.rdev(), m.uid(), m.gid()))
}

/// Fifos and devices (as a container's `/dev` holds) are made on the other
/// side with `mknod` — never opened — at the first merge and live both
/// ways, with their device numbers, mode and owner; a removal travels too.
#[test]
fn fifos_and_devices_are_carried() {
    assert_root();
    let mut p = Pair::new();
    mknod(
        &p.left.path("null"),
        libc::S_IFCHR,
        0o666,
        libc::makedev(1, 3),
    );
    mknod(
        &p.left.path("loop9"),
        libc::S_IFBLK,
        0o660,
        libc::makedev(7, 9),
    );
    mknod(&p.left.path("pipe"), libc::S_IFIFO, 0o640, 0);
    chown(&p.left.path("loop9"), 0, 6);
    p.start(&[]);
    for name in ["null", "loop9", "pipe"] {
        let want = special(&p.left.path(name));
        eventually(&format!("{name} made on the right"), || {
            special(&p.right.path(name)) == want
        });
    }
    mknod(
        &p.right.path("zero"),
        libc::S_IFCHR,
        0o666,
        libc::makedev(1, 5),
    );
    mknod(&p.right.path("fifo2"), libc::S_IFIFO, 0o600, 0);
    for name in ["zero", "fifo2"] {
        let want = special(&p.right.path(name));
        eventually(&format!("{name} made on the left"), || {
            special(&p.left.path(name)) == want
        });
    }
    std::fs::remove_file(p.left.path("loop9")).unwrap();
    p.right.eventually_gone("loop9");
    std::fs::set_permissions(
        p.right.path("pipe"),
        std::os::unix::fs::PermissionsExt::from_mode(0o604),
    )
    .unwrap();
    eventually("the fifo's mode on the left", || {
        special(&p.left.path("pipe")).is_some_and(|s| s.0 & 0o7777 == 0o604)
    });
    p.eventually_equal();
    assert!(p.stop().success());
}

/// Run a tool of the `attr`, `acl` or `libcap2-bin` packages (CI installs
/// them); panics with what to install when it is missing.
fn tool(program: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install the attr, acl and libcap2-bin packages")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// Every extended attribute of `path` (not followed), in every namespace,
/// as `getfattr` dumps them (ACLs and capabilities included).
fn xattrs(path: &Path) -> String {
    if std::fs::symlink_metadata(path).is_err() {
        return "(missing)".into();
    }
    let dump = tool(
        "getfattr",
        &[
            os("-h"),
            os("-d"),
            os("-e"),
            os("hex"),
            os("-m"),
            os("-"),
            os("--absolute-names"),
            path.as_os_str(),
        ],
    );
    dump.lines()
        .filter(|l| !l.starts_with("# file:") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn setfattr(path: &Path, name: &str, value: &str) {
    tool(
        "setfattr",
        &[
            os("-h"),
            os("-n"),
            os(name),
            os("-v"),
            os(value),
            path.as_os_str(),
        ],
    );
}

fn rmfattr(path: &Path, name: &str) {
    tool(
        "setfattr",
        &[os("-h"), os("-x"), os(name), path.as_os_str()],
    );
}

fn setfacl(path: &Path, args: &[&str]) {
    let mut a: Vec<&std::ffi::OsStr> = args.iter().map(|s| os(s)).collect();
    a.push(path.as_os_str());
    tool("setfacl", &a);
}

fn setcap(path: &Path, caps: &str) {
    tool("setcap", &[os(caps), path.as_os_str()]);
}

/// A copy of a real binary, to give a file capability.
fn copy_binary(to: &Path) {
    std::fs::copy("/bin/true", to).expect("copying /bin/true");
}

/// Wait until `rel` has the same extended attributes on both sides.
fn eventually_same_xattrs(p: &Pair, rel: &str, what: &str) {
    let (l, r) = (p.left.path(rel), p.right.path(rel));
    let t = std::time::Instant::now();
    loop {
        let (a, b) = (xattrs(&l), xattrs(&r));
        if a == b && a != "(missing)" {
            return;
        }
        assert!(
            t.elapsed() < crate::harness::WAIT,
            "{rel}: {what}: extended attributes differ:\nleft:\n{a}\nright:\n{b}\nlog:\n{}",
            p.log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Extended attributes in every namespace — `user.*`, `trusted.*`, POSIX
/// ACLs (access and a directory's default), a file capability — of files
/// (small ones inline, a large one by rsync over ssh), a directory and a
/// symlink: carried at the first merge both ways, then live both ways,
/// attribute changes alone (no content sent) and removals too.
fn xattrs_are_carried(p: &mut Pair, extra: &[&str]) {
    // Before the start: the first merge carries them.
    let (l, r) = (p.left.clone(), p.right.clone());
    l.write("f", b"data");
    setfattr(&l.path("f"), "user.x", "1");
    setfattr(&l.path("f"), "trusted.t", "1");
    std::fs::create_dir(l.path("d")).unwrap();
    setfacl(&l.path("d"), &["-m", "u:nobody:rx"]);
    setfacl(&l.path("d"), &["-d", "-m", "u:nobody:rx"]);
    l.write("d/g", b"inherits the default ACL");
    copy_binary(&l.path("cap"));
    setcap(&l.path("cap"), "cap_net_raw+ep");
    // Larger than what travels inline: rsync copies it over ssh.
    l.write("big", &vec![7u8; 3 << 20]);
    setcap(&l.path("big"), "cap_net_raw+ep");
    setfattr(&l.path("big"), "user.big", "yes");
    std::os::unix::fs::symlink("f", l.path("l")).unwrap();
    setfattr(&l.path("l"), "trusted.link", "1");
    r.write("r", b"right");
    setfattr(&r.path("r"), "user.r", "2");
    setfacl(&r.path("r"), &["-m", "u:nobody:r"]);
    p.start(extra);
    for rel in ["f", "d", "d/g", "cap", "big", "l", "r"] {
        eventually_same_xattrs(p, rel, "at the first merge");
    }
    assert!(xattrs(&r.path("cap")).contains("security.capability"));
    assert!(xattrs(&r.path("d")).contains("system.posix_acl_default"));
    assert!(xattrs(&l.path("r")).contains("system.posix_acl_access"));

    // Live, attributes alone, left to right: the content stays.
    let ino = r.ino("f");
    setfattr(&l.path("f"), "user.x", "2");
    eventually_same_xattrs(p, "f", "a setfattr on the left");
    assert!(xattrs(&r.path("f")).contains("user.x=0x32"));
    assert_eq!(
        r.ino("f"),
        ino,
        "an attribute change sent the content again"
    );
    // Right to left: an ACL, a capability, a trusted attribute.
    setfacl(&r.path("f"), &["-m", "u:nobody:r"]);
    eventually_same_xattrs(p, "f", "a setfacl on the right");
    copy_binary(&r.path("cap2"));
    setcap(&r.path("cap2"), "cap_net_raw+ep");
    eventually_same_xattrs(p, "cap2", "a new capable file on the right");
    setfattr(&r.path("d"), "trusted.dir", "x");
    eventually_same_xattrs(p, "d", "a trusted attribute on the right's directory");
    // Removals.
    rmfattr(&l.path("f"), "user.x");
    eventually_same_xattrs(p, "f", "user.x removed on the left");
    assert!(!xattrs(&r.path("f")).contains("user.x"));
    rmfattr(&r.path("f"), "trusted.t");
    setfacl(&r.path("d"), &["-k"]);
    eventually_same_xattrs(p, "f", "trusted.t removed on the right");
    eventually_same_xattrs(p, "d", "the default ACL removed on the right");
    assert!(!xattrs(&l.path("d")).contains("posix_acl_default"));
    setcap(&l.path("cap"), "cap_net_admin+ep");
    eventually_same_xattrs(p, "cap", "another capability on the left");
    // New entries with their attributes, both ways.
    std::fs::create_dir(l.path("nd")).unwrap();
    setfacl(&l.path("nd"), &["-d", "-m", "g:nogroup:rwx"]);
    l.write("nd/n", b"new");
    setfattr(&l.path("nd/n"), "user.n", "new");
    r.write("m", b"made on the right");
    setfattr(&r.path("m"), "user.m", "m");
    for rel in ["nd", "nd/n", "m"] {
        eventually_same_xattrs(p, rel, "a new entry");
    }
    p.eventually_equal();
    for rel in [
        "f", "d", "d/g", "cap", "cap2", "big", "l", "r", "nd", "nd/n", "m",
    ] {
        eventually_same_xattrs(p, rel, "at the end");
    }
}

#[test]
fn extended_attributes_acls_and_capabilities_are_carried_locally() {
    assert_root();
    let mut p = Pair::new();
    xattrs_are_carried(&mut p, &[]);
    assert!(p.stop().success());
}

/// Attribute changes alone on a live local pair, where the destination's
/// helper reads the attributes from the source's root itself (no round
/// trip to the source's agent first): a `setfattr` and a `setfacl` of a
/// file, a default ACL of a directory, a trusted attribute of a symlink
/// (the link's own, not its target's), a new directory with an ACL, all
/// made on the left, reach the right; no content is sent again.
#[test]
fn attribute_changes_on_a_live_local_pair_are_read_by_the_destination() {
    assert_root();
    let mut p = Pair::new();
    let (l, r) = (p.left.clone(), p.right.clone());
    l.write("f", b"data");
    std::fs::create_dir(l.path("d")).unwrap();
    std::os::unix::fs::symlink("f", l.path("l")).unwrap();
    p.start(&[]);
    p.eventually_equal();
    let ino = r.ino("f");
    setfattr(&l.path("f"), "user.x", "1");
    setfacl(&l.path("f"), &["-m", "u:nobody:r"]);
    eventually_same_xattrs(&p, "f", "a setfattr and a setfacl of the left's file");
    setfacl(&l.path("d"), &["-d", "-m", "u:nobody:rx"]);
    eventually_same_xattrs(&p, "d", "a default ACL of the left's directory");
    setfattr(&l.path("l"), "trusted.link", "1");
    eventually_same_xattrs(&p, "l", "a trusted attribute of the left's symlink");
    assert!(!xattrs(&r.path("f")).contains("trusted.link"));
    std::fs::create_dir(l.path("nd")).unwrap();
    setfacl(&l.path("nd"), &["-m", "u:nobody:rwx"]);
    eventually_same_xattrs(&p, "nd", "a new directory with an ACL");
    assert_eq!(
        r.ino("f"),
        ino,
        "an attribute change sent the content again"
    );
    p.eventually_equal();
    assert!(p.stop().success());
}

#[test]
fn extended_attributes_acls_and_capabilities_are_carried_over_ssh() {
    assert_root();
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    p.remote_right(&sshd);
    let cfg = sshd.ssh_config.display().to_string();
    xattrs_are_carried(
        &mut p,
        &["--ssh-config", &cfg, "--remote-path", crate::harness::bin()],
    );
    assert!(p.stop().success());
}

/// A one-shot merge (`--sync-only`) carries attributes both ways, attribute
/// changes alone included, and a removal made since the last run.
#[test]
fn extended_attributes_are_carried_by_a_one_shot_merge() {
    assert_root();
    let p = Pair::new();
    let (l, r) = (&p.left, &p.right);
    l.write("f", b"data");
    setfattr(&l.path("f"), "user.a", "1");
    std::fs::create_dir(r.path("d")).unwrap();
    setfacl(&r.path("d"), &["-d", "-m", "u:nobody:rwx"]);
    copy_binary(&r.path("d/cap"));
    setcap(&r.path("d/cap"), "cap_net_raw+ep");
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    for rel in ["f", "d", "d/cap"] {
        eventually_same_xattrs(&p, rel, "after the first merge");
    }
    setfattr(&r.path("f"), "user.b", "2");
    rmfattr(&r.path("f"), "user.a");
    setfacl(&l.path("d"), &["-m", "u:nobody:r"]);
    let (st, err) = p.sync_only(&[]);
    assert!(st.success(), "{err}");
    for rel in ["f", "d", "d/cap"] {
        eventually_same_xattrs(&p, rel, "after the second merge");
    }
    assert!(xattrs(&l.path("f")).contains("user.b") && !xattrs(&l.path("f")).contains("user.a"));
}

/// What `rsync -aHAXS --numeric-ids --checksum --dry-run --itemize-changes`
/// would change to make `to` like `from` (`.twinsync/` and the roots
/// themselves left out: the left's index is written below its root).
pub(crate) fn rsync_differences(from: &Path, to: &Path) -> Vec<String> {
    let (mut f, mut t) = (from.as_os_str().to_owned(), to.as_os_str().to_owned());
    f.push("/");
    t.push("/");
    let out = tool(
        "rsync",
        &[
            os("-aHAXS"),
            os("--numeric-ids"),
            os("--checksum"),
            os("--dry-run"),
            os("--itemize-changes"),
            os("--exclude=/.twinsync"),
            &f,
            &t,
        ],
    );
    out.lines()
        .filter(|l| !l.is_empty() && !l.ends_with(" ./"))
        .map(str::to_owned)
        .collect()
}

fn set_mtime(path: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs());
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// Directory mtimes are carried: after a one-shot merge both ways,
/// `rsync -a --itemize-changes` finds nothing to change in either
/// direction, directories included (the debootstrap comparison of issue 12
/// found 127 directory mtimes apart); live, a directory written into gets
/// the mtime of its counterpart once its content is in place. `right` is
/// how twinsync names the right replica (its path, or `host:path`), and
/// `extra` its ssh options.
fn directory_mtimes(p: &mut Pair, right: &std::ffi::OsStr, extra: &[&str]) {
    assert_root();
    let (l, r) = (p.left.clone(), p.right.clone());
    for d in ["a", "a/b", "a/b/c", "e"] {
        std::fs::create_dir(l.path(d)).unwrap();
    }
    l.write("a/f", b"f");
    l.write("a/b/g", b"g");
    l.write("a/b/c/h", b"h");
    std::os::unix::fs::symlink("f", l.path("a/l")).unwrap();
    std::fs::create_dir_all(r.path("a/b")).unwrap();
    r.write("a/b/right", b"made on the right");
    std::fs::create_dir(r.path("only-right")).unwrap();
    r.write("only-right/x", b"x");
    for (i, d) in ["a", "a/b", "a/b/c", "e"].iter().enumerate() {
        set_mtime(&l.path(d), 1_000_000_000 + i as i64 * 1000);
    }
    set_mtime(&r.path("only-right"), 1_200_000_000);
    let mut args = vec![os("--sync-only")];
    args.extend(extra.iter().map(|a| os(a)));
    args.push(l.root.as_os_str());
    args.push(right);
    let (st, err) = crate::harness::run_once(&args);
    assert!(st.success(), "{err}");
    assert_eq!(rsync_differences(&l.root, &r.root), Vec::<String>::new());
    assert_eq!(rsync_differences(&r.root, &l.root), Vec::<String>::new());
    let mtime = |path: &Path| std::fs::metadata(path).unwrap().mtime();
    assert_eq!(
        mtime(&r.path("a/b/c")),
        1_000_002_000,
        "left only: the left's"
    );
    assert_eq!(
        mtime(&l.path("only-right")),
        1_200_000_000,
        "right only: the right's"
    );

    p.start(extra);
    l.write("a/b/c/new", b"new");
    r.eventually_has("a/b/c/new", b"new");
    eventually("a/b/c's mtime on the right", || {
        mtime(&r.path("a/b/c")) == mtime(&l.path("a/b/c"))
            && std::fs::metadata(r.path("a/b/c")).unwrap().mtime_nsec()
                == std::fs::metadata(l.path("a/b/c")).unwrap().mtime_nsec()
    });
    // The other way, into a directory only the right had at first.
    r.write("only-right/y", b"y");
    l.eventually_has("only-right/y", b"y");
    eventually("only-right's mtime on the left", || {
        mtime(&l.path("only-right")) == mtime(&r.path("only-right"))
    });
    std::fs::remove_file(r.path("a/f")).unwrap();
    l.eventually_gone("a/f");
    eventually("no differences left", || {
        rsync_differences(&l.root, &r.root).is_empty()
            && rsync_differences(&r.root, &l.root).is_empty()
    });
    assert!(p.stop().success());
}

#[test]
fn directory_mtimes_are_carried() {
    let mut p = Pair::new();
    let right = p.right.root.clone();
    directory_mtimes(&mut p, right.as_os_str(), &[]);
}

/// The same over ssh: the right's agent behind the loopback sshd sets the
/// mtimes of the directories its operations wrote into, at the merge and
/// live, and reports its own.
#[test]
fn directory_mtimes_are_carried_over_ssh() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    let right = p.remote_right(&sshd);
    let cfg = sshd.ssh_config.display().to_string();
    directory_mtimes(
        &mut p,
        os(&right),
        &["--ssh-config", &cfg, "--remote-path", crate::harness::bin()],
    );
}

/// The `user.*` attributes of `path` only, as `getfattr` dumps them.
fn user_xattrs(path: &Path) -> String {
    xattrs(path)
        .lines()
        .filter(|l| l.starts_with("user."))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Not root (the sync run as nobody on replicas nobody owns): `user.*`
/// attributes are carried both ways, at the first merge and live, while
/// `trusted.*` (which it cannot read) and `security.*` (which it cannot
/// set) are left as they are on each side, without a warning or an error
/// and without stopping the sync.
#[test]
fn user_attributes_are_carried_without_root_and_the_others_skipped_quietly() {
    assert_root();
    let mut p = Pair::new();
    let (l, r) = (p.left.clone(), p.right.clone());
    l.write("f", b"data");
    copy_binary(&l.path("cap"));
    r.write("g", b"right");
    let st = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(p.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    // After the chown, which clears a capability.
    setfattr(&l.path("f"), "user.a", "1");
    setfattr(&l.path("f"), "trusted.t", "left");
    setcap(&l.path("cap"), "cap_net_raw+ep");
    setfattr(&l.path("cap"), "user.c", "cap");
    setfattr(&r.path("g"), "user.g", "2");
    setfattr(&r.path("g"), "trusted.rt", "right");
    crate::faults::spawn_as_nobody(&mut p);
    p.wait_live();
    let same_user = |rel: &str| {
        let (a, b) = (user_xattrs(&l.path(rel)), user_xattrs(&r.path(rel)));
        !a.is_empty() && a == b
    };
    for rel in ["f", "cap", "g"] {
        eventually(&format!("{rel}'s user attributes on both sides"), || {
            same_user(rel)
        });
    }
    // Live, both ways.
    setfattr(&r.path("f"), "user.b", "from the right");
    eventually("user.b on the left", || {
        user_xattrs(&l.path("f")).contains("user.b")
    });
    l.write("h", b"new");
    setfattr(&l.path("h"), "user.h", "new");
    eventually("h's user attribute on the right", || same_user("h"));
    // What it could not carry stays where it was, and only there.
    assert!(xattrs(&l.path("f")).contains("trusted.t"));
    assert!(!xattrs(&r.path("f")).contains("trusted."));
    assert!(xattrs(&r.path("g")).contains("trusted.rt"));
    assert!(!xattrs(&l.path("g")).contains("trusted."));
    assert!(xattrs(&l.path("cap")).contains("security.capability"));
    assert!(!xattrs(&r.path("cap")).contains("security."));
    let log = p.log_text();
    let trouble: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(
        trouble.is_empty(),
        "warnings or errors:\n{}",
        trouble.join("\n")
    );
    assert!(p.stop().success());
}

/// 1 GiB long, 3 MiB of data in three places: more data than a dense file
/// sends inline, far less than its length.
const BIG_LEN: u64 = 1 << 30;
const BIG_DATA: u64 = 3 << 20;

fn make_big_sparse(path: &Path, seed: u8) {
    let f = File::create(path).unwrap();
    f.set_len(BIG_LEN).unwrap();
    for (i, at) in [10 << 20, 500 << 20, BIG_LEN - (1 << 20)]
        .into_iter()
        .enumerate()
    {
        let run: Vec<u8> = (0..1u32 << 20)
            .map(|j| (j % 251) as u8 ^ seed ^ (i as u8) | 1)
            .collect();
        f.write_all_at(&run, at).unwrap();
    }
    f.sync_all().unwrap();
}

/// `dst` eventually holds what `src` holds (same length and mtime, then
/// every byte compared by `cmp`), with about its data allocated.
fn arrives_sparse(src: &Path, dst: &Path) {
    let cmp = crate::harness::require_tool("cmp", "diffutils");
    let want = std::fs::metadata(src).unwrap();
    eventually(&format!("{} to arrive", dst.display()), || {
        std::fs::metadata(dst).is_ok_and(|md| md.len() == want.len() && md.mtime() == want.mtime())
    });
    let same = std::process::Command::new(cmp)
        .arg("-s")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(
        same.success(),
        "{} differs from {}",
        dst.display(),
        src.display()
    );
    assert!(
        allocated(dst) <= BIG_DATA + (1 << 20),
        "{}: {} bytes allocated for {BIG_DATA} bytes of data",
        dst.display(),
        allocated(dst)
    );
}

/// Regression (issue 12): over ssh a sparse file larger than what travels
/// inline went through rsync, which read and sent every zero of it (1 GiB
/// for 1 MiB of data, seconds). Now it travels inline as its data
/// segments, both ways, at the first merge and live: no rsync run at all.
#[test]
fn a_gigabyte_sparse_file_travels_as_its_data_over_ssh_both_ways() {
    let Some(sshd) = Sshd::start() else {
        panic!("the loopback sshd did not start (CI installs openssh-server)")
    };
    let mut p = Pair::new();
    p.remote_right(&sshd);
    make_big_sparse(&p.left.path("merged-l.img"), 0x10);
    make_big_sparse(&p.right.path("merged-r.img"), 0x20);
    let cfg = sshd.ssh_config.display().to_string();
    p.start(&["--ssh-config", &cfg, "--remote-path", crate::harness::bin()]);
    arrives_sparse(&p.left.path("merged-l.img"), &p.right.path("merged-l.img"));
    arrives_sparse(&p.right.path("merged-r.img"), &p.left.path("merged-r.img"));
    make_big_sparse(&p.left.path("live-l.img"), 0x30);
    arrives_sparse(&p.left.path("live-l.img"), &p.right.path("live-l.img"));
    make_big_sparse(&p.right.path("live-r.img"), 0x40);
    arrives_sparse(&p.right.path("live-r.img"), &p.left.path("live-r.img"));
    let log = p.log_text();
    assert!(
        !log.contains("copying by rsync"),
        "a sparse file went through rsync:\n{}",
        p.log_tail()
    );
}
