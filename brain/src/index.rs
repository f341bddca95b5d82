//! The persistent index: the last synced state of every entry, kept in the
//! left replica's `.twinsync/index/` so that the next run merges three ways
//! (deletions made while twinsync was not running are not resurrected).
//!
//! Format and crash safety. A snapshot (`NAME.snap`: a header and every
//! entry, MessagePack) is written to a temp file, fsynced and renamed into
//! place. Each batch's changes to the index are then appended to a journal
//! (`NAME.journal`: length-prefixed records) *after* the batch was applied,
//! so the index never claims more than both replicas hold. After a `kill -9`
//! the snapshot plus every complete journal record is the state (each record
//! is written to the kernel at once); a torn last record is ignored (its
//! batch is then merged again, which is harmless: both sides already agree
//! on it).
//!
//! Group commits. The journal is fdatasync'ed once for the batches of a
//! burst, not once per batch: on ext4 each sync flushes the data of every
//! file written meanwhile, which slowed down the very programs whose files
//! were synced. At most [`SYNC_MAX_RECORDS`] records, none older than
//! [`SYNC_MAX_AGE`], are unsynced (beyond, [`Index::append`] syncs); the
//! runner syncs once no batch followed for [`SYNC_IDLE`] (see
//! [`Index::sync_at`]), before it reports the pair settled, before a
//! reconnection, before a snapshot replaces the journal, and on exit (and
//! so does `Drop`). A power loss thus loses at most the unsynced tail: the
//! next run merges against an older index, which is safe (what both
//! replicas hold alike is taken in again; a file changed or deleted on one
//! side meanwhile becomes at worst a conflict copy or comes back: nothing
//! is lost).
//!
//! We chose this over an embedded database (redb, SQLite) because the
//! brain keeps the whole index in memory anyway and only needs "load all"
//! and "append a delta"; two small files are easy to inspect and cost no
//! dependency.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};
use twinsync_proto::{RelPath, Sig, Stamp};

const MAGIC: &str = "twinsync-index-5";

/// A journal record is synced at most this long after it was written.
pub const SYNC_MAX_AGE: Duration = Duration::from_secs(1);
/// At most this many records (batches) are unsynced at a time.
pub const SYNC_MAX_RECORDS: usize = 1024;
/// The journal is synced once no record followed the last one for this
/// long: the burst has settled. Longer than the gap between two batches of
/// a burst (the next batch is planned as soon as the last one ends), short
/// beside ext4's own 5 s commit interval.
pub const SYNC_IDLE: Duration = Duration::from_millis(100);

/// What the index holds for one path: the version both replicas agreed on
/// (its content signature: kind, size, mtime, mode) and that version's
/// identity on each side ([`Stamp`]: inode and ctime, which no user can
/// set). A file whose size and mtime match but whose stamp does not may be
/// another version (a `cp -p` restore): its content is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The synced version.
    pub sig: Sig,
    /// Its stamp on the left and on the right ([`Stamp::UNKNOWN`]: not
    /// observed yet).
    pub stamps: [Stamp; 2],
}

impl Known {
    /// A version with no observed stamps.
    #[must_use]
    pub fn new(sig: Sig) -> Known {
        Known {
            sig,
            stamps: [Stamp::UNKNOWN; 2],
        }
    }

    /// This version with `stamp` as its identity on side index `i`.
    #[must_use]
    pub fn with_stamp(mut self, i: usize, stamp: Stamp) -> Known {
        self.stamps[i] = stamp;
        self
    }
}

impl std::ops::Deref for Known {
    type Target = Sig;
    fn deref(&self) -> &Sig {
        &self.sig
    }
}

