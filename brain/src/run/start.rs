//! Start-up: the wiring of a run (both agents, the engine, the index, the
//! status socket and metrics), and connecting to the remote agent.

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{info, warn};
use twinsync_proto::AgentOptions;

use super::phase::Phase;
use super::{Brain, Counters, Exit};
use crate::config::Settings;
use crate::engine::{Engine, Policy};
use crate::index::Index;
use crate::link::{Link, Notice, Transport};
use crate::side::Side;
use crate::status;

/// How often starting the remote agent is tried again at start-up: a
/// transient failure (sshd throttling new connections, a restart under way,
/// a master connection dying at once while sshd still drops a killed
/// brain's) is retried twice before giving up.
const START_RETRIES: u32 = 2;
/// The wait before a retry, times its number (0.5 s, then 1 s): long enough
/// for sshd to let go of the connections it throttles or drops, short
/// enough that a start-up that will fail says so within seconds.
const START_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Run a sync as `settings` say. Returns when stopped by a signal, after a
/// one-shot merge, or on a fatal error.
///
/// # Errors
/// Fatal errors: an agent that cannot start or is lost, a vanished root.
pub async fn run(settings: Settings) -> Result<Exit> {
    if let Some(p) = super::banned::banned_running(&settings.banned) {
        return Ok(Exit::Banned(p));
    }
    let (ntx, mut notices) = mpsc::unbounded_channel();
    let options = AgentOptions {
        excludes: settings.excludes.patterns().to_vec(),
        watch: !settings.sync_only,
        // A dry run changes nothing, so it neither cleans the trash nor
        // takes the lock (the agents then create no `.twinsync/`).
        trash_days: (!settings.dry_run).then_some(settings.trash_days),
        lock: (!settings.dry_run).then(|| settings.instance.clone()),
        // Root's agents give what they make its source's owner and group.
        owners: true,
        bwlimit: settings.bwlimit,
        poll_ms: settings.poll_ms,
    };
    let status: status::Shared = Arc::new(std::sync::Mutex::new(status::Status {
        instance: settings.instance.clone(),
        left: settings.left.display().to_string(),
        right: match &settings.remote {
            Some(r) => format!("{}:{}", r.display_host(), r.path.display()),
            None => settings.right.display().to_string(),
        },
        pid: std::process::id(),
        state: crate::state::State::Starting,
        ..Default::default()
    }));
    if let Some(addr) = settings.metrics {
        let bound = crate::metrics::serve(addr, Arc::clone(&status))
            .await
            .with_context(|| format!("cannot serve metrics on {addr} (--metrics)"))?;
        info!(address = %bound, "metrics at http://{bound}/metrics");
        status.lock().expect("status").metrics = Some(bound.to_string());
    }
    let roots = [settings.left.clone(), settings.right.clone()];
    let left = Link::start(
        Side::Left,
        &Transport::Local,
        settings.agent_log.as_deref(),
        roots[0].as_os_str().as_bytes(),
        options.clone(),
        ntx.clone(),
    );
    let right = async {
        let Some(spec) = &settings.remote else {
            let link = Link::start(
                Side::Right,
                &Transport::Local,
                settings.agent_log.as_deref(),
                roots[1].as_os_str().as_bytes(),
                options.clone(),
                ntx.clone(),
            )
            .await?;
            return Ok((Transport::Local, link));
        };
        let mut tries: u32 = 0;
        loop {
            let root = roots[1].as_os_str().as_bytes();
            match start_remote(spec, &settings, root, options.clone(), ntx.clone()).await {
                Ok(x) => return Ok::<_, anyhow::Error>(x),
                // No agent to be had is not transient.
                Err(e) if tries < START_RETRIES && !e.is::<crate::link::NoMatchingAgent>() => {
                    tries += 1;
                    warn!("{e:#}; trying again");
                    tokio::time::sleep(START_RETRY_DELAY * tries).await;
                }
                Err(e) => return Err(e),
            }
        }
    };
    let (l, r) = tokio::join!(left, right);
    let (right_transport, r) = r?;
    let transports = [Transport::Local, right_transport];
    let links = [Arc::new(l?), Arc::new(r)];
    // Both agents said hello: they watch as the options say.
    status.lock().expect("status").watchers = [status::WatcherBackend::of(&options); 2];
    carry_owners(&links);
    let engine = Engine::new(
        settings.excludes.compiled().clone(),
        Policy {
            prefer: settings.prefer,
            conflicts_beside: settings.conflicts_beside,
        },
    );
    let mut engine = engine;
    engine.tracing = settings.dry_run || settings.debug >= 2;
    // Live, each side's reports are ordered against the batches' writes.
    engine.set_ordered(!settings.sync_only && !settings.dry_run);
    if settings.dry_run {
        // A dry run shows the whole plan at once.
        engine.min_batch = usize::MAX;
    }
    let index_dir = roots[0].join(".twinsync").join("index");
    // A dry run creates nothing in the replicas: with no index yet, it reads
    // the empty one of a scratch folder (kept until the end of the run).
    let scratch = if settings.dry_run && !index_dir.is_dir() {
        Some(tempfile::tempdir().context(
            "cannot create a scratch folder for the dry run: point TMPDIR at a writable folder",
        )?)
    } else {
        None
    };
    // The index is reached through a descriptor of `.twinsync/index/`
    // opened with no symlink followed, in a `.twinsync/` that must be ours:
    // a replica's user who swaps it cannot aim root's writes elsewhere.
    let index = match &scratch {
        Some(d) => Index::open(d.path(), &settings.instance),
        None => twinsync_helpers::ops::open_state_dir(&roots[0], b"index")
            .map(|fd| Index::open_in(fd, &index_dir, &settings.instance)),
    }
    .context("cannot open the index in the left replica's .twinsync/")?;
    let header = Index::header(
        &roots[0].to_string_lossy(),
        &roots[1].to_string_lossy(),
        [links[0].root_dev, links[1].root_dev],
    );
    let control = crate::control::Hub::new(settings.dry_run);
    let _status_server = match status::serve(Arc::clone(&status), control.shared()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(
                "no status socket in {}: {e}",
                status::runtime_dir().display()
            );
            None
        }
    };
    let rsync = super::transfer::rsync_options(&settings);
    let mut brain = Brain {
        status,
        control,
        transports,
        options,
        notices_tx: ntx,
        index,
        header,
        scanned: [0; 2],
        phase: Phase::Merging,
        merge_started: None,
        verified: false,
        last_activity: Instant::now(),
        scan_time: std::time::Duration::ZERO,
        last_verify: Instant::now(),
        rsync,
        settings,
        engine,
        links,
        roots,
        counters: Counters::default(),
    };
    let res = brain.main_loop(&mut notices).await;
    for l in &brain.links {
        l.shutdown().await;
    }
    res
}

