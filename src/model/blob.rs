//! Blob: one version of a key in the version DAG, addressed by the hash of its encoding.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;
use crate::model::meta::VersionMeta;

/// Type tag of an encoded blob record.
pub const BLOB_TAG: u8 = b'B';

/// How a version relates to its parents, as the design names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKind {
    /// First version of a key's history: no parents.
    VersionVector,
    /// A version with exactly one parent.
    Child,
    /// A merge of several heads: two or more parents.
    Merger,
}

impl BlobKind {
    /// The kind implied by a parent count.
    pub fn for_parents(n: usize) -> Self {
        // A
        match n {
            0 => BlobKind::VersionVector,
            1 => BlobKind::Child,
            _ => BlobKind::Merger,
        }
    }

    /// Lowercase name used in `--json` output.
    pub fn as_str(&self) -> &'static str {
        // A
        match self {
            BlobKind::VersionVector => "version_vector",
            BlobKind::Child => "child",
            BlobKind::Merger => "merger",
        }
    }
}

/// One chunk of a blob's content, in order: its id and plaintext length. Lengths let a reader
/// find the chunk holding any offset without decoding the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Keyed BLAKE3 of the chunk's plaintext (see `crypto::store_keys`).
    pub id: Hash,
    /// Plaintext length in bytes.
    pub size: u32,
}

/// A version of a key. Immutable: its hash covers every field, including parents and time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// The key this version belongs to.
    pub key: String,
    /// Parent versions (none for the first version, several for a merge).
    pub parents: Vec<Hash>,
    /// Creation time, nanoseconds since the Unix epoch (UTC).
    pub created: i64,
    /// Relation to the parents.
    pub kind: BlobKind,
    /// Content length in bytes (sum of chunk sizes).
    pub size: u64,
    /// Content chunks in order.
    pub chunks: Vec<ChunkRef>,
    /// File metadata or snapshot description (store format 4).
    pub meta: VersionMeta,
}

impl Blob {
    /// The canonical encoding: `[b'B'][1][postcard]` (FORMAT.md, "Blob record").
    pub fn encode(&self) -> Result<Vec<u8>> {
        // A
        codec::encode(BLOB_TAG, self)
    }

    /// Decodes a blob record, rejecting wrong tags, versions and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        // A
        codec::decode("blob", BLOB_TAG, bytes)
    }

    /// [`Blob::created`] as a [`std::time::SystemTime`].
    pub fn created_at(&self) -> std::time::SystemTime {
        // A
        crate::model::nanos::to_system_time(self.created)
    }

    /// The blob's address: BLAKE3 of its canonical encoding.
    pub fn hash(&self) -> Result<Hash> {
        // A
        Ok(Hash::of(&self.encode()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Blob {
        Blob {
            key: "docs/report.txt".into(),
            parents: vec![Hash([7; 32])],
            created: 1_764_000_000_000_000_000,
            kind: BlobKind::Child,
            size: 5,
            chunks: vec![ChunkRef {
                id: Hash([9; 32]),
                size: 5,
            }],
            meta: VersionMeta::None,
        }
    }

    /// Pinned vector: if this changes, every stored blob hash changes. Never update it
    /// without a format version bump.
    #[test]
    fn pinned_hash() {
        let b = sample();
        assert_eq!(
            b.hash().unwrap().to_hex(),
            "95b19245d50573161408741dc0f1991be193b4b820e7fe2725d7e75861046b1f"
        );
        assert_eq!(&b.encode().unwrap()[..2], &[b'B', 1]);
    }

    /// Pinned vector of a version with file metadata (store format 4).
    #[test]
    fn pinned_hash_with_file_meta() {
        let mut b = sample();
        b.meta = VersionMeta::File(crate::model::FileMeta {
            mode: 0o100_755,
            uid: 1000,
            gid: 100,
            mtime: 1_764_000_000_123_456_789,
        });
        assert_eq!(
            b.hash().unwrap().to_hex(),
            "4d200848a51a2b75c0af10cabd6443573cc6901d336c99e48f9c4c86903b7e0c"
        );
    }

    #[test]
    fn rejects_trailing_and_wrong_tag() {
        let mut e = sample().encode().unwrap();
        e.push(0);
        assert!(Blob::decode(&e).is_err());
        let mut e = sample().encode().unwrap();
        e[0] = b'C';
        assert!(Blob::decode(&e).is_err());
        assert!(Blob::decode(&[]).is_err());
    }

    fn arb_hash() -> impl Strategy<Value = Hash> {
        any::<[u8; 32]>().prop_map(Hash)
    }

    proptest! {
        #[test]
        fn round_trip(key in ".{0,40}", parents in prop::collection::vec(arb_hash(), 0..4),
                      created in any::<i64>(), size in any::<u64>(),
                      chunks in prop::collection::vec((arb_hash(), any::<u32>()), 0..8), mode in any::<u32>(),
                      edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)) {
            let b = Blob {
                key, kind: BlobKind::for_parents(parents.len()), parents, created, size,
                chunks: chunks.into_iter().map(|(id, size)| ChunkRef { id, size }).collect(),
                meta: match mode % 3 {
                    0 => VersionMeta::None,
                    1 => VersionMeta::File(crate::model::FileMeta { mode, uid: 1, gid: 2, mtime: created }),
                    _ => VersionMeta::Snapshot(Box::new(crate::model::SnapshotInfo {
                        root: crate::model::tree::tests::sample_entry(b"src"),
                        host: format!("h{mode}"),
                        path: mode.to_le_bytes().to_vec(),
                        started: created,
                        finished: created.wrapping_add(1),
                        summary: crate::model::SnapshotSummary { files_new: u64::from(mode), ..Default::default() },
                        errors: vec![(b"a\xff".to_vec(), "denied".into())],
                    })),
                },
            };
            let enc = b.encode().unwrap();
            // A record valid up to a few bytes reaches the decoder's body.
            let _ = Blob::decode(&crate::fuzzing::mutate(&enc, &edits));
            prop_assert_eq!(Blob::decode(&enc).ok(), Some(b));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Blob::decode(&bytes);
            let _ = Blob::decode(&[&[BLOB_TAG, crate::codec::RECORD_VERSION][..], &bytes].concat());
        }
    }
}
