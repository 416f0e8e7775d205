//! Chunk records (`model::ChunkRecord::decode`, with its range checks): never panic, round
//! trip byte for byte, and the derived sizes of a record that decoded stay computable (a
//! pack member has no slices of its own).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::model::ChunkRecord;

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(r) = ChunkRecord::decode(data) {
        assert_eq!(r.encode().unwrap(), data, "non-canonical chunk record accepted");
        assert_eq!(r.slices.len(), r.k as usize + r.m as usize);
        if r.pack().is_some() {
            // A pack member: its bytes are in its pack's slices, none of its own.
            assert!(r.k == 0 && r.slices.is_empty());
            return;
        }
        let shard = r.shard_len();
        assert!(shard * r.k as usize >= r.sealed_len as usize);
    }
});
