//! Tests of the config file: every error names file, line and key.
use super::*;
use crate::options::{
    ConflictPlace, LogFormat, Prefer, WatcherChoice, DEFAULT_MAX_DELETE_PERCENT, DEFAULT_TRASH_DAYS,
};

const EXAMPLE: &str = include_str!("../../../examples/twinsync.toml");

fn p(text: &str) -> Result<Options, ConfigError> {
    parse(Path::new("twinsync.toml"), text).map(|c| c.options)
}

/// The error's `(line, key, message)`, and its whole text.
fn err(text: &str) -> (usize, String, String, String) {
    match p(text) {
        Ok(c) => panic!("accepted {text:?} as {c:?}"),
        Err(e) => {
            let shown = e.to_string();
            match e {
                ConfigError::Invalid {
                    line, key, message, ..
                } => (line, key, message, shown),
                ConfigError::Read { .. } => panic!("{shown}"),
            }
        }
    }
}

#[test]
fn a_full_file_sets_every_key() {
    let text = r#"
# a comment
left = "/home/me/docs"
right = "ssh://me@host:2222/srv/docs"
remote_path = "/opt/twinsync/bin/twinsync"
no_agent_install = true
exclude = [
'(^|/)\.git(/|$)',
'\.swp$',
]
tempfiles = '\.tmp$'
rsync_excludes = "/etc/twinsync/rsync-excludes"
rsync_extra = ["--bwlimit=100", "-L"]
banned = ["backup-tool"]
debug = 2
log_format = "json"
dry_run = true
sync_only = false
skip_initial_sync = true
force = false
exit_on_no_events = true
instance = "docs_1.a-b"
prefer = "right"
trash_days = 0
conflict_dir = ".twinsync/conflicts"
max_delete_percent = 100
ssh_config = "~/.ssh/config"
metrics = "[::1]:9723"
bwlimit = "1.5M"
watcher = "poll"
poll_interval = 500
"#;
    let c = p(text).unwrap();
    assert_eq!(
        c,
        Options {
            left: Some("/home/me/docs".into()),
            right: Some("ssh://me@host:2222/srv/docs".into()),
            remote_host: None,
            remote_path: Some("/opt/twinsync/bin/twinsync".into()),
            no_agent_install: true,
            exclude: vec![r"(^|/)\.git(/|$)".into(), r"\.swp$".into()],
            tempfiles: Some(r"\.tmp$".into()),
            rsync_excludes: Some("/etc/twinsync/rsync-excludes".into()),
            rsync_extra: vec!["--bwlimit=100".into(), "-L".into()],
            banned: vec!["backup-tool".into()],
            debug: Some(2),
            log_format: Some(LogFormat::Json),
            dry_run: true,
            sync_only: false,
            skip_initial_sync: true,
            force: false,
            exit_on_no_events: true,
            instance: Some("docs_1.a-b".into()),
            prefer: Some(Prefer::Right),
            trash_days: Some(0),
            metrics: Some("[::1]:9723".parse().unwrap()),
            conflict_copies: Some(ConflictPlace::StateDir),
            max_delete: Some(100),
            ssh_config: Some("~/.ssh/config".into()),
            bwlimit: Some(1_572_864),
            watcher: Some(WatcherChoice::Poll),
            poll_interval: Some(500),
        }
    );
    // remote_host goes with a plain right path
    let c = p("right = \"/srv/docs\"\nremote_host = \"me@host\"\n").unwrap();
    assert_eq!(c.remote_host.as_deref(), Some("me@host"));
    assert_eq!(c.right.as_deref(), Some(Path::new("/srv/docs")));
}

#[test]
fn an_empty_file_is_the_default() {
    assert_eq!(p("").unwrap(), Options::default());
    assert_eq!(
        p("# only comments\n\n   \n# debug = 3\n").unwrap(),
        Options::default()
    );
}

