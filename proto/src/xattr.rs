//! Extended attributes as part of an entry's state: which are carried
//! ([`XattrScope`]), their digests in a [`Sig`](crate::Sig)
//! ([`XattrDigest`]) and the lists that travel ([`Xattrs`]).
//!
//! POSIX ACLs are the `system.posix_acl_access` and
//! `system.posix_acl_default` attributes and travel byte for byte like the
//! others (their entries name numeric users and groups). Other `system.*`
//! names (NFSv4 ACLs, file-system internals) are never carried.

use serde::{Deserialize, Serialize};

use crate::owners_carried;

/// The attributes carried between two replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum XattrScope {
    /// What the owner of a file may set: `user.*` and the POSIX ACLs. Used
    /// unless both agents run as root (files an agent makes are its user's,
    /// so it can give them these; `trusted.*` it could not even read, and
    /// `security.*` it could not set).
    #[default]
    Owner,
    /// Everything root may read and set: also `trusted.*` and `security.*`
    /// (file capabilities such as `setcap cap_net_raw+ep`, SELinux labels).
    /// Used when both agents run as root (when owners are carried).
    Root,
}

/// The POSIX ACLs: carried in both scopes.
const ACL_NAMES: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];

impl XattrScope {
    /// The scope of this process: [`XattrScope::Root`] when owners are
    /// carried (see [`crate::set_owners_carried`]).
    #[must_use]
    pub fn current() -> Self {
        if owners_carried() {
            XattrScope::Root
        } else {
            XattrScope::Owner
        }
    }

    /// Whether the attribute `name` is carried in this scope.
    #[must_use]
    pub fn covers(self, name: &[u8]) -> bool {
        if name.starts_with(b"user.") || ACL_NAMES.contains(&name) {
            return true;
        }
        self == XattrScope::Root
            && (name.starts_with(b"trusted.") || name.starts_with(b"security."))
    }
}

/// Digests of an entry's extended attributes, one per [`XattrScope`]: 64
/// bits of BLAKE3 over the sorted (name, value) list of the attributes the
/// scope covers; 0 when there are none. Both are kept, so that a change of
/// scope between two runs (an agent no longer root) compares what is
/// carried now, not what was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct XattrDigest {
    /// Over the attributes of [`XattrScope::Owner`].
    pub owner: u64,
    /// Over the attributes of [`XattrScope::Root`].
    pub root: u64,
}

impl XattrDigest {
    /// No attributes.
    pub const NONE: XattrDigest = XattrDigest { owner: 0, root: 0 };

    /// The digest of the attributes `scope` covers.
    #[must_use]
    pub fn of(self, scope: XattrScope) -> u64 {
        match scope {
            XattrScope::Owner => self.owner,
            XattrScope::Root => self.root,
        }
    }
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Its full name (`user.mime_type`, `security.capability`).
    pub name: serde_bytes::ByteBuf,
    /// Its value, as stored.
    pub value: serde_bytes::ByteBuf,
}

/// The extended attributes of an entry that `scope` covers, in ascending
/// order of their names: the whole set, so that the destination sets these
/// and removes those of the scope it has and the list lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Xattrs {
    /// Which attributes the list stands for.
    pub scope: XattrScope,
    /// The attributes.
    pub list: Vec<Xattr>,
}

impl Xattrs {
    /// Those of the list that `scope` covers.
    #[must_use]
    pub fn within(self, scope: XattrScope) -> Xattrs {
        Xattrs {
            scope,
            list: self
                .list
                .into_iter()
                .filter(|x| scope.covers(&x.name))
                .collect(),
        }
    }

    /// True when the list holds only names of its scope, each once, in
    /// ascending order (what an agent sends is checked with it).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.list.iter().all(|x| self.scope.covers(&x.name))
            && self.list.windows(2).all(|w| w[0].name < w[1].name)
    }
}
