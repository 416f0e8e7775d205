//! File names are raw bytes; keys are UTF-8 without control or invisible characters. A name
//! that is not a valid key segment becomes one by escaping: each byte that is not part of
//! valid UTF-8, and each byte of a control character or of a character keys refuse as
//! invisible (bidirectional controls, zero-width characters: `model::key`), is written
//! `\xNN` (two lowercase hex digits), and `\` itself
//! is written `\\` (only in names that need escaping, so ordinary names with a backslash
//! keep their key). The snapshot's tree records keep the raw name, so restores are exact
//! whatever the key; two raw names whose escaped forms meet share one key's history.

/// The key segment for a raw file name.
///
/// ```
/// use ouroboros_db::snapshot::names::key_segment;
/// assert_eq!(key_segment(b"notes.txt"), "notes.txt");
/// assert_eq!(key_segment(b"caf\xe9"), "caf\\xe9");
/// assert_eq!(key_segment(b"a\nb\\c"), "a\\x0ab\\\\c");
/// ```
pub fn key_segment(name: &[u8]) -> String {
    // A
    if let Ok(s) = std::str::from_utf8(name) {
        if !s.chars().any(needs_escape) && s != "." && s != ".." && !s.is_empty() {
            return s.to_string();
        }
    }
    let mut out = String::with_capacity(name.len() + 8);
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if needs_escape(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        // Not reachable for names a directory holds; kept so the result is always a segment.
        out = format!("\\x{}", hex_of(name));
    }
    out
}

/// A character no key may hold: the same rule `validate_key` applies, so every escaped
/// name is a valid segment.
fn needs_escape(c: char) -> bool {
    // A
    c.is_control() || crate::model::key::is_invisible(c)
}

fn hex_of(name: &[u8]) -> String {
    // A
    name.iter().map(|b| format!("{b:02x}")).collect()
}

/// Joins a key prefix and the raw path components below it into a key.
pub fn key_for(prefix: &str, components: &[&[u8]]) -> String {
    // A
    let mut key = prefix.to_string();
    for c in components {
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(&key_segment(c));
    }
    key
}

/// A raw relative path for messages: lossy UTF-8.
pub fn display(path: &[u8]) -> String {
    // A
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_are_kept() {
        for n in ["a", "ü日本", "x\\y", "a b"] {
            assert_eq!(key_segment(n.as_bytes()), n);
        }
        assert_eq!(key_for("home", &[b"a", b"\xff"]), "home/a/\\xff");
        // A bidirectional control is escaped, not refused (a file named so was stored under
        // a hashed `.ouro-long` key).
        assert_eq!(key_segment("a\u{202a}b".as_bytes()), "a\\xe2\\x80\\xaab");
    }

    proptest! {
        #[test]
        fn every_name_gives_a_valid_key_segment(name in prop::collection::vec(1u8..=255, 1..40)) {
            let name: Vec<u8> = name.into_iter().map(|b| if b == b'/' { b'_' } else { b }).collect();
            prop_assume!(name != b"." && name != b"..");
            let seg = key_segment(&name);
            prop_assert!(crate::model::validate_key(&format!("p/{seg}")).is_ok(), "{:?}", seg);
        }

        #[test]
        fn escaping_is_injective_among_escaped_names(a in prop::collection::vec(128u8..=255, 1..8),
                                                      b in prop::collection::vec(128u8..=255, 1..8)) {
            prop_assume!(a != b && std::str::from_utf8(&a).is_err() && std::str::from_utf8(&b).is_err());
            prop_assert_ne!(key_segment(&a), key_segment(&b));
        }
    }
}