#[test]
fn an_unknown_key_is_named_with_a_suggestion() {
    let text = "left = \"/a\"\n\n\n\n\n\nexlude = [\"x\"]\n";
    let (line, key, _, shown) = err(text);
    assert_eq!((line, key.as_str()), (7, "exlude"));
    assert_eq!(
        shown,
        "twinsync.toml:7: exlude: unknown key (did you mean `exclude`?)"
    );
    assert_eq!(
        err("dry-run = true\n").2,
        "unknown key (did you mean `dry_run`?)"
    );
    assert_eq!(err("Debug = 1\n").2, "unknown key (did you mean `debug`?)");
    assert_eq!(
        err("rsync_extras = []\n").2,
        "unknown key (did you mean `rsync_extra`?)"
    );
    // too far from anything: no suggestion
    assert_eq!(
        err("colour = \"red\"\n").3,
        "twinsync.toml:1: colour: unknown key"
    );
    // tables and dotted keys are unknown keys too, at their line
    let (line, key, msg, _) = err("debug = 1\n[options]\nx = 1\n");
    assert_eq!(
        (line, key.as_str(), msg.as_str()),
        (2, "options", "unknown key")
    );
    let (line, key, _, _) = err("\nfoo.bar = 1\n");
    assert_eq!((line, key.as_str()), (2, "foo"));
}

#[test]
fn a_wrong_type_says_what_was_expected_and_found() {
    let text = "left = \"/a\"\nright = \"/b\"\ndebug = \"high\"\n";
    assert_eq!(
        err(text).3,
        "twinsync.toml:3: debug: expected an integer from 0 to 3, found \"high\""
    );
    assert_eq!(
        err("dry_run = \"yes\"\n").3,
        "twinsync.toml:1: dry_run: expected true or false, found \"yes\""
    );
    assert_eq!(err("left = 3\n").2, "expected a path (a string), found 3");
    assert_eq!(
        err("exclude = '\\.o$'\n").2,
        "expected an array of regexes (strings), found \"\\\\.o$\""
    );
    assert_eq!(
        err("rsync_extra = \"-L\"\n").2,
        "expected an array of strings, found \"-L\""
    );
    assert_eq!(p("bwlimit = 500\n").unwrap().bwlimit, Some(512_000));
    assert_eq!(p("bwlimit = 0\n").unwrap().bwlimit, Some(0));
    assert!(err("bwlimit = \"fast\"\n")
        .2
        .ends_with("(\"500\", \"2M\"; 0: no limit), found \"fast\""));
    assert!(err("bwlimit = true\n").2.ends_with("found true"));
    let (line, key, msg, _) = err("rsync_extra = [\n  \"-L\",\n  7,\n]\n");
    assert_eq!((line, key.as_str()), (3, "rsync_extra"));
    assert_eq!(msg, "expected an array of strings; element 2 is 7");
    assert_eq!(
        err("banned = [\"\"]\n").2,
        "expected an array of program names; element 1 is \"\""
    );
    assert_eq!(
        err("log_format = \"xml\"\n").2,
        "expected \"text\" or \"json\", found \"xml\""
    );
    assert_eq!(
        err("prefer = \"newer\"\n").2,
        "expected \"left\" or \"right\", found \"newer\""
    );
    assert_eq!(
        err("trash_days = 1.5\n").2,
        "expected an integer from 0 to 4294967295, found 1.5"
    );
    assert_eq!(
        err("trash_days = -1\n").2,
        "expected an integer from 0 to 4294967295, found -1"
    );
    assert_eq!(
        err("max_delete_percent = 101\n").2,
        "expected an integer from 0 to 100, found 101"
    );
    assert_eq!(
        err("debug = [1]\n").2,
        "expected an integer from 0 to 3, found an array"
    );
    assert_eq!(
        err("[left]\npath = \"/a\"\n").3,
        "twinsync.toml:1: left: expected a path (a string), found a table"
    );
    assert_eq!(
        err("force = 1979-05-27\n").2,
        "expected true or false, found 1979-05-27"
    );
    assert_eq!(
        err("rsync_excludes = \"\"\n").2,
        "expected a path (it is empty), found \"\""
    );
}

