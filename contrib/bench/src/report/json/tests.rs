//! The `--json` output of a report built here: its keys, in order, and the
//! kind of each value.

use super::{json, BulkJson, SshJson};
use crate::error::Failure;
use crate::fidelity::attrs::AttrLatency;
use crate::fidelity::rootfs::RootfsBench;
use crate::fidelity::sparse::{SparseBench, SparseRun};
use crate::fsops::TreeCheck;
use crate::merge::{MergeBench, TwinsyncMerge};
use crate::procs::Timed;
use crate::report::ToolReport;
use crate::scenarios::{Burst, Latency, Rename, Renamed, Resources};
use crate::watch1m::{Agent, Mem, Watch1m};
use crate::workloads::delta::{DeltaBench, DeltaRun};
use crate::workloads::mixed::{MixedBench, MixedRun, MIX};

fn latency() -> Latency {
    Latency {
        samples_ms: vec![1.25, 2.5, 40.0],
    }
}

fn resources() -> Resources {
    Resources {
        main_mib: 7.5,
        children_mib: vec![3.0, 3.25],
        idle_cpu_pct: 0.1,
    }
}

fn rename(renamed: Result<Renamed, Failure>) -> Rename {
    Rename {
        bytes: 3 << 20,
        files: 12,
        copy_secs: 1.5,
        renamed,
    }
}

fn timed() -> Timed {
    Timed {
        secs: 2.0,
        rusage_maxrss_kib: 4096,
        main_hwm_kib: Some(2048),
        agents_hwm_kib: vec![1024, 1536],
    }
}

fn merge_run() -> TwinsyncMerge {
    TwinsyncMerge {
        run: timed(),
        copied: Some((0, 100)),
        scan_ms: None,
    }
}

fn sparse_run(net_kib: Option<f64>) -> SparseRun {
    SparseRun {
        secs: 0.5,
        allocated: 2 << 20,
        net_kib,
    }
}

/// Every scenario, ran or failed; one tool missing, one not run.
fn tools() -> [ToolReport; 3] {
    let mut twinsync = ToolReport::new("twinsync");
    twinsync.latency_lr = Some(Ok(latency()));
    twinsync.latency_rl = Some(Err(Failure::Timeout("no probe".into())));
    twinsync.burst = Some(Ok(Burst {
        files: 1000,
        secs: 1.5,
        write_secs: 0.25,
    }));
    twinsync.rename = Some(Ok(rename(Ok(Renamed {
        secs: 0.002,
        inodes_kept: 12,
        inodes_checked: 12,
        net_kib: Some(3.5),
    }))));
    twinsync.rename100k = Some(Ok(rename(Err(Failure::Stuck {
        cell: "never (old dir left)",
        detail: "old dir left".into(),
    }))));
    twinsync.resources = vec![
        ("latency", Ok(resources())),
        ("burst", Err(Failure::Other("died".into()))),
    ];
    twinsync.notes = vec!["a \"quoted\"\tnote".into()];
    let mut lsyncd = ToolReport::new("lsyncd");
    lsyncd.missing = Some("lsyncd: not installed".into());
    [twinsync, lsyncd, ToolReport::new("clsync")]
}

fn ssh_tools() -> [ToolReport; 2] {
    let mut twinsync = ToolReport::new_ssh("twinsync");
    twinsync.burst = Some(Err(Failure::Interrupted));
    twinsync.burst_vs_local = Some(1.25);
    [twinsync, ToolReport::new_ssh("lsyncd")]
}

fn merge() -> MergeBench {
    MergeBench {
        fs: "tmpfs".into(),
        files: 100,
        dirs: 10,
        generate_secs: 0.5,
        rsync: Some(Ok(timed())),
        first: Ok(merge_run()),
        first_check: Some(Ok(TreeCheck::default())),
        second: Some(Ok(merge_run())),
        unison: None,
        notes: Vec::new(),
    }
}

fn attrs() -> AttrLatency {
    AttrLatency {
        content: latency(),
        chmod: latency(),
        chown: None,
        setfattr: latency(),
        notes: vec!["not root".into()],
    }
}

fn sparse() -> SparseBench {
    SparseBench {
        local: Ok(sparse_run(None)),
        ssh: Some(Ok(sparse_run(Some(120.0)))),
        rsync_local: None,
        rsync_ssh: Some(Err(Failure::Other("rsync died".into()))),
        notes: Vec::new(),
    }
}

