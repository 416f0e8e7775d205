//! Chunk records (`model::ChunkRecord::decode`, with its range checks): never panic, round
//! trip byte for byte, and the derived sizes of a record that decoded stay computable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::model::ChunkRecord;

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(r) = ChunkRecord::decode(data) {
        assert_eq!(r.encode(), data, "non-canonical chunk record accepted");
        assert_eq!(r.slices.len(), r.k as usize + r.m as usize);
        let shard = r.shard_len();
        assert!(shard * r.k as usize >= r.sealed_len as usize);
    }
});