#[test]
fn integers_in_range_in_any_notation() {
    assert_eq!(p("debug = 0").unwrap().debug, Some(0));
    assert_eq!(p("debug = +3").unwrap().debug, Some(3));
    assert_eq!(p("debug = 0x3").unwrap().debug, Some(3));
    assert_eq!(p("max_delete_percent = 1_0").unwrap().max_delete, Some(10));
    assert_eq!(
        p("trash_days = 4294967295").unwrap().trash_days,
        Some(u32::MAX)
    );
    assert!(p("trash_days = 4294967296").is_err());
    assert!(p("trash_days = 99999999999999999999999999999999999999999").is_err());
}

#[test]
fn debug_out_of_range() {
    let (line, key, msg, shown) = err("\ndebug = 4\n");
    assert_eq!((line, key.as_str()), (2, "debug"));
    assert_eq!(msg, "expected an integer from 0 to 3, found 4");
    assert_eq!(
        shown,
        "twinsync.toml:2: debug: expected an integer from 0 to 3, found 4"
    );
    assert_eq!(
        err("debug = -1").2,
        "expected an integer from 0 to 3, found -1"
    );
}

#[test]
fn a_bad_instance_name_is_refused() {
    let what = "expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . - (not . or ..)";
    for bad in ["", "my docs", "a/b", "..", ".", "é", &"x".repeat(65)] {
        let (line, key, msg, _) = err(&format!("\ninstance = {bad:?}\n"));
        assert_eq!((line, key.as_str()), (2, "instance"));
        assert_eq!(msg, format!("{what}, found {bad:?}"));
    }
    assert_eq!(err("instance = 5").2, format!("{what}, found 5"));
    for good in ["a", "docs-2024_v1.0", &"x".repeat(64), "..a"] {
        assert_eq!(
            p(&format!("instance = {good:?}"))
                .unwrap()
                .instance
                .as_deref(),
            Some(good)
        );
    }
}

#[test]
fn a_syntax_error_names_its_line_and_the_key_it_is_in() {
    let (line, key, msg, shown) = err("left = \"/a\"\nright = \"/b\"\ndebug = \n");
    assert_eq!((line, key.as_str()), (3, "debug"));
    assert!(msg.starts_with("TOML syntax error at column 9: "), "{msg}");
    assert!(
        shown.starts_with("twinsync.toml:3: debug: TOML syntax error"),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "{shown}");
    // an unclosed string
    let (line, key, _, _) = err("\n\nleft = \"/a\n");
    assert_eq!((line, key.as_str()), (3, "left"));
    // a missing comma in a multi-line array: the element's line, its key
    let (line, key, _, _) = err("exclude = [\n  'a'\n  'b',\n]\n");
    assert_eq!((line, key.as_str()), (3, "exclude"));
    // a key with no `=`
    let (line, key, msg, _) = err("debug = 1\nexlude ['x']\n");
    assert_eq!((line, key.as_str()), (2, "exlude"));
    assert!(msg.contains("expected `=`"), "{msg}");
    // a duplicate key
    let (line, key, msg, _) = err("debug = 1\n\ndebug = 2\n");
    assert_eq!((line, key.as_str()), (3, "debug"));
    assert!(msg.contains("duplicate key"), "{msg}");
    // nothing key-like: "syntax"
    let (line, key, _, _) = err("debug = 1\n[[[\n");
    assert_eq!((line, key.as_str()), (2, "syntax"));
    let (line, key, _, _) = err("debug = 1\n= 3\n");
    assert_eq!((line, key.as_str()), (2, "syntax"));
}

#[test]
fn the_first_error_in_the_file_is_reported() {
    // keys come back sorted from the parser; errors must follow the file
    let (line, key, _, _) = err("zzz = 1\ndebug = 9\naaa = 1\n");
    assert_eq!((line, key.as_str()), (1, "zzz"));
    let (line, key, _, _) = err("trash_days = -1\nbanned = 3\n");
    assert_eq!((line, key.as_str()), (1, "trash_days"));
}

