//! The secret bundle of a key epoch and what is derived from it.
//!
//! One random bundle per epoch is wrapped for every recipient in the KeyIndex. Chunk ids are
//! keyed BLAKE3 under `chunk_id_key`, so holders of slices cannot confirm a guessed plaintext;
//! each chunk is encrypted under its own key derived from `data_key` and the chunk id, so no
//! nonce is ever reused and nothing but the id is needed to find the key.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;

/// Type tag of an encoded key bundle (only ever stored age-encrypted).
pub const KEYS_TAG: u8 = b'K';

/// The secrets of one key epoch. Zeroed on drop.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct StoreKeys {
    /// Epoch number these keys belong to.
    pub epoch: u32,
    /// Key of the keyed BLAKE3 that names chunks (the same in every epoch, so dedup survives
    /// key rotation).
    pub chunk_id_key: [u8; 32],
    /// Root of the per-chunk encryption keys of this epoch.
    pub data_key: [u8; 32],
    /// Seed of the FastCDC gear table, so cut points do not leak content (same in every epoch).
    pub cdc_seed: u64,
}

impl StoreKeys {
    /// Fresh random keys for epoch 0.
    pub fn generate() -> Self {
        // PA
        use rand::RngCore;
        let mut rng = rand::rngs::OsRng;
        let mut k = StoreKeys {
            epoch: 0,
            chunk_id_key: [0; 32],
            data_key: [0; 32],
            cdc_seed: rng.next_u64(),
        };
        rng.fill_bytes(&mut k.chunk_id_key);
        rng.fill_bytes(&mut k.data_key);
        k
    }

    /// The chunk id of a plaintext chunk.
    pub fn chunk_id(&self, plaintext: &[u8]) -> Hash {
        // PA
        Hash(*blake3::keyed_hash(&self.chunk_id_key, plaintext).as_bytes())
    }

    /// The AES-256-GCM key of one chunk.
    pub fn chunk_key(&self, chunk_id: &Hash) -> [u8; 32] {
        // PA
        *blake3::keyed_hash(&self.data_key, &chunk_id.0).as_bytes()
    }

    /// Serialises the bundle for wrapping.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        // PA
        codec::encode(KEYS_TAG, self)
    }

    /// Parses an unwrapped bundle.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        // PA
        codec::decode("key bundle", KEYS_TAG, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_are_keyed_and_stable() {
        let mut a = StoreKeys::generate();
        a.chunk_id_key = [1; 32];
        a.data_key = [2; 32];
        let b = StoreKeys::decode(&a.encode().unwrap()).unwrap();
        assert_eq!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_ne!(
            a.chunk_id(b"x"),
            Hash::of(b"x"),
            "ids never equal a plain hash"
        );
        assert_eq!(
            a.chunk_id(b"hello").to_hex(),
            "acc938a1d8801c7def1b72b9940b4df68c61b0071961a164ae1a38ad6cf954af"
        );
        assert_ne!(a.chunk_key(&Hash([3; 32])), a.chunk_key(&Hash([4; 32])));
    }
}
