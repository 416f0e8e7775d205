//! Slice bundles of the LocalSealedSliceStore (`Bundle::decode`): never panic, round trip
//! byte for byte, and every slice a bundle names can be looked up by its index.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::fuzzing::Bundle;

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(b) = Bundle::decode(data) {
        assert_eq!(b.encode(), data, "non-canonical bundle accepted");
        for (i, bytes) in &b.slices {
            assert_eq!(b.get(*i), Some(*bytes));
            // What the store does with a slice it reads: split it (damage is an error).
            let _ = ouroboros_db::model::SealedSlice::split(bytes);
        }
    }
});
