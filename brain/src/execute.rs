//! Carrying out a planned batch: helper operations on both sides, then the
//! content copies, each installed conditionally by the destination's helper
//! (it must still hold the version the engine planned against), and the
//! report of what happened for [`Engine::complete`](crate::engine::Engine::complete).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tracing::{debug, error, warn};
use twinsync_proto::{FileData, Kind, Op, OpFail, OpResult, RelPath, Sig};

use crate::dir_mtimes::{self, Touched};
use crate::engine::{Applied, Batch, Copied, Copy, Report};
use crate::link::Link;
use crate::progress::Progress;
use crate::rsync::{self, End, RsyncOptions};
use crate::side::Side;
use twinsync_helpers::pace::Pacer;

/// A copy of at least this many files shows its progress (a bar on a
/// terminal, else a log line now and then).
const PROGRESS_MIN: usize = 1000;
/// A copy that shows its progress asks for at most this share of its files
/// per inline or helper request (but [`PROGRESS_STEP_MIN`] at least), so
/// that its bar moves: a request of small files carries thousands.
const PROGRESS_STEPS: usize = 20;
/// The fewest files per request of a copy that shows its progress.
const PROGRESS_STEP_MIN: usize = 500;

/// Files with up to this many bytes of data travel inline between hosts.
const INLINE_MAX: u64 = 1 << 20;
/// Bytes of data per inline read/write request.
const INLINE_CHUNK: u64 = 8 << 20;
/// Under `--bwlimit`, an inline request carries what the rate sends in
/// about this long (its frame holds up the pings behind it), and a file
/// larger than that goes by rsync.
const PACED_FRAME: Duration = Duration::from_secs(2);

/// The largest inline file and the bytes per inline or helper request,
/// under the bandwidth limit `bwlimit`.
fn inline_sizes(bwlimit: Option<u64>) -> (u64, u64) {
    match bwlimit.map(Pacer::new) {
        Some(p) => (
            p.budget(PACED_FRAME, INLINE_MAX),
            p.budget(PACED_FRAME, INLINE_CHUNK),
        ),
        None => (INLINE_MAX, INLINE_CHUNK),
    }
}

/// True when a copy between hosts travels inline over the agents' channel
/// rather than by rsync: a file of little data, whatever its length. A
/// file with holes travels as its data segments only (read with
/// `SEEK_DATA`/`SEEK_HOLE`), so it goes inline when its allocation is up to
/// one request's worth (`chunk`), where rsync would read its whole length
/// and send every zero of it (a new file has no basis; `--sparse` spares
/// the writes only). If its reader finds more data than a frame carries
/// (filled meanwhile; a filesystem that reports no allocation), it goes by
/// rsync after all. A dense file goes inline up to `inline_max`: above,
/// rsync's delta transfer pays.
fn goes_inline(sig: &Sig, inline_max: u64, chunk: u64) -> bool {
    sig.size <= inline_max || (sig.has_holes() && sig.allocated <= chunk)
}

