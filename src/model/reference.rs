//! Refs name a version: `KEY`, `KEY@<hash prefix>`, `KEY@~N`, `KEY@<RFC 3339 time or date>`.
//!
//! The selector follows the last `@`. Keys may contain `@` (`icon@2x.png`): when the text after
//! the last `@` is not a valid selector, the whole string is the key; a trailing `@` (`a@b@`)
//! forces the whole string before it to be the key.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

use crate::error::{Error, Result};
use crate::model::key::validate_key;

/// Shortest hash prefix accepted in a ref.
pub const MIN_PREFIX: usize = 4;

/// Which version of a key a ref names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The key's single head.
    Head,
    /// The version whose hash starts with these lowercase hex digits.
    HashPrefix(String),
    /// N versions back from the head, following first parents.
    Back(u32),
    /// The version current at this instant (nanoseconds since the epoch, UTC).
    At(i64),
    /// Exactly this version (its whole hash), which must be a version of the key.
    Exact(crate::hash::Hash),
}

/// A parsed ref: a validated key and a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    /// The key.
    pub key: String,
    /// The version of it.
    pub selector: Selector,
}

impl Ref {
    /// The head of `key`, taken as it is: `Ref::key("backup@2024-01-01")` names that key,
    /// where the text would name a version of `backup`. Fails only on an invalid key.
    ///
    /// ```
    /// use ouroboros_db::model::{Ref, Selector};
    /// let r = Ref::key("backup@2024-01-01").unwrap();
    /// assert_eq!((r.key.as_str(), r.selector), ("backup@2024-01-01", Selector::Head));
    /// ```
    pub fn key(key: impl Into<String>) -> Result<Self> {
        // A
        Self::with(key, Selector::Head)
    }

    /// Exactly version `hash` of `key` (resolving fails when it is a version of another key).
    pub fn version(key: impl Into<String>, hash: crate::hash::Hash) -> Result<Self> {
        // A
        Self::with(key, Selector::Exact(hash))
    }

    /// Version `n` back from the single head of `key`, following first parents.
    pub fn back(key: impl Into<String>, n: u32) -> Result<Self> {
        // A
        Self::with(key, Selector::Back(n))
    }

    /// The version of `key` current at `nanos` (nanoseconds since the epoch, UTC).
    pub fn at(key: impl Into<String>, nanos: i64) -> Result<Self> {
        // A
        Self::with(key, Selector::At(nanos))
    }

    /// [`Ref::at`] with a [`std::time::SystemTime`].
    pub fn at_time(key: impl Into<String>, t: std::time::SystemTime) -> Result<Self> {
        // A
        Self::at(key, crate::model::nanos::from_system_time(t)?)
    }

    fn with(key: impl Into<String>, selector: Selector) -> Result<Self> {
        // A
        let key = key.into();
        validate_key(&key)?;
        Ok(Ref { key, selector })
    }

    /// Parses a ref as users type it.
    ///
    /// ```
    /// use ouroboros_db::model::{Ref, Selector};
    /// let r = Ref::parse("notes.txt@~2").unwrap();
    /// assert_eq!(r.selector, Selector::Back(2));
    /// assert_eq!(Ref::parse("icon@2x.png").unwrap().key, "icon@2x.png");
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        // A
        if let Some(key) = s.strip_suffix('@') {
            validate_key(key)?;
            return Ok(Ref {
                key: key.to_string(),
                selector: Selector::Head,
            });
        }
        if let Some((key, sel)) = s.rsplit_once('@') {
            if let Some(selector) = parse_selector(s, sel)? {
                validate_key(key)?;
                return Ok(Ref {
                    key: key.to_string(),
                    selector,
                });
            }
        }
        validate_key(s)?;
        Ok(Ref {
            key: s.to_string(),
            selector: Selector::Head,
        })
    }
}

