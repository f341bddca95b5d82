//! The agent: serves one replica to a brain over stdin/stdout.
//!
//! Two threads share the output stream: the request loop (scan, stat, apply)
//! and the filter's event loop. Every frame is written whole and flushed.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use twinsync_filter::{Excludes, Watcher, Watching};
use twinsync_proto::{
    read_frame, try_encode, write_frame, FrameError, FromAgent, Op, OpFail, Request, Response,
    ToAgent, XattrScope, MAGIC, PROTOCOL_VERSION,
};

use crate::Replica;

type Out = Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>;

/// Seconds without any frame from the brain after which the agent exits.
const BRAIN_TIMEOUT_SECS: u64 = 20;

/// Requests read ahead of the one running: when they are queued, the agent
/// reads no more (back-pressure on a brain that sends faster than it reads
/// the answers, instead of memory growing without bound).
const QUEUE: usize = 4;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn send(out: &Out, msg: &FromAgent) -> io::Result<()> {
    let mut w = out.lock().expect("agent output");
    write_frame(&mut *w, msg)?;
    w.flush()
}

/// Send the answer to request `id`; one larger than a frame is replaced by
/// an error saying so (the brain asks for less). File contents go at the
/// `pacer`'s rate (`--bwlimit`), when there is one.
fn answer(
    out: &Out,
    id: u64,
    result: Result<Response, String>,
    pacer: Option<&mut crate::pace::Pacer>,
) -> io::Result<()> {
    let contents = matches!(result, Ok(Response::Files(_)));
    let msg = FromAgent::Response { id, result };
    let frame = match try_encode(&msg) {
        Ok(f) => f,
        Err(e) => twinsync_proto::encode(&FromAgent::Response {
            id,
            result: Err(format!(
                "the answer is too large ({e}): ask for fewer paths"
            )),
        }),
    };
    let mut w = out.lock().expect("agent output");
    match pacer {
        // The frame is held whole under the lock (a pong waits for it): the
        // brain asks for no more contents at once than the rate sends in
        // about two seconds.
        Some(p) if contents => p.write_all(&mut *w, &frame)?,
        _ => w.write_all(&frame)?,
    }
    w.flush()
}

