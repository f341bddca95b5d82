//! What the filter's integration tests share: a watcher on a root, listed
//! once as the agent does, and its events handed over a channel.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use twinsync_filter::{Event, EventLoop, Excludes, Watcher, Watching};
use twinsync_proto::RelPath;

/// A watcher on `root`, listed once; its event loop is not running yet
/// (what happens meanwhile queues in the kernel).
// (Each test file compiles this module on its own; the poll tests use only
// `listed_with`.)
#[allow(dead_code)]
pub fn listed(root: &Path) -> (Arc<Watcher>, EventLoop) {
    listed_with(root, Watching::Events)
}

/// As [`listed`], watching as `how` says.
pub fn listed_with(root: &Path, how: Watching) -> (Arc<Watcher>, EventLoop) {
    let (watcher, event_loop) =
        Watcher::open(root.to_path_buf(), Excludes::new(&[]).unwrap(), Some(how)).unwrap();
    watcher
        .scan(
            &RelPath::root(),
            &mut |_| {},
            &mut |p, e| panic!("{p}: {e}"),
            None,
        )
        .unwrap();
    (watcher, event_loop.unwrap())
}

/// Run `event_loop` on a thread, handing its events over a channel, until
/// a batch holds an event for which `last` is true (or nobody listens).
pub fn forward(
    watcher: Arc<Watcher>,
    event_loop: EventLoop,
    last: fn(&Event) -> bool,
) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _keep = watcher;
        event_loop
            .run(&mut |events| {
                let mut go_on = true;
                for e in events {
                    go_on &= !last(&e);
                    go_on &= tx.send(e).is_ok();
                }
                go_on
            })
            .unwrap();
    });
    rx
}
