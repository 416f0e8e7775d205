//! The postcard records of the local store's indexes, each through `codec::decode` with its
//! own tag: VersionIndex KeyState, Removed Removal, DeletionWAL WalEntry, KeyIndex WrappedKey,
//! Meta StoreConfig, the unwrapped key bundle, and the raw rows of KeyToHash. Every input is
//! offered to every decoder (the tag byte picks the one that can accept it); whatever decodes
//! must re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::codec;
use ouroboros_db::fuzzing;
use ouroboros_db::fuzzing::{WalEntry, WAL_TAG};
use ouroboros_db::fuzzing::{WrappedKey, WRAPPED_TAG};
use ouroboros_db::fuzzing::{StoreConfig, CONFIG_TAG};
use ouroboros_db::fuzzing::{Removal, REMOVED_TAG};
use ouroboros_db::fuzzing::{KeyState, KEY_STATE_TAG};
use serde::{de::DeserializeOwned, Serialize};

/// Decodes `data` as a `T` record and checks that it round trips byte for byte.
fn record<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    what: &'static str,
    tag: u8,
    data: &[u8],
) -> Option<T> {
    // A
    let v: T = codec::decode(what, tag, data).ok()?;
    assert_eq!(
        codec::encode(tag, &v).unwrap(),
        data,
        "non-canonical {what} accepted"
    );
    assert_eq!(
        codec::decode::<T>(what, tag, &codec::encode(tag, &v).unwrap())
            .ok()
            .as_ref(),
        Some(&v)
    );
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    // A
    record::<KeyState>("key state", KEY_STATE_TAG, data);
    record::<Removal>("removal", REMOVED_TAG, data);
    record::<WalEntry>("deletion wal", WAL_TAG, data);
    record::<WrappedKey>("wrapped key", WRAPPED_TAG, data);
    if let Some(c) = record::<StoreConfig>("config", CONFIG_TAG, data) {
        // What opening a store does with it next.
        let _ = c.chunking.validate();
    }
    if let Ok(k) = fuzzing::store_keys_decode(data) {
        assert_eq!(
            fuzzing::store_keys_encode(&k).unwrap(),
            data,
            "non-canonical key bundle accepted"
        );
    }
    // KeyToHash rows: `[key number][created][sequence]`, each u64 BE.
    if let Ok((id, created, seq)) = fuzzing::key_to_hash_parse(data) {
        assert_eq!(fuzzing::key_to_hash_row(id, created, seq), data);
    }
    // VersionIndex values: the key's number, then its state.
    if let Ok((id, state)) = fuzzing::version_index_decode(data) {
        assert_eq!(
            fuzzing::version_index_value(id, &state).unwrap(),
            data,
            "non-canonical key state accepted"
        );
    }
});
