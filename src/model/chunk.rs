//! Chunk record: how one deduplicated chunk was sealed and where its slices are.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;

/// Type tag of an encoded chunk record.
pub const CHUNK_TAG: u8 = b'C';

/// Everything needed to rebuild a chunk: stored under the chunk id. A chunk is sealed alone
/// into its own slices ([`ChunkKind::Sliced`]) or, when small, into a pack
/// ([`ChunkKind::Member`]); a pack is itself stored as a record ([`ChunkKind::Pack`]) with
/// the slices of its members' concatenated sealed bytes, so that everything that places,
/// hands over and repairs slices treats packs and large chunks alike.
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
    /// Hashes of the k+m slices, data slices first (none for a pack member).
    pub slices: Vec<Hash>,
    /// Sealed alone, sealed into a pack, or a pack.
    pub kind: ChunkKind,
}

/// Where a chunk's sealed bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkKind {
    /// Sealed alone: its sealed bytes are erasure-coded into its own k+m slices.
    Sliced,
    /// Sealed into pack `pack`, inside a *frame*: several small chunks compressed and
    /// encrypted together. The frame's sealed bytes are `offset..offset + sealed_len` of the
    /// pack's payload (`nonce` and `key_epoch` are the frame's), it opens to `frame_size`
    /// bytes, and this chunk is `at..at + size` of those. No slices of its own (k = m = 0).
    Member {
        /// The pack's id.
        pack: Hash,
        /// Byte offset of the frame's sealed bytes in the pack's payload.
        offset: u32,
        /// Plaintext length of the whole frame.
        frame_size: u32,
        /// Offset of this chunk's plaintext in the frame's plaintext.
        at: u32,
    },
    /// A pack: k+m slices of its members' sealed bytes, concatenated. It has no key or nonce
    /// of its own (each member is encrypted alone), `size` equals `sealed_len`, and its
    /// reference count is the number of member records that name it.
    Pack,
    /// Sealed into pack `pack` as a frame of its own, compressed against chunk `base` (the
    /// previous version's chunk at the same place: a small file edited between two backups
    /// costs its edit, not its size). The frame's sealed bytes are `offset..offset +
    /// sealed_len` of the pack's payload and open to this chunk alone, given the base's
    /// plaintext as zstd's prefix. No slices of its own (k = m = 0); the base counts this
    /// record as one of its references, so it outlives every delta made against it.
    Delta {
        /// The pack's id.
        pack: Hash,
        /// Byte offset of the frame's sealed bytes in the pack's payload.
        offset: u32,
        /// The chunk whose plaintext the frame was compressed against.
        base: Hash,
    },
}

/// Longest chain of deltas a chunk may sit at the end of (a delta against a delta ...):
/// reading a chunk opens at most this many frames more than itself. A put compresses against
/// a base this deep or deeper no further, and stores the chunk whole instead.
pub const MAX_DELTA_DEPTH: u8 = 8;

/// Largest pack payload a record may state: bounds what a reader rebuilds in memory.
pub const MAX_PACK: u32 = 16 << 20;
/// Largest frame plaintext a member record may state: bounds what a reader decompresses.
pub const MAX_FRAME: u32 = 4 << 20;

