//! Confinement of the rsync processes twinsync starts (the brain's own, and
//! the rsync server an agent host runs for it): a Landlock domain in which
//! the process may read only beneath the replica root, write only beneath the
//! root's stage, and read and run the system's programs and libraries.
//!
//! rsync resolves its paths by name and follows symlinks on the way; a
//! replica's user who swaps a directory for a link while a transfer runs
//! could otherwise make root's rsync read or write outside the root. Under
//! Landlock the kernel checks every file the process opens against the
//! directories allowed here, by the inodes opened when the domain was built
//! (never by name), so no swap made later can widen them.
//!
//! The domain is built in the parent (building it allocates), and entered
//! between fork and exec with two async-signal-safe syscalls
//! ([`Jail::pre_exec`]), or at once by a process about to exec rsync
//! itself ([`Jail::enter`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub use landlock::PathFd;
use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset,
    RulesetAttr, RulesetCreatedAttr, ABI,
};

/// The newest Landlock ABI whose rights are asked for (older kernels get
/// what they have: best effort).
const ABI_WANTED: ABI = ABI::V5;

/// System directories whose programs and libraries a confined rsync (and the
/// ssh it starts) may read and run. Nothing in them is written.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// Single system files a confined rsync or ssh reads (user and group names,
/// the dynamic linker's cache, time zone). Deliberately not `/etc` as a
/// whole: a link planted in a replica must not reach `/etc/shadow`.
const SYSTEM_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
];

/// A Landlock ruleset, ready to be entered.
#[derive(Debug)]
pub struct Jail {
    ruleset: OwnedFd,
}

/// What a confined process may reach.
#[derive(Debug, Default)]
pub struct Rooms<'a> {
    /// Directories it may read beneath (a replica root).
    pub read: Vec<BorrowedFd<'a>>,
    /// Directories it may read and write beneath (a stage).
    pub write: Vec<BorrowedFd<'a>>,
    /// Further files or directories it may read (an ssh config, a file
    /// list, the program itself when it is not in a system directory).
    pub read_paths: Vec<&'a Path>,
}

