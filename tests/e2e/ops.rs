//! Running it unattended: config files, logs, locks, status, signals.

use std::ffi::OsStr;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{bin, eventually, run_once, Pair};

fn run_with(p: &Pair, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    a.push(p.left.root.as_os_str());
    a.push(p.right.root.as_os_str());
    run_once(&a)
}

#[test]
fn a_config_file_sets_options_and_flags_override_it() {
    let p = Pair::new();
    let cfg = p.dir.path().join("pair.toml");
    fs::write(
        &cfg,
        format!(
            "left = {:?}\nright = {:?}\nexclude = [\"\\\\.cache$\"]\nsync_only = true\n",
            p.left.root.display().to_string(),
            p.right.root.display().to_string()
        ),
    )
    .unwrap();
    p.left.write("keep", b"k");
    p.left.write("x.cache", b"c");
    let (st, err) = run_once(&[OsStr::new("-c"), cfg.as_os_str()]);
    assert!(st.success(), "{err}");
    assert!(p.right.exists("keep"));
    assert!(
        !p.right.exists("x.cache"),
        "the config file's exclude was ignored"
    );
    // a flag overrides: --dry-run on top of the file changes nothing
    p.left.write("later", b"l");
    let (st, err) = run_once(&[OsStr::new("-c"), cfg.as_os_str(), OsStr::new("--dry-run")]);
    assert!(st.success(), "{err}");
    assert!(!p.right.exists("later"));
}

/// Issue 15: the shipped example was refused (`conflict_dir = ".conflicts"`);
/// twinsync itself must take it as it is, and with its settings shown
/// uncommented where they name no other host or file.
#[test]
fn the_shipped_example_config_is_accepted() {
    let p = Pair::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/twinsync.toml");
    p.left.write("a", b"x");
    let (st, err) = run_with(&p, &["-c", example, "--sync-only"]);
    assert!(st.success(), "{err}");
    p.right.eventually_has("a", b"x");
    let text = fs::read_to_string(example).unwrap();
    // Not the settings that name hosts, files or programs that are not here.
    let elsewhere = [
        "left",
        "right",
        "remote_host",
        "remote_path",
        "ssh_config",
        "rsync_excludes",
        "banned",
        "instance",
        "dry_run",
        // An address whose port may be taken here.
        "metrics",
    ];
    let uncommented: String = text
        .lines()
        .map(|l| {
            let setting = l.strip_prefix("# ").filter(|rest| {
                rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        && !elsewhere.contains(&k)
                })
            });
            format!("{}\n", setting.unwrap_or(l))
        })
        .collect();
    assert!(uncommented.contains("\nconflict_dir = "), "{uncommented}");
    let cfg = p.dir.path().join("example.toml");
    fs::write(&cfg, uncommented).unwrap();
    p.left.write("b", b"y");
    let (st, err) = run_with(&p, &["-c", cfg.to_str().unwrap(), "--sync-only"]);
    assert!(st.success(), "{err}");
    p.right.eventually_has("b", b"y");
}

#[test]
fn config_errors_name_the_file_line_and_key_and_start_nothing() {
    let p = Pair::new();
    let cfg = p.dir.path().join("bad.toml");
    for (text, line, key) in [
        ("left = \"/a\"\nexlude = [\"x\"]\n", 2, "exlude"),
        ("debug = \"high\"\n", 1, "debug"),
        ("\n\nexclude = [\"ok\", \"(unclosed\"]\n", 3, "exclude"),
        ("sync_only = yes\n", 1, "sync_only"),
        (
            "debug = 1\nconflict_dir = \".conflicts\"\n",
            2,
            "conflict_dir",
        ),
    ] {
        fs::write(&cfg, text).unwrap();
        let (st, err) = run_with(&p, &["-c", cfg.to_str().unwrap()]);
        assert_eq!(st.code(), Some(2), "{text}: {err}");
        let want = format!("{}:{line}: {key}", cfg.display());
        assert!(err.contains(&want), "{text}: expected {want:?} in {err}");
    }
    assert!(!p.left.path(".twinsync").exists(), "something started");
}

