//! Thin wrappers that let the fuzz targets in `fuzz/` reach decoders that are private to the
//! crate. Not part of the API: hidden from the docs and free to change with the decoders.

pub use crate::store::deletion_wal::{WalEntry, WAL_TAG};
pub use crate::store::key_index::{WrappedKey, WRAPPED_TAG};
pub use crate::store::local_sealed_slice_store::Bundle;
pub use crate::store::meta::{StoreConfig, CONFIG_TAG};
pub use crate::store::removed::{Removal, REMOVED_TAG};
pub use crate::store::version_index::{KeyState, StoredHead, StoredState, KEY_STATE_TAG};

use crate::crypto::{Identity, Recipient, StoreKeys};
use crate::error::Result;

/// Parses a `key_to_hash` row into key number, creation time and sequence (the index's own
/// parser).
pub fn key_to_hash_parse(row: &[u8]) -> Result<(u64, i64, u64)> {
    // A
    crate::store::key_to_hash::parse(row)
}

/// Encodes a `key_to_hash` row (the index's own encoder).
pub fn key_to_hash_row(id: u64, created: i64, seq: u64) -> Vec<u8> {
    // A
    crate::store::key_to_hash::row(id, created, seq).to_vec()
}

/// Decodes a `version_index` value: the key's number and its state as stored.
pub fn version_index_decode(value: &[u8]) -> Result<(u64, StoredState)> {
    // A
    crate::store::version_index::decode(value)
}

/// Encodes a `version_index` value.
pub fn version_index_value(id: u64, state: &StoredState) -> Result<Vec<u8>> {
    // A
    crate::store::version_index::value(id, state)
}

/// Decodes an unwrapped key bundle.
pub fn store_keys_decode(bytes: &[u8]) -> Result<StoreKeys> {
    // A
    StoreKeys::decode(bytes)
}

/// Encodes a key bundle as it is wrapped for recipients.
pub fn store_keys_encode(keys: &StoreKeys) -> Result<Vec<u8>> {
    // A
    keys.encode()
}

/// Decrypts a wrapped key bundle (an age file) with `identity`.
pub fn unwrap_key(identity: &Identity, wrapped: &[u8]) -> Result<Vec<u8>> {
    // A
    identity.unwrap(wrapped)
}

/// Encrypts `secret` for `recipient` as the KeyIndex stores it.
pub fn wrap_key(recipient: &Recipient, secret: &[u8]) -> Result<Vec<u8>> {
    // A
    recipient.wrap(secret)
}

/// Applies `edits` to a copy of `bytes`, for property tests that feed decoders records
/// which are valid up to a few bytes (random bytes rarely get past a record's header).
/// Each edit is `(position, kind, byte)`: kind 0 replaces the byte at `position` (modulo
/// the length), 1 inserts `byte` there, 2 removes the byte there.
pub fn mutate(bytes: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    // A
    let mut out = bytes.to_vec();
    for &(pos, kind, byte) in edits {
        let at = pos % (out.len() + 1);
        match kind % 3 {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            _ => out.push(byte),
        }
    }
    out
}
