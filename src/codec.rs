//! The canonical, versioned binary encoding of every record: a type tag byte, a format
//! version byte, then the postcard encoding of the record. Object hashes are BLAKE3 over
//! exactly these bytes, so the layout is pinned by test vectors in each record's module.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// Format version written in front of every record by this build.
pub const RECORD_VERSION: u8 = 1;

/// Encodes `value` as `[tag][RECORD_VERSION][postcard bytes]`.
///
/// postcard fails only on types it cannot encode (a sequence of unknown length, for one);
/// no record type has those, so an error is a bug, reported as [`Error::Internal`] rather
/// than written as a header-only record.
pub fn encode<T: Serialize>(tag: u8, value: &T) -> Result<Vec<u8>> {
    // A
    postcard::to_extend(value, vec![tag, RECORD_VERSION]).map_err(|e| {
        Error::Internal(format!(
            "encoding a record with tag {:?}: {e}",
            char::from(tag)
        ))
    })
}

/// Decodes a record written by [`encode`], checking its tag and version. Every record has
/// exactly one encoding: trailing bytes are an error, and so is any other encoding of the
/// same value (postcard alone accepts over-long varints, e.g. `[0x80, 0x00]` for 0), found
/// by encoding the value again.
pub fn decode<T: DeserializeOwned + Serialize>(
    what: &'static str,
    tag: u8,
    bytes: &[u8],
) -> Result<T> {
    // A
    let body = check_header(what, tag, bytes)?;
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| Error::malformed(what, e))?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            what,
            format!("{} trailing bytes", rest.len()),
        ));
    }
    if !encodes_to(&value, body) {
        return Err(Error::malformed(what, "not in canonical form"));
    }
    Ok(value)
}

/// True when `value` encodes to exactly `bytes` (compared as it is encoded, no allocation).
fn encodes_to<T: Serialize>(value: &T, bytes: &[u8]) -> bool {
    // A
    postcard::serialize_with_flavor(value, Same(bytes)).unwrap_or(false)
}

/// A postcard output that checks the bytes written against the expected ones.
struct Same<'a>(&'a [u8]);

impl postcard::ser_flavors::Flavor for Same<'_> {
    type Output = bool;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // A
        match self.0.strip_prefix(data) {
            Some(rest) => {
                self.0 = rest;
                Ok(())
            }
            None => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        // A
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<bool> {
        // A
        Ok(self.0.is_empty())
    }
}

/// Checks the `[tag][version]` header and returns the bytes after it.
pub fn check_header<'a>(what: &'static str, tag: u8, bytes: &'a [u8]) -> Result<&'a [u8]> {
    // A
    match bytes {
        [t, v, rest @ ..] if *t == tag && *v == RECORD_VERSION => Ok(rest),
        [t, v, ..] if *t == tag => Err(Error::malformed(what, format!("unknown version {v}"))),
        [t, ..] => Err(Error::malformed(what, format!("wrong type tag {t:#04x}"))),
        [] => Err(Error::malformed(what, "empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = (7u32, -3i64, String::from("key"), Some(true));
        let e = encode(b'X', &v).unwrap();
        assert_eq!(
            decode::<(u32, i64, String, Option<bool>)>("x", b'X', &e).unwrap(),
            v
        );
    }

    /// A value postcard cannot encode is an internal error, never a header-only record.
    #[test]
    fn unencodable_values_are_errors() {
        struct LengthUnknown;
        impl Serialize for LengthUnknown {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut n = 0;
                s.collect_seq(std::iter::from_fn(|| {
                    n += 1;
                    (n < 3).then_some(n)
                }))
            }
        }
        let e = encode(b'X', &LengthUnknown).unwrap_err();
        assert!(matches!(e, Error::Internal(_)), "{e}");
    }

    /// Found by the `index_records`, `blob`, `chunk_record` and `cluster_records` fuzz
    /// targets: postcard decodes over-long varints, so a record had many encodings (and a
    /// blob many hashes).
    #[test]
    fn rejects_overlong_varints() {
        let canonical = encode(b'X', &(0u32, 1u64)).unwrap();
        assert_eq!(canonical, [b'X', RECORD_VERSION, 0x00, 0x01]);
        assert!(decode::<(u32, u64)>("x", b'X', &canonical).is_ok());
        for overlong in [
            &[b'X', RECORD_VERSION, 0x80, 0x00, 0x01][..],
            &[b'X', RECORD_VERSION, 0x00, 0x81, 0x80, 0x00],
        ] {
            let e = decode::<(u32, u64)>("x", b'X', overlong).unwrap_err();
            assert!(e.to_string().contains("canonical"), "{e}");
        }
        // A string length is a varint too.
        let e = decode::<String>("x", b'X', &[b'X', RECORD_VERSION, 0x81, 0x00, b'a']);
        assert!(e.is_err());
    }

    #[test]
    fn rejects_trailing_bytes_and_wrong_headers() {
        assert!(decode::<u8>("x", b'X', &[b'X', RECORD_VERSION, 1, 2]).is_err());
        assert!(decode::<u8>("x", b'X', &[b'Y', RECORD_VERSION, 1]).is_err());
        assert!(decode::<u8>("x", b'X', &[b'X', RECORD_VERSION + 1, 1]).is_err());
        assert!(decode::<u8>("x", b'X', &[]).is_err());
    }
}