/// Prints the ref as a user would type it, so that [`Ref::parse`] gives it back: a key
/// whose text would read as a version gets the trailing `@` that ends it.
impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        match &self.selector {
            Selector::Head if check_key_names_itself(&self.key).is_ok() => {
                write!(f, "{}", self.key)
            }
            Selector::Head => write!(f, "{}@", self.key),
            Selector::HashPrefix(p) => write!(f, "{}@{p}", self.key),
            Selector::Exact(h) => write!(f, "{}@{h}", self.key),
            Selector::Back(n) => write!(f, "{}@~{n}", self.key),
            Selector::At(t) => write!(f, "{}@{}", self.key, format_time_exact(*t)),
        }
    }
}

/// What the API accepts wherever a version is named: a [`Ref`] built by the caller (no
/// parsing, no escaping), or text as a user types it (`KEY`, `KEY@~2`, ...), parsed.
pub trait ToRef {
    /// The ref this names, or why it names none.
    fn to_ref(&self) -> Result<Ref>;
}

impl ToRef for Ref {
    fn to_ref(&self) -> Result<Ref> {
        // A
        Ok(self.clone())
    }
}

impl ToRef for str {
    fn to_ref(&self) -> Result<Ref> {
        // A
        Ref::parse(self)
    }
}

impl ToRef for String {
    fn to_ref(&self) -> Result<Ref> {
        // A
        Ref::parse(self)
    }
}

/// Parses the text after `@`: `Ok(None)` when it is not selector syntax at all (then the `@`
/// belongs to the key), an error when it looks like a selector but is malformed.
fn parse_selector(whole: &str, sel: &str) -> Result<Option<Selector>> {
    // A
    let bad = |reason: String| Error::InvalidRef {
        reference: whole.to_string(),
        reason,
    };
    if let Some(n) = sel.strip_prefix('~') {
        let n: u32 = n
            .parse()
            .map_err(|_| bad(format!("'~{n}' needs a whole number, e.g. KEY@~2")))?;
        return Ok(Some(Selector::Back(n)));
    }
    if !sel.is_empty() && sel.bytes().all(|b| b.is_ascii_hexdigit()) {
        if sel.len() < MIN_PREFIX {
            return Err(bad(format!(
                "hash prefix '{sel}' is too short: give at least {MIN_PREFIX} hex digits"
            )));
        }
        if sel.len() > 64 {
            return Err(bad("a hash has at most 64 hex digits".into()));
        }
        return Ok(Some(Selector::HashPrefix(sel.to_ascii_lowercase())));
    }
    if looks_like_date(sel) {
        return match parse_time_checked(sel) {
            Ok(t) => Ok(Some(Selector::At(t))),
            Err(TimeError::OutOfRange) => Err(bad(format!(
                "'{sel}' is out of range: times from {FIRST_TIME} to {LAST_TIME} can be named (nanoseconds since 1970 in 64 bits)"
            ))),
            Err(TimeError::NotATime) => Err(bad(format!(
                "'{sel}' is not an RFC 3339 time (2026-11-24T10:15:03Z) or a date (2026-11-24)"
            ))),
        };
    }
    Ok(None)
}

/// Checks that `key`, typed where a ref is expected (`ouro get KEY`), names the key itself:
/// `x@~1`, `mail@beef` or `x@2026-01-01` would name a version of the shorter key before the
/// `@` (or be refused as a malformed ref), so a version stored under such a key could only
/// be read with the trailing-`@` escape (`x@~1@`). Writers of new keys call this to refuse
/// them with a message instead.
///
/// ```
/// use ouroboros_db::model::reference::check_key_names_itself;
/// assert!(check_key_names_itself("icon@2x.png").is_ok());
/// assert!(check_key_names_itself("x@~1").is_err());
/// ```
pub fn check_key_names_itself(key: &str) -> Result<()> {
    // A
    validate_key(key)?;
    match Ref::parse(key) {
        Ok(r) if r.key == key && r.selector == Selector::Head => Ok(()),
        _ => Err(Error::InvalidKey {
            key: key.to_string(),
            rule: "the text after its last '@' reads as a version (KEY@HASH, KEY@~N, KEY@TIME; a trailing '@' ends the key), so `ouro get KEY` would not name this key: choose another",
        }),
    }
}

