//! Around a batch: the content comparison before it is planned, the marks
//! asked of the agents after it ran.

use anyhow::Result;

use super::Brain;
use crate::side::Side;

impl Brain {
    /// Before a plan: files whose size and mtime cannot tell their versions
    /// apart are hashed on both sides (see [`Engine::to_compare`]).
    pub(super) async fn compare_content(&mut self) -> Result<()> {
        let paths = self.engine.to_compare();
        if paths.is_empty() {
            return Ok(());
        }
        let (l, r) = tokio::join!(
            self.links[0].hash(paths.clone()),
            self.links[1].hash(paths.clone())
        );
        let (l, r) = (l?, r?);
        let digest = |d: Option<Vec<u8>>| d.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok());
        let results = paths
            .into_iter()
            .zip(l.into_iter().zip(r))
            .map(|(p, (a, b))| (p, digest(a), digest(b)))
            .collect();
        self.engine.compared(results);
        Ok(())
    }

    /// Ask a mark of each side the batches wrote files on (live only: a
    /// merge has no reports to order), so that the engine knows when their
    /// reports are all in.
    pub(super) async fn ask_marks(&mut self) {
        if self.settings.sync_only || self.settings.dry_run {
            return;
        }
        for side in Side::BOTH {
            if self.engine.wants_mark(side) {
                // A link lost meanwhile is noticed (and recovered) by the
                // loop; without a mark, reports are judged by their stamp.
                let n = self.links[side].mark().await.ok().flatten();
                self.engine.marked(side, n);
            }
        }
    }
}
