//! The Pacemaker resource agent `contrib/ocf/twinsync`: `ocf-tester` (from
//! Debian's resource-agents) runs its whole conformance sequence on it, and
//! the agent is driven as Pacemaker would: the monitor depths, a stop that
//! hands over (a change made just before it is on both sides after it), a
//! start whose config is wrong.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{bin, require_tool};

const OCF_ROOT: &str = "/usr/lib/ocf";

/// OCF's exit codes.
const OCF_SUCCESS: i32 = 0;
const OCF_ERR_CONFIGURED: i32 = 6;
const OCF_NOT_RUNNING: i32 = 7;

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
