//! The canonical, versioned binary encoding of every record: a type tag byte, a format
//! version byte, then the postcard encoding of the record. Object hashes are BLAKE3 over
//! exactly these bytes, so the layout is pinned by test vectors in each record's module.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// Format version written in front of every record by this build.
pub const RECORD_VERSION: u8 = 1;

/// Encodes `value` as `[tag][RECORD_VERSION][postcard bytes]`.
pub fn encode<T: Serialize>(tag: u8, value: &T) -> Vec<u8> {
    // A
    let out = vec![tag, RECORD_VERSION];
    // postcard only fails on writer errors or unsupported serde types; a Vec never fails and
    // our record types use none of the unsupported ones, so an error here is a bug.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => vec![tag, RECORD_VERSION],
    }
}

/// Decodes a record written by [`encode`], checking its tag and version; trailing bytes are
/// an error so that every record has exactly one encoding.
pub fn decode<T: DeserializeOwned>(what: &'static str, tag: u8, bytes: &[u8]) -> Result<T> {
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
    Ok(value)
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
