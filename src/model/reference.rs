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

    proptest! {
        #[test]
        fn never_panics(s in ".*") { let _ = Ref::parse(&s); }
    }
}