fn rootfs() -> RootfsBench {
    RootfsBench {
        source: "synthetic".into(),
        entries: 300,
        rsync: Some(Ok(timed())),
        twinsync: Ok(merge_run()),
        differences: Some(Ok([vec![">f..t...... etc/a".into()], Vec::new()])),
        notes: Vec::new(),
    }
}

fn watch1m() -> Watch1m {
    let mem = Mem {
        rss_kib: 1024,
        hwm_kib: 2048,
    };
    Watch1m {
        files: 1_000_000,
        dirs: 1000,
        max_user_watches: Some(65536),
        generate_secs: 20.0,
        live_secs: 30.0,
        brain: mem,
        agents: vec![
            Agent {
                mem,
                watches: Some(1001),
            },
            Agent { mem, watches: None },
        ],
        idle: Ok(resources()),
        inodes_kept: (1000, 999),
        sampled: 1000,
        notes: Vec::new(),
    }
}

fn delta() -> DeltaBench {
    DeltaBench {
        len: 1 << 30,
        twinsync: Ok(DeltaRun {
            copy_secs: 9.5,
            secs: 0.75,
            net_kib: Some(1100.0),
        }),
        rsync: Some(Ok(DeltaRun {
            copy_secs: 8.0,
            secs: 2.5,
            net_kib: None,
        })),
        notes: Vec::new(),
    }
}

fn mixed() -> MixedBench {
    MixedBench {
        mix: MIX,
        twinsync: Ok(MixedRun {
            write_secs: 0.5,
            secs: 1.25,
        }),
        lsyncd: Some(Err(Failure::Timeout("1999/2004 files".into()))),
        notes: Vec::new(),
    }
}

/// The key paths of a pretty-printed JSON text, in order, each with the
/// kind of its value (`merge.ratios.unison_over_rsync: null`); `[]`
/// stands for each object in an array.
fn outline(text: &str) -> String {
    let mut out = String::new();
    let mut path: Vec<&str> = Vec::new();
    for line in text.lines() {
        let item = line.trim_start();
        let depth = (line.len() - item.len()) / 2;
        if item.starts_with('{') && depth > 0 {
            path.truncate(depth - 1);
            path.push("[]");
            continue;
        }
        let Some((key, value)) = item.strip_prefix('"').and_then(|k| k.split_once("\": ")) else {
            continue;
        };
        path.truncate(depth - 1);
        let kind = match value.chars().next() {
            Some('{') => "object",
            Some('[') => "array",
            Some('"') => "string",
            Some('n') => "null",
            Some('t' | 'f') => "bool",
            _ => "number",
        };
        for (i, p) in path.iter().enumerate() {
            if i > 0 && *p != "[]" {
                out.push('.');
            }
            out.push_str(p);
        }
        if !path.is_empty() {
            out.push('.');
        }
        out.push_str(&format!("{key}: {kind}\n"));
        if matches!(value, "{" | "[") {
            path.push(key);
        }
    }
    out
}

fn render(ssh: SshJson) -> String {
    let [a, b, c] = tools();
    let (merge, attrs, sparse, rootfs, watch1m) = (
        Ok(merge()),
        Ok(attrs()),
        Ok(sparse()),
        Ok(rootfs()),
        Ok(watch1m()),
    );
    let (delta, mixed) = (Ok(delta()), Ok(mixed()));
    json(
        true,
        "/usr/bin/twinsync",
        &[&a, &b, &c],
        ssh,
        BulkJson {
            merge: Some(&merge),
            attrs: Some(&attrs),
            sparse: Some(&sparse),
            rootfs: Some(&rootfs),
            watch1m: Some(&watch1m),
            delta: Some(&delta),
            mixed: Some(&mixed),
        },
    )
    .render()
}

#[test]
fn json_has_every_figure_under_its_key() {
    let [a, b] = ssh_tools();
    let text = render(SshJson::Ran(&[&a, &b]));
    assert_eq!(outline(&text), EXPECTED, "{text}");
}

#[test]
fn json_says_why_ssh_did_not_run() {
    let text = render(SshJson::Unavailable("no sshd"));
    assert!(
        text.contains("  \"ssh\": {\n    \"available\": false,\n    \"error\": \"no sshd\"\n  },"),
        "{text}"
    );
    let text = render(SshJson::NotRun);
    assert!(text.contains("  \"ssh\": null,"), "{text}");
}

