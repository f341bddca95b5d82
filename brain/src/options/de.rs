//! How the config file's values are read: serde `deserialize_with` readers
//! that check each value and, when it is wrong, say what was expected and
//! what was found (`expected an integer from 0 to 3, found "high"`).
//!
//! Each reader takes whatever TOML value is there as a [`Found`] and checks
//! it. The check runs inside the value's own deserializer, so toml gives the
//! error that value's span (for an array, the offending element's): the line
//! [`crate::config_file`] reports. Regexes are only checked for being strings
//! here; they are compiled once, with the flags', by [`crate::excludes`].

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use clap::ValueEnum;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::address;
use super::{ConflictPlace, MAX_INSTANCE_LEN};

/// A value as found in the file, shown after "found" in messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// A string.
    Str(String),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A TOML date or time, as written.
    Date(String),
    /// An array.
    Array,
    /// A table.
    Table,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Str(s) => write!(f, "{s:?}"),
            Found::Int(i) => write!(f, "{i}"),
            Found::Float(x) => write!(f, "{x}"),
            Found::Bool(b) => write!(f, "{b}"),
            Found::Date(d) => f.write_str(d),
            Found::Array => f.write_str("an array"),
            Found::Table => f.write_str("a table"),
        }
    }
}

/// A table, or a TOML date (which toml hands over as a one-key table).
fn table_or_date<'de, A: MapAccess<'de>>(map: A) -> Found {
    match toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map)) {
        Ok(d) => Found::Date(d.to_string()),
        Err(_) => Found::Table,
    }
}

/// The visits of every scalar and of a table: each builds a [`Found`] and
/// hands it to the visitor's `found`.
macro_rules! visit_found {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            self.found(Found::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.found(Found::Int(v.into()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.found(Found::Int(v.into()))
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            self.found(Found::Int(v))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            self.found(Found::Int(i128::try_from(v).unwrap_or(i128::MAX)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            self.found(Found::Float(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            self.found(Found::Str(v.to_owned()))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            self.found(table_or_date(map))
        }
    };
}

/// Takes any value as a [`Found`] and checks it with `F` (`Err`: the message).
struct Check<T, F>(F, PhantomData<T>);

impl<T, F: FnOnce(Found) -> Result<T, String>> Check<T, F> {
    fn found<E: de::Error>(self, f: Found) -> Result<T, E> {
        (self.0)(f).map_err(E::custom)
    }
}

impl<'de, T, F: FnOnce(Found) -> Result<T, String>> Visitor<'de> for Check<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    visit_found!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.found(Found::Array)
    }
}

/// Read any value and check it with `f`.
fn check<'de, D: Deserializer<'de>, T>(
    d: D,
    f: impl FnOnce(Found) -> Result<T, String>,
) -> Result<T, D::Error> {
    d.deserialize_any(Check(f, PhantomData))
}

/// Read a value that `conv` turns into a `T`; else "expected `what`, found …".
fn expect<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &str,
    conv: impl FnOnce(&Found) -> Option<T>,
) -> Result<T, D::Error> {
    check(d, |f| {
        conv(&f).ok_or_else(|| format!("expected {what}, found {f}"))
    })
}

/// Read a string that `ok` accepts (`Err`: why not, put in brackets after
/// `what`; `not_a_string` stands for
/// `what` for anything but a string).
fn string<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
    not_a_string: &str,
    ok: impl FnOnce(&str) -> Result<(), String>,
) -> Result<String, D::Error> {
    check(d, |f| match f {
        Found::Str(s) => match ok(&s) {
            Ok(()) => Ok(s),
            Err(why) => Err(format!("expected {what} ({why}), found {s:?}")),
        },
        other => Err(format!("expected {not_a_string}, found {other}")),
    })
}

/// An array of strings that each pass `ok`; `what` names them. A bad element
/// is reported at its own line, with its 1-based place.
struct Strings {
    what: &'static str,
    ok: fn(&str) -> bool,
}

impl Strings {
    fn found<E: de::Error>(self, f: Found) -> Result<Vec<String>, E> {
        Err(E::custom(format!(
            "expected an array of {}, found {f}",
            self.what
        )))
    }
}

impl<'de> Visitor<'de> for Strings {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {}", self.what)
    }

    visit_found!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element_seed(Element {
            list: &self,
            place: out.len() + 1,
        })? {
            out.push(s);
        }
        Ok(out)
    }
}

/// One element of a [`Strings`] array, read inside its own deserializer (so
/// an error carries the element's span).
struct Element<'a> {
    list: &'a Strings,
    place: usize,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        check(d, |f| match f {
            Found::Str(s) if (self.list.ok)(&s) => Ok(s),
            other => Err(format!(
                "expected an array of {}; element {} is {other}",
                self.list.what, self.place
            )),
        })
    }
}

/// `true` or `false`.
///
/// # Errors
/// Anything else.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    expect(d, "true or false", |f| match f {
        Found::Bool(b) => Some(*b),
        _ => None,
    })
}

/// An integer in `lo..=hi`, in any TOML notation.
fn int<'de, D: Deserializer<'de>, T: TryFrom<i128> + Into<i128>>(
    d: D,
    lo: T,
    hi: T,
) -> Result<Option<T>, D::Error> {
    let (lo, hi) = (lo.into(), hi.into());
    expect(d, &format!("an integer from {lo} to {hi}"), |f| match f {
        Found::Int(n) if (lo..=hi).contains(n) => T::try_from(*n).ok(),
        _ => None,
    })
    .map(Some)
}

/// `debug`: 0 to 3.
///
/// # Errors
/// Anything else.
pub fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    int(d, 0u8, 3)
}

