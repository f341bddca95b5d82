//! The process table, read from `/proc`: who runs, with which parent,
//! command line and environment, and killing a process's descendants.
//!
//! std only, rather than the `procfs` crate: the callers need five fields
//! of `/proc/PID/stat` and the raw bytes of `cmdline` and `environ` (they
//! match paths and variables as bytes, where `procfs` hands out `String`s),
//! which is less code than the dependencies `procfs` would bring.

use std::fs;
use std::time::Duration;

use crate::wait::wait_for;

/// The fields of `/proc/PID/stat` the tests and the bench use.
#[derive(Debug, Clone)]
pub struct Stat {
    /// The executable's name, as the kernel keeps it (at most 15 bytes).
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead)…
    pub state: char,
    /// The parent's pid.
    pub ppid: i32,
    /// The process group.
    pub pgrp: i32,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// `/proc/PID/stat` of `pid`; `None` if it is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
    let close = s.rfind(')')?;
    let comm = s.get(s.find('(')? + 1..close)?.to_string();
    let fields: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        // Fields 14 and 15 of stat(5), utime and stime.
        cpu_ticks: num(11)? + num(12)?,
    })
}

/// Every pid in `/proc`, zombies included.
pub fn pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// True while `pid` exists and is not a zombie (nothing reaps orphaned
/// zombies in some containers) or dead.
pub fn running(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// The raw `/proc/PID/cmdline` (arguments, each ended by a NUL); empty if
/// the process is gone.
pub fn cmdline(pid: i32) -> Vec<u8> {
    fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

/// One running process.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// The executable's name (see [`Stat::comm`]).
    pub comm: String,
    /// The raw `/proc/PID/cmdline`.
    pub cmdline: Vec<u8>,
    /// The raw `/proc/PID/environ` (`NAME=value`, each ended by a NUL);
    /// empty when it cannot be read.
    pub environ: Vec<u8>,
}

impl Proc {
    /// The non-empty arguments, the program first.
    pub fn args(&self) -> Vec<&[u8]> {
        self.cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// Whether `arg` is one of its arguments.
    pub fn has_arg(&self, arg: &[u8]) -> bool {
        self.cmdline.split(|&b| b == 0).any(|a| a == arg)
    }

    /// The command line, arguments joined by spaces.
    pub fn cmd(&self) -> String {
        String::from_utf8_lossy(&self.cmdline).replace('\0', " ")
    }

    /// Whether its environment holds exactly `NAME=value` `var`.
    pub fn env_has(&self, var: &[u8]) -> bool {
        self.environ.split(|&b| b == 0).any(|v| v == var)
    }

    /// The value of `name` in its environment.
    pub fn env_get(&self, name: &str) -> Option<&[u8]> {
        self.environ.split(|&b| b == 0).find_map(|v| {
            v.strip_prefix(name.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
        })
    }
}

/// Every running process (neither zombie nor dead) but this one.
pub fn processes() -> Vec<Proc> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let s = stat(pid)?;
            if matches!(s.state, 'Z' | 'X') {
                return None;
            }
            Some(Proc {
                pid,
                ppid: s.ppid,
                comm: s.comm,
                cmdline: cmdline(pid),
                environ: fs::read(format!("/proc/{pid}/environ")).unwrap_or_default(),
            })
        })
        .collect()
}

/// The running processes descending from `root` (children, then their
/// children…), from one snapshot of the table.
pub fn descendants(root: i32) -> Vec<Proc> {
    let table = processes();
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(parent) = todo.pop() {
        for p in table.iter().filter(|p| p.ppid == parent) {
            todo.push(p.pid);
            out.push(p.clone());
        }
    }
    out
}

/// SIGKILL the descendants of `root` that `pick` chooses, and wait up to
/// `limit` until they are gone. Returns the survivors (none, unless stuck
/// in D state); it does not panic, as it also runs in `Drop`.
pub fn kill_descendants(root: i32, limit: Duration, pick: impl Fn(&Proc) -> bool) -> Vec<i32> {
    let mut victims: Vec<i32> = descendants(root)
        .into_iter()
        .filter(|p| pick(p))
        .map(|p| p.pid)
        .collect();
    for &pid in &victims {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    wait_for(limit, Duration::from_millis(5), || {
        victims.retain(|&pid| running(pid));
        victims.is_empty()
    });
    victims
}