/// The first and last instants a time can name: nanoseconds since 1970 in an `i64`.
const FIRST_TIME: &str = "1677-09-21T00:12:44Z";
const LAST_TIME: &str = "2262-04-11T23:47:16Z";

/// Why a text is not a time ouro can use.
enum TimeError {
    /// Not RFC 3339 nor a date.
    NotATime,
    /// A valid time or date that nanoseconds since 1970 in an `i64` cannot hold.
    OutOfRange,
}

fn looks_like_date(s: &str) -> bool {
    // A
    let b = s.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Parses an RFC 3339 time, or a date `YYYY-MM-DD` meaning the end of that day (UTC), into
/// nanoseconds since the epoch. A time given to the second means the end of that second, and
/// a date the end of that day: `KEY@<time as log prints it>` then names that version, and
/// `--at 2026-11-24` means "as it was on that day", including changes made during it.
pub fn parse_time(s: &str) -> Option<i64> {
    // A
    parse_time_checked(s).ok()
}

/// [`parse_time`], telling a valid time outside the range an `i64` of nanoseconds holds
/// (before 1677 or after 2262) from text that is no time at all.
fn parse_time_checked(s: &str) -> std::result::Result<i64, TimeError> {
    // A
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        let ns = i64::try_from(t.unix_timestamp_nanos()).map_err(|_| TimeError::OutOfRange)?;
        let whole_second = !s.contains('.') && !s.contains(',');
        return Ok(if whole_second {
            ns.saturating_add(999_999_999)
        } else {
            ns
        });
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(s, &fmt).map_err(|_| TimeError::NotATime)?;
    let end = Time::from_hms_nano(23, 59, 59, 999_999_999).map_err(|_| TimeError::NotATime)?;
    i64::try_from(date.with_time(end).assume_utc().unix_timestamp_nanos())
        .map_err(|_| TimeError::OutOfRange)
}

/// RFC 3339 UTC with every nanosecond, which [`parse_time`] reads back exactly.
fn format_time_exact(nanos: i64) -> String {
    // A
    let whole = format_time(nanos);
    match whole.strip_suffix('Z') {
        // Nine digits always: a time without a fraction reads as the end of its second.
        Some(secs) => format!("{secs}.{:09}Z", nanos.rem_euclid(1_000_000_000)),
        None => whole,
    }
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with second precision.
pub fn format_time(nanos: i64) -> String {
    // A
    let secs = nanos.div_euclid(1_000_000_000);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(Ref::parse("a/b").unwrap().selector, Selector::Head);
        assert_eq!(
            Ref::parse("a/b@3F2A9c").unwrap().selector,
            Selector::HashPrefix("3f2a9c".into())
        );
        assert_eq!(Ref::parse("a@~0").unwrap().selector, Selector::Back(0));
        let at = Ref::parse("a@2026-11-24T10:15:03Z").unwrap();
        assert_eq!(at.selector, Selector::At(1_795_515_303_999_999_999));
        assert_eq!(at.key, "a");
        assert!(matches!(
            Ref::parse("a@2026-11-24").unwrap().selector,
            Selector::At(_)
        ));
        let escaped = Ref::parse("mail@beef@").unwrap();
        assert_eq!(
            (escaped.key.as_str(), escaped.selector),
            ("mail@beef", Selector::Head)
        );
        assert_eq!(Ref::parse("icon@2x.png").unwrap().key, "icon@2x.png");
    }

    #[test]
    fn errors() {
        for bad in [
            "a@abc",
            "a@~x",
            "a@~-1",
            "a@2026-13-45",
            "@abcd",
            "/a@~1",
            "a//b",
        ] {
            assert!(Ref::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_out_of_range_are_named_so() {
        for far in ["a@2300-01-01", "a@1600-01-01", "a@2262-04-12T00:00:00Z"] {
            let e = Ref::parse(far).unwrap_err().to_string();
            assert!(e.contains("out of range"), "{far}: {e}");
        }
        let e = Ref::parse("a@2026-13-45").unwrap_err().to_string();
        assert!(e.contains("not an RFC 3339 time"), "{e}");
        assert!(Ref::parse("a@2262-04-10").is_ok());
        assert!(Ref::parse("a@1677-09-22").is_ok());
    }

    #[test]
    fn keys_that_read_as_refs_are_caught() {
        for ok in ["x", "icon@2x.png", "me@dead.com", "a@b/c"] {
            assert!(check_key_names_itself(ok).is_ok(), "{ok}");
        }
        for bad in ["x@~1", "mail@beef", "x@2026-01-01", "x@", "x@abc", "x@~y"] {
            let e = check_key_names_itself(bad).unwrap_err().to_string();
            assert!(e.contains("would not name this key"), "{bad}: {e}");
        }
    }

    #[test]
    fn time_round_trip() {
        let t = parse_time("2026-11-24T10:15:03Z").unwrap();
        assert_eq!(format_time(t), "2026-11-24T10:15:03Z");
    }

    fn selector() -> impl Strategy<Value = Selector> {
        prop_oneof![
            Just(Selector::Head),
            any::<u32>().prop_map(Selector::Back),
            // 1677-09-22 to 2262-04-10: the times a ref can name.
            (-9_200_000_000_000_000_000i64..9_200_000_000_000_000_000).prop_map(Selector::At),
            "[0-9a-f]{4,64}".prop_map(Selector::HashPrefix),
            any::<[u8; 32]>().prop_map(|b| Selector::Exact(crate::hash::Hash(b))),
        ]
    }

    #[test]
    fn typed_refs_need_no_escaping() {
        let r = Ref::key("x@~1").unwrap();
        assert_eq!(r.to_string(), "x@~1@");
        assert_eq!(Ref::parse(&r.to_string()).unwrap(), r);
        assert_eq!(Ref::back("a", 2).unwrap().to_string(), "a@~2");
        assert!(Ref::key("").is_err());
        let t = parse_time("2026-11-24T10:15:03.5Z").unwrap();
        assert_eq!(
            Ref::at("a", t).unwrap().to_string(),
            "a@2026-11-24T10:15:03.500000000Z"
        );
        // A whole second prints its nine zeros: without them it would read as the second's end.
        let whole = parse_time("2026-11-24T10:15:03.0Z").unwrap();
        assert_eq!(
            Ref::parse(&Ref::at("a", whole).unwrap().to_string())
                .unwrap()
                .selector,
            Selector::At(whole)
        );
    }

    /// The first and last nanoseconds an i64 holds print as times that parse back exactly,
    /// and the typed constructors reach them through SystemTime too.
    #[test]
    fn extreme_times_print_and_parse_back() {
        for t in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX] {
            let r = Ref::at("k@~1", t).unwrap();
            assert_eq!(Ref::parse(&r.to_string()).unwrap(), r, "{t}: {r}");
            let st = crate::model::nanos::to_system_time(t);
            assert_eq!(Ref::at_time("k", st).unwrap().selector, Selector::At(t));
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") { let _ = Ref::parse(&s); }

        /// What a ref prints is read back as the same ref (an exact version as the prefix
        /// that is its whole hash, which names the same version).
        #[test]
        fn display_parses_back(key in "[a-z][a-z0-9._@~-]{0,12}(/[a-z0-9@]{1,6})?", sel in selector()) {
            prop_assume!(validate_key(&key).is_ok());
            let r = Ref { key, selector: sel };
            let back = Ref::parse(&r.to_string()).unwrap();
            let want = match &r.selector {
                Selector::Exact(h) => Ref { key: r.key.clone(), selector: Selector::HashPrefix(h.to_hex()) },
                _ => r.clone(),
            };
            prop_assert_eq!(back, want);
        }
    }
}
