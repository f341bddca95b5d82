//! Copies that keep holes: a sparse file (a VM image, a database file, a
//! core dump) arrives with the same holes, not as allocated zeros. From a
//! file, the data segments are found with `SEEK_DATA`/`SEEK_HOLE` and copied
//! with `copy_file_range` (in-kernel, no user-space buffer). A file sent
//! inline between hosts travels as the same segments (read by
//! [`data_segments`], written by [`write_extents`] at their offsets into a
//! file of the right length): its holes are neither read, sent nor
//! written. The destination's length is set apart from its data, so
//! trailing holes stay holes too.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;
use twinsync_proto::Extent;

/// Blocks of zeros at least this long (and aligned to it) are left as holes.
const BLOCK: usize = 4096;

/// The data segments of `f` (of length `len`), as (offset, length) in
/// ascending order, found with `SEEK_DATA`/`SEEK_HOLE`: everything else is
/// a hole. On a filesystem without them, all of it from where they fail.
///
/// # Errors
/// None but those of `lseek` itself (kept for the callers' `?`).
pub fn data_segments(f: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(f, SeekFrom::Data(pos)) {
            Ok(d) => d,
            // No data after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            // A filesystem without SEEK_DATA: data from here.
            Err(_) => pos,
        };
        if data >= len {
            break;
        }
        let hole = rustix::fs::seek(f, SeekFrom::Hole(data))
            .unwrap_or(len)
            .clamp(data, len);
        if hole == data {
            // Written meanwhile (the caller notices the new version): no
            // endless loop on it.
            break;
        }
        out.push((data, hole - data));
        pos = hole;
    }
    Ok(out)
}

/// Largest dense file copied by one read and one write (no hole to look
/// for, no `copy_file_range`).
const SMALL_DENSE_MAX: u64 = 64 * 1024;

/// Copy all of `from` (of length `len`, `blocks` 512-byte blocks allocated
/// as its `stat` says) into the empty `to`, keeping holes.
///
/// A small file with every byte allocated has no hole: it is copied by one
/// `pread` and one `pwrite`, not by two `lseek`s (`SEEK_DATA`/`SEEK_HOLE`),
/// a `copy_file_range` (a splice through a pipe on tmpfs) and an
/// `ftruncate` (first merge of 100k files of 1–200 bytes: most of a
/// copy's syscalls besides its create, attributes and rename).
///
/// # Errors
/// Failing reads or writes.
pub fn copy_file(from: &File, to: &File, len: u64, blocks: u64) -> io::Result<()> {
    if len <= SMALL_DENSE_MAX && blocks.saturating_mul(512) >= len {
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        return match from.read_exact_at(&mut buf, 0) {
            Ok(()) => to.write_all_at(&buf, 0),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was copied",
            )),
            Err(e) => Err(e),
        };
    }
    for (at, n) in data_segments(from, len)? {
        copy_range(from, to, at, n)?;
    }
    to.set_len(len)
}

/// Copy `n` bytes at `at` from `from` to the same place in `to`.
fn copy_range(from: &File, to: &File, at: u64, n: u64) -> io::Result<()> {
    let (mut off_in, mut off_out, mut left) = (at, at, n);
    while left > 0 {
        let want = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::copy_file_range(from, Some(&mut off_in), to, Some(&mut off_out), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was copied",
                ))
            }
            Ok(k) => left -= k as u64,
            // Across filesystems on old kernels, or a filesystem that
            // refuses: read and write.
            Err(rustix::io::Errno::XDEV | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                return copy_range_by_hand(from, to, off_in, left)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_range_by_hand(from: &File, to: &File, mut at: u64, mut left: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let k = from.read_at(&mut buf[..want], at)?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was copied",
            ));
        }
        to.write_all_at(&buf[..k], at)?;
        at += k as u64;
        left -= k as u64;
    }
    Ok(())
}

/// Fill the empty `to` with the data segments of a file sent inline (see
/// [`twinsync_proto::FileData::extents`]), `len` long: its length set
/// first, then each segment written at its offset, blocks of zeros in them
/// left as holes too (a dense file of zeros arrives sparse, as with
/// `rsync --sparse`). The caller checked the segments
/// ([`twinsync_proto::FileData::extents_valid`]).
///
/// # Errors
/// Failing writes.
pub fn write_extents(to: &File, len: u64, extents: &[Extent]) -> io::Result<()> {
    to.set_len(len)?;
    for e in extents {
        write_segment(to, e.offset, &e.data)?;
    }
    Ok(())
}

