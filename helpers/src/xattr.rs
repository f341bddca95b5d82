//! Giving an entry the extended attributes of its source: the list read
//! there (see [`twinsync_proto::Xattrs`]) replaces those of its scope.

use std::io;

use twinsync_filter::xattr;
pub use twinsync_filter::xattr::{read, Target};
use twinsync_proto::Xattrs;

/// Make the attributes of `want.scope` that `t` has exactly `want.list`:
/// those missing from the list are removed, the others set (an attribute
/// already holding its value is left alone: a set changes the ctime, which
/// would be reported as a change). Names outside the scope are never
/// touched. The caller sets them after the owner (a chown clears
/// `security.capability`) and after the content (so does a write).
///
/// # Errors
/// Failing `setxattr`/`removexattr`; a file system without extended
/// attributes when the list is not empty.
pub fn apply(t: Target<'_>, want: &Xattrs) -> io::Result<()> {
    let have = xattr::read(t, want.scope)?;
    for h in &have.list {
        if !want.list.iter().any(|w| w.name == h.name) {
            t.remove(&h.name)
                .map_err(|e| named(&h.name, "removing", e))?;
        }
    }
    for w in want.list.iter().filter(|w| want.scope.covers(&w.name)) {
        if have.list.contains(w) {
            continue;
        }
        t.set(&w.name, &w.value)
            .map_err(|e| named(&w.name, "setting", e))?;
    }
    Ok(())
}

/// The error of one attribute, saying which and what to do when the file
/// system has none.
fn named(name: &[u8], what: &str, e: io::Error) -> io::Error {
    let name = String::from_utf8_lossy(name);
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return io::Error::new(
            e.kind(),
            format!(
                "{what} extended attribute {name}: not supported by this file system or for \
                 this kind of entry (mount it with extended attributes and ACLs, or exclude \
                 the path)"
            ),
        );
    }
    io::Error::new(e.kind(), format!("{what} extended attribute {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinsync_proto::{Xattr, XattrScope};

    fn x(name: &str, value: &str) -> Xattr {
        Xattr {
            name: serde_bytes::ByteBuf::from(name.as_bytes().to_vec()),
            value: serde_bytes::ByteBuf::from(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn the_list_replaces_the_attributes_of_its_scope_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let t = Target::Link(&f);
        t.set(b"user.gone", b"1").unwrap();
        t.set(b"user.kept", b"1").unwrap();
        let want = Xattrs {
            scope: XattrScope::Owner,
            list: vec![x("user.kept", "2"), x("user.new", "3")],
        };
        apply(t, &want).unwrap();
        assert_eq!(xattr::read(t, XattrScope::Owner).unwrap(), want);
        apply(t, &Xattrs::default()).unwrap();
        assert!(xattr::read(t, XattrScope::Root).unwrap().list.is_empty());
    }
}