/// Identity of the pair the index belongs to, checked on load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    magic: String,
    /// The left root.
    pub left: String,
    /// The right root (as given: a local path or `host:path`).
    pub right: String,
    /// Device numbers of both roots when the index was written.
    pub devs: [u64; 2],
    /// Number of entries in the snapshot.
    pub count: usize,
    /// Bumped by every snapshot; journal records carry the generation of
    /// the snapshot they follow, so records of an older snapshot (a crash
    /// between a snapshot's rename and the journal's truncation) are never
    /// replayed onto a newer one.
    pub generation: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Delta {
    generation: u64,
    set: Vec<(RelPath, Known)>,
    remove: Vec<RelPath>,
    /// Copies a batch is about to make (written before it runs); the next
    /// record of changes means it ended.
    intents: Vec<Intent>,
}

/// A copy a batch was about to make when it was written down: after a crash
/// in the middle of the batch, a destination found holding `sig` holds what
/// the batch installed (not a change of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The path.
    pub path: RelPath,
    /// The destination side (0 left, 1 right).
    pub side: u8,
    /// The version copied.
    pub sig: Sig,
    /// Set when the batch moves the entry indexed at this path to `path`:
    /// what is indexed below it is recognised below `path` too, with its
    /// stamps (a rename changes the ctime of the moved entry only). One
    /// record per move, whatever lies below.
    #[serde(default)]
    pub moved_from: Option<RelPath>,
}

/// The on-disk index of one instance.
#[derive(Debug)]
pub struct Index {
    /// The index folder, held open (`O_PATH`).
    dir: OwnedFd,
    snap: PathBuf,
    journal_path: PathBuf,
    journal: Option<BufWriter<File>>,
    journal_records: usize,
    journal_entries: usize,
    /// Generation of the snapshot on disk.
    generation: u64,
    /// Intents were written since the last record of changes: the next
    /// one is written even when empty (it tells the batch ended).
    intended: bool,
    /// Records written but not synced: how many, when the first and the
    /// last were written.
    unsynced: Unsynced,
    /// fdatasyncs of the journal since the index was opened.
    syncs: u64,
}

