//! The read side of a sealed chunk below the cipher: erasure reconstruction from any mix of
//! present and missing shards (`seal::erasure::reconstruct`), then the compression frame
//! (`seal::compress::decompress`, raw or zstd). AES-GCM sits between them in the real path,
//! where it refuses anything not sealed with the key, so each stage is fuzzed directly.
//!
//! Input: `[k][m][sealed_len u16 LE][size u32 LE][present mask u32 LE][shard bytes...]`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::seal::{compress, erasure};

/// Largest plaintext a chunk record allows (`ChunkRecord::decode` refuses bigger sizes).
const MAX_SIZE: u32 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    // A
    let Some((head, mut rest)) = data.split_first_chunk::<12>() else {
        return;
    };
    let (k, m) = (head[0], head[1]);
    let sealed_len = u16::from_le_bytes([head[2], head[3]]) as usize;
    let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) % (MAX_SIZE + 1);
    let mask = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let len = erasure::shard_len(sealed_len, k as usize);
    let mut shards: Vec<Option<&[u8]>> = Vec::new();
    for i in 0..(k as usize + m as usize) {
        if mask >> (i % 32) & 1 == 0 {
            shards.push(None);
            continue;
        }
        let (s, after) = rest.split_at(len.min(rest.len()));
        shards.push(Some(s));
        rest = after;
    }
    let payload = match erasure::reconstruct(k, m, sealed_len, &shards) {
        Ok(p) => {
            assert_eq!(p.len(), sealed_len);
            p
        }
        // Left-over bytes stand for a payload when the shards do not rebuild one.
        Err(_) => rest.to_vec(),
    };
    if let Ok(plain) = compress::decompress(&payload, size as usize) {
        assert_eq!(plain.len(), size as usize);
        let mut again = Vec::new();
        compress::compress_into(&plain, 1, &mut again).expect("compressing");
        assert_eq!(
            compress::decompress(&again, plain.len()).expect("round trip"),
            plain
        );
    }
});
