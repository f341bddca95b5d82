//! Names of conflict copies.

use twinsync_proto::RelPath;

use crate::side::Side;

/// `dir/stem.conflict-YYYYMMDD-HHMMSS-SIDE.ext` beside `path`: the name the
/// losing version of a conflict is kept under (the stem is shortened when
/// the name would pass 255 bytes).
#[must_use]
pub fn conflict_name(path: &RelPath, now: i64, loser: Side) -> RelPath {
    conflict_name_n(path, now, loser, 0)
}

/// [`conflict_name`] with `-N` after the side when `n > 0`: the `n`-th other
/// conflict of the same path in the same second.
#[must_use]
pub fn conflict_name_n(path: &RelPath, now: i64, loser: Side, n: u32) -> RelPath {
    let (y, mo, d, h, mi, s) = twinsync_helpers::time::civil(now);
    let mut tag = format!(".conflict-{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{loser}");
    if n > 0 {
        tag.push_str(&format!("-{n}"));
    }
    let name = path.file_name();
    let split = name
        .iter()
        .rposition(|&b| b == b'.')
        .filter(|&i| i > 0 && name.len() - i <= 16);
    let (stem, ext) = match split {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, &b""[..]),
    };
    let room = 255usize.saturating_sub(tag.len() + ext.len());
    let mut n = stem[..stem.len().min(room)].to_vec();
    n.extend_from_slice(tag.as_bytes());
    n.extend_from_slice(ext);
    match path.parent() {
        Some(p) => p.join(&n),
        None => RelPath::from_bytes(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_keep_the_extension_and_fit() {
        let n = conflict_name(&"a/report.txt".into(), 1_795_000_000, Side::Right);
        assert_eq!(
            n,
            RelPath::from("a/report.conflict-20261118-110640-right.txt")
        );
        let n = conflict_name(&".bashrc".into(), 0, Side::Left);
        assert_eq!(n, RelPath::from(".bashrc.conflict-19700101-000000-left"));
        let long = "x".repeat(255);
        let n = conflict_name(&long.as_str().into(), 0, Side::Left);
        assert_eq!(n.file_name().len(), 255);
    }
}
