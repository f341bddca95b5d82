//! Requests to an agent and their answers: ids and waiters, listings that
//! stream in parts, and one method per request.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};
use twinsync_proto::{
    try_encode, Entry, Op, OpResult, RelPath, Request, Response, Sig, ToAgent, XattrScope, Xattrs,
    MAX_ITEMS,
};

use super::checks::{brief, check_read, valid_path};
use super::Link;
use crate::side::Side;

pub(super) type Waiters = Arc<DashMap<u64, oneshot::Sender<Result<Response, String>>>>;
pub(super) type Chunks = Arc<DashMap<u64, mpsc::UnboundedSender<ScanPart>>>;

/// A part of a replica's listing, as it streams in (see [`Link::scan`]).
#[derive(Debug)]
pub struct ScanPart {
    /// Entries, in ascending order of their paths across all parts.
    pub entries: Vec<Entry>,
    /// Paths the agent could not read.
    pub unreadable: Vec<RelPath>,
}

/// A listing under way: its parts, then its end.
pub struct Scan {
    side: Side,
    parts: mpsc::UnboundedReceiver<ScanPart>,
    done: oneshot::Receiver<Result<Response, String>>,
    /// `None`: a listing that draws no progress.
    progress: Option<crate::progress::Progress>,
    count: u64,
}

impl Scan {
    /// The next part, `None` once the listing is over (or the link lost).
    pub async fn next(&mut self) -> Option<ScanPart> {
        let part = self.parts.recv().await?;
        self.count += part.entries.len() as u64;
        if let Some(p) = &self.progress {
            p.set(self.count);
        }
        Some(part)
    }

    /// How the listing ended, once [`Scan::next`] gave `None`.
    ///
    /// # Errors
    /// When the agent could not list its replica or went away.
    pub async fn finish(self) -> Result<()> {
        drop(self.progress);
        match self.done.await {
            Ok(Ok(Response::ScanDone { .. })) => Ok(()),
            Ok(Ok(other)) => bail!("unexpected answer to a scan: {other:?}"),
            Ok(Err(e)) => bail!("scanning the {} replica: {e}", self.side),
            Err(_) => bail!("the {} agent went away while scanning", self.side),
        }
    }
}