/// Connect to the right replica's host and start its agent on `root`: the
/// right side's transport and link, at start-up and at each reconnection.
pub(super) async fn start_remote(
    spec: &crate::remote::RemoteSpec,
    settings: &Settings,
    root: &[u8],
    options: AgentOptions,
    notices: mpsc::UnboundedSender<Notice>,
) -> Result<(Transport, Link)> {
    let session = crate::remote::connect(spec, settings.ssh_config.as_deref()).await?;
    let remote = crate::remote::install::Remote {
        session,
        host: spec.display_host(),
        program: &settings.remote_path,
        install: settings.agent_install,
    };
    remote
        .start(settings.agent_log.as_deref(), root, options, notices)
        .await
}

/// Owners and groups, and the extended attributes only root may set
/// (`trusted.*`, `security.*`: file capabilities), are part of an entry's
/// state when both agents run as root (only root can set them; otherwise a
/// difference could never be repaired). `user.*` attributes and POSIX ACLs
/// are carried whoever runs the agents (see [`twinsync_proto::XattrScope`]).
/// Said once, at start, when they are not.
fn carry_owners(links: &[Arc<Link>; 2]) {
    let carried = links.iter().all(|l| l.root);
    twinsync_proto::set_owners_carried(carried);
    if carried {
        info!(
            "numeric owners and groups, and all extended attributes (trusted.*, security.*), \
             are carried (both agents run as root)"
        );
    } else if links.iter().any(|l| l.root) {
        warn!(
            "owners, groups and the extended attributes only root may set (trusted.*, \
             security.*: file capabilities) are not carried: the {} agent does not run as root \
             (run it as root, e.g. log in as root over ssh, to carry them)",
            if links[0].root {
                Side::Right
            } else {
                Side::Left
            }
        );
    }
}
