//! Wrapped key bundles: the KeyIndex's `WrappedKey` record, the age file inside it (decrypted
//! with a fixed identity, as `Cas::unlock` does) and the key bundle that file holds. Inputs
//! starting with the record's tag go through the record; others are taken as the age file.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ouroboros_db::codec;
use ouroboros_db::fuzzing::{store_keys_decode, store_keys_encode, unwrap_key};
use ouroboros_db::fuzzing::{WrappedKey, WRAPPED_TAG};
use ouroboros_db::{Identity, Recipient};

/// The identity every input is decrypted with.
fn identity() -> &'static Identity {
    // A
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| Identity::parse(ouro_fuzz::IDENTITY).expect("the fixed identity parses"))
}

fuzz_target!(|data: &[u8]| {
    // A
    let wrapped = match codec::decode::<WrappedKey>("wrapped key", WRAPPED_TAG, data) {
        Ok(w) => {
            assert_eq!(
                codec::encode(WRAPPED_TAG, &w).unwrap(),
                data,
                "non-canonical wrapped key"
            );
            let _ = Recipient::parse(&w.recipient);
            w.wrapped
        }
        Err(_) => data.to_vec(),
    };
    if let Ok(plain) = unwrap_key(identity(), &wrapped) {
        if let Ok(keys) = store_keys_decode(&plain) {
            assert_eq!(store_keys_encode(&keys).unwrap(), plain, "non-canonical key bundle");
        }
    }
});
