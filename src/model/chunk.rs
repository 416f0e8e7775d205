//! Chunk record: how one deduplicated chunk was sealed and where its slices are.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;

/// Type tag of an encoded chunk record.
pub const CHUNK_TAG: u8 = b'C';

/// Everything needed to rebuild a chunk from its slices: stored under the chunk id.
///
/// Deserializing checks the record (see [`ChunkRecord::decode`]) wherever it comes from: the
/// store, or a peer's message, whose records a node stores and must be able to read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct ChunkRecord {
    /// Plaintext length.
    pub size: u32,
    /// Length of the sealed (compressed + encrypted) payload before erasure padding.
    pub sealed_len: u32,
    /// Key epoch whose data key encrypted this chunk (see the KeyIndex).
    pub key_epoch: u32,
    /// AES-GCM nonce, random per sealing: the chunk's key is derived from its id, so a chunk
    /// sealed twice (re-put after gc, a zstd upgrade) must never reuse a nonce.
    pub nonce: [u8; 12],
    /// Data slices needed to rebuild (k).
    pub k: u8,
    /// Parity slices (m).
    pub m: u8,
    /// Hashes of the k+m slices, data slices first.
    pub slices: Vec<Hash>,
}

impl ChunkRecord {
    /// The canonical encoding `[b'C'][1][postcard]`.
    pub fn encode(&self) -> Vec<u8> {
        // A
        codec::encode(CHUNK_TAG, self)
    }

    /// Decodes and checks internal consistency (slice count = k + m, k >= 1, sizes in range).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        // A
        codec::decode("chunk", CHUNK_TAG, bytes)
    }

    /// The consistency checks of [`ChunkRecord::decode`], applied by every deserialization.
    fn check(self) -> std::result::Result<Self, String> {
        // A
        // Sizes come from disk or a peer: bound them before anything allocates by them.
        let max_sealed = self.size as u64 + self.size as u64 / 64 + 1024;
        if self.size as usize > fastcdc::v2020::MAXIMUM_MAX || self.sealed_len as u64 > max_sealed {
            return Err("chunk record sizes out of range".into());
        }
        if self.k == 0 || self.slices.len() != self.k as usize + self.m as usize {
            return Err(format!(
                "chunk record with {} slices for k={} m={}",
                self.slices.len(),
                self.k,
                self.m
            ));
        }
        Ok(self)
    }

    /// Bytes held by the slices of this chunk (data + parity, without headers).
    pub fn shard_len(&self) -> usize {
        // A
        crate::seal::erasure::shard_len(self.sealed_len as usize, self.k as usize)
    }
}

/// A chunk record as encoded, before [`ChunkRecord::check`]: same fields, same order.
#[derive(Deserialize)]
struct Unchecked {
    size: u32,
    sealed_len: u32,
    key_epoch: u32,
    nonce: [u8; 12],
    k: u8,
    m: u8,
    slices: Vec<Hash>,
}

impl TryFrom<Unchecked> for ChunkRecord {
    type Error = String;

    fn try_from(u: Unchecked) -> std::result::Result<Self, String> {
        // A
        ChunkRecord {
            size: u.size,
            sealed_len: u.sealed_len,
            key_epoch: u.key_epoch,
            nonce: u.nonce,
            k: u.k,
            m: u.m,
            slices: u.slices,
        }
        .check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(size in 0u32..(16 << 20), sealed_extra in 0u32..1024, key_epoch in any::<u32>(),
                      k in 1u8..8, m in 0u8..4, seed in any::<u8>()) {
            let sealed_len = size / 2 + sealed_extra;
            let r = ChunkRecord { size, sealed_len, key_epoch, nonce: [seed; 12], k, m,
                slices: (0..(k + m)).map(|i| Hash([seed ^ i; 32])).collect() };
            prop_assert_eq!(ChunkRecord::decode(&r.encode()).ok(), Some(r));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = ChunkRecord::decode(&bytes);
        }
    }

    #[test]
    fn rejects_sizes_out_of_range() {
        let r = ChunkRecord {
            size: u32::MAX,
            sealed_len: 1,
            key_epoch: 0,
            nonce: [0; 12],
            k: 1,
            m: 0,
            slices: vec![Hash::default()],
        };
        assert!(
            ChunkRecord::decode(&r.encode()).is_err(),
            "a damaged size never drives an allocation"
        );
    }

    /// Found by the `wire_message` fuzz target: records inside peers' messages (PutSlices,
    /// Versions) skipped these checks, so a node stored records it could not read back.
    #[test]
    fn checks_apply_to_records_inside_other_messages() {
        let bad = ChunkRecord {
            size: 1,
            sealed_len: 1,
            key_epoch: 0,
            nonce: [0; 12],
            k: 0,
            m: 1,
            slices: vec![Hash::default()],
        };
        let bytes = postcard::to_stdvec(&(7u8, &bad)).unwrap();
        assert!(postcard::from_bytes::<(u8, ChunkRecord)>(&bytes).is_err());
        let good = ChunkRecord { k: 1, m: 0, ..bad };
        let bytes = postcard::to_stdvec(&(7u8, &good)).unwrap();
        assert_eq!(
            postcard::from_bytes::<(u8, ChunkRecord)>(&bytes).unwrap(),
            (7, good)
        );
    }

    #[test]
    fn rejects_inconsistent_slice_count() {
        let r = ChunkRecord {
            size: 1,
            sealed_len: 1,
            key_epoch: 0,
            nonce: [0; 12],
            k: 2,
            m: 1,
            slices: vec![Hash::default()],
        };
        assert!(ChunkRecord::decode(&r.encode()).is_err());
    }
}
