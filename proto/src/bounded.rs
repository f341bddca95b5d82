//! Bounded lists: a request's list of paths, files or operations is refused
//! while it is decoded once it passes [`crate::MAX_ITEMS`], before it can
//! take memory (the frame limit alone lets millions of tiny paths through).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

struct Bounded<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} items", crate::MAX_ITEMS)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0);
        if hint > crate::MAX_ITEMS {
            return Err(A::Error::invalid_length(hint, &self));
        }
        let mut v = Vec::with_capacity(hint.min(4096));
        while let Some(x) = seq.next_element()? {
            if v.len() == crate::MAX_ITEMS {
                return Err(A::Error::invalid_length(v.len() + 1, &self));
            }
            v.push(x);
        }
        Ok(v)
    }
}

/// `deserialize_with` for a `Vec` of at most [`crate::MAX_ITEMS`] items.
///
/// # Errors
/// A longer list, or the items' own errors.
pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(Bounded(PhantomData))
}
