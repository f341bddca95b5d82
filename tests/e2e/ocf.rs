//! The Pacemaker resource agent `contrib/ocf/twinsync`: `ocf-tester` (from
//! Debian's resource-agents) runs its whole conformance sequence on it, and
//! the agent is driven as Pacemaker would: the monitor depths, a stop that
//! hands over (a change made just before it is on both sides after it), a
//! start whose config is wrong, a reload, a monitor while the remote is
//! unreachable.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{bin, eventually, require_tool};
use crate::sshd::Sshd;

const OCF_ROOT: &str = "/usr/lib/ocf";

/// OCF's exit codes.
const OCF_SUCCESS: i32 = 0;
const OCF_ERR_CONFIGURED: i32 = 6;
const OCF_NOT_RUNNING: i32 = 7;
const OCF_DEGRADED: i32 = 190;

/// One resource: its replicas, config, runtime and pid directories, and a
/// copy of the agent that `nobody` may run (ocf-tester checks that).
struct Resource {
    dir: tempfile::TempDir,
    agent: PathBuf,
    instance: String,
}

impl Resource {
    fn new(instance: &str) -> Resource {
        require_tool("ocf-tester", "resource-agents");
        require_tool("xmllint", "libxml2-utils");
        assert!(
            Path::new(OCF_ROOT)
                .join("lib/heartbeat/ocf-shellfuncs")
                .is_file(),
            "ocf-shellfuncs is missing: apt-get install resource-agents (.ci/run installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("twinsync-ocf")
            .tempdir()
            .unwrap();
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["left", "right", "run", "rsctmp"] {
            fs::create_dir(d.join(sub)).unwrap();
        }
        fs::write(
            d.join("sync.toml"),
            format!(
                "left = {:?}\nright = {:?}\n",
                d.join("left").display(),
                d.join("right").display()
            ),
        )
        .unwrap();
        let agent = d.join("twinsync-agent");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        fs::copy(repo.join("contrib/ocf/twinsync"), &agent).unwrap();
        fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).unwrap();
        Resource {
            dir,
            agent,
            instance: instance.to_string(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The resource's parameters, as `name=value`.
    fn params(&self) -> Vec<(String, String)> {
        [
            ("instance", self.instance.clone()),
            ("config", self.path("sync.toml").display().to_string()),
            ("binary", bin().to_string()),
            ("runtime_dir", self.path("run").display().to_string()),
            ("logfile", self.path("twinsync.log").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("OCF_ROOT", OCF_ROOT)
            .env("HA_RSCTMP", self.path("rsctmp"))
            .env("OCF_RESOURCE_INSTANCE", format!("{}-rsc", self.instance));
    }

    /// `AGENT ACTION` as Pacemaker runs it, at `depth`, with `extra`
    /// parameters over the usual ones.
    fn run(&self, action: &str, depth: u8, extra: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(&self.agent);
        self.env(&mut cmd);
        for (k, v) in self.params() {
            cmd.env(format!("OCF_RESKEY_{k}"), v);
        }
        for (k, v) in extra {
            cmd.env(format!("OCF_RESKEY_{k}"), v);
        }
        cmd.env("OCF_CHECK_LEVEL", depth.to_string())
            .env("OCF_RESKEY_CRM_meta_timeout", "60000")
            .arg(action)
            .output()
            .unwrap()
    }

    /// `run`, which must exit with `code`.
    fn expect(&self, action: &str, depth: u8, code: i32) -> Output {
        let out = self.run(action, depth, &[]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{action} (depth {depth}): {}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(self.path("twinsync.log")).unwrap_or_default()
        );
        out
    }
}

impl Drop for Resource {
    fn drop(&mut self) {
        // Never leave an instance behind a failed test.
        let _ = self.run("stop", 0, &[]);
    }
}

#[test]
fn ocf_tester_passes_the_resource_agent() {
    let r = Resource::new("ocf-tester");
    let mut cmd = Command::new("ocf-tester");
    r.env(&mut cmd);
    cmd.args(["-n", "twinsync-rsc"]);
    for (k, v) in r.params() {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    let out = cmd.arg(&r.agent).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("passed all tests"),
        "ocf-tester: {}:\n{text}\ntwinsync log:\n{}",
        out.status,
        fs::read_to_string(r.path("twinsync.log")).unwrap_or_default()
    );
    // Its run left nothing running.
    r.expect("monitor", 0, OCF_NOT_RUNNING);
}

#[test]
fn ocf_stop_hands_over_after_monitors_at_every_depth() {
    let r = Resource::new("ocf-handover");
    r.expect("validate-all", 0, OCF_SUCCESS);
    r.expect("monitor", 0, OCF_NOT_RUNNING);
    r.expect("start", 0, OCF_SUCCESS);
    for depth in [0, 10, 20] {
        r.expect("monitor", depth, OCF_SUCCESS);
    }
    // Changes on both sides, then at once the stop: the flush in it has
    // synced them before the instance exits.
    fs::write(r.path("left/from-left"), b"left data").unwrap();
    fs::write(r.path("right/from-right"), b"right data").unwrap();
    let out = r.expect("stop", 0, OCF_SUCCESS);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("flushed"), "{said}");
    assert_eq!(fs::read(r.path("right/from-left")).unwrap(), b"left data");
    assert_eq!(fs::read(r.path("left/from-right")).unwrap(), b"right data");
    r.expect("monitor", 0, OCF_NOT_RUNNING);
    assert!(!r.path("rsctmp/twinsync-ocf-handover.pid").exists());
    // A stopped resource stops again.
    r.expect("stop", 0, OCF_SUCCESS);
}

#[test]
fn ocf_start_with_a_bad_config_is_a_configuration_error() {
    let r = Resource::new("ocf-badconfig");
    fs::write(
        r.path("sync.toml"),
        format!(
            "left = {:?}\nright = \"/nonexistent/twinsync-root\"\n",
            r.path("left")
        ),
    )
    .unwrap();
    let out = r.expect("start", 0, OCF_ERR_CONFIGURED);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("does not exist"), "{said}");
    r.expect("monitor", 0, OCF_NOT_RUNNING);
    // A missing config file is named by validate-all.
    let out = r.run("validate-all", 0, &[("config", "/nonexistent.toml")]);
    assert_eq!(out.status.code(), Some(5), "not installed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn ocf_reload_takes_new_excludes_and_needs_a_running_instance() {
    let r = Resource::new("ocf-reload");
    let meta = r.expect("meta-data", 0, OCF_SUCCESS);
    let meta = String::from_utf8_lossy(&meta.stdout);
    assert!(meta.contains("<action name=\"reload\""), "{meta}");
    r.expect("reload", 0, OCF_NOT_RUNNING);
    let roots = format!(
        "left = {:?}\nright = {:?}\n",
        r.path("left").display(),
        r.path("right").display()
    );
    fs::write(
        r.path("sync.toml"),
        format!("{roots}exclude = ['\\.held$']\n"),
    )
    .unwrap();
    fs::write(r.path("left/a.held"), b"held back").unwrap();
    fs::write(r.path("left/a.txt"), b"synced").unwrap();
    r.expect("start", 0, OCF_SUCCESS);
    let flush = Command::new(bin())
        .args(["flush", "ocf-reload", "--timeout", "30"])
        .env("TWINSYNC_RUNTIME_DIR", r.path("run"))
        .output()
        .unwrap();
    assert!(flush.status.success(), "{flush:?}");
    assert_eq!(fs::read(r.path("right/a.txt")).unwrap(), b"synced");
    assert!(!r.path("right/a.held").exists(), "excluded at start");
    // The exclude dropped from the file: a reload syncs what it held back.
    fs::write(r.path("sync.toml"), &roots).unwrap();
    r.expect("reload", 0, OCF_SUCCESS);
    eventually("the file no longer excluded synced", || {
        fs::read(r.path("right/a.held")).is_ok_and(|d| d == b"held back")
    });
    r.expect("monitor", 20, OCF_SUCCESS);
    r.expect("stop", 0, OCF_SUCCESS);
}

#[test]
fn ocf_monitor_says_degraded_while_the_remote_is_unreachable() {
    let Some(sshd) = Sshd::start() else { return };
    let r = Resource::new("ocf-degraded");
    let ssh_config = r.path("ssh_config");
    let good = fs::read_to_string(&sshd.ssh_config).unwrap();
    fs::write(&ssh_config, &good).unwrap();
    fs::write(
        r.path("sync.toml"),
        format!(
            "left = {:?}\nright = \"{}:{}\"\nssh_config = {:?}\nremote_path = {:?}\n",
            r.path("left").display(),
            sshd.host,
            r.path("right").display(),
            ssh_config.display(),
            bin()
        ),
    )
    .unwrap();
    r.expect("start", 0, OCF_SUCCESS);
    r.expect("monitor", 10, OCF_SUCCESS);
    // The remote becomes unreachable: its port closed in the config, every
    // open connection cut.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = format!("Port {}", sshd.port);
    assert!(good.contains(&port), "{good}");
    fs::write(&ssh_config, good.replace(&port, &format!("Port {closed}"))).unwrap();
    sshd.kill_connections();
    eventually("the monitor at depth 10 to say degraded", || {
        r.run("monitor", 10, &[]).status.code() == Some(OCF_DEGRADED)
    });
    // Running all the same, and nothing waits longer than max_lag.
    r.expect("monitor", 0, OCF_SUCCESS);
    r.expect("monitor", 20, OCF_DEGRADED);
    // A change waits longer than max_lag: depth 20 fails.
    fs::write(r.path("left/waiting"), b"w").unwrap();
    eventually("the monitor at depth 20 to fail on the lag", || {
        r.run("monitor", 20, &[("max_lag", "0")]).status.code() == Some(1)
    });
    // The remote back: healthy again, the change across.
    fs::write(&ssh_config, &good).unwrap();
    eventually("the monitor at depth 10 to succeed again", || {
        r.run("monitor", 10, &[]).status.code() == Some(OCF_SUCCESS)
    });
    eventually("the change made while apart synced", || {
        fs::read(r.path("right/waiting")).is_ok_and(|d| d == b"w")
    });
    r.expect("stop", 0, OCF_SUCCESS);
}