/// The outline of the `--json` output (see [`outline`]).
const EXPECTED: &str = "\
quick: bool
twinsync_bin: string
twinsync: object
twinsync.available: bool
twinsync.latency_lr: object
twinsync.latency_lr.p50_ms: number
twinsync.latency_lr.p90_ms: number
twinsync.latency_lr.samples_ms: array
twinsync.latency_rl: object
twinsync.latency_rl.error: string
twinsync.latency_rl.detail: string
twinsync.burst: object
twinsync.burst.files: number
twinsync.burst.secs: number
twinsync.burst.write_secs: number
twinsync.rename: object
twinsync.rename.mib: number
twinsync.rename.files: number
twinsync.rename.copy_secs: number
twinsync.rename.rename_ms: number
twinsync.rename.inodes_kept: number
twinsync.rename.inodes_checked: number
twinsync.rename.no_data_copied: bool
twinsync.rename.loopback_kib_approx: number
twinsync.rename100k: object
twinsync.rename100k.mib: number
twinsync.rename100k.files: number
twinsync.rename100k.copy_secs: number
twinsync.rename100k.rename_ms: null
twinsync.rename100k.rename_error: object
twinsync.rename100k.rename_error.error: string
twinsync.rename100k.rename_error.detail: string
twinsync.resources: object
twinsync.resources.main_peak_rss_mib: number
twinsync.resources.children_peak_rss_mib: array
twinsync.resources.total_peak_rss_mib: number
twinsync.resources.idle_cpu_percent: number
twinsync.resources_per_scenario: object
twinsync.resources_per_scenario.latency: object
twinsync.resources_per_scenario.latency.main_peak_rss_mib: number
twinsync.resources_per_scenario.latency.children_peak_rss_mib: array
twinsync.resources_per_scenario.latency.total_peak_rss_mib: number
twinsync.resources_per_scenario.latency.idle_cpu_percent: number
twinsync.resources_per_scenario.burst: object
twinsync.resources_per_scenario.burst.error: string
twinsync.resources_per_scenario.burst.detail: string
twinsync.notes: array
lsyncd: object
lsyncd.available: bool
lsyncd.error: string
clsync: object
clsync.available: bool
clsync.latency_lr: null
clsync.latency_rl: null
clsync.burst: null
clsync.rename: null
clsync.rename100k: null
clsync.resources: null
clsync.resources_per_scenario: object
clsync.notes: array
ssh: object
ssh.available: bool
ssh.twinsync: object
ssh.twinsync.available: bool
ssh.twinsync.latency_lr: null
ssh.twinsync.latency_rl: null
ssh.twinsync.burst: object
ssh.twinsync.burst.error: string
ssh.twinsync.burst.detail: string
ssh.twinsync.rename: null
ssh.twinsync.rename100k: null
ssh.twinsync.resources: null
ssh.twinsync.resources_per_scenario: object
ssh.twinsync.notes: array
ssh.twinsync.burst_ssh_over_local: number
ssh.lsyncd: object
ssh.lsyncd.available: bool
ssh.lsyncd.latency_lr: null
ssh.lsyncd.latency_rl: null
ssh.lsyncd.burst: null
ssh.lsyncd.rename: null
ssh.lsyncd.rename100k: null
ssh.lsyncd.resources: null
ssh.lsyncd.resources_per_scenario: object
ssh.lsyncd.notes: array
ssh.lsyncd.burst_ssh_over_local: null
merge: object
merge.fs: string
merge.files: number
merge.dirs: number
merge.generate_secs: number
merge.rsync: object
merge.rsync.secs: number
merge.rsync.peak_rss_mib: number
merge.rsync.rusage_maxrss_mib: number
merge.twinsync_first: object
merge.twinsync_first.secs: number
merge.twinsync_first.scan_ms: null
merge.twinsync_first.copied_to_left: number
merge.twinsync_first.copied_to_right: number
merge.twinsync_first.brain_peak_rss_mib: number
merge.twinsync_first.brain_peak_bytes_per_file: number
merge.twinsync_first.agents_peak_rss_mib: array
merge.twinsync_first.rusage_maxrss_mib: number
merge.twinsync_first_check: object
merge.twinsync_first_check.matches: bool
merge.twinsync_first_check.entries: number
merge.twinsync_first_check.differences: number
merge.twinsync_first_check.sampled: number
merge.twinsync_first_check.content_differences: number
merge.twinsync_first_check.mtime_differences: number
merge.twinsync_second: object
merge.twinsync_second.secs: number
merge.twinsync_second.scan_ms: null
merge.twinsync_second.copied_to_left: number
merge.twinsync_second.copied_to_right: number
merge.twinsync_second.brain_peak_rss_mib: number
merge.twinsync_second.brain_peak_bytes_per_file: number
merge.twinsync_second.agents_peak_rss_mib: array
merge.twinsync_second.rusage_maxrss_mib: number
merge.twinsync_second_copied_nothing: bool
merge.unison: null
merge.ratios: object
merge.ratios.twinsync_first_over_rsync: number
merge.ratios.unison_over_rsync: null
merge.ratios.twinsync_second_secs: number
merge.ratios.brain_bytes_per_file: number
merge.ratios.unison_bytes_per_file: null
merge.targets_met: object
merge.targets_met.first_over_rsync: bool
merge.targets_met.second_secs: bool
merge.targets_met.brain_bytes_per_file: bool
merge.notes: array
attr_latency: object
attr_latency.content: object
attr_latency.content.p50_ms: number
attr_latency.content.p90_ms: number
attr_latency.content.samples_ms: array
attr_latency.chmod: object
attr_latency.chmod.p50_ms: number
attr_latency.chmod.p90_ms: number
attr_latency.chmod.samples_ms: array
attr_latency.chmod.p50_over_content: number
attr_latency.chown: null
attr_latency.setfattr: object
attr_latency.setfattr.p50_ms: number
attr_latency.setfattr.p90_ms: number
attr_latency.setfattr.samples_ms: array
attr_latency.setfattr.p50_over_content: number
attr_latency.target_p50_over_content: number
attr_latency.notes: array
sparse: object
sparse.length_bytes: number
sparse.data_bytes: number
sparse.twinsync: object
sparse.twinsync.secs: number
sparse.twinsync.allocated_bytes: number
sparse.twinsync.net_kib: null
sparse.twinsync_ssh: object
sparse.twinsync_ssh.secs: number
sparse.twinsync_ssh.allocated_bytes: number
sparse.twinsync_ssh.net_kib: number
sparse.rsync: null
sparse.rsync_ssh: object
sparse.rsync_ssh.error: string
sparse.rsync_ssh.detail: string
sparse.target_secs: number
sparse.target_bytes_over_data: number
sparse.notes: array
rootfs_merge: object
rootfs_merge.source: string
rootfs_merge.entries: number
rootfs_merge.twinsync: object
rootfs_merge.twinsync.secs: number
rootfs_merge.twinsync.peak_rss_mib: number
rootfs_merge.twinsync.rusage_maxrss_mib: number
rootfs_merge.rsync: object
rootfs_merge.rsync.secs: number
rootfs_merge.rsync.peak_rss_mib: number
rootfs_merge.rsync.rusage_maxrss_mib: number
rootfs_merge.twinsync_over_rsync: number
rootfs_merge.target_ratio: number
rootfs_merge.differences: object
rootfs_merge.differences.left_to_right: array
rootfs_merge.differences.right_to_left: array
rootfs_merge.notes: array
watch1m: object
watch1m.files: number
watch1m.dirs: number
watch1m.max_user_watches: number
watch1m.generate_secs: number
watch1m.live_secs: number
watch1m.brain: object
watch1m.brain.rss_mib: number
watch1m.brain.hwm_mib: number
watch1m.agents: array
watch1m.agents[].rss_mib: number
watch1m.agents[].hwm_mib: number
watch1m.agents[].inotify_watches: number
watch1m.agents[].rss_mib: number
watch1m.agents[].hwm_mib: number
watch1m.agents[].inotify_watches: null
watch1m.total_rss_mib: number
watch1m.total_hwm_mib: number
watch1m.total_within_target: bool
watch1m.idle_cpu_percent: number
watch1m.sampled: number
watch1m.inodes_kept_left: number
watch1m.inodes_kept_right: number
watch1m.notes: array
delta_ssh: object
delta_ssh.length_bytes: number
delta_ssh.changed_bytes: number
delta_ssh.twinsync: object
delta_ssh.twinsync.copy_secs: number
delta_ssh.twinsync.secs: number
delta_ssh.twinsync.net_kib: number
delta_ssh.rsync: object
delta_ssh.rsync.copy_secs: number
delta_ssh.rsync.secs: number
delta_ssh.rsync.net_kib: null
delta_ssh.notes: array
mixed: object
mixed.small_files: number
mixed.small_bytes: number
mixed.large_files: number
mixed.appended_bytes: number
mixed.twinsync: object
mixed.twinsync.write_secs: number
mixed.twinsync.secs: number
mixed.lsyncd: object
mixed.lsyncd.error: string
mixed.lsyncd.detail: string
mixed.twinsync_over_lsyncd: null
mixed.notes: array
";