#[test]
fn right_may_be_local_or_remote() {
    for good in [
        "/srv/docs",
        "relative/dir",
        "./a:b",
        "/x/a:b",
        "host:/srv/docs",
        "host:docs",
        "me@host:/srv/docs",
        "me@10.0.0.1:/srv",
        "[::1]:/srv",
        "ssh://host/srv",
        "ssh://me@host/srv",
        "ssh://me@host:2222/srv/docs",
        "ssh://me@[fe80::1]:22/srv",
    ] {
        assert_eq!(
            p(&format!("right = {good:?}")).unwrap().right.as_deref(),
            Some(Path::new(good))
        );
    }
    for (bad, why) in [
        ("", "it is empty"),
        ("host:", "there is no path after the host:"),
        (":/srv", "the host name is empty"),
        ("@host:/srv", "the user name before @ is empty"),
        ("-oProxyCommand=x:/srv", "starts with -"),
        ("me@-host:/srv", "starts with -"),
        ("my host:/srv", "holds a space"),
        ("ssh://host", "no /path after the host"),
        ("ssh://host/", "no /path after the host"),
        ("ssh://me@host:99999/srv", "not a number from 1 to 65535"),
        ("ssh://me@host:0/srv", "not a number from 1 to 65535"),
        ("ssh://me@host:+22/srv", "not a number from 1 to 65535"),
        ("ssh://me@:22/srv", "the host name is empty"),
        ("ssh://[::1/srv", "unclosed ["),
    ] {
        let (line, key, msg, _) = err(&format!("\nright = {bad:?}\n"));
        assert_eq!((line, key.as_str()), (2, "right"), "{bad}");
        assert!(
            msg.starts_with("expected a local path, host:/path, user@host:/path or ssh://"),
            "{bad}: {msg}"
        );
        assert!(msg.contains(why), "{bad}: {msg}");
    }
}

#[test]
fn remote_host_is_a_host_and_not_given_twice() {
    assert_eq!(
        p("remote_host = \"backup.example\"")
            .unwrap()
            .remote_host
            .as_deref(),
        Some("backup.example")
    );
    assert!(err("remote_host = \"-oProxyCommand=x\"")
        .2
        .contains("starts with -"));
    assert!(err("remote_host = \"\"")
        .2
        .contains("the host name is empty"));
    assert!(err("remote_host = \"a b\"").2.contains("holds a space"));
    let (line, key, msg, _) = err("right = \"h:/srv\"\nremote_host = \"h\"\n");
    assert_eq!((line, key.as_str()), (2, "remote_host"));
    assert!(msg.contains("already names a remote host"), "{msg}");
}

#[test]
fn suggestions_are_within_two_edits() {
    assert_eq!(edit_distance("", ""), 0);
    assert_eq!(edit_distance("exlude", "exclude"), 1);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("ab", ""), 2);
    assert_eq!(suggest("exlcude"), Some("exclude"));
    assert_eq!(suggest("lef"), Some("left"));
    assert_eq!(suggest("rigth"), Some("right"));
    assert_eq!(suggest("MAX-DELETE-PERCENT"), Some("max_delete_percent"));
    assert_eq!(suggest("verbose"), None);
    assert_eq!(suggest("x"), None);
}

