//! The invariants checked once the pair settled: the private subtrees equal
//! their models (2, 4), each side's last write to a shared path is still
//! somewhere (3), the background verification repaired nothing (6).

use std::collections::HashMap;
use std::path::Path;

use super::shared::{Shared, SharedOp, Side};
use crate::harness::{self, Entry, Tree};

/// The problems found with the settled trees `lt` and `rt` of the replicas
/// at `left` and `right`, given what the sides did and the last status:
/// a heading line for each invariant broken, then its details.
pub(super) fn invariants(
    sides: &[Side; 2],
    shared: &Shared,
    (lt, rt): (&Tree, &Tree),
    (left, right): (&Path, &Path),
    last_status: Option<&serde_json::Value>,
) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();

    // 2 and 4: private subtrees hold exactly their models, on both sides (a
    // private path deleted last is absent: no deletion undone).
    for s in sides {
        problems.extend(s.private.check(lt, "L"));
        problems.extend(s.private.check(rt, "R"));
    }
    if !problems.is_empty() {
        problems.insert(
            0,
            "invariants 2/4: private subtrees differ from their models:".into(),
        );
    }

    // 3: each side's last write to a shared path is still somewhere.
    let mut p3 = Vec::new();
    {
        let ops = shared.ops.lock().unwrap();
        let in_tree: Vec<&Vec<u8>> = lt
            .values()
            .chain(rt.values())
            .filter_map(|e| match e {
                Entry::File { data, .. } => Some(data),
                _ => None,
            })
            .collect();
        let mut kept = Vec::new();
        for root in [left, right] {
            kept.extend(harness::contents_below(&root.join(".twinsync/trash")));
            kept.extend(harness::contents_below(&root.join(".twinsync/conflicts")));
        }
        let mut last: HashMap<(usize, &str), &SharedOp> = HashMap::new();
        for op in ops.iter() {
            last.insert((op.side, op.path.as_str()), op);
        }
        for ((side, path), op) in &last {
            let Some(data) = &op.wrote else { continue };
            let other_after = ops
                .iter()
                .any(|o| o.side != *side && o.path == *path && o.end > op.start);
            let found_tree = in_tree.contains(&data);
            let found_kept = kept.iter().any(|d| d == data);
            // The other side renamed the path away after the write (maybe
            // after it arrived there: then it moved the write along), and
            // the destination was written, deleted or renamed onto since:
            // the write's fate was decided there, by a user who saw it.
            let moved_on = ops.iter().any(|o| {
                o.side != *side
                    && o.path == *path
                    && o.end > op.start
                    && o.moved_to.as_ref().is_some_and(|q| {
                        ops.iter()
                            .any(|x| x.path == *q && x.start > o.start && x.moved_to.is_none())
                    })
            });
            if moved_on && !found_tree && !found_kept {
                continue;
            }
            let who = if *side == 0 { "left" } else { "right" };
            if !(found_tree || (other_after && found_kept)) {
                p3.push(format!(
                    "  {who}'s last write to {path} {:?} (len {}) is {}{}",
                    harness::short(data),
                    data.len(),
                    if found_kept {
                        "only in .twinsync trash/conflicts"
                    } else {
                        "nowhere"
                    },
                    if other_after {
                        ""
                    } else {
                        ", though the other side did not touch that path after it"
                    }
                ));
            }
        }
    }
    if !p3.is_empty() {
        problems.push("invariant 3: a side's last write to a shared path was lost:".into());
        problems.extend(p3);
    }

    // 6: the background verification repaired nothing.
    // TODO(#10): once `status --json` always has `repairs` (being added),
    // make its absence a failure too; for now it is checked when present.
    if let Some(r) = last_status
        .and_then(|s| s.get("repairs"))
        .and_then(|v| v.as_u64())
    {
        if r != 0 {
            problems.push(format!(
                "invariant 6: status reports repairs = {r} (a divergence was repaired)"
            ));
        }
    }
    problems
}
