//! End-to-end tests: a real `twinsync` binary over real directories, with
//! real inotify and real rsync. Each test gets its own temp dirs.
//!
//! Modules:
//! - `agent_install`: a remote host without twinsync gets this binary as its agent;
//! - `basic`: creates, writes, deletes, empty dirs, symlinks, modes, mtimes, both ways;
//! - `moves`: renames and moves of files and directories, in, out and within the tree;
//! - `echo`: nothing written by the sync comes back;
//! - `bwlimit`: `--bwlimit` over ssh, inline both ways and by rsync;
//! - `conflicts`: concurrent writers, conflict copies, trash;
//! - `control`: `twinsync flush`, `pause`, `resume`, `conflicts` on a running instance;
//! - `durability`: the index journal's group commit, and an index that lost its
//!   unsynced tail (a power loss) merging safely;
//! - `metrics`: `--metrics`, scraped live and checked by promtool;
//! - `names`: odd file names;
//! - `ocf`: the Pacemaker resource agent, by `ocf-tester` and as Pacemaker drives it;
//! - `faults`: overflow, unreadable files, vanished roots, bad arguments;
//! - `stop`: Ctrl-C to the process group, `kill -9` of the brain;
//! - `fidelity`: sparse files, owners, fifos and devices, extended attributes,
//!   POSIX ACLs and file capabilities;
//! - `hardlinks`: hard-link groups, live and at merge, locally and over ssh;
//! - `rootfs`: a Debian root file system from real packages, with devices,
//!   capabilities, ACLs, xattrs, hard links and a sparse image, replicated
//!   exactly (rsync -aHAXS finds nothing), locally and over ssh;
//! - `attacks`: confinement against a hostile brain, a replica's own users, fifos;
//! - `ssh_smoke`: the `sshd` harness (a real OpenSSH server on 127.0.0.1);
//! - `shipped`: closed pipes end output quietly; every file in `examples/` and
//!   `contrib/` is parsed or exercised.

mod harness;
/// The loopback OpenSSH server, shared with the campaign and the bench.
use twinsync_testkit::sshd;

mod agent_install;
mod attacks;
mod basic;
mod bwlimit;
mod conflicts;
mod control;
mod durability;
mod echo;
mod faults;
mod fidelity;
mod hardlinks;
mod hostile_agent;
mod merge;
mod metrics;
mod moves;
mod names;
mod ocf;
mod ops;
mod remote;
mod rootfs;
mod shipped;
mod ssh_smoke;
mod stop;
