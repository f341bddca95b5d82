//! Ordering of one side's reports against the brain's own writes there: the
//! marks. After a batch wrote files on a side, the runner asks that side's
//! helper for a mark (a file made in the agent's state folder, which its
//! filter watches through the same kernel queue as the replica); the filter
//! reports the mark once every event of what the helper did before it was
//! reported. From then on, a report of one of those files is a user's
//! change, never an echo, even when it shows the very stamp the brain wrote
//! (a kernel whose ctime is coarse — before Linux 6.13, or a filesystem
//! without fine-grained timestamps — gives a same-size, same-mtime write in
//! the same tick the stamp of the install it replaced): its content is
//! compared instead of being dropped.

use std::collections::HashSet;

use twinsync_proto::RelPath;

/// The most paths kept waiting or settled per side: beyond, the oldest are
/// forgotten (their reports are then judged by their stamp alone, as
/// without marks).
const BOUND: usize = 65_536;

/// One side's marks.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// Files the batches wrote since the last mark asked for.
    unmarked: HashSet<RelPath>,
    /// Files written before a mark asked for and not reported yet: the
    /// mark's number and the files.
    waiting: Vec<(u64, HashSet<RelPath>)>,
    /// The last mark reported.
    seen: u64,
    /// Files whose write's reports are all in (its mark was reported).
    settled: HashSet<RelPath>,
}

impl Marks {
    /// A batch wrote the file at `path`.
    pub(super) fn wrote(&mut self, path: &RelPath) {
        if self.unmarked.len() >= BOUND {
            self.unmarked.clear();
        }
        // Its reports come before the next mark, not an earlier one.
        for (_, w) in &mut self.waiting {
            w.remove(path);
        }
        self.settled.remove(path);
        self.unmarked.insert(path.clone());
    }

    /// True when files were written since the last mark asked for.
    pub(super) fn wanted(&self) -> bool {
        !self.unmarked.is_empty()
    }

    /// The helper made mark `n` after the writes noted so far (`None`: it
    /// makes none, as when not watching).
    pub(super) fn asked(&mut self, n: Option<u64>) {
        let written = std::mem::take(&mut self.unmarked);
        match n {
            Some(n) if n <= self.seen => self.settle(written),
            Some(n) => {
                self.waiting.push((n, written));
                if self.waiting.len() > 64 {
                    self.waiting.remove(0);
                }
            }
            None => {}
        }
    }

    /// The filter reported mark `n`.
    pub(super) fn reported(&mut self, n: u64) {
        self.seen = self.seen.max(n);
        let seen = self.seen;
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(m, _)| *m <= seen);
        self.waiting = wait;
        for (_, written) in done {
            self.settle(written);
        }
    }

    fn settle(&mut self, written: HashSet<RelPath>) {
        if self.settled.len() + written.len() > BOUND {
            self.settled.clear();
        }
        self.settled.extend(written);
    }

    /// A report of `path` came: true when every report of the brain's last
    /// write there came before it (so this one is a user's change). Either
    /// way the path's next report is judged by its stamp (a path removed
    /// or moved away stays noted: its next report is judged Same only if
    /// it shows the stamp written, which is what this is for).
    pub(super) fn after_ours(&mut self, path: &RelPath) -> bool {
        self.settled.remove(path)
    }

    /// True when every report of the brain's last write at `path` came
    /// already (as [`Marks::after_ours`], without using it up).
    pub(super) fn settled(&self, path: &RelPath) -> bool {
        self.settled.contains(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_as_after_ours_only_once_the_mark_is_reported() {
        let mut m = Marks::default();
        let a = RelPath::from("a");
        m.wrote(&a);
        assert!(m.wanted());
        m.asked(Some(1));
        assert!(!m.wanted());
        // The echo, before the mark.
        assert!(!m.after_ours(&a));
        m.reported(1);
        assert!(m.after_ours(&a));
        // Once: the next report is judged by its stamp.
        assert!(!m.after_ours(&a));
    }

    #[test]
    fn a_mark_reported_before_its_number_is_known_still_settles() {
        let mut m = Marks::default();
        let a = RelPath::from("a");
        m.wrote(&a);
        m.reported(3);
        m.asked(Some(3));
        assert!(m.after_ours(&a));
    }

    #[test]
    fn no_mark_means_no_ordering() {
        let mut m = Marks::default();
        let a = RelPath::from("a");
        m.wrote(&a);
        m.asked(None);
        m.reported(9);
        assert!(!m.after_ours(&a));
    }

    #[test]
    fn a_write_after_the_mark_was_asked_waits_for_the_next() {
        let mut m = Marks::default();
        let (a, b) = (RelPath::from("a"), RelPath::from("b"));
        m.wrote(&a);
        m.asked(Some(1));
        m.wrote(&b);
        m.reported(1);
        assert!(m.after_ours(&a));
        assert!(!m.after_ours(&b));
        m.asked(Some(2));
        m.reported(2);
        assert!(m.after_ours(&b));
    }

    #[test]
    fn a_file_written_again_waits_for_the_later_mark() {
        let mut m = Marks::default();
        let a = RelPath::from("a");
        m.wrote(&a);
        m.asked(Some(1));
        m.wrote(&a);
        m.reported(1);
        // The echo of the second write may still come.
        assert!(!m.after_ours(&a));
        m.asked(Some(2));
        m.reported(2);
        assert!(m.after_ours(&a));
    }
}
