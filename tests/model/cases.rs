//! Hand-written cases: the minimal sequences behind the bugs the model
//! found, named by paths, and how they are run; the cases, by topic, below.

mod during_batch;
mod late_reports;
mod moves;
mod rescans;
mod ties;

use twinsync::side::Side;
use twinsync_proto::RelPath;

use crate::actions::{Action, During};
use crate::schedules::{Echoes, Mode};
use crate::tree::Node;
use crate::world::{l, Check, World, STRICT};
use crate::{DIR_MODES, FILE_MODES, NAMES};

/// A user action named by paths (names from [`NAMES`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum U {
    Create(&'static str),
    Symlink(&'static str),
    Write(&'static str),
    Tie(&'static str),
    Restore(&'static str, bool),
    /// chmod to another mode (see [`World::action_for`]).
    Chmod(&'static str),
    Mkdir(&'static str),
    Rm(&'static str),
    RmDir(&'static str),
    Mv(&'static str, &'static str),
}

/// One step of a hand-written case.
#[derive(Debug, Clone)]
enum T {
    L(U),
    R(U),
    /// Settle and check.
    Settle,
    /// Plan a batch after delivering everything; these users act while it
    /// runs, before its first operation; its echoes arrive before it
    /// completes.
    SyncWhile(Vec<(Side, U)>),
    /// As `SyncWhile`, each user action before the batch's `n`-th
    /// operation or copy (or after the last one).
    SyncAt(Vec<(u8, Side, U)>),
    /// Hand the events queued on a side to the engine.
    Deliver(Side),
    /// Plan a batch from what was handed over so far (the rest reaches the
    /// engine while it runs, with its echoes), run it and complete it.
    SyncEarly,
    /// As `SyncEarly`, with these users acting as in `SyncAt`.
    SyncEarlyAt(Vec<(u8, Side, U)>),
}

impl World {
    fn index_of(list: &[RelPath], p: &RelPath) -> u8 {
        let i = list
            .iter()
            .position(|q| q == p)
            .unwrap_or_else(|| panic!("{p} is not there: {list:?}"));
        u8::try_from(i).expect("small trees")
    }

    fn listed(&self, s: Side, f: impl Fn(&Node) -> bool) -> Vec<RelPath> {
        self.tree(s)
            .iter()
            .filter(|(_, n)| f(n))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The random-operation form of `u` (selectors pointing at its paths).
    pub(crate) fn action_for(&self, s: Side, u: U) -> Action {
        let name_of = |p: &RelPath| {
            let n = NAMES
                .iter()
                .position(|n| n.as_bytes() == p.file_name())
                .unwrap_or_else(|| panic!("{p}: names are a, b or c"));
            u8::try_from(n).expect("three names")
        };
        let parent_of = |p: &RelPath| {
            let parent = p.parent().expect("not the root");
            Self::index_of(&self.dirs(s), &parent)
        };
        match u {
            U::Create(p) => {
                let p = RelPath::from(p);
                Action::Create {
                    dir: parent_of(&p),
                    name: name_of(&p),
                    mode: 0,
                }
            }
            U::Symlink(p) => {
                let p = RelPath::from(p);
                Action::Symlink {
                    dir: parent_of(&p),
                    name: name_of(&p),
                }
            }
            U::Mkdir(p) => {
                let p = RelPath::from(p);
                Action::Mkdir {
                    dir: parent_of(&p),
                    name: name_of(&p),
                    mode: 0,
                }
            }
            U::Write(p) => Action::Write {
                file: Self::index_of(
                    &self.listed(s, |n| matches!(n, Node::File { .. })),
                    &p.into(),
                ),
            },
            U::Chmod(p) => {
                // The first mode that is not the entry's (0o600 for a new
                // file, 0o700 for a new directory, and back).
                let p = RelPath::from(p);
                let (modes, now): (&[u32], u32) = match self.tree(s).get(&p) {
                    Some(Node::Dir { mode, .. }) => (&DIR_MODES, *mode),
                    Some(Node::File { mode, .. }) => (&FILE_MODES, *mode),
                    _ => panic!("{p}: not a file or directory on {s}"),
                };
                let mode = modes.iter().position(|m| *m != now).expect("two modes");
                Action::Chmod {
                    entry: Self::index_of(
                        &self.listed(s, |n| !matches!(n, Node::Symlink { .. })),
                        &p,
                    ),
                    mode: u8::try_from(mode).expect("few modes"),
                }
            }
            U::Tie(p) => Action::Tie {
                file: Self::index_of(
                    &self.listed(s, |n| matches!(n, Node::File { .. })),
                    &p.into(),
                ),
            },
            U::Restore(p, same) => Action::Restore {
                file: Self::index_of(
                    &self.listed(s, |n| matches!(n, Node::File { .. })),
                    &p.into(),
                ),
                same,
            },
            U::Rm(p) => Action::Rm {
                entry: Self::index_of(&self.listed(s, |n| !n.is_dir()), &p.into()),
            },
            U::RmDir(p) => Action::RmDir {
                dir: Self::index_of(&self.listed(s, Node::is_dir), &p.into()),
            },
            U::Mv(from, to) => {
                let to = RelPath::from(to);
                Action::Rename {
                    entry: Self::index_of(&self.listed(s, |_| true), &from.into()),
                    dir: parent_of(&to),
                    name: name_of(&to),
                }
            }
        }
    }

    /// Plan a batch after delivering everything, run it with these users
    /// acting in it, deliver its echoes and complete it.
    fn sync_at(&mut self, during: &[(u8, Side, U)]) {
        self.deliver_all();
        let b = self.plan();
        let during: Vec<(u8, During)> = during
            .iter()
            .map(|&(k, s, u)| (k, During::Named(s, u)))
            .collect();
        let report = self.execute(&b, true, &during);
        self.deliver_all();
        self.complete(&b, report);
        if b.rescan {
            self.rescan();
        }
    }

    fn act(&mut self, s: Side, u: U) {
        let a = self.action_for(s, u);
        let done = self.user_inner(s, &a);
        let done = done.unwrap_or_else(|| panic!("{u:?} on {s} did nothing"));
        self.log.push(format!("{}: {done}", l(s)));
    }
}

/// Run a hand-written case; panics with the history when a check fails.
fn case(mode: Mode, check: Check, steps: &[T]) {
    case_in(World::new(false, false, mode != Mode::Calm), check, steps);
}

fn case_in(mut w: World, check: Check, steps: &[T]) {
    w.avoid_known_bugs = false;
    let mut outcome = Ok(());
    for t in steps {
        match t {
            T::L(u) => w.act(Side::Left, *u),
            T::R(u) => w.act(Side::Right, *u),
            T::Settle => outcome = w.settle_and_check(check),
            T::SyncWhile(during) => {
                let at: Vec<(u8, Side, U)> = during.iter().map(|&(s, u)| (0, s, u)).collect();
                w.sync_at(&at);
            }
            T::SyncAt(during) => w.sync_at(during),
            T::Deliver(s) => w.deliver(*s, usize::MAX),
            T::SyncEarly => w.sync(false, &[], Echoes::BeforeComplete, true),
            T::SyncEarlyAt(during) => {
                let during: Vec<(u8, During)> = during
                    .iter()
                    .map(|&(k, s, u)| (k, During::Named(s, u)))
                    .collect();
                w.sync(false, &during, Echoes::BeforeComplete, false);
            }
        }
        if let Err(e) = &outcome {
            panic!("{}", w.report(e));
        }
    }
    if let Err(e) = w.settle_and_check(check) {
        panic!("{}", w.report(&e));
    }
    // `MODEL_SHOW=1`: the history of a case that passed, too.
    if std::env::var_os("MODEL_SHOW").is_some() {
        eprintln!("{}", w.report("passed"));
    }
}

fn calm(steps: &[T]) {
    case(Mode::Calm, STRICT, steps);
}
