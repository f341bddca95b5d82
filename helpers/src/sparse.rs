//! Copies that keep holes: a sparse file (a VM image, a database file, a
//! core dump) arrives with the same holes, not as allocated zeros. From a
//! file, the data segments are found with `SEEK_DATA`/`SEEK_HOLE` and copied
//! with `copy_file_range` (in-kernel, no user-space buffer); from bytes
//! (a file sent inline), blocks of zeros are skipped. The destination's
//! length is set last, so trailing holes stay holes too.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;

/// Blocks of zeros at least this long (and aligned to it) are left as holes.
const BLOCK: usize = 4096;

/// Copy all of `from` (of length `len`) into the empty `to`, keeping holes.
///
/// # Errors
/// Failing reads or writes.
pub fn copy_file(from: &File, to: &File, len: u64) -> io::Result<()> {
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(from, SeekFrom::Data(pos)) {
            Ok(d) => d,
            // No data after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            // A filesystem without SEEK_DATA: copy everything from here.
            Err(_) => pos,
        };
        if data >= len {
            break;
        }
        let hole = rustix::fs::seek(from, SeekFrom::Hole(data))
            .unwrap_or(len)
            .min(len);
        copy_range(from, to, data, hole - data)?;
        pos = hole;
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

/// Write `data` into the empty `to`, leaving aligned blocks of zeros as
/// holes.
///
/// # Errors
/// Failing writes.
pub fn write_bytes(mut to: &File, data: &[u8]) -> io::Result<()> {
    if data.len() < 2 * BLOCK {
        return to.write_all(data);
    }
    let mut start = None;
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let zero = block.len() == BLOCK && block.iter().all(|&b| b == 0);
        match (zero, start) {
            (false, None) => start = Some(i * BLOCK),
            (true, Some(s)) => {
                to.write_all_at(&data[s..i * BLOCK], s as u64)?;
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        to.write_all_at(&data[s..], s as u64)?;
    }
    to.set_len(data.len() as u64)
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
        copy_file(&src, &dst, len).unwrap();
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

        let inline = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.path().join("i"))
            .unwrap();
        write_bytes(&inline, &a[..(8 << 20)]).unwrap();
        assert!(allocated(&inline) < 1 << 20);
        assert!(std::fs::read(d.path().join("i")).unwrap() == a[..(8 << 20)]);
    }
}