/// `max_delete_percent`: 0 to 100.
///
/// # Errors
/// Anything else.
pub fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    int(d, 0u8, 100)
}

/// `trash_days`: any `u32`.
///
/// # Errors
/// Anything else.
pub fn days<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    int(d, 0, u32::MAX)
}

/// `poll_interval`: milliseconds, 10 to an hour.
///
/// # Errors
/// Anything else.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    int(d, 10u32, 3_600_000)
}

/// `metrics`: an IP address and a port (`127.0.0.1:9723`, `[::1]:9723`).
///
/// # Errors
/// Anything else.
pub fn socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let what = "an IP address and a port, as \"127.0.0.1:9723\"";
    check(d, |f| match f {
        Found::Str(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("expected {what}, found {s:?}")),
        other => Err(format!("expected {what}, found {other}")),
    })
}

/// `bwlimit`: an integer (KiB/s, as rsync's `--bwlimit`) or a string with
/// a suffix (`"500K"`, `"2M"`); bytes per second, 0 for no limit.
///
/// # Errors
/// Anything else.
pub fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    check(d, |f| {
        let text = match &f {
            Found::Str(s) => s.clone(),
            Found::Int(n) if *n >= 0 => n.to_string(),
            other => format!("{other}"),
        };
        twinsync_helpers::pace::parse_rate(&text)
            .map(|r| Some(r.unwrap_or_default()))
            .map_err(|e| match f {
                Found::Str(_) => e,
                other => e.replace(&format!("{text:?}"), &other.to_string()),
            })
    })
}

/// One of the names of a clap value enum (the same words as the flag takes).
///
/// # Errors
/// Any other value.
pub fn choice<'de, D: Deserializer<'de>, T: ValueEnum>(d: D) -> Result<Option<T>, D::Error> {
    let names: Vec<String> = T::value_variants()
        .iter()
        .filter_map(ValueEnum::to_possible_value)
        .map(|v| format!("{:?}", v.get_name()))
        .collect();
    let what = match names.as_slice() {
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", names.join(", ")),
    };
    expect(d, &what, |f| match f {
        Found::Str(s) => T::from_str(s, false).ok(),
        _ => None,
    })
    .map(Some)
}

/// `conflict_dir`: `"beside"`, or `".twinsync/conflicts"` (also spelt
/// `"state-dir"`, as the flag has it).
///
/// # Errors
/// Any other value: no other directory is supported.
pub fn conflict_dir<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConflictPlace>, D::Error> {
    let what = "\"beside\" (NAME.conflict-… next to the file) or \".twinsync/conflicts\"";
    expect(d, what, |f| match f {
        Found::Str(s) => match s.as_str() {
            "beside" => Some(ConflictPlace::Beside),
            ".twinsync/conflicts" | "state-dir" => Some(ConflictPlace::StateDir),
            _ => None,
        },
        _ => None,
    })
    .map(Some)
}

/// A path: a non-empty string without NUL, kept as written.
///
/// # Errors
/// Anything else.
pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    path_string(d).map(|p| p.map(PathBuf::from))
}

/// [`path`], as a string.
///
/// # Errors
/// Anything else.
pub fn path_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string(d, "a path", "a path (a string)", |s| {
        address::check_path(s).map_err(str::to_string)
    })
    .map(Some)
}

/// The right root: a local path or a remote address (checked for form).
///
/// # Errors
/// Anything else.
pub fn right<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let what = "a local path, host:/path, user@host:/path or ssh://user@host:port/path";
    string(d, what, what, address::check_right).map(|s| Some(PathBuf::from(s)))
}

/// `remote_host`: `host` or `user@host`.
///
/// # Errors
/// Anything else, or a name ssh could take for an option.
pub fn host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let what = "a host name (host or user@host)";
    check(d, |f| match f {
        Found::Str(s) => match address::check_user_host(&s) {
            Ok(()) => Ok(Some(s)),
            Err(why) => Err(format!("expected {what}; {why}, found {s:?}")),
        },
        other => Err(format!("expected {what}, found {other}")),
    })
}

/// `instance`: see [`super::is_instance_name`].
///
/// # Errors
/// Any other value.
pub fn instance<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let what = format!(
        "a name of 1 to {MAX_INSTANCE_LEN} characters from A-Z a-z 0-9 _ . - (not . or ..)"
    );
    expect(d, &what, |f| match f {
        Found::Str(s) if super::is_instance_name(s) => Some(s.clone()),
        _ => None,
    })
    .map(Some)
}

/// `tempfiles`: a regex, as a string (compiled by [`crate::excludes`]).
///
/// # Errors
/// Anything but a string.
pub fn regex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    expect(d, "a regex (a string)", |f| match f {
        Found::Str(s) => Some(s.clone()),
        _ => None,
    })
    .map(Some)
}

/// `exclude`: an array of regexes, as strings (compiled by
/// [`crate::excludes`]).
///
/// # Errors
/// Anything but an array of strings.
pub fn regexes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(Strings {
        what: "regexes (strings)",
        ok: |_| true,
    })
}

/// `rsync_extra`: an array of strings.
///
/// # Errors
/// Anything else.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(Strings {
        what: "strings",
        ok: |_| true,
    })
}

/// `banned`: an array of program names (not empty).
///
/// # Errors
/// Anything else.
pub fn programs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(Strings {
        what: "program names",
        ok: |s| !s.is_empty(),
    })
}

/// The field names a struct's derived `Deserialize` knows (its file keys,
/// after renames): asked of the derive itself, so they cannot drift.
#[must_use]
pub fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields(&'static [&'static str]);
    impl<'de> Deserializer<'de> for &mut Fields {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("only the field names were asked for"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut f = Fields(&[]);
    let _ = T::deserialize(&mut f);
    f.0
}
