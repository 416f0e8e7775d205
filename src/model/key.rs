//! Key rules: keys are UTF-8 paths like `a/b/c` that map onto files in the mount.

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
            "", "/a", "a//b", "a/", "./a", "a/../b", ".ouro", ".ouro/x", "a\0b", "a\nb",
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

    proptest! {
        #[test]
        fn never_panics(s in ".*") { let _ = validate_key(&s); }
    }
}