/// Write `data` at `at` into `to` (zeros there), leaving blocks of zeros
/// unwritten: holes.
fn write_segment(to: &File, at: u64, data: &[u8]) -> io::Result<()> {
    if data.len() < 2 * BLOCK {
        return to.write_all_at(data, at);
    }
    let mut start = None;
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let zero = block.len() == BLOCK && block.iter().all(|&b| b == 0);
        match (zero, start) {
            (false, None) => start = Some(i * BLOCK),
            (true, Some(s)) => {
                to.write_all_at(&data[s..i * BLOCK], at + s as u64)?;
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        to.write_all_at(&data[s..], at + s as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn allocated(f: &File) -> u64 {
        f.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn holes_stay_holes_and_the_bytes_are_the_same() {
        let d = tempfile::tempdir().unwrap();
        let src = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.path().join("s"))
            .unwrap();
        let len = 64u64 << 20;
        src.set_len(len).unwrap();
        src.write_all_at(&[7u8; 100_000], 1 << 20).unwrap();
        src.write_all_at(b"tail", 40 << 20).unwrap();
        let dst = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.path().join("d"))
            .unwrap();
        copy_file(&src, &dst, len, src.metadata().unwrap().blocks()).unwrap();
        assert_eq!(dst.metadata().unwrap().len(), len);
        assert!(
            allocated(&dst) < 4 << 20,
            "{} bytes allocated",
            allocated(&dst)
        );
        let (a, b) = (
            std::fs::read(d.path().join("s")).unwrap(),
            std::fs::read(d.path().join("d")).unwrap(),
        );
        assert!(a == b);
    }

    #[test]
    fn small_files_dense_or_all_hole_are_copied_whole() {
        let d = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(d.path().join(name))
                .unwrap()
        };
        // Dense (one read, one write), empty, and all hole (the sparse
        // path: nothing allocated on the copy either).
        for (i, (data, len)) in [(&b"some bytes"[..], 10u64), (&b""[..], 0), (&b""[..], 3000)]
            .into_iter()
            .enumerate()
        {
            let src = open(&format!("s{i}"));
            src.write_all_at(data, 0).unwrap();
            src.set_len(len).unwrap();
            let dst = open(&format!("d{i}"));
            copy_file(&src, &dst, len, src.metadata().unwrap().blocks()).unwrap();
            let got = std::fs::read(d.path().join(format!("d{i}"))).unwrap();
            let want = std::fs::read(d.path().join(format!("s{i}"))).unwrap();
            assert_eq!(got, want);
            assert_eq!(got.len() as u64, len);
            if data.is_empty() {
                assert_eq!(allocated(&dst), 0);
            }
        }
        // A source that shrank below the size it was stat'ed with.
        let src = open("short");
        src.write_all_at(b"abc", 0).unwrap();
        let dst = open("short.d");
        assert!(copy_file(&src, &dst, 10, 8).is_err());
    }

    #[test]
    fn extents_read_then_written_are_the_file_with_its_holes() {
        let d = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(d.path().join(name))
                .unwrap()
        };
        let src = open("s");
        let len = 1u64 << 30;
        src.set_len(len).unwrap();
        // Two runs of data; the second holds a megabyte of zeros.
        src.write_all_at(&[7u8; 300_000], 3 << 20).unwrap();
        let mut run = vec![9u8; 3 << 20];
        run[1 << 20..2 << 20].fill(0);
        src.write_all_at(&run, 700 << 20).unwrap();
        let segs = data_segments(&src, len).unwrap();
        let data: u64 = segs.iter().map(|s| s.1).sum();
        assert!(
            (300_000 + (3 << 20)..(4 << 20) + 16 * 4096).contains(&data),
            "{segs:?}"
        );
        let extents: Vec<Extent> = segs
            .iter()
            .map(|&(at, n)| {
                let mut buf = vec![0u8; usize::try_from(n).unwrap()];
                src.read_exact_at(&mut buf, at).unwrap();
                Extent {
                    offset: at,
                    data: serde_bytes::ByteBuf::from(buf),
                }
            })
            .collect();
        let dst = open("d");
        write_extents(&dst, len, &extents).unwrap();
        assert_eq!(dst.metadata().unwrap().len(), len);
        // The zeros inside the second run are left as a hole too.
        assert!(
            allocated(&dst) < (3 << 20) + (64 << 10),
            "{} bytes allocated",
            allocated(&dst)
        );
        let (mut a, mut b) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
        for at in [0, 2 << 20, 698 << 20, 700 << 20, len - (4 << 20)] {
            src.read_exact_at(&mut a, at).unwrap();
            dst.read_exact_at(&mut b, at).unwrap();
            assert!(a == b, "differ in the 4 MiB at {at}");
        }
        // A file of holes only: no segment, and its length alone.
        let empty = open("e");
        empty.set_len(len).unwrap();
        assert!(data_segments(&empty, len).unwrap().is_empty());
        let copy = open("c");
        write_extents(&copy, len, &[]).unwrap();
        assert_eq!((copy.metadata().unwrap().len(), allocated(&copy)), (len, 0));
    }
}