/// The journal's tail not yet synced.
#[derive(Debug, Default, Clone, Copy)]
struct Unsynced {
    records: usize,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// What was loaded.
#[derive(Debug)]
pub struct Loaded {
    /// Header of the snapshot.
    pub header: Header,
    /// The entries.
    pub known: BTreeMap<RelPath, Known>,
    /// Copies of a batch that did not end (a crash in its middle).
    pub intents: Vec<Intent>,
}

impl Index {
    /// The index named `name` in `dir` (created if needed).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: &Path, name: &str) -> io::Result<Index> {
        fs::create_dir_all(dir)?;
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Index::open_in(fd, dir, name))
    }

    /// The index named `name` in the folder open as `dir` (shown as
    /// `shown`): every file of it is reached through that descriptor, never
    /// through a symlink.
    #[must_use]
    pub fn open_in(dir: OwnedFd, shown: &Path, name: &str) -> Index {
        Index {
            dir,
            snap: shown.join(format!("{name}.snap")),
            journal_path: shown.join(format!("{name}.journal")),
            journal: None,
            journal_records: 0,
            journal_entries: 0,
            generation: 0,
            intended: false,
            unsynced: Unsynced::default(),
            syncs: 0,
        }
    }

    /// `name` of the index folder as a file name there.
    fn name(p: &Path) -> &std::ffi::OsStr {
        p.file_name().expect("index files have names")
    }

    /// Open the index file `p` (in the folder) with `flags`, never
    /// following a symlink.
    fn open_file(&self, p: &Path, flags: OFlags) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.dir,
            Index::name(p),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        Ok(File::from(fd))
    }

    /// Load the snapshot and replay the journal; `None` when there is no index
    /// yet (first run).
    ///
    /// # Errors
    /// A snapshot that exists but cannot be read or decoded.
    pub fn load(&mut self) -> io::Result<Option<Loaded>> {
        let f = match self.open_file(&self.snap, OFlags::RDONLY) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut r = BufReader::with_capacity(1 << 20, f);
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what} in {}", self.snap.display()),
            )
        };
        let header: Header = match twinsync_proto::read_frame(&mut r) {
            Ok(h) => h,
            Err(_) => {
                // An index of an older twinsync (without stamps): the next
                // merge is a first one (a union: nothing deleted).
                tracing::warn!(
                    "{} is from an older twinsync version: it is set aside and the next \
                     merge is a union (nothing is deleted)",
                    self.snap.display()
                );
                return Ok(None);
            }
        };
        if header.magic != MAGIC {
            if header.magic.starts_with("twinsync-index-") {
                // An older format (entries without owners or extended
                // attributes): as above.
                tracing::warn!(
                    "{} is from an older twinsync version: it is set aside and the next \
                     merge is a union (nothing is deleted)",
                    self.snap.display()
                );
                return Ok(None);
            }
            return Err(bad("unknown format"));
        }
        self.generation = header.generation;
        // Collected first and built at once: from sorted entries the map is
        // built with full nodes (inserting one by one leaves them half full).
        let mut entries: Vec<(RelPath, Known)> = Vec::with_capacity(header.count.min(1 << 24));
        while entries.len() < header.count {
            let mut chunk: Vec<(RelPath, Known)> =
                twinsync_proto::read_frame(&mut r).map_err(|_| bad("truncated entries"))?;
            if chunk.is_empty() {
                return Err(bad("truncated entries"));
            }
            entries.append(&mut chunk);
        }
        let mut known: BTreeMap<RelPath, Known> = entries.into_iter().collect();
        let mut intents = Vec::new();
        if let Ok(f) = self.open_file(&self.journal_path, OFlags::RDONLY) {
            let mut r = BufReader::new(f);
            // Until the end of the journal, or a torn last record from a crash.
            while let Ok(d) = twinsync_proto::read_frame::<_, Delta>(&mut r) {
                if d.generation != header.generation {
                    // Left from before the snapshot: already in it.
                    continue;
                }
                if !d.intents.is_empty() {
                    intents = d.intents;
                    continue;
                }
                intents.clear();
                self.journal_records += 1;
                self.journal_entries += d.set.len() + d.remove.len();
                for p in d.remove {
                    known.remove(&p);
                }
                known.extend(d.set);
            }
        }
        Ok(Some(Loaded {
            header,
            known,
            intents,
        }))
    }

    /// Write a full snapshot (temp file, fsync, rename, fsync dir) and start
    /// an empty journal.
    ///
    /// # Errors
    /// I/O errors.
    pub fn snapshot(
        &mut self,
        header: &Header,
        known: &BTreeMap<RelPath, Known>,
    ) -> io::Result<()> {
        // The journal's tail is made durable first: until the new snapshot's
        // rename is, the old snapshot and this journal are the index.
        self.sync()?;
        let generation = self.generation + 1;
        let tmp = self.snap.with_extension("snap.tmp");
        {
            let mut w = BufWriter::with_capacity(
                1 << 20,
                self.open_file(&tmp, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC)?,
            );
            let mut h = header.clone();
            h.magic = MAGIC.into();
            h.count = known.len();
            h.generation = generation;
            twinsync_proto::write_frame(&mut w, &h)?;
            let entries: Vec<(&RelPath, &Known)> = known.iter().collect();
            for chunk in entries.chunks(16 * 1024) {
                twinsync_proto::write_frame(&mut w, &chunk)?;
            }
            let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
            f.sync_all()?;
        }
        rustix::fs::renameat(
            &self.dir,
            Index::name(&tmp),
            &self.dir,
            Index::name(&self.snap),
        )?;
        self.generation = generation;
        self.intended = false;
        // The journal is now folded into the snapshot (its records, of the
        // previous generation, would be skipped anyway).
        self.journal = None;
        self.open_file(
            &self.journal_path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
        )?
        .sync_all()?;
        File::from(rustix::fs::openat(
            &self.dir,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
        .sync_all()?;
        self.journal_records = 0;
        self.journal_entries = 0;
        Ok(())
    }

    /// Append one batch's changes (written to the kernel at once: they
    /// survive a `kill -9`); they are synced to disk with the next group
    /// commit, here when the bounds ([`SYNC_MAX_AGE`],
    /// [`SYNC_MAX_RECORDS`]) are reached.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append(&mut self, set: Vec<(RelPath, Known)>, remove: Vec<RelPath>) -> io::Result<()> {
        if set.is_empty() && remove.is_empty() && !self.intended {
            return Ok(());
        }
        self.intended = false;
        self.journal_entries += set.len() + remove.len();
        let generation = self.generation;
        let w = self.journal()?;
        twinsync_proto::write_frame(
            w,
            &Delta {
                generation,
                set,
                remove,
                intents: Vec::new(),
            },
        )?;
        w.flush()?;
        self.journal_records += 1;
        let now = Instant::now();
        let u = &mut self.unsynced;
        u.records += 1;
        u.first.get_or_insert(now);
        u.last = Some(now);
        if u.records >= SYNC_MAX_RECORDS || u.first.is_some_and(|t| now - t >= SYNC_MAX_AGE) {
            self.sync()?;
        }
        Ok(())
    }

    /// Make every record written so far durable (fdatasync), if any is
    /// not yet.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced.records == 0 {
            return Ok(());
        }
        let records = self.unsynced.records;
        if let Some(w) = &mut self.journal {
            w.flush()?;
            w.get_ref().sync_data()?;
            self.syncs += 1;
        }
        self.unsynced = Unsynced::default();
        tracing::debug!(records, syncs = self.syncs, "index journal synced");
        Ok(())
    }

    /// When the unsynced tail is to be synced by the runner: [`SYNC_IDLE`]
    /// after the last record, or [`SYNC_MAX_AGE`] after the first if
    /// sooner; `None` when all is synced.
    #[must_use]
    pub fn sync_at(&self) -> Option<Instant> {
        let u = &self.unsynced;
        Some((u.last? + SYNC_IDLE).min(u.first? + SYNC_MAX_AGE))
    }

    /// fdatasyncs of the journal since the index was opened.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Write down the copies a batch is about to make (not synced to disk:
    /// it serves after a `kill -9`, which keeps what was written; after a
    /// power loss the worst is a conflict copy of what the batch did).
    ///
    /// # Errors
    /// I/O errors.
    pub fn intend(&mut self, intents: &[Intent]) -> io::Result<()> {
        if intents.is_empty() {
            return Ok(());
        }
        /// A [`Delta`] with intents only, borrowed (the same record).
        #[derive(Serialize)]
        struct Intents<'a> {
            generation: u64,
            set: &'a [(RelPath, Known)],
            remove: &'a [RelPath],
            intents: &'a [Intent],
        }
        let generation = self.generation;
        let w = self.journal()?;
        twinsync_proto::write_frame(
            w,
            &Intents {
                generation,
                set: &[],
                remove: &[],
                intents,
            },
        )?;
        w.flush()?;
        self.intended = true;
        Ok(())
    }

    /// The journal, opened for appending on first use.
    fn journal(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.journal.is_none() {
            let f = self.open_file(
                &self.journal_path,
                OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
            )?;
            self.journal = Some(BufWriter::new(f));
        }
        Ok(self.journal.as_mut().expect("opened"))
    }

    /// Records in the journal since the last snapshot.
    #[must_use]
    pub fn journal_len(&self) -> usize {
        self.journal_records
    }

    /// Entries set or removed in the journal since the last snapshot.
    #[must_use]
    pub fn journal_entries(&self) -> usize {
        self.journal_entries
    }

    /// A header for this pair.
    #[must_use]
    pub fn header(left: &str, right: &str, devs: [u64; 2]) -> Header {
        Header {
            magic: MAGIC.into(),
            left: left.into(),
            right: right.into(),
            devs,
            count: 0,
            generation: 0,
        }
    }
}