#[test]
fn json_logs_are_one_object_per_line_and_nothing_else() {
    let p = Pair::new();
    p.left.write("a", b"x");
    let (st, err) = run_with(&p, &["--sync-only", "--log-format", "json", "-d", "2"]);
    assert!(st.success(), "{err}");
    let mut n = 0;
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
        n += 1;
    }
    assert!(n > 2, "{err}");
}

/// `-d 3` shows the exchange with the agents (each request and answer,
/// from which side), and every JSON line names the instance it comes from.
#[test]
fn debug_3_traces_the_agents_exchange_and_json_lines_name_the_instance() {
    let p = Pair::new();
    p.left.write("a", b"x");
    let (st, err) = run_with(
        &p,
        &[
            "--sync-only",
            "--log-format",
            "json",
            "-d",
            "3",
            "--instance",
            "traced",
        ],
    );
    assert!(st.success(), "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for v in &lines {
        assert_eq!(v["span"]["instance"], "traced", "{v}");
    }
    let traced = |side: &str| {
        lines
            .iter()
            .filter(|v| v["level"] == "TRACE" && v["side"] == side && v.get("id").is_some())
            .count()
    };
    // At least a listing asked and answered on each side.
    assert!(traced("left") >= 2 && traced("right") >= 2, "{err}");
    // Not at -d 2.
    let (st, err) = run_with(&p, &["--sync-only", "--log-format", "json", "-d", "2"]);
    assert!(st.success(), "{err}");
    assert!(!err.contains("\"TRACE\""), "{err}");
}

#[test]
fn a_second_instance_on_the_same_pair_is_refused_naming_the_holder() {
    let mut p = Pair::new();
    p.start(&["--instance", "first"]);
    let (st, err) = run_with(&p, &["--instance", "second", "--sync-only"]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("in use by twinsync instance first"), "{err}");
    assert!(err.contains("pid"), "{err}");
}

#[test]
fn a_stale_lock_of_a_dead_process_is_taken_over() {
    let p = Pair::new();
    fs::create_dir_all(p.left.path(".twinsync")).unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // a pid that cannot be alive
    fs::write(
        p.left.path(".twinsync/lock"),
        format!("instance=old\nhost={}\npid=999999999\n", host.trim()),
    )
    .unwrap();
    p.left.write("f", b"x");
    let (st, err) = run_with(&p, &["--sync-only"]);
    assert!(st.success(), "{err}");
    assert!(err.contains("stale lock"), "{err}");
    assert!(p.right.exists("f"));
    assert!(!p.left.path(".twinsync/lock").exists(), "lock not released");
}

#[test]
fn status_lists_running_instances_with_state_and_counters() {
    let mut p = Pair::new();
    let rt = p.dir.path().join("run");
    p.envs.push(("TWINSYNC_RUNTIME_DIR".into(), rt.clone()));
    p.start(&["--instance", "status-test"]);
    p.left.write("s", b"1234");
    p.right.eventually_has("s", b"1234");
    let out = Command::new(bin())
        .args(["status", "--json"])
        .env("TWINSYNC_RUNTIME_DIR", &rt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one instance")).unwrap();
    assert_eq!(v["instance"], "status-test");
    assert_eq!(v["state"], "live");
    assert!(v["files"][1].as_u64().unwrap() >= 1, "{text}");
    assert!(v["echoes"].as_u64().unwrap() >= 1, "{text}");
    let out = Command::new(bin())
        .arg("status")
        .env("TWINSYNC_RUNTIME_DIR", &rt)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("status-test") && table.contains("live"),
        "{table}"
    );
    p.stop();
    let out = Command::new(bin())
        .arg("status")
        .env("TWINSYNC_RUNTIME_DIR", &rt)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no twinsync instance"));
}

