//! Remote replicas: parsing `host:/path`, `user@host:/path`,
//! `ssh://user@host:port/path` (and psync's `-r host`), and opening the one
//! multiplexed ssh connection per remote through the system's OpenSSH (so
//! `~/.ssh/config`, keys, agents and ProxyJump apply).

pub mod install;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Seconds the ssh master stays up with no session open (our agent's session
/// stays open while the brain runs).
const MASTER_IDLE: std::num::NonZeroUsize = std::num::NonZeroUsize::new(5).expect("not zero");

/// Where a remote replica lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// `[user@]host`.
    pub host: String,
    /// Port, when given in an `ssh://` URL.
    pub port: Option<u16>,
    /// The root on that host.
    pub path: PathBuf,
}

impl RemoteSpec {
    /// `[user@]host[:port]` for messages.
    #[must_use]
    pub fn display_host(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Parse a replica argument: `Some` for a remote one, `None` for a local path.
/// With `remote_host` (psync's `-r`), `arg` is a path on that host.
///
/// # Errors
/// A malformed `ssh://` URL or an empty host or path.
pub fn parse(arg: &str, remote_host: Option<&str>) -> Result<Option<RemoteSpec>, String> {
    let spec = parse_unchecked(arg, remote_host)?;
    if let Some(s) = &spec {
        check_host(&s.host).map_err(|e| format!("{arg}: {e}"))?;
    }
    Ok(spec)
}

/// A `[user@]host` that ssh and rsync can only take for a destination: it
/// goes into their argument lists, where one starting with `-` would be an
/// option (`-oProxyCommand=…` runs a command), and openssh's master
/// connection puts no `--` before it.
fn check_host(host: &str) -> Result<(), String> {
    let (user, name) = host.split_once('@').unwrap_or(("", host));
    let bad =
        |s: &str| s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c.is_control());
    if name.is_empty() || bad(name) || bad(user) || name.contains('@') {
        return Err(format!(
            "refused host {host:?}: a host or user may not start with `-` or contain spaces or \
             control characters"
        ));
    }
    Ok(())
}

fn parse_unchecked(arg: &str, remote_host: Option<&str>) -> Result<Option<RemoteSpec>, String> {
    if let Some(h) = remote_host {
        return Ok(Some(RemoteSpec {
            host: h.to_string(),
            port: None,
            path: PathBuf::from(arg),
        }));
    }
    if let Some(rest) = arg.strip_prefix("ssh://") {
        let slash = rest
            .find('/')
            .ok_or_else(|| format!("{arg}: an ssh:// URL needs a /path"))?;
        let (authority, path) = rest.split_at(slash);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h.to_string(),
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("{arg}: bad port {p:?}"))?,
                ),
            ),
            _ => (authority.to_string(), None),
        };
        if host.is_empty() || host.ends_with('@') {
            return Err(format!("{arg}: no host in the URL"));
        }
        return Ok(Some(RemoteSpec {
            host,
            port,
            path: PathBuf::from(path),
        }));
    }
    // rsync's rule: a colon before any slash means host:path.
    if let Some(colon) = arg.find(':') {
        let (host, path) = (&arg[..colon], &arg[colon + 1..]);
        if !host.contains('/') && !host.is_empty() {
            if path.is_empty() {
                return Err(format!(
                    "{arg}: give the remote root, e.g. {host}:/srv/data"
                ));
            }
            return Ok(Some(RemoteSpec {
                host: host.to_string(),
                port: None,
                path: PathBuf::from(path),
            }));
        }
    }
    Ok(None)
}

/// Open the multiplexed connection.
///
/// # Errors
/// When ssh cannot connect or authenticate; the message says how ssh failed.
pub async fn connect(
    spec: &RemoteSpec,
    ssh_config: Option<&std::path::Path>,
) -> Result<Arc<openssh::Session>> {
    let mut b = openssh::SessionBuilder::default();
    b.known_hosts_check(openssh::KnownHosts::Add)
        // The master daemonizes (`ssh -f`: its own session, so neither our
        // process group nor a parent-death signal reaches it), and by
        // default it stays forever. It serves us alone: once no session has
        // been open for a few seconds (a brain killed with -9 closes them
        // all), it exits on its own.
        .control_persist(openssh::ControlPersist::IdleFor(MASTER_IDLE))
        .connect_timeout(Duration::from_secs(10))
        .server_alive_interval(Duration::from_secs(5));
    if let Some(p) = spec.port {
        b.port(p);
    }
    if let Some(c) = ssh_config {
        b.config_file(c);
    }
    let (user, host) = match spec.host.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, spec.host.as_str()),
    };
    if let Some(u) = user {
        b.user(u.to_string());
    }
    let session = b
        .connect_mux(host)
        .await
        .with_context(|| format!("cannot connect to {} over ssh", spec.display_host()))?;
    Ok(Arc::new(session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_forms() {
        let p = |s: &str| parse(s, None).unwrap();
        assert_eq!(p("/srv/data"), None);
        assert_eq!(p("./a:b"), None);
        assert_eq!(p("host:/srv/data").unwrap().host, "host");
        let r = p("user@host:/srv/d").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path.to_str().unwrap()),
            ("user@host", "/srv/d")
        );
        let r = p("ssh://user@host:2222/srv/data").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.path.to_str().unwrap()),
            ("user@host", Some(2222), "/srv/data")
        );
        let r = parse("/srv/data", Some("host")).unwrap().unwrap();
        assert_eq!(
            (r.host.as_str(), r.path.to_str().unwrap()),
            ("host", "/srv/data")
        );
        assert!(parse("ssh://host", None).is_err());
        assert!(parse("ssh://host:x/p", None).is_err());
        assert!(parse("host:", None).is_err());
    }

    #[test]
    fn option_injection_through_the_host_is_refused() {
        for bad in [
            "-oProxyCommand=x:/srv",
            "ssh://-oProxyCommand=x/srv",
            "-l:/srv",
            "user@-oProxyCommand=x:/srv",
            "-x@host:/srv",
            "ho st:/srv",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
        assert!(parse("/srv/data", Some("-oProxyCommand=touch /tmp/x")).is_err());
        assert!(parse("/srv/data", Some("--")).is_err());
        assert!(parse("host-1:/srv", None).is_ok());
    }
}