#[test]
fn the_example_file_parses_and_documents_every_key() {
    assert_eq!(
        parse(Path::new("examples/twinsync.toml"), EXAMPLE)
            .unwrap()
            .options,
        Options::default()
    );
    // Each setting is shown commented out as "# key = value"; with those
    // lines uncommented the file must still be valid and set every key.
    let keys = Options::keys();
    let mut shown = Vec::new();
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| keys.contains(&k)) =>
            {
                shown.push(rest.split_once(" = ").unwrap().0);
                format!("{rest}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    shown.sort_unstable();
    assert_eq!(shown, keys, "each key shown once in the example");
    let c = parse(Path::new("examples/twinsync.toml"), &uncommented)
        .unwrap_or_else(|e| panic!("{e}"))
        .options;
    let Options {
        left,
        right,
        remote_host,
        remote_path,
        exclude,
        tempfiles,
        rsync_excludes,
        rsync_extra,
        banned,
        debug,
        log_format,
        dry_run,
        sync_only,
        skip_initial_sync,
        force,
        exit_on_no_events,
        instance,
        prefer,
        trash_days,
        conflict_copies,
        max_delete,
        ssh_config,
        metrics,
        bwlimit,
        no_agent_install,
        watcher,
        poll_interval,
    } = c;
    assert_eq!(watcher, Some(WatcherChoice::Auto));
    assert_eq!(
        poll_interval,
        Some(crate::options::DEFAULT_POLL_INTERVAL_MS)
    );
    assert!(left.is_some() && right.is_some() && remote_host.is_some());
    assert_eq!(bwlimit, Some(5 << 20));
    assert!(remote_path.is_some() && !exclude.is_empty() && tempfiles.is_some());
    assert!(rsync_excludes.is_some() && !rsync_extra.is_empty() && !banned.is_empty());
    assert!(instance.is_some() && ssh_config.is_some() && metrics.is_some());
    // the shown values are the defaults
    assert_eq!(debug, Some(1));
    assert_eq!(log_format, Some(LogFormat::Text));
    assert_eq!(prefer, Some(Prefer::Left));
    assert_eq!(trash_days, Some(DEFAULT_TRASH_DAYS));
    assert_eq!(max_delete, Some(DEFAULT_MAX_DELETE_PERCENT));
    assert_eq!(conflict_copies, Some(ConflictPlace::Beside));
    assert_eq!(
        tempfiles.as_deref(),
        Some(crate::options::DEFAULT_TEMPFILES)
    );
    assert!(![
        no_agent_install,
        dry_run,
        sync_only,
        skip_initial_sync,
        exit_on_no_events,
        force
    ]
    .into_iter()
    .any(|b| b));
}

/// Issue 15: `conflict_dir = ".conflicts"` (which the example showed) is
/// refused, naming the file and line like any other bad value.
#[test]
fn a_conflict_dir_other_than_the_two_places_is_refused_at_its_line() {
    let (line, key, msg, shown) = err("debug = 1\nconflict_dir = \".conflicts\"\n");
    assert_eq!((line, key.as_str()), (2, "conflict_dir"));
    assert_eq!(
        msg,
        "expected \"beside\" (NAME.conflict-… next to the file) or \".twinsync/conflicts\", \
         found \".conflicts\""
    );
    assert!(
        shown.starts_with("twinsync.toml:2: conflict_dir: "),
        "{shown}"
    );
    for (good, place) in [
        ("beside", ConflictPlace::Beside),
        (".twinsync/conflicts", ConflictPlace::StateDir),
        ("state-dir", ConflictPlace::StateDir),
    ] {
        assert_eq!(
            p(&format!("conflict_dir = {good:?}"))
                .unwrap()
                .conflict_copies,
            Some(place)
        );
    }
}

/// Every config file shipped in `examples/` is accepted as it is.
#[test]
fn every_config_file_in_examples_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
    }
    assert!(n >= 1, "no config file found in examples/");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );

    let f = dir.path().join("twinsync.toml");
    std::fs::write(&f, "debug = 2\n").unwrap();
    assert_eq!(load(&f).unwrap().options.debug, Some(2));

    std::fs::write(&f, "debug = 2\nbanned = []\nright = \"/x\"\nbogus = 1\n").unwrap();
    assert_eq!(
        load(&f).unwrap_err().to_string(),
        format!("{}:4: bogus: unknown key", f.display())
    );

    std::fs::write(&f, b"debug = 2\nleft = \"\xff\"\n").unwrap();
    assert_eq!(
        load(&f).unwrap_err().to_string(),
        format!("{}:2: syntax: the file is not valid UTF-8", f.display())
    );
}

#[test]
fn crlf_lines_and_a_bom_count_right() {
    let (line, key, _, _) = err("\u{feff}debug = 1\r\nforce = 1\r\n");
    assert_eq!((line, key.as_str()), (2, "force"));
}

#[test]
fn a_metrics_address_without_a_port_is_refused_at_its_line() {
    let (line, key, msg, _) = err("debug = 1\nmetrics = \"localhost\"\n");
    assert_eq!((line, key.as_str()), (2, "metrics"));
    assert_eq!(
        msg,
        "expected an IP address and a port, as \"127.0.0.1:9723\", found \"localhost\""
    );
}