impl ChunkRecord {
    /// The canonical encoding `[b'C'][1][postcard]`.
    pub fn encode(&self) -> Result<Vec<u8>> {
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
        let bound = |size: u32| size as u64 + size as u64 / 64 + 1024;
        let sizes_ok = match self.kind {
            ChunkKind::Pack => self.size == self.sealed_len && self.size <= MAX_PACK,
            ChunkKind::Member { frame_size, at, .. } => {
                frame_size <= MAX_FRAME
                    && at as u64 + self.size as u64 <= frame_size as u64
                    && self.sealed_len as u64 <= bound(frame_size)
            }
            ChunkKind::Sliced => {
                self.size as usize <= fastcdc::v2020::MAXIMUM_MAX
                    && self.sealed_len as u64 <= bound(self.size)
            }
            ChunkKind::Delta { .. } => {
                self.size <= MAX_FRAME && self.sealed_len as u64 <= bound(self.size)
            }
        };
        if !sizes_ok {
            return Err("chunk record sizes out of range".into());
        }
        if let Some((_, offset)) = self.pack() {
            if self.k != 0 || self.m != 0 || !self.slices.is_empty() {
                return Err("a pack member with slices of its own".into());
            }
            if offset as u64 + self.sealed_len as u64 > MAX_PACK as u64 {
                return Err("a pack member beyond the largest pack".into());
            }
            return Ok(self);
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

    /// The pack holding this chunk and the offset of its frame's sealed bytes there, for a
    /// member.
    pub fn pack(&self) -> Option<(Hash, u32)> {
        // A
        match self.kind {
            ChunkKind::Member { pack, offset, .. } | ChunkKind::Delta { pack, offset, .. } => {
                Some((pack, offset))
            }
            _ => None,
        }
    }

    /// The chunk this one was compressed against, for a delta.
    pub fn base(&self) -> Option<Hash> {
        // A
        match self.kind {
            ChunkKind::Delta { base, .. } => Some(base),
            _ => None,
        }
    }

    /// The other records this one holds a reference to: its pack and, for a delta, its
    /// base. Each counts this record among its references while it is stored.
    pub fn holds(&self) -> impl Iterator<Item = Hash> {
        // A
        self.pack().map(|(p, _)| p).into_iter().chain(self.base())
    }

    /// True for a pack's record (no plaintext of its own: never opened as a chunk).
    pub fn is_pack(&self) -> bool {
        // A
        self.kind == ChunkKind::Pack
    }

    /// Bytes held by each slice of this chunk (data + parity, without headers).
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
    kind: ChunkKind,
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
            kind: u.kind,
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
                      k in 1u8..8, m in 0u8..4, seed in any::<u8>(), edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)) {
            let sealed_len = size / 2 + sealed_extra;
            let r = ChunkRecord { size, sealed_len, key_epoch, nonce: [seed; 12], k, m,
                slices: (0..(k + m)).map(|i| Hash([seed ^ i; 32])).collect(), kind: ChunkKind::Sliced };
            let enc = r.encode().unwrap();
            let _ = ChunkRecord::decode(&crate::fuzzing::mutate(&enc, &edits));
            prop_assert_eq!(ChunkRecord::decode(&enc).ok(), Some(r));
        }