impl Link {
    async fn request(&self, req: Request) -> Result<Response> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let req = ToAgent::Request { id, req };
        // Never a frame the agent would refuse (the writer encodes it again).
        if let Err(e) = try_encode(&req) {
            bail!("a request to the {} agent is too large: {e}", self.side);
        }
        tracing::trace!(side = %self.side, id, "→ {}", brief(&req));
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(id, tx);
        // The reader marks the link dead *before* dropping the waiters, so a
        // waiter inserted after that is caught here instead of waiting forever.
        if !self.alive() {
            self.waiters.remove(&id);
            bail!("the {} agent is gone", self.side);
        }
        self.tx
            .send(req)
            .map_err(|_| anyhow!("the {} agent is gone", self.side))?;
        rx.await
            .map_err(|_| anyhow!("the {} agent went away before answering", self.side))?
            .map_err(|e| anyhow!("{} agent: {e}", self.side))
    }

    /// Start listing the whole replica (placing watches first when
    /// watching); the listing streams in through the returned [`Scan`],
    /// with a `scanning <side>` spinner (or progress lines) when `shown`.
    ///
    /// # Errors
    /// When the agent is gone.
    pub fn scan(&self, shown: bool) -> Result<Scan> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (ctx, parts) = mpsc::unbounded_channel();
        self.chunks.insert(id, ctx);
        let (tx, done) = oneshot::channel();
        self.waiters.insert(id, tx);
        if !self.alive() {
            self.waiters.remove(&id);
            self.chunks.remove(&id);
            bail!("the {} agent is gone", self.side);
        }
        self.tx
            .send(ToAgent::Request {
                id,
                req: Request::Scan,
            })
            .map_err(|_| anyhow!("the {} agent is gone", self.side))?;
        Ok(Scan {
            side: self.side,
            parts,
            done,
            progress: shown
                .then(|| crate::progress::Progress::new(format!("scanning {}", self.side), None)),
            count: 0,
        })
    }

    /// Ask for `items` in requests of at most [`MAX_ITEMS`] each (in order),
    /// and check that each answer has one result per item asked.
    async fn each<I: Clone, T>(
        &self,
        what: &str,
        items: Vec<I>,
        ask: impl Fn(Vec<I>) -> Request,
        take: impl Fn(Response) -> Option<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_ITEMS) {
            let r = self.request(ask(chunk.to_vec())).await?;
            let Some(got) = take(r) else {
                bail!(
                    "the {} agent gave an unexpected answer to {what}",
                    self.side
                );
            };
            if got.len() != chunk.len() {
                bail!(
                    "the {} agent answered {what} of {} paths with {} results",
                    self.side,
                    chunk.len(),
                    got.len()
                );
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Apply helper operations in order.
    ///
    /// # Errors
    /// When the agent fails or goes away (per-op failures are in the result).
    pub async fn apply(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        self.apply_reading(ops, None).await
    }

    /// Apply helper operations in order, the [`Op::SetAttr`] and
    /// [`Op::Mkdir`] without extended attributes given those their entries
    /// have in the other local replica at `src_root` (read there by this
    /// agent's helper: no round trip to the other agent first).
    ///
    /// # Errors
    /// When the agent fails, goes away or refuses to read `src_root`.
    pub async fn apply_with_xattrs_from(
        &self,
        ops: Vec<Op>,
        src_root: &std::path::Path,
    ) -> Result<Vec<OpResult>> {
        use std::os::unix::ffi::OsStrExt;
        let from = twinsync_proto::XattrSource {
            root: src_root.as_os_str().as_bytes().to_vec(),
            scope: XattrScope::current(),
        };
        self.apply_reading(ops, Some(from)).await
    }

    async fn apply_reading(
        &self,
        ops: Vec<Op>,
        xattrs_from: Option<twinsync_proto::XattrSource>,
    ) -> Result<Vec<OpResult>> {
        self.each(
            "apply",
            ops,
            |ops| Request::Apply {
                ops,
                xattrs_from: xattrs_from.clone(),
            },
            |r| match r {
                Response::Applied(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// lstat paths.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn stat(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Sig>>> {
        self.each(
            "stat",
            paths,
            |paths| Request::Stat { paths },
            |r| match r {
                Response::Stats(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// lstat files staged below the agent's `.twinsync/stage/` (paths
    /// relative to it).
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn stat_staged(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Sig>>> {
        self.each(
            "stat of staged files",
            paths,
            |paths| Request::StatStaged { paths },
            |r| match r {
                Response::Stats(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Whether the replica root's path still leads to the directory the
    /// agent serves, with its `.twinsync/`.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn intact(&self) -> Result<bool> {
        match self.request(Request::Intact).await? {
            Response::Intact(b) => Ok(b),
            other => bail!("unexpected answer to intact: {other:?}"),
        }
    }

    /// Ask the helper for a mark after everything it did so far (see
    /// [`Request::Mark`]): its number, or `None` when it makes none.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn mark(&self) -> Result<Option<u64>> {
        match self.request(Request::Mark).await? {
            Response::Marked(n) => Ok(n),
            other => bail!("unexpected answer to mark: {other:?}"),
        }
    }

    /// Read symlink targets.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_links(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Vec<u8>>>> {
        let r = self
            .each(
                "readlink",
                paths,
                |paths| Request::ReadLinks { paths },
                |r| match r {
                    Response::Links(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(r.into_iter()
            .map(|b| b.map(serde_bytes::ByteBuf::into_vec))
            .collect())
    }

    /// BLAKE3 digests of files.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn hash(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Vec<u8>>>> {
        let r = self
            .each(
                "hash",
                paths,
                |paths| Request::Hash { paths },
                |r| match r {
                    Response::Hashes(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(r.into_iter()
            .map(|h| h.map(serde_bytes::ByteBuf::into_vec))
            .collect())
    }

    /// Read whole small files (for transfers to or from a remote replica),
    /// with the extended attributes carried. What the agent sends is data,
    /// checked against what was asked: a file for another path, with data
    /// beyond the size its own signature says, not a regular file, or with
    /// attributes outside the scope, is taken for an unreadable one.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_files(
        &self,
        paths: Vec<RelPath>,
    ) -> Result<Vec<Result<twinsync_proto::FileData, String>>> {
        let asked = paths.clone();
        let got = self
            .each(
                "read",
                paths,
                |paths| Request::ReadFiles {
                    paths,
                    scope: XattrScope::current(),
                },
                |r| match r {
                    Response::Files(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(check_read(self.side, &asked, got))
    }

    /// The extended attributes carried (see [`XattrScope::current`]) of
    /// entries (`None`: missing or unreadable). A list with names outside
    /// the scope, or not in order, is taken for an unreadable one.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn read_xattrs(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Xattrs>>> {
        let scope = XattrScope::current();
        let got = self
            .each(
                "read of extended attributes",
                paths,
                |paths| Request::ReadXattrs { paths, scope },
                |r| match r {
                    Response::Xattrs(r) => Some(r),
                    _ => None,
                },
            )
            .await?;
        Ok(got
            .into_iter()
            .map(|x| x.filter(|x| x.scope == scope && x.is_valid()))
            .collect())
    }

    /// The files the agent's helper installed since the record was last
    /// emptied (`forget` empties it), with their stamps.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn installed(&self, forget: bool) -> Result<Vec<(RelPath, twinsync_proto::Stamp)>> {
        match self.request(Request::Installed { forget }).await? {
            Response::Installed(r) => {
                if let Some((p, _)) = r.iter().find(|(p, _)| !valid_path(p)) {
                    bail!("the {} agent reported an unsafe path {p}", self.side);
                }
                Ok(r)
            }
            other => bail!("unexpected answer to installed: {other:?}"),
        }
    }

    /// Copy files from another local replica (when rsync is missing).
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn copy_from(
        &self,
        src_root: &std::path::Path,
        paths: Vec<(RelPath, twinsync_proto::Expect)>,
    ) -> Result<Vec<Result<Sig, twinsync_proto::OpFail>>> {
        use std::os::unix::ffi::OsStrExt;
        let src_root = src_root.as_os_str().as_bytes().to_vec();
        self.each(
            "copy",
            paths,
            |paths| Request::CopyFrom {
                src_root: src_root.clone(),
                paths,
                scope: XattrScope::current(),
            },
            |r| match r {
                Response::Written(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Write whole small files.
    ///
    /// # Errors
    /// When the agent fails or goes away.
    pub async fn write_files(
        &self,
        files: Vec<twinsync_proto::FileData>,
    ) -> Result<Vec<Result<Sig, twinsync_proto::OpFail>>> {
        self.each(
            "write",
            files,
            |files| Request::WriteFiles { files },
            |r| match r {
                Response::Written(r) => Some(r),
                _ => None,
            },
        )
        .await
    }
}