#[test]
fn sigusr1_forces_a_full_remerge() {
    let mut p = Pair::new();
    p.start(&["-e", "^ignored-by-watch$"]);
    p.left.write("a", b"1");
    p.right.eventually_has("a", b"1");
    unsafe { libc::kill(p.child.as_ref().unwrap().id() as i32, libc::SIGUSR1) };
    eventually("a re-merge in the log", || {
        p.log_text().contains("SIGUSR1: full re-merge")
    });
    eventually("a rescan", || {
        p.log_text().matches("scanned both replicas").count() >= 2
    });
    p.eventually_equal();
}

#[test]
fn sighup_reloads_excludes_from_the_config_file() {
    let mut p = Pair::new();
    let cfg = p.dir.path().join("hup.toml");
    fs::write(&cfg, "exclude = [\"^secret\"]\n").unwrap();
    p.start(&["-c", cfg.to_str().unwrap()]);
    p.left.write("secret-1", b"s");
    p.left.write("open", b"o");
    p.right.eventually_has("open", b"o");
    assert!(!p.right.exists("secret-1"));
    fs::write(&cfg, "exclude = []\n").unwrap();
    unsafe { libc::kill(p.child.as_ref().unwrap().id() as i32, libc::SIGHUP) };
    p.right.eventually_has("secret-1", b"s");
}

#[test]
fn exit_on_no_events_converges_then_exits_zero() {
    let mut p = Pair::new();
    p.left.write("a", b"x");
    p.right.write("b", b"y");
    p.spawn(&["--exit-on-no-events"]);
    let st = p.wait_exit();
    assert!(st.success(), "{}", p.log_tail());
    assert_eq!(p.left.tree(), p.right.tree());
}

#[test]
fn a_banned_program_makes_it_exit_with_status_3() {
    let p = Pair::new();
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let (st, err) = run_with(&p, &["-b", "sleep"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains("banned"), "{err}");
}

#[test]
fn man_page_and_completions_are_generated() {
    let out = Command::new(bin()).arg("man").output().unwrap();
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && man.contains(".TH twinsync") && man.contains("remote\\-host"),
        "{man}"
    );
    let out = Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("_twinsync"));
}

/// Issue 15: at the default level (`-d 1`) live changes were silent and
/// nothing said the pair was live. Now one line per applied batch, and one
/// when the first merge is done.
#[test]
fn at_the_default_level_the_log_says_live_and_one_line_per_batch() {
    let mut p = Pair::new();
    p.left.write("a/one", b"1");
    p.left.write("a/two", b"22");
    let log = fs::File::create(&p.log).unwrap();
    p.child = Some(
        Command::new(bin())
            .arg(&p.left.root)
            .arg(&p.right.root)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    eventually("the live line", || {
        p.log_text().contains("live: 3 entries in sync in ")
    });
    let text = p.log_text();
    assert!(text.contains("; watching 2 directories"), "{text}");
    // The merge's batch: two files and a directory made on the right.
    assert!(
        text.contains("synced L→R 2 files (3 B), 1 change"),
        "{text}"
    );
    p.right.write("a/back", b"back!");
    eventually("the batch line", || {
        p.log_text().contains("synced R→L 1 file (5 B)")
    });
    assert_eq!(p.log_text().matches("live: ").count(), 1);
    p.stop();
}

/// Issue 15: the man page had no FILES, CONFIGURATION or EXAMPLES section
/// and referred to pages that do not exist.
#[test]
fn the_man_page_has_files_configuration_and_examples() {
    let out = Command::new(bin()).arg("man").output().unwrap();
    let man = String::from_utf8_lossy(&out.stdout);
    for section in ["FILES", "CONFIGURATION", "EXAMPLES", "SEE ALSO"] {
        assert!(man.contains(&format!("\n.SH {section}\n")), "{section}");
    }
    assert!(!man.contains("twinsync\\-flush(1)"), "{man}");
}
