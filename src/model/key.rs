//! Key rules: keys are UTF-8 paths like `a/b/c` that map onto files in the mount.
//!
//! Keys are compared byte for byte: no Unicode normalization is applied, so `é` written
//! precomposed (NFC, U+00E9) and decomposed (NFD, `e` + U+0301) are two different keys.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// Longest key accepted, in bytes (LMDB keys of the KeyToHash index hold key + 41 bytes).
pub const MAX_KEY_BYTES: usize = 400;

/// First path segment reserved for the mount's virtual directories.
pub const RESERVED_SEGMENT: &str = ".ouro";

/// Checks a key against every rule, naming the rule it breaks.
///
/// ```
/// use ouroboros_db::model::validate_key;
/// assert!(validate_key("photos/2026/cat.jpg").is_ok());
/// assert!(validate_key("/etc/passwd").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<()> {
    // A
    let fail = |rule: &'static str| {
        Err(Error::InvalidKey {
            key: key.to_string(),
            rule,
        })
    };
    if key.is_empty() {
        return fail("a key must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return fail("a key must be at most 400 bytes long");
    }
    if key.starts_with('/') {
        return fail("a key must not start with '/'");
    }
    if key.chars().any(|c| c == '\0' || c.is_control()) {
        return fail("a key must not contain NUL or control characters");
    }
    if key.chars().any(is_invisible) {
        return fail(
            "a key must not contain bidirectional controls (U+202A-U+202E, U+2066-U+2069) or zero-width characters (U+200B-U+200D, U+2060, U+FEFF)",
        );
    }
    for (i, seg) in key.split('/').enumerate() {
        match seg {
            "" => return fail("a key must not have an empty segment ('//' or a trailing '/')"),
            "." | ".." => return fail("a key must not have a '.' or '..' segment"),
            RESERVED_SEGMENT if i == 0 => {
                return fail("the first segment '.ouro' is reserved for the mount")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Characters that change how a key is displayed without being seen: bidirectional
/// overrides and isolates can make `txt.exe` print as `exe.txt`, and zero-width characters
/// make two keys that print alike. Both would let a listing lie about what it names.
pub(crate) fn is_invisible(c: char) -> bool {
    // A
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Longest user-given text echoed whole in messages, in bytes.
const CLIP_BYTES: usize = 96;

/// `text` for an error message: whole when short, else its start, an ellipsis and its
/// length, so a 10,000-character argument does not fill the terminal (twice, once per
/// context that names it).
///
/// ```
/// use ouroboros_db::model::key::clip;
/// assert_eq!(clip("a/b"), "a/b");
/// assert_eq!(clip(&"k".repeat(500)), format!("{}... (500 bytes)", "k".repeat(64)));
/// ```
pub fn clip(text: &str) -> Cow<'_, str> {
    // A
    if text.len() <= CLIP_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = 64;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}... ({} bytes)", &text[..end], text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rules() {
        for good in [
            "a",
            "a/b/c",
            "a.b",
            ".hidden/x",
            "x/.ouro",
            "ü/日本",
            "a@2x.png",
        ] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/a",
            "a//b",
            "a/",
            "./a",
            "a/../b",
            ".ouro",
            ".ouro/x",
            "a\0b",
            "a\nb",
            "evil\u{202E}txt.exe",
            "a\u{2066}b",
            "a\u{2069}",
            "zero\u{200B}width",
            "a\u{200D}b",
            "\u{FEFF}bom",
            "a\u{2060}b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn error_names_key_and_rule() {
        let e = validate_key("a//b").unwrap_err().to_string();
        assert!(e.contains("a//b") && e.contains("empty segment"), "{e}");
    }

    #[test]
    fn clip_keeps_short_text_and_cuts_on_a_char_boundary() {
        assert_eq!(clip(&"k".repeat(CLIP_BYTES)), "k".repeat(CLIP_BYTES));
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.ends_with("... (200 bytes)"), "{c}");
        assert!(c.len() < 100, "{c}");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") { let _ = validate_key(&s); let _ = clip(&s); }
    }
}
