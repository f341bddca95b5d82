//! The inotify backend (Linux): one watch per directory, the kernel's
//! queue read into [`Notice`]s.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Mutex;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use super::{Backend, Notice, Queue, WatchId, What};

/// What each directory is watched for.
const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::EXCL_UNLINK);

/// Notices read per call at most (the rest stays queued in the kernel).
const READ_MAX: usize = 8192;

/// The watches of one inotify instance.
pub struct InotifyBackend {
    watches: Watches,
    /// The kernel's descriptors by id (removing a watch needs it).
    descriptors: Mutex<HashMap<WatchId, WatchDescriptor>>,
}

/// The queue of that instance.
pub struct InotifyQueue {
    inotify: Inotify,
    buf: Vec<u8>,
}

/// A new inotify instance: its watches and its queue.
///
/// # Errors
/// When inotify cannot be initialised (the per-user instance limit).
pub fn new() -> io::Result<(InotifyBackend, InotifyQueue)> {
    let inotify = Inotify::init()?;
    let backend = InotifyBackend {
        watches: inotify.watches(),
        descriptors: Mutex::new(HashMap::new()),
    };
    Ok((
        backend,
        InotifyQueue {
            inotify,
            buf: vec![0; 256 * 1024],
        },
    ))
}

fn id_of(wd: &WatchDescriptor) -> WatchId {
    // Descriptors are small positive numbers.
    u64::try_from(wd.get_watch_descriptor_id()).unwrap_or(u64::MAX)
}

impl InotifyBackend {
    fn add(&self, abs: &Path, mask: WatchMask) -> io::Result<WatchId> {
        let wd = self.watches.clone().add(abs, mask)?;
        let id = id_of(&wd);
        self.descriptors.lock().expect("descriptors").insert(id, wd);
        Ok(id)
    }
}

impl Backend for InotifyBackend {
    fn watch_dir(&self, abs: &Path) -> io::Result<WatchId> {
        self.add(abs, MASK)
    }

    fn watch_created(&self, abs: &Path) -> io::Result<WatchId> {
        self.add(
            abs,
            WatchMask::CREATE | WatchMask::DONT_FOLLOW | WatchMask::ONLYDIR,
        )
    }

    fn unwatch(&self, id: WatchId) {
        if let Some(wd) = self.descriptors.lock().expect("descriptors").remove(&id) {
            // EINVAL when the kernel already dropped it: nothing to do.
            let _ = self.watches.clone().remove(wd);
        }
    }
}

/// The kernel's bits in ours.
fn what(mask: EventMask) -> What {
    let mut w = What::empty();
    for (k, ours) in [
        (EventMask::CREATE, What::CREATED),
        (EventMask::CLOSE_WRITE, What::WRITTEN),
        (EventMask::ATTRIB, What::ATTRIB),
        (EventMask::DELETE, What::DELETED),
        (EventMask::MOVED_FROM, What::MOVED_FROM),
        (EventMask::MOVED_TO, What::MOVED_TO),
        (
            EventMask::DELETE_SELF
                .union(EventMask::MOVE_SELF)
                .union(EventMask::UNMOUNT),
            What::SELF_GONE,
        ),
        (EventMask::IGNORED, What::IGNORED),
        (EventMask::Q_OVERFLOW, What::OVERFLOW),
        (EventMask::ISDIR, What::IS_DIR),
    ] {
        if mask.intersects(k) {
            w = w | ours;
        }
    }
    w
}

impl Queue for InotifyQueue {
    fn read(&mut self, out: &mut Vec<Notice>, wait_ms: i32) -> io::Result<bool> {
        if wait_ms != 0 && !wait_readable(self.inotify.as_raw_fd(), wait_ms) {
            return Ok(false);
        }
        let start = out.len();
        loop {
            match self.inotify.read_events(&mut self.buf) {
                Ok(evs) => {
                    let before = out.len();
                    out.extend(evs.map(|e| {
                        Notice {
                            watch: id_of(&e.wd),
                            what: what(e.mask),
                            cookie: e.cookie,
                            name: e
                                .name
                                .map(|n| std::os::unix::ffi::OsStrExt::as_bytes(n).to_vec()),
                        }
                    }));
                    // Keep draining while the queue has more, up to a bound.
                    if out.len() == before || out.len() - start > READ_MAX {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out.len() > start)
    }
}

/// poll(2) for readability; true when readable. `timeout_ms` -1 waits forever.
fn wait_readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) };
        if n >= 0 {
            return n > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}
