//! SealedSlice: one erasure-coded fragment of a sealed chunk, self-verifying by its hash.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;

/// Type tag of an encoded sealed slice.
pub const SLICE_TAG: u8 = b'S';

/// Header of a sealed slice; the payload (one erasure shard of ciphertext) follows it raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceHeader {
    /// The chunk this slice belongs to.
    pub chunk: Hash,
    /// Shard index: `0..k` data, `k..k+m` parity.
    pub index: u8,
    /// Data shards of the chunk.
    pub k: u8,
    /// Parity shards of the chunk.
    pub m: u8,
}

/// A sealed slice with its payload, as stored in the LocalSealedSliceStore and sent to nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSlice {
    /// Where the slice belongs.
    pub header: SliceHeader,
    /// The erasure shard: ciphertext (data shards) or parity, never plaintext.
    pub payload: Vec<u8>,
}

impl SealedSlice {
    /// The canonical encoding: `[b'S'][1][postcard header][payload bytes]`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        // A
        let mut out = codec::encode(SLICE_TAG, &self.header)?;
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Decodes an encoded slice.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        // A
        let (header, payload) = Self::split(bytes)?;
        Ok(SealedSlice {
            header,
            payload: payload.to_vec(),
        })
    }

    /// Splits an encoded slice into its header and a borrowed payload (no copy on reads).
    pub fn split(bytes: &[u8]) -> Result<(SliceHeader, &[u8])> {
        // A
        let body = codec::check_header("slice", SLICE_TAG, bytes)?;
        let (header, payload) = postcard::take_from_bytes::<SliceHeader>(body)
            .map_err(|e| Error::malformed("slice", e))?;
        if header.k == 0 || header.index as usize >= header.k as usize + header.m as usize {
            return Err(Error::malformed("slice", "shard index out of range"));
        }
        Ok((header, payload))
    }

    /// The slice's address: BLAKE3 of its encoding.
    pub fn hash(&self) -> Result<Hash> {
        // A
        Ok(Hash::of(&self.encode()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pinned_hash() {
        let s = SealedSlice {
            header: SliceHeader {
                chunk: Hash([1; 32]),
                index: 2,
                k: 4,
                m: 2,
            },
            payload: b"payload".to_vec(),
        };
        assert_eq!(
            s.hash().unwrap().to_hex(),
            "b932c03dfb79e6a9764c739dca74cea5c218f63ca3e16906f682d4b8c83b1dd5"
        );
    }

    proptest! {
        #[test]
        fn round_trip(chunk in any::<[u8; 32]>(), k in 1u8..10, m in 0u8..5, idx in any::<u8>(),
                      payload in prop::collection::vec(any::<u8>(), 0..300), edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)) {
            let index = idx % (k + m);
            let s = SealedSlice { header: SliceHeader { chunk: Hash(chunk), index, k, m }, payload };
            let enc = s.encode().unwrap();
            // A slice valid up to a few bytes reaches the header checks.
            let _ = SealedSlice::decode(&crate::fuzzing::mutate(&enc, &edits));
            prop_assert_eq!(SealedSlice::decode(&enc).ok(), Some(s));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = SealedSlice::decode(&bytes);
            let _ = SealedSlice::decode(&[&[SLICE_TAG, crate::codec::RECORD_VERSION][..], &bytes].concat());
        }
    }
}