impl Drop for Index {
    /// On exit (also by an error), the unsynced tail is synced.
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(
                "cannot sync the index journal {}: {e}",
                self.journal_path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinsync_proto::Kind;

    fn sig(n: u64) -> Known {
        Known::new(Sig {
            kind: Kind::File,
            size: n,
            mtime_ns: n as i64,
            mode: 0o644,
            ino: n,
            ctime_ns: n as i64,
            uid: 0,
            gid: 0,
            rdev: 0,
            nlink: 1,
            allocated: 0,
            xattrs: Default::default(),
        })
    }

    #[test]
    fn snapshot_plus_journal_survive_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let mut ix = Index::open(d.path(), "x").unwrap();
        assert!(ix.load().unwrap().is_none());
        let mut known = BTreeMap::new();
        known.insert(RelPath::from("a"), sig(1));
        known.insert(RelPath::from("b\nc"), sig(2));
        let h = Index::header("/l", "/r", [1, 2]);
        ix.snapshot(&h, &known).unwrap();
        ix.append(vec![("c".into(), sig(3))], vec!["a".into()])
            .unwrap();
        ix.append(vec![("d".into(), sig(4))], vec![]).unwrap();
        // a torn record at the end, as after kill -9 mid-write
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("x.journal"))
            .unwrap();
        f.write_all(&[0, 0, 0, 40, 0x92]).unwrap();
        drop(f);
        let mut ix = Index::open(d.path(), "x").unwrap();
        let l = ix.load().unwrap().unwrap();
        assert_eq!(l.header.devs, [1, 2]);
        let keys: Vec<String> = l.known.keys().map(ToString::to_string).collect();
        assert_eq!(keys, vec!["b\\nc", "c", "d"]);
    }

    /// The batches of a burst are synced once: not at each append, but
    /// when asked (the runner, once the burst settled) or when the bound of
    /// unsynced records is reached.
    #[test]
    fn the_batches_of_a_burst_are_synced_once() {
        let d = tempfile::tempdir().unwrap();
        let mut ix = Index::open(d.path(), "x").unwrap();
        ix.snapshot(&Index::header("/l", "/r", [1, 2]), &BTreeMap::new())
            .unwrap();
        assert_eq!(ix.sync_at(), None);
        for n in 0..10 {
            ix.append(vec![(format!("f{n}").as_str().into(), sig(n))], vec![])
                .unwrap();
        }
        assert_eq!(ix.syncs(), 0);
        let due = ix.sync_at().expect("a sync is due");
        assert!(due <= Instant::now() + SYNC_IDLE);
        ix.sync().unwrap();
        ix.sync().unwrap();
        assert_eq!((ix.syncs(), ix.sync_at()), (1, None));
        for n in 0..SYNC_MAX_RECORDS as u64 {
            ix.append(vec![(format!("g{n}").as_str().into(), sig(n))], vec![])
                .unwrap();
        }
        assert_eq!((ix.syncs(), ix.sync_at()), (2, None), "the bound syncs");
        ix.append(vec![("h".into(), sig(1))], vec![]).unwrap();
        drop(ix);
        let l = Index::open(d.path(), "x").unwrap().load().unwrap().unwrap();
        assert_eq!(l.known.len(), 10 + SYNC_MAX_RECORDS + 1);
    }

    /// A power loss keeps a prefix of the unsynced tail, cut anywhere, or
    /// (on some filesystems) its length with zeros for data: the index
    /// loads as the complete records before the cut.
    #[test]
    fn an_unsynced_tail_cut_anywhere_or_zeroed_loads_as_its_complete_records() {
        let d = tempfile::tempdir().unwrap();
        let h = Index::header("/l", "/r", [1, 2]);
        let mut ix = Index::open(d.path(), "x").unwrap();
        let mut known = BTreeMap::new();
        known.insert(RelPath::from("a"), sig(1));
        ix.snapshot(&h, &known).unwrap();
        let journal = d.path().join("x.journal");
        let mut ends = vec![0];
        for n in 2..6u64 {
            ix.append(vec![(format!("f{n}").as_str().into(), sig(n))], vec![])
                .unwrap();
            ends.push(fs::metadata(&journal).unwrap().len() as usize);
        }
        drop(ix);
        let full = fs::read(&journal).unwrap();
        let keys = |j: &[u8]| {
            fs::write(&journal, j).unwrap();
            let l = Index::open(d.path(), "x").unwrap().load().unwrap().unwrap();
            l.known.len()
        };
        for cut in 0..=full.len() {
            let complete = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(keys(&full[..cut]), 1 + complete, "cut at {cut}");
            let mut zeroed = full[..cut].to_vec();
            zeroed.resize(full.len(), 0);
            assert_eq!(keys(&zeroed), 1 + complete, "zeros from {cut}");
        }
    }

    /// A crash between a snapshot's rename and the journal's truncation
    /// leaves the old journal beside the new snapshot: its records must not
    /// be replayed onto it.
    #[test]
    fn old_journal_is_not_replayed_onto_a_newer_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let h = Index::header("/l", "/r", [1, 2]);
        let mut ix = Index::open(d.path(), "x").unwrap();
        let mut known = BTreeMap::new();
        known.insert(RelPath::from("a"), sig(1));
        ix.snapshot(&h, &known).unwrap();
        // The journal of generation 1 removes "a" and adds "b".
        ix.append(vec![("b".into(), sig(2))], vec!["a".into()])
            .unwrap();
        let old_journal = fs::read(d.path().join("x.journal")).unwrap();
        // A newer snapshot (generation 2) holds "a" again and "c"…
        known.insert(RelPath::from("c"), sig(3));
        ix.snapshot(&h, &known).unwrap();
        // …and the crash left the old journal in place.
        fs::write(d.path().join("x.journal"), old_journal).unwrap();
        let l = Index::open(d.path(), "x").unwrap().load().unwrap().unwrap();
        let keys: Vec<String> = l.known.keys().map(ToString::to_string).collect();
        assert_eq!(keys, vec!["a", "c"]);
    }

    #[test]
    fn the_copies_of_an_unfinished_batch_are_loaded_and_those_of_a_finished_one_are_not() {
        let d = tempfile::tempdir().unwrap();
        let h = Index::header("/l", "/r", [1, 2]);
        let mut ix = Index::open(d.path(), "x").unwrap();
        ix.snapshot(&h, &BTreeMap::new()).unwrap();
        let intent = |p: &str| Intent {
            path: p.into(),
            side: 1,
            sig: sig(7).sig,
            moved_from: None,
        };
        ix.intend(&[intent("a")]).unwrap();
        // The batch ended, with no index change to record.
        ix.append(vec![], vec![]).unwrap();
        ix.intend(&[intent("b")]).unwrap();
        // kill -9 here.
        let l = Index::open(d.path(), "x").unwrap().load().unwrap().unwrap();
        assert_eq!(l.intents, vec![intent("b")]);
    }

    /// The index is written through the descriptor of its folder: a folder
    /// swapped for another full of links (named like the index's files and
    /// aimed at root's files) receives nothing, and the index goes on in
    /// the folder that was opened.
    #[test]
    fn the_index_is_never_written_through_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let (dir, outside) = (d.path().join("index"), d.path().join("outside"));
        fs::create_dir_all(&outside).unwrap();
        let mut ix = Index::open(&dir, "x").unwrap();
        let h = Index::header("/l", "/r", [1, 2]);
        ix.snapshot(&h, &BTreeMap::new()).unwrap();
        fs::rename(&dir, d.path().join("real")).unwrap();
        fs::create_dir(&dir).unwrap();
        for n in ["x.snap", "x.snap.tmp", "x.journal"] {
            fs::write(outside.join(n), b"root's").unwrap();
            std::os::unix::fs::symlink(outside.join(n), dir.join(n)).unwrap();
        }
        ix.append(vec![("a".into(), sig(1))], vec![]).unwrap();
        let mut known = BTreeMap::new();
        known.insert(RelPath::from("b"), sig(2));
        ix.snapshot(&h, &known).unwrap();
        ix.append(vec![("c".into(), sig(3))], vec![]).unwrap();
        for n in ["x.snap", "x.snap.tmp", "x.journal"] {
            assert_eq!(fs::read(outside.join(n)).unwrap(), b"root's", "{n}");
        }
        let l = Index::open(&d.path().join("real"), "x")
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(
            l.known.keys().map(ToString::to_string).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }
}