        #[test]
        fn members_and_packs_round_trip(size in 0u32..(1 << 20), key_epoch in any::<u32>(),
                                        offset in 0u32..(8 << 20), seed in any::<u8>(), k in 1u8..8, m in 0u8..4,
                                        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)) {
            let member = ChunkRecord { size, sealed_len: size + 29, key_epoch, nonce: [seed; 12], k: 0, m: 0,
                slices: Vec::new(), kind: ChunkKind::Member { pack: Hash([seed; 32]), offset, frame_size: size + 7, at: 7 } };
            let enc = member.encode().unwrap();
            // Records valid up to a few bytes reach the decoder's checks.
            let _ = ChunkRecord::decode(&crate::fuzzing::mutate(&enc, &edits));
            prop_assert_eq!(ChunkRecord::decode(&enc).ok(), Some(member));
            let delta = ChunkRecord { size, sealed_len: size / 8 + 29, key_epoch, nonce: [seed; 12], k: 0, m: 0,
                slices: Vec::new(), kind: ChunkKind::Delta { pack: Hash([seed; 32]), offset, base: Hash([!seed; 32]) } };
            let enc = delta.encode().unwrap();
            let _ = ChunkRecord::decode(&crate::fuzzing::mutate(&enc, &edits));
            prop_assert_eq!(delta.holds().collect::<Vec<_>>(), vec![Hash([seed; 32]), Hash([!seed; 32])]);
            prop_assert_eq!(ChunkRecord::decode(&enc).ok(), Some(delta));
            let len = size.min(MAX_PACK);
            let pack = ChunkRecord { size: len, sealed_len: len, key_epoch: 0, nonce: [0; 12], k, m,
                slices: (0..(k + m)).map(|i| Hash([seed ^ i; 32])).collect(), kind: ChunkKind::Pack };
            let enc = pack.encode().unwrap();
            let _ = ChunkRecord::decode(&crate::fuzzing::mutate(&enc, &edits));
            prop_assert_eq!(ChunkRecord::decode(&enc).ok(), Some(pack));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = ChunkRecord::decode(&bytes);
            let _ = ChunkRecord::decode(&[&[CHUNK_TAG, crate::codec::RECORD_VERSION][..], &bytes].concat());
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
            kind: ChunkKind::Sliced,
        };
        assert!(
            ChunkRecord::decode(&r.encode().unwrap()).is_err(),
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
            kind: ChunkKind::Sliced,
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
    fn deltas_have_no_slices_and_stay_within_a_frame() {
        let delta = ChunkRecord {
            size: 10,
            sealed_len: 39,
            key_epoch: 0,
            nonce: [0; 12],
            k: 0,
            m: 0,
            slices: Vec::new(),
            kind: ChunkKind::Delta {
                pack: Hash([1; 32]),
                offset: 0,
                base: Hash([2; 32]),
            },
        };
        assert!(ChunkRecord::decode(&delta.encode().unwrap()).is_ok());
        assert_eq!(delta.pack(), Some((Hash([1; 32]), 0)));
        let with_slice = ChunkRecord {
            k: 1,
            slices: vec![Hash::default()],
            ..delta.clone()
        };
        assert!(ChunkRecord::decode(&with_slice.encode().unwrap()).is_err());
        let huge = ChunkRecord {
            size: MAX_FRAME + 1,
            sealed_len: 39,
            ..delta.clone()
        };
        assert!(ChunkRecord::decode(&huge.encode().unwrap()).is_err());
        let far = ChunkRecord {
            kind: ChunkKind::Delta {
                pack: Hash([1; 32]),
                offset: MAX_PACK,
                base: Hash([2; 32]),
            },
            ..delta
        };
        assert!(ChunkRecord::decode(&far.encode().unwrap()).is_err());
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
            kind: ChunkKind::Sliced,
        };
        assert!(ChunkRecord::decode(&r.encode().unwrap()).is_err());
    }

    #[test]
    fn members_have_no_slices_and_packs_no_plaintext_size() {
        let member = ChunkRecord {
            size: 10,
            sealed_len: 39,
            key_epoch: 0,
            nonce: [0; 12],
            k: 0,
            m: 0,
            slices: Vec::new(),
            kind: ChunkKind::Member {
                pack: Hash([1; 32]),
                offset: 0,
                frame_size: 10,
                at: 0,
            },
        };
        assert!(ChunkRecord::decode(&member.encode().unwrap()).is_ok());
        let outside = ChunkRecord {
            kind: ChunkKind::Member {
                pack: Hash([1; 32]),
                offset: 0,
                frame_size: 10,
                at: 1,
            },
            ..member.clone()
        };
        assert!(ChunkRecord::decode(&outside.encode().unwrap()).is_err());
        let with_slice = ChunkRecord {
            k: 1,
            slices: vec![Hash::default()],
            ..member.clone()
        };
        assert!(ChunkRecord::decode(&with_slice.encode().unwrap()).is_err());
        let far = ChunkRecord {
            kind: ChunkKind::Member {
                pack: Hash([1; 32]),
                offset: MAX_PACK,
                frame_size: 10,
                at: 0,
            },
            ..member
        };
        assert!(ChunkRecord::decode(&far.encode().unwrap()).is_err());
        let pack = ChunkRecord {
            size: 100,
            sealed_len: 99,
            key_epoch: 0,
            nonce: [0; 12],
            k: 1,
            m: 0,
            slices: vec![Hash::default()],
            kind: ChunkKind::Pack,
        };
        assert!(ChunkRecord::decode(&pack.encode().unwrap()).is_err());
    }

    /// The encoding is part of the store format (and a member's sealing id hashes it).
    #[test]
    fn pinned_encodings() {
        let member = ChunkRecord {
            size: 5,
            sealed_len: 34,
            key_epoch: 1,
            nonce: [7; 12],
            k: 0,
            m: 0,
            slices: Vec::new(),
            kind: ChunkKind::Member {
                pack: Hash([2; 32]),
                offset: 300,
                frame_size: 40,
                at: 20,
            },
        };
        let pack = ChunkRecord {
            size: 64,
            sealed_len: 64,
            key_epoch: 0,
            nonce: [0; 12],
            k: 1,
            m: 1,
            slices: vec![Hash([3; 32]), Hash([4; 32])],
            kind: ChunkKind::Pack,
        };
        let delta = ChunkRecord {
            size: 5,
            sealed_len: 30,
            key_epoch: 1,
            nonce: [7; 12],
            k: 0,
            m: 0,
            slices: Vec::new(),
            kind: ChunkKind::Delta {
                pack: Hash([2; 32]),
                offset: 300,
                base: Hash([5; 32]),
            },
        };
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(delta.encode().unwrap()), "4301051e01070707070707070707070707000000030202020202020202020202020202020202020202020202020202020202020202ac020505050505050505050505050505050505050505050505050505050505050505");
        assert_eq!(hex(member.encode().unwrap()), "4301052201070707070707070707070707000000010202020202020202020202020202020202020202020202020202020202020202ac022814");
        assert_eq!(hex(pack.encode().unwrap()), "43014040000000000000000000000000000101020303030303030303030303030303030303030303030303030303030303030303040404040404040404040404040404040404040404040404040404040404040402");
    }
}
