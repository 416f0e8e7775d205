//! Blob records (`model::Blob::decode`): never panic, and whatever decodes re-encodes to the
//! same bytes (a blob's hash is the hash of its encoding, so each blob has one encoding).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::model::Blob;

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(b) = Blob::decode(data) {
        assert_eq!(b.encode().unwrap(), data, "non-canonical blob encoding accepted");
        assert_eq!(Blob::decode(&b.encode().unwrap()).ok(), Some(b));
    }
});