impl Jail {
    /// Build the ruleset for `rooms` (plus the system's programs and
    /// libraries, and `/dev/null`). `Ok(None)`: this kernel has no Landlock.
    ///
    /// # Errors
    /// When the kernel refuses a rule.
    pub fn new(rooms: &Rooms<'_>) -> io::Result<Option<Jail>> {
        let err = |e: landlock::RulesetError| io::Error::other(e.to_string());
        let all = AccessFs::from_all(ABI_WANTED);
        let read_only: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
        let run: BitFlags<AccessFs> = AccessFs::from_read(ABI_WANTED);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(all)
            .map_err(err)?
            .handle_access(AccessNet::from_all(ABI::V4))
            .map_err(err)?
            .create()
            .map_err(err)?;
        for fd in &rooms.read {
            ruleset = ruleset
                .add_rule(PathBeneath::new(*fd, read_only))
                .map_err(err)?;
        }
        for fd in &rooms.write {
            ruleset = ruleset.add_rule(PathBeneath::new(*fd, all)).map_err(err)?;
        }
        let optional = |p: &Path| PathFd::new(p).ok();
        for dir in SYSTEM_DIRS {
            if let Some(fd) = optional(Path::new(dir)) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, run)).map_err(err)?;
            }
        }
        for file in SYSTEM_FILES {
            if let Some(fd) = optional(Path::new(file)) {
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, AccessFs::ReadFile))
                    .map_err(err)?;
            }
        }
        for p in &rooms.read_paths {
            if let Some(fd) = optional(p) {
                let access = if p.is_dir() {
                    run
                } else {
                    AccessFs::ReadFile | AccessFs::Execute
                };
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, access))
                    .map_err(err)?;
            }
        }
        if let Some(fd) = optional(Path::new("/dev/null")) {
            ruleset = ruleset
                .add_rule(PathBeneath::new(
                    fd,
                    AccessFs::ReadFile | AccessFs::WriteFile,
                ))
                .map_err(err)?;
        }
        let fd: Option<OwnedFd> = ruleset.into();
        Ok(fd.map(|ruleset| Jail { ruleset }))
    }

    /// Enter the jail now: from here on the calling process (and what it
    /// execs) reaches only what the jail allows.
    ///
    /// # Errors
    /// When the kernel refuses (the process is then not confined: the
    /// caller must not go on).
    pub fn enter(&self) -> io::Result<()> {
        enter_raw(self.ruleset.as_raw_fd())
    }

    /// What to run between fork and exec (`CommandExt::pre_exec`) to start
    /// a program in the jail. The jail must outlive the spawn.
    pub fn pre_exec(&self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let raw = self.ruleset.as_raw_fd();
        move || enter_raw(raw)
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS)` and `landlock_restrict_self(2)` on the
/// ruleset `raw`: two syscalls with integer arguments and nothing else (no
/// allocation, no lock), so safe between fork and exec.
fn enter_raw(raw: i32) -> io::Result<()> {
    // SAFETY: plain syscalls with integer arguments; no memory is shared.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, raw, 0u32) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether this kernel enforces Landlock.
#[must_use]
pub fn available() -> bool {
    Jail::new(&Rooms::default()).is_ok_and(|j| j.is_some())
}

/// Run rsync's server end of a transfer into or out of the replica `root`,
/// in a jail: it reads beneath the root only, writes beneath the root's
/// stage (`.twinsync/stage`, opened with no symlink followed) only, and runs
/// `program` with `args` (which must start with `--server`). Returns only
/// on failure (the process becomes rsync).
///
/// `must_confine`: on a kernel without Landlock, refuse rather than run
/// rsync unconfined (restricted mode).
#[must_use]
pub fn exec_rsync_server(
    root: &Path,
    program: &std::ffi::OsStr,
    args: &[std::ffi::OsString],
    must_confine: bool,
) -> io::Error {
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    if args.first().map(std::ffi::OsString::as_os_str) != Some(std::ffi::OsStr::new("--server")) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an rsync server command (its arguments must start with --server)",
        );
    }
    let root_fd = match PathFd::new(root) {
        Ok(fd) => fd,
        Err(e) => return io::Error::other(format!("cannot open {}: {e}", root.display())),
    };
    let rel = format!("{}/{}", twinsync_filter::STATE_DIR, crate::STAGE_DIR);
    let stage = match crate::beneath::open_dir(root_fd.as_fd(), rel.as_bytes()) {
        Ok(fd) => fd,
        Err(e) => {
            return io::Error::other(format!(
                "{}/{rel} is missing or not a plain directory ({e}); it is made by the \
                 twinsync agent, which must be running for that root",
                root.display()
            ))
        }
    };
    let own_program = std::path::PathBuf::from(program);
    let mut read_paths = Vec::new();
    if own_program.components().count() > 1 {
        read_paths.push(own_program.as_path());
    }
    let jail = match Jail::new(&Rooms {
        read: vec![root_fd.as_fd()],
        write: vec![stage.as_fd()],
        read_paths,
    }) {
        Ok(j) => j,
        Err(e) => return e,
    };
    match &jail {
        Some(j) => {
            if let Err(e) = j.enter() {
                return e;
            }
        }
        None if must_confine => {
            return io::Error::other(
                "this host's kernel has no Landlock, so rsync cannot be confined to the \
                 root: run the brain with TWINSYNC_RSYNC=none (files then travel over the \
                 agent's channel)",
            )
        }
        None => tracing::warn!(
            "this kernel has no Landlock: the rsync server runs unconfined in {}",
            root.display()
        ),
    }
    drop(stage);
    drop(root_fd);
    std::process::Command::new(program).args(args).exec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn open_dir(p: &Path) -> PathFd {
        PathFd::new(p).expect("open")
    }

    /// `sh -c script` run in the jail; its exit status.
    fn jailed(jail: &Jail, script: &str) -> bool {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script);
        // SAFETY: the hook makes two syscalls, async-signal-safe.
        unsafe { cmd.pre_exec(jail.pre_exec()) };
        cmd.status().expect("sh").success()
    }

    #[test]
    fn a_link_out_of_the_root_is_not_followed_for_reading_or_writing() {
        assert!(
            available(),
            "this kernel has no Landlock (Linux >= 5.13 with `lsm=landlock`): rsync cannot be confined"
        );
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        std::fs::create_dir_all(root.join("stage")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::fs::write(root.join("mine"), "m").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("stage/d")).unwrap();
        let (r, s) = (open_dir(&root), open_dir(&root.join("stage")));
        let jail = Jail::new(&Rooms {
            read: vec![r.as_fd()],
            write: vec![s.as_fd()],
            read_paths: Vec::new(),
        })
        .unwrap()
        .expect("landlock");
        let q = |p: &Path| p.display().to_string();
        assert!(jailed(&jail, &format!("cat {}/mine", q(&root))));
        assert!(jailed(&jail, &format!("echo x > {}/stage/new", q(&root))));
        assert!(!jailed(&jail, &format!("cat {}/d/secret", q(&root))));
        assert!(!jailed(&jail, &format!("cat {}/secret", q(&outside))));
        assert!(!jailed(
            &jail,
            &format!("echo x > {}/stage/d/new", q(&root))
        ));
        assert!(!jailed(&jail, &format!("echo x > {}/new", q(&root))));
        assert!(!jailed(&jail, "cat /etc/shadow"));
        assert!(!outside.join("new").exists());
        assert_eq!(std::fs::read(root.join("stage/new")).unwrap(), b"x\n");
    }
}