/// Group inline and helper copies into requests of at most `cap` bytes of
/// data (a larger file goes alone; a file of unknown allocation counts its
/// size, see [`Sig::data_size`]) and at most `files` files.
fn inline_chunks(list: &[&Copy], cap: u64, files: usize) -> Vec<Vec<Copy>> {
    let mut out = Vec::new();
    let (mut cur, mut bytes) = (Vec::new(), 0u64);
    for c in list {
        let data = c.sig.data_size();
        if (bytes + data > cap || cur.len() >= files) && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += data;
        cur.push((*c).clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The changes `batch` applies: operations, copies and links (`status`
/// shows them while it runs).
#[must_use]
pub fn changes(batch: &Batch) -> usize {
    batch
        .ops
        .iter()
        .chain(&batch.links)
        .map(Vec::len)
        .sum::<usize>()
        + batch.copies.iter().map(Vec::len).sum::<usize>()
}

/// Counts of one batch, for the logs and `status`.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Files copied into each side.
    pub copied: [u64; 2],
    /// Bytes copied into each side.
    pub bytes: [u64; 2],
    /// Helper operations run on each side.
    pub ops: [u64; 2],
    /// Operations or copies that failed.
    pub errors: u64,
    /// Writes refused because the destination changed meanwhile.
    pub refused: u64,
    /// Conflicts resolved.
    pub conflicts: u64,
}

/// Record the outcome of a conditional write at `path` into `report`.
fn note(
    report: &mut Report,
    stats: &mut BatchStats,
    dst: Side,
    path: &RelPath,
    r: Result<Option<Sig>, OpFail>,
) {
    match r {
        Ok(sig) => report.applied[dst].push(Applied::Done(path.clone(), sig)),
        Err(OpFail::Refused { found }) => {
            stats.refused += 1;
            debug!(side = %dst, %path, "not replaced: changed meanwhile (merged again)");
            report.applied[dst].push(Applied::Refused(path.clone(), found));
        }
        Err(OpFail::Failed(e)) => {
            stats.errors += 1;
            report.ops_failed = true;
            warn!(side = %dst, "{e}");
        }
    }
}

/// Apply the operations of one side, `dst`, their `SetAttr` and `Mkdir`
/// given the extended attributes their entries have on the other side (the
/// engine plans them without, unless the source's signature says it has
/// none; an entry gone from the source keeps its attributes). Between local
/// roots, `dst`'s helper reads them there itself, right before each
/// operation, as it reads a file it copies: one round trip. Otherwise they
/// are read from the source's helper first, before any operation of the
/// batch runs, as the engine saw them.
async fn apply_with_xattrs(
    links: &[Arc<Link>; 2],
    ends: &[End; 2],
    dst: Side,
    mut ops: Vec<Op>,
) -> Result<(Vec<OpResult>, Vec<Op>)> {
    let unread = |op: &Op| {
        matches!(
            op,
            Op::SetAttr { xattrs: None, .. } | Op::Mkdir { xattrs: None, .. }
        )
    };
    let link = &links[dst.idx()];
    if !ops.iter().any(unread) {
        let results = link.apply(ops.clone()).await?;
        return Ok((results, ops));
    }
    let all_local = ends.iter().all(|e| matches!(e, End::Local(_)));
    if let (true, End::Local(src_root)) = (all_local, &ends[dst.other().idx()]) {
        let results = link.apply_with_xattrs_from(ops.clone(), src_root).await?;
        return Ok((results, ops));
    }
    let paths: Vec<RelPath> = ops
        .iter()
        .filter(|op| unread(op))
        .map(|op| op.target().clone())
        .collect();
    let mut read = links[dst.other().idx()]
        .read_xattrs(paths)
        .await?
        .into_iter();
    for op in ops.iter_mut().filter(|op| unread(op)) {
        if let Op::SetAttr { xattrs, .. } | Op::Mkdir { xattrs, .. } = op {
            *xattrs = read.next().flatten();
        }
    }
    let results = link.apply(ops.clone()).await?;
    Ok((results, ops))
}

/// Apply `made` on `dst` and note each answer (stats, touched, report).
async fn apply_noted(
    links: &[Arc<Link>; 2],
    dst: Side,
    made: Vec<Op>,
    report: &mut Report,
    stats: &mut BatchStats,
    touched: &mut Touched,
) -> Result<()> {
    let results = links[dst].apply(made.clone()).await?;
    for (r, op) in results.into_iter().zip(&made) {
        stats.ops[dst] += 1;
        touched.op(dst, op);
        note(report, stats, dst, op.target(), r);
    }
    Ok(())
}

/// Report the copy of `path` into `dst` as missed: the source as `src`
/// was found, and what `dst` holds now.
async fn note_missed(
    links: &[Arc<Link>; 2],
    dst: Side,
    path: RelPath,
    src: Option<twinsync_proto::Sig>,
    report: &mut Report,
) -> Result<()> {
    let now = links[dst].stat(vec![path.clone()]).await?.pop().flatten();
    report.missed[dst].push(Copied {
        path,
        src,
        dst: now,
        installed: false,
    });
    Ok(())
}

/// Make the hard links of the batch on `dst`, once its copies are in: a
/// link to a name the batch copied but which did not arrive as planned is
/// not made, and reported as a copy missed (the engine merges it again).
async fn link(
    links: &[Arc<Link>; 2],
    dst: Side,
    ops: &[Op],
    report: &mut Report,
    stats: &mut BatchStats,
    touched: &mut Touched,
) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let missed: std::collections::HashSet<&RelPath> = report.missed[dst]
        .iter()
        .map(|c| &c.path)
        .chain(report.applied[dst].iter().filter_map(|a| match a {
            Applied::Refused(p, _) => Some(p),
            _ => None,
        }))
        .collect();
    let (made, skipped): (Vec<Op>, Vec<Op>) = ops
        .iter()
        .cloned()
        .partition(|op| !matches!(op, Op::Link { existing, .. } if missed.contains(existing)));
    for op in &skipped {
        let path = op.target().clone();
        let src = links[dst.other()]
            .stat(vec![path.clone()])
            .await?
            .pop()
            .flatten();
        note_missed(links, dst, path, src, report).await?;
    }
    apply_noted(links, dst, made, report, stats, touched).await
}

/// Carry out a batch: helper ops on both sides, then the copies of each
/// direction, then install what arrived and check what did not, then the
/// mtimes of the directories written into (see [`dir_mtimes`]).
pub async fn execute(
    links: [Arc<Link>; 2],
    ends: [End; 2],
    rsync_opts: RsyncOptions,
    batch: Batch,
) -> Result<(Report, BatchStats)> {
    let Batch {
        ops,
        mut copies,
        links: new_links,
        ..
    } = batch;
    let rsync_opts = &rsync_opts;
    let mut stats = BatchStats::default();
    let mut report = Report::default();
    let [ops_l, ops_r] = ops;
    let mut touched = Touched::default();
    let (rl, rr) = tokio::join!(
        apply_with_xattrs(&links, &ends, Side::Left, ops_l),
        apply_with_xattrs(&links, &ends, Side::Right, ops_r)
    );
    let ((rl, ops_l), (rr, ops_r)) = (rl?, rr?);
    for (side, res, sent) in [(Side::Left, rl, ops_l), (Side::Right, rr, ops_r)] {
        for (r, op) in res.into_iter().zip(&sent) {
            stats.ops[side] += 1;
            touched.op(side, op);
            if let (Op::Move { from, to, .. }, Err(OpFail::Refused { .. })) = (op, &r) {
                // Something unexpected where a move goes: a full merge
                // sorts it out (the index moved a whole subtree).
                stats.refused += 1;
                report.refused_moves.push((from.clone(), to.clone()));
                warn!(side = %side, path = %op.target(), "move refused: something else is there now");
                continue;
            }
            if let (Op::Trash { path, .. }, Ok(sig)) = (op, &r) {
                // The trashed entry's lstat there: when it left.
                report.applied[side].push(Applied::Removed(path.clone(), *sig));
                continue;
            }
            note(&mut report, &mut stats, side, op.target(), r);
        }
    }
    // Symlinks, fifos and devices are made by the destination's helper
    // (atomically, with their attributes), not by rsync, if the source still
    // holds the version planned (else the source's report of the new one
    // brings it): a link's target is read on the source side once the ops
    // ran (a conflict copy of a link is made by them); a fifo or a device is
    // made from its signature (`mknod`: nothing is read).
    for dst in Side::BOTH {
        let (made_here, rest): (Vec<Copy>, Vec<Copy>) = std::mem::take(&mut copies[dst])
            .into_iter()
            .partition(|c| c.sig.kind == Kind::Symlink || c.sig.kind.is_special());
        copies[dst] = rest;
        if made_here.is_empty() {
            continue;
        }
        let paths: Vec<RelPath> = made_here.iter().map(|c| c.path.clone()).collect();
        let link_paths: Vec<RelPath> = made_here
            .iter()
            .filter(|c| c.sig.kind == Kind::Symlink)
            .map(|c| c.path.clone())
            .collect();
        let mut targets = if link_paths.is_empty() {
            Vec::new()
        } else {
            links[dst.other()].read_links(link_paths).await?
        }
        .into_iter();
        let xattrs = links[dst.other()].read_xattrs(paths.clone()).await?;
        let now = links[dst.other()].stat(paths).await?;
        let mut made = Vec::new();
        for ((c, src), xattrs) in made_here.into_iter().zip(now).zip(xattrs) {
            let target = if c.sig.kind == Kind::Symlink {
                targets.next().flatten()
            } else {
                None
            };
            // The attributes were read before the stat: a change of them
            // in between shows in the stat, and the version is not current.
            let current = src.is_some_and(|s| s.same_content(&c.sig));
            let op = match (c.sig.kind, target, xattrs) {
                (Kind::Symlink, Some(target), Some(xattrs)) if current => Some(Op::Symlink {
                    path: c.path.clone(),
                    target,
                    mtime_ns: c.sig.mtime_ns,
                    owner: c.sig.owner(),
                    xattrs,
                    expect: c.expect,
                }),
                (kind, _, Some(xattrs)) if current && kind.is_special() => Some(Op::Mknod {
                    path: c.path.clone(),
                    kind,
                    mode: c.sig.mode,
                    rdev: c.sig.rdev,
                    mtime_ns: c.sig.mtime_ns,
                    owner: c.sig.owner(),
                    xattrs,
                }),
                _ => None,
            };
            match op {
                Some(op) => made.push(op),
                None => note_missed(&links, dst, c.path, src, &mut report).await?,
            }
        }
        apply_noted(&links, dst, made, &mut report, &mut stats, &mut touched).await?;
    }
    let t = Instant::now();
    let all_local = ends.iter().all(|e| matches!(e, End::Local(_)));
    let (inline_max, chunk_cap) = inline_sizes(rsync_opts.bwlimit);
    let copy = |dst: Side| {
        let list = &copies[dst];
        let (src_end, dst_end) = (ends[dst.other()].clone(), ends[dst].clone());
        let (src_link, dst_link) = (Arc::clone(&links[dst.other()]), Arc::clone(&links[dst]));
        async move {
            let mut written: Vec<(usize, Result<Sig, OpFail>)> = Vec::new();
            let mut missing: Vec<usize> = Vec::new();
            if list.is_empty() {
                return Ok::<_, anyhow::Error>((written, missing, None));
            }
            // One bar per direction for every way a file travels (inline,
            // the helper's local copy, rsync): the same display here and
            // over ssh.
            let progress = (list.len() >= PROGRESS_MIN)
                .then(|| Progress::new(format!("copying to {dst}"), Some(list.len() as u64)));
            let progress = progress.as_ref();
            let step = if progress.is_some() {
                (list.len() / PROGRESS_STEPS).max(PROGRESS_STEP_MIN)
            } else {
                usize::MAX
            };
            // Across hosts, files of little data travel inline over the
            // agents' open channel (no new ssh session; holes not sent);
            // large ones by rsync (delta transfer) through the same ssh
            // connection's control socket.
            let (inline, mut big): (Vec<usize>, Vec<usize>) = if all_local {
                (Vec::new(), (0..list.len()).collect())
            } else if !rsync_opts.available {
                ((0..list.len()).collect(), Vec::new())
            } else {
                (0..list.len()).partition(|&i| goes_inline(&list[i].sig, inline_max, chunk_cap))
            };
            let inline_refs: Vec<&Copy> = inline.iter().map(|&i| &list[i]).collect();
            let mut at = 0;
            // Inline contents are paced where they are written to the
            // network: by the link's writer to a remote agent, by a remote
            // agent in its answers.
            for chunk in inline_chunks(&inline_refs, chunk_cap, step) {
                let idx = &inline[at..at + chunk.len()];
                at += chunk.len();
                let paths: Vec<RelPath> = chunk.iter().map(|c| c.path.clone()).collect();
                let read = src_link.read_files(paths).await?;
                let mut files: Vec<FileData> = Vec::with_capacity(read.len());
                let mut sent = Vec::new();
                for ((c, &i), r) in chunk.iter().zip(idx).zip(read) {
                    match r {
                        Ok(mut f) => {
                            f.expect = c.expect;
                            files.push(f);
                            sent.push(i);
                        }
                        // Sent inline for its holes, but it has more data
                        // than a frame carries now (filled meanwhile, or a
                        // filesystem that reports no allocation): rsync.
                        Err(e) if c.sig.size > INLINE_MAX && rsync_opts.available => {
                            debug!(to = %dst, path = %c.path, "not inline ({e}): by rsync");
                            big.push(i);
                        }
                        Err(e) => {
                            warn!(to = %dst, path = %c.path, "not copied: {e}");
                            missing.push(i);
                        }
                    }
                }
                for (r, i) in dst_link.write_files(files).await?.into_iter().zip(sent) {
                    written.push((i, r));
                    if let Some(p) = progress {
                        p.add(1);
                    }
                }
            }
            if big.is_empty() {
                return Ok((written, missing, None));
            }
            if let (true, End::Local(src_root)) = (all_local, &src_end) {
                // Both roots here: the destination's helper copies every
                // file from the other root itself (each path opened beneath
                // it, no link followed, copy_file_range; no process
                // started). rsync would not pay here: between local paths it
                // sends whole files anyway, and it reads by path.
                let helper: Vec<usize> = std::mem::take(&mut big);
                let refs: Vec<&Copy> = helper.iter().map(|&i| &list[i]).collect();
                let mut at = 0;
                // The helper's copies are paced here, a request at a time.
                let mut pacer = rsync_opts.bwlimit.map(Pacer::new);
                for chunk in inline_chunks(&refs, chunk_cap, step) {
                    let idx = &helper[at..at + chunk.len()];
                    at += chunk.len();
                    if let Some(p) = &mut pacer {
                        let bytes: u64 = chunk.iter().map(|c| c.sig.size).sum();
                        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
                        tokio::time::sleep(p.delay(bytes, Instant::now())).await;
                    }
                    let owned = chunk.into_iter().map(|c| (c.path, c.expect)).collect();
                    let results = dst_link.copy_from(src_root, owned).await?;
                    for (&i, r) in idx.iter().zip(results) {
                        written.push((i, r));
                    }
                    if let Some(p) = progress {
                        p.add(idx.len() as u64);
                    }
                }
                // The last request's bytes have their time too (the next
                // batch starts a new pacer).
                if let Some(p) = &pacer {
                    tokio::time::sleep(p.drained_in(Instant::now())).await;
                }
                if big.is_empty() {
                    return Ok((written, missing, None));
                }
            }
            // rsync stages the files below the destination's
            // `.twinsync/stage/`; its helper installs each one only if the
            // destination still holds what the engine planned against.
            let paths: Vec<&RelPath> = big.iter().map(|&i| &list[i].path).collect();
            debug!(to = %dst, files = paths.len(), "copying by rsync");
            let mut out =
                rsync::copy_split(rsync_opts, &src_end, &dst_end, &paths, progress).await?;
            // Staged paths are relative to the stage (`.twinsync/stage/`),
            // which only this request may look into.
            let mut found = dst_link
                .stat_staged(big.iter().map(|&i| list[i].path.clone()).collect())
                .await?;
            // rsync reported every file but may still be renaming the last
            // ones into the stage: look again (at those only) until they are
            // there or it has exited.
            if let Some(mut exit) = out.exit.take() {
                loop {
                    let behind: Vec<usize> = (0..big.len())
                        .filter(|&j| !found[j].is_some_and(|g| g.same_stat(&list[big[j]].sig)))
                        .collect();
                    if behind.is_empty() {
                        break;
                    }
                    let exited = match exit.try_recv() {
                        Ok((code, stderr)) => {
                            out.code = code;
                            out.stderr = stderr;
                            true
                        }
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                            false
                        }
                        Err(_) => break,
                    };
                    let again = dst_link
                        .stat_staged(behind.iter().map(|&j| list[big[j]].path.clone()).collect())
                        .await?;
                    for (j, got) in behind.into_iter().zip(again) {
                        found[j] = got;
                    }
                    if exited {
                        break;
                    }
                }
            }
            if !out.usable() {
                error!(to = %dst, code = ?out.code, "rsync failed: {}", out.stderr);
            } else if !out.stderr.is_empty() {
                warn!(to = %dst, "rsync: {}", out.stderr);
            }
            // rsync carries no extended attributes: the helper sets the
            // source's on the staged file before it installs it (one rule
            // for every way a file arrives). Read now, after the copy: what
            // does not match the planned version shows in the result.
            let xattrs = src_link
                .read_xattrs(big.iter().map(|&i| list[i].path.clone()).collect())
                .await?;
            let mut installs = Vec::new();
            let mut sent = Vec::new();
            for (j, (got, xattrs)) in found.into_iter().zip(xattrs).enumerate() {
                let c = &list[big[j]];
                if let (true, Some(xattrs)) = (got.is_some_and(|g| g.kind == Kind::File), xattrs) {
                    installs.push(Op::Install {
                        staged: c.path.clone(),
                        path: c.path.clone(),
                        expect: c.expect,
                        want: c.sig,
                        xattrs,
                    });
                    sent.push(big[j]);
                } else {
                    missing.push(big[j]);
                }
            }
            let results = dst_link.apply(installs).await?;
            for (r, i) in results.into_iter().zip(sent) {
                written.push((
                    i,
                    r.and_then(|s| s.ok_or(OpFail::Failed("installed nothing".into()))),
                ));
            }
            Ok((written, missing, Some(out)))
        }
    };
    let (to_l, to_r) = tokio::join!(copy(Side::Left), copy(Side::Right));
    for (dst, out) in [(Side::Left, to_l?), (Side::Right, to_r?)] {
        let list = &copies[dst];
        if list.is_empty() {
            continue;
        }
        for c in list {
            touched.entry(dst, &c.path);
        }
        let (written, missing, _rsync) = out;
        let mut missed: Vec<(RelPath, Option<Sig>, bool)> = Vec::new();
        for i in missing {
            let p = &list[i].path;
            let now = links[dst].stat(vec![p.clone()]).await?.pop().flatten();
            missed.push((p.clone(), now, false));
        }
        for (i, r) in written {
            let c = &list[i];
            match r {
                Ok(sig) if sig.same_content(&c.sig) => {
                    stats.copied[dst] += 1;
                    stats.bytes[dst] += c.sig.size;
                    report.applied[dst].push(Applied::Done(c.path.clone(), Some(sig)));
                }
                // The source changed after the plan: what arrived is newer.
                Ok(sig) => missed.push((c.path.clone(), Some(sig), true)),
                Err(e @ OpFail::Refused { .. }) => {
                    note(&mut report, &mut stats, dst, &c.path, Err(e));
                }
                Err(OpFail::Failed(e)) => {
                    stats.errors += 1;
                    warn!(to = %dst, path = %c.path, "not copied: {e}");
                    let now = links[dst].stat(vec![c.path.clone()]).await?.pop().flatten();
                    missed.push((c.path.clone(), now, false));
                }
            }
        }
        // What does the source hold now? (It may have changed or gone while
        // we copied: the engine decides from both ends.)
        let src_now = links[dst.other()]
            .stat(missed.iter().map(|(p, ..)| p.clone()).collect())
            .await?;
        for ((path, dst_sig, installed), src_sig) in missed.into_iter().zip(src_now) {
            if dst_sig.is_none() && src_sig.is_some() {
                stats.errors += 1;
                warn!(to = %dst, %path, "not copied (unreadable on the source or refused on the destination)");
            }
            report.missed[dst].push(Copied {
                path,
                src: src_sig,
                dst: dst_sig,
                installed,
            });
        }
        debug!(
            to = %dst,
            files = list.len(),
            ms = t.elapsed().as_millis() as u64,
            "copies done"
        );
    }
    for dst in Side::BOTH {
        link(
            &links,
            dst,
            &new_links[dst],
            &mut report,
            &mut stats,
            &mut touched,
        )
        .await?;
    }
    // Once every entry is in place: the directories' mtimes.
    dir_mtimes::align(&links, touched, &mut report).await?;
    Ok((report, stats))
}