/// Serve a brain on `input`/`output` until it says goodbye or the stream ends.
/// `allowed_root`, when set (restricted mode, e.g. an ssh forced command),
/// is the only root the agent will serve.
///
/// # Errors
/// Broken streams and fatal setup errors (which are also sent to the brain).
pub fn serve(
    input: Box<dyn Read + Send>,
    output: Box<dyn Write + Send>,
    allowed_root: Option<PathBuf>,
) -> Result<(), String> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let out: Out = Arc::new(Mutex::new(BufWriter::with_capacity(256 * 1024, output)));
    let fatal = |out: &Out, message: String| {
        let _ = send(
            out,
            &FromAgent::Fatal {
                message: message.clone(),
            },
        );
        Err(message)
    };
    let (root, options) = match read_frame::<_, ToAgent>(&mut input) {
        Ok(ToAgent::Hello {
            magic,
            version,
            root,
            options,
        }) => {
            if magic != MAGIC || version != PROTOCOL_VERSION {
                return fatal(
                    &out,
                    format!(
                        "protocol mismatch: the brain speaks twinsync protocol {version}, this agent \
                         (twinsync {}) speaks {PROTOCOL_VERSION}; install the same twinsync version \
                         on both sides",
                        env!("CARGO_PKG_VERSION")
                    ),
                );
            }
            (PathBuf::from(std::ffi::OsStr::from_bytes(&root)), options)
        }
        Ok(_) => return fatal(&out, "expected a hello first".into()),
        Err(e) => return Err(format!("reading the hello: {e}")),
    };
    if let Some(allowed) = &allowed_root {
        if &root != allowed {
            return fatal(
                &out,
                format!(
                    "this agent is restricted to {} and refuses to serve {}",
                    allowed.display(),
                    root.display()
                ),
            );
        }
    }
    let md = match std::fs::metadata(&root) {
        Ok(md) if md.is_dir() => md,
        Ok(_) => {
            return fatal(
                &out,
                format!("replica root {} is not a directory", root.display()),
            )
        }
        Err(e) => {
            return fatal(
                &out,
                format!("replica root {} cannot be used: {e}", root.display()),
            )
        }
    };
    let replica = match Replica::open(root.clone()) {
        Ok(r) => r,
        Err(e) => {
            return fatal(
                &out,
                format!("replica root {} cannot be used: {e}", root.display()),
            )
        }
    };
    replica.set_owners(options.owners);
    // A brain that takes no lock changes nothing (a dry run): the agent then
    // creates nothing either, not even `.twinsync/`.
    if options.lock.is_some() {
        if let Err(e) = replica.prepare() {
            return fatal(
                &out,
                format!(
                    "cannot create {}: {e}. Give this user write access to the replica root",
                    replica.state_dir().display()
                ),
            );
        }
    }
    // Held until this function returns (and released by the watchdog when
    // it ends the process).
    let lock = match &options.lock {
        Some(instance) => match replica
            .state_fd()
            .map_err(|e| format!("cannot open {}: {e}", replica.state_dir().display()))
            .and_then(|state| crate::lock::Lock::take(state, &replica.state_dir(), instance))
        {
            Ok(l) => Some(l),
            Err(e) => return fatal(&out, format!("replica {}: {e}", replica.root().display())),
        },
        None => None,
    };
    if let (Some(days), Ok(state)) = (options.trash_days, replica.state_fd()) {
        std::thread::spawn(move || crate::ops::clean_trash(&state, days));
    }
    let excludes = match Excludes::new(&options.excludes) {
        Ok(x) => x,
        Err(e) => return fatal(&out, e),
    };
    let how = Watching::chosen(options.watch, options.poll_ms);
    let (watcher, event_loop) = match Watcher::open(root, excludes, how) {
        Ok(w) => w,
        Err(e) => return fatal(&out, e.to_string()),
    };
    send(
        &out,
        &FromAgent::Hello {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            root_dev: md.dev(),
            root: rustix::process::geteuid().is_root(),
        },
    )
    .map_err(|e| e.to_string())?;

    if event_loop.is_some() && options.lock.is_some() {
        // Marks tell the brain when the reports of its writes are all in.
        if let Err(e) = replica.mark_dir().and_then(|d| watcher.watch_marks(&d)) {
            return fatal(
                &out,
                format!("cannot watch {}/mark: {e}", replica.state_dir().display()),
            );
        }
    }
    if let Some(event_loop) = event_loop {
        let out = Arc::clone(&out);
        std::thread::Builder::new()
            .name("filter".into())
            .spawn(move || {
                let r =
                    event_loop.run(&mut |events| send(&out, &FromAgent::Events(events)).is_ok());
                if let Err(e) = r {
                    let _ = send(
                        &out,
                        &FromAgent::Fatal {
                            message: e.to_string(),
                        },
                    );
                }
            })
            .map_err(|e| e.to_string())?;
    }

    // Heartbeat: the brain pings every few seconds; an agent that hears
    // nothing for this long assumes its brain is gone and exits.
    let last_seen = Arc::new(AtomicU64::new(now_secs()));
    // Set when this function returns: the watchdog ends with it (an agent
    // served in-process, as in the fuzz test, must not exit its host).
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _served_on_return = SetOnDrop(Arc::clone(&served));
    {
        let last_seen = Arc::clone(&last_seen);
        let served = Arc::clone(&served);
        let release_lock = lock.as_ref().map(crate::lock::Lock::releaser);
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut prev = now_secs();
                loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if served.load(Ordering::Relaxed) {
                    return;
                }
                let now = now_secs();
                if now.saturating_sub(prev) > 5 {
                    // This process itself was stopped (SIGSTOP, suspend):
                    // the silence was ours, not the brain's.
                    last_seen.store(now, Ordering::Relaxed);
                }
                prev = now;
                if now.saturating_sub(last_seen.load(Ordering::Relaxed)) > BRAIN_TIMEOUT_SECS {
                    eprintln!("twinsync agent: no word from the brain for {BRAIN_TIMEOUT_SECS} s; exiting");
                    if let Some(release) = &release_lock {
                        release();
                    }
                    std::process::exit(3);
                }
                }
            })
            .map_err(|e| e.to_string())?;
    }
    // Requests run one at a time, in order, on a worker thread, so that a
    // long one (a big scan, hashing a large file) never delays the answer to
    // a ping: this thread only reads.
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(u64, Request)>(QUEUE);
    let worker = {
        let out = Arc::clone(&out);
        let mut pacer = options.bwlimit.map(crate::pace::Pacer::new);
        std::thread::Builder::new()
            .name("requests".into())
            .spawn(move || {
                for (id, req) in work_rx {
                    let result = handle(&watcher, &replica, allowed_root.as_deref(), &out, id, req);
                    if answer(&out, id, result, pacer.as_mut()).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| e.to_string())?
    };
    let outcome = loop {
        let msg = read_frame::<_, ToAgent>(&mut input);
        last_seen.store(now_secs(), Ordering::Relaxed);
        let msg = match msg {
            Ok(m) => m,
            Err(FrameError::Eof) => break Ok(()),
            Err(e) => break Err(format!("reading a request: {e}")),
        };
        match msg {
            ToAgent::Ping => {
                if let Err(e) = send(&out, &FromAgent::Pong) {
                    break Err(e.to_string());
                }
            }
            ToAgent::Shutdown => break Ok(()),
            ToAgent::Hello { .. } => break fatal(&out, "unexpected second hello".into()),
            ToAgent::Request { id, req } => {
                if work_tx.send((id, req)).is_err() {
                    break Err("the request worker stopped".into());
                }
            }
        }
    };
    // Let the requests already taken finish (and answer) before leaving.
    drop(work_tx);
    let _ = worker.join();
    outcome
}

fn handle(
    watcher: &Watcher,
    replica: &Replica,
    restricted: Option<&std::path::Path>,
    out: &Out,
    id: u64,
    req: Request,
) -> Result<Response, String> {
    match req {
        Request::Scan => {
            let send_err = std::cell::RefCell::new(None);
            let count = watcher
                .scan(
                    &twinsync_proto::RelPath::root(),
                    &mut |entries| {
                        let chunk = FromAgent::ScanChunk {
                            id,
                            entries,
                            unreadable: Vec::new(),
                        };
                        if let Err(e) = send(out, &chunk) {
                            *send_err.borrow_mut() = Some(e);
                        }
                    },
                    &mut |path, e| {
                        tracing::warn!(%path, "cannot read while scanning: {e}");
                        let _ = send(
                            out,
                            &FromAgent::Events(vec![twinsync_proto::Event::Error {
                                path: path.clone(),
                                message: format!("cannot read while scanning: {e}"),
                            }]),
                        );
                        // Before any entry that follows it (entries before it
                        // may still be in the walk's chunk: harmless).
                        let chunk = FromAgent::ScanChunk {
                            id,
                            entries: Vec::new(),
                            unreadable: vec![path],
                        };
                        if let Err(e) = send(out, &chunk) {
                            *send_err.borrow_mut() = Some(e);
                        }
                    },
                    None,
                )
                .map_err(|e| e.to_string())?;
            if let Some(e) = send_err.into_inner() {
                return Err(e.to_string());
            }
            Ok(Response::ScanDone { count })
        }
        Request::Stat { paths } => Ok(Response::Stats(stat_all(replica, &paths))),
        Request::StatStaged { paths } => Ok(Response::Stats(replica.stat_staged(&paths))),
        Request::Intact => Ok(Response::Intact(replica.intact())),
        Request::ReadLinks { paths } => Ok(Response::Links(
            paths
                .iter()
                .map(|p| replica.read_link(p).map(serde_bytes::ByteBuf::from))
                .collect(),
        )),
        Request::Mark => {
            if !watcher.marks_watched() {
                return Ok(Response::Marked(None));
            }
            replica
                .mark()
                .map(|n| {
                    watcher.mark_made(n);
                    Response::Marked(Some(n))
                })
                .map_err(|e| format!("making a mark in {}: {e}", replica.state_dir().display()))
        }
        Request::Installed { forget } => replica
            .installed(forget)
            .map(Response::Installed)
            .map_err(|e| format!("reading the record of installed files: {e}")),
        Request::Hash { paths } => Ok(Response::Hashes(
            paths
                .iter()
                .map(|p| {
                    replica
                        .hash_file(p)
                        .ok()
                        .map(|h| serde_bytes::ByteBuf::from(h.to_vec()))
                })
                .collect(),
        )),
        Request::ReadFiles { paths, scope } => Ok(Response::Files(
            paths
                .iter()
                .map(|p| replica.read_file(p, scope).map_err(|e| e.to_string()))
                .collect(),
        )),
        Request::ReadXattrs { paths, scope } => Ok(Response::Xattrs(
            paths
                .iter()
                .map(|p| replica.read_xattrs(p, scope).ok().flatten())
                .collect(),
        )),
        Request::WriteFiles { files } => Ok(Response::Written(
            files
                .iter()
                .map(|f| replica.write_file(f).map_err(OpFail::from))
                .collect(),
        )),
        Request::CopyFrom {
            src_root,
            paths,
            scope,
        } => {
            let src_root = source_root(restricted, &src_root, "copy from")?;
            // Opened once for the request, not once per file.
            let src = match Replica::open(src_root) {
                Ok(src) => src,
                Err(e) => {
                    return Ok(Response::Written(
                        paths
                            .iter()
                            .map(|(p, _)| {
                                Err(OpFail::from(crate::ops::OpError::Io {
                                    what: "reading",
                                    path: p.clone(),
                                    source: io::Error::new(e.kind(), e.to_string()),
                                }))
                            })
                            .collect(),
                    ))
                }
            };
            Ok(Response::Written(copy_all(replica, &src, &paths, scope)))
        }
        Request::Apply { ops, xattrs_from } => {
            let Some(from) = xattrs_from else {
                return Ok(Response::Applied(
                    ops.iter().map(|op| replica.apply(op)).collect(),
                ));
            };
            let src_root = source_root(restricted, &from.root, "read extended attributes from")?;
            // Opened once for the request (as `CopyFrom` opens it): every
            // path below it is resolved beneath it, no link followed.
            let src = Replica::open(src_root.clone())
                .map_err(|e| tracing::warn!(root = %src_root.display(), "cannot open: {e}"))
                .ok();
            Ok(Response::Applied(
                ops.iter()
                    .map(|op| match with_xattrs_of(op, src.as_ref(), from.scope) {
                        Some(filled) => replica.apply(&filled),
                        None => replica.apply(op),
                    })
                    .collect(),
            ))
        }
    }
}

/// The root of another local replica a request names to read from
/// (`CopyFrom`'s source, `Apply`'s attributes): refused by a restricted
/// agent unless it is the one root it serves, whatever the request says.
fn source_root(
    restricted: Option<&std::path::Path>,
    root: &[u8],
    what: &str,
) -> Result<PathBuf, String> {
    let root = PathBuf::from(std::ffi::OsStr::from_bytes(root));
    match restricted {
        Some(allowed) if root != allowed => Err(format!(
            "this agent is restricted to {} and refuses to {what} {}",
            allowed.display(),
            root.display()
        )),
        _ => Ok(root),
    }
}

/// `op` with the extended attributes of `scope` its entry has in `src`, when
/// it is a [`Op::SetAttr`] or [`Op::Mkdir`] that carries none and the entry
/// is there (read without following a symlink). `None`: `op` as it is (an
/// entry missing or unreadable there keeps its own, as when the brain reads
/// them from the source's helper).
fn with_xattrs_of(op: &Op, src: Option<&Replica>, scope: XattrScope) -> Option<Op> {
    let src = src?;
    if !matches!(
        op,
        Op::SetAttr { xattrs: None, .. } | Op::Mkdir { xattrs: None, .. }
    ) {
        return None;
    }
    let read = src.read_xattrs(op.target(), scope).ok().flatten()?;
    let mut op = op.clone();
    if let Op::SetAttr { xattrs, .. } | Op::Mkdir { xattrs, .. } = &mut op {
        *xattrs = Some(read);
    }
    Some(op)
}

/// Copy every file of a `CopyFrom` request from the local replica `src`,
/// answers in the request's order. A long list (a merge's copies, the
/// brain waiting for the answer) is split between threads: a small file's
/// copy is a few dozen syscalls (path lookups, create, copy, attributes,
/// rename), which run side by side in the kernel. Each thread takes a run
/// of consecutive paths (the brain sends them sorted: mostly other
/// directories than its neighbour's). First merge of 100k small files on
/// tmpfs, 2 cores: the brain waited about 3.6 s of 5.7 s on copies made
/// one at a time.
fn copy_all(
    replica: &Replica,
    src: &Replica,
    paths: &[(twinsync_proto::RelPath, twinsync_proto::Expect)],
    scope: XattrScope,
) -> Vec<Result<twinsync_proto::Sig, OpFail>> {
    split_between_threads(paths, 128, |(p, x)| {
        replica.copy_from(src, p, *x, scope).map_err(OpFail::from)
    })
}

/// lstat every path (`None`: missing or unreadable). A long list (the check
/// after a batch's copies, while nothing else runs) is split between threads:
/// the time goes into path lookups in the kernel, which run side by side.
fn stat_all(
    replica: &Replica,
    paths: &[twinsync_proto::RelPath],
) -> Vec<Option<twinsync_proto::Sig>> {
    split_between_threads(paths, 2048, |p| replica.stat(p).ok().flatten())
}

/// `f` of every item, in order. A list of at least twice `per_thread_min`
/// items is cut into runs of consecutive items, one per thread (at most 4,
/// and no more than the cores): the work is path lookups and small copies
/// in the kernel, which run side by side.
fn split_between_threads<T: Sync, R: Send>(
    items: &[T],
    per_thread_min: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(4)
        .min(items.len() / per_thread_min)
        .max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(per)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}
