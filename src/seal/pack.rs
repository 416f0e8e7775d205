//! Packs: small chunks sealed together. Each small chunk is still compressed and encrypted
//! alone (its own key and nonce, so deduplication and the one-sealing rule stay per chunk),
//! but the sealed bytes of many are concatenated into one payload that is erasure-coded as
//! one unit. A tree of small files then gets k data + m parity slices per pack, as a large
//! file does, instead of 1 + 2 whole copies per file, and LMDB stores one bundle per pack
//! instead of one page-rounded bundle per file.
//!
//! Data shards hold the payload in order (shard i = bytes `i*L .. (i+1)*L`), so a member is
//! read from the one or two data shards its range covers, without rebuilding the pack.

use crate::crypto::StoreKeys;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::chunk::MAX_PACK;
use crate::model::{ChunkKind, ChunkRecord};
use crate::seal::sealer::{seal_body, slice_up};
use crate::seal::{erasure, SealParams, SealedChunk};

/// BLAKE3 key-derivation context of pack ids: a pack id is derived from its payload, in a
/// domain of its own, so it can never equal a chunk id (keyed by the store's secret).
const PACK_ID_CONTEXT: &str = "ouroboros-db 2026-12 pack id v1";

/// Sealed bytes of a pack's payload at which a writer closes it and starts another.
pub const PACK_TARGET: usize = 4 << 20;

/// The id of a pack with this payload.
pub fn pack_id(payload: &[u8]) -> Hash {
    // A
    Hash(
        *blake3::Hasher::new_derive_key(PACK_ID_CONTEXT)
            .update(payload)
            .finalize()
            .as_bytes(),
    )
}

/// Seals `chunks` (`(id, plaintext)`) one by one into one pack: the pack's record and
/// slices, and a member record per chunk naming it.
pub fn seal_pack(
    keys: &StoreKeys,
    params: SealParams,
    chunks: &[(Hash, &[u8])],
) -> Result<SealedChunk> {
    // PA
    let mut payload = Vec::with_capacity(chunks.iter().map(|(_, p)| p.len() / 2 + 64).sum());
    let mut members = Vec::with_capacity(chunks.len());
    for (id, plaintext) in chunks {
        let offset = offset_of(payload.len())?;
        let body = seal_body(keys, params.zstd_level, id, plaintext, &mut payload)?;
        members.push(Member {
            id: *id,
            size: body.size,
            sealed_len: body.sealed_len,
            key_epoch: keys.epoch,
            nonce: body.nonce,
            offset,
        });
    }
    build_pack(params, &payload, members)
}

/// A member about to be placed in a pack: its sealed bytes are at `offset` of the payload.
pub(crate) struct Member {
    pub id: Hash,
    pub size: u32,
    pub sealed_len: u32,
    pub key_epoch: u32,
    pub nonce: [u8; 12],
    pub offset: u32,
}

/// The pack of `payload` (members' sealed bytes at their offsets): slices, pack record and
/// member records. Also used by gc to rewrite the live members of half-empty packs.
pub(crate) fn build_pack(
    params: SealParams,
    payload: &[u8],
    members: Vec<Member>,
) -> Result<SealedChunk> {
    // PA
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PACK)
        .ok_or_else(|| Error::InvalidArgument("pack larger than the largest pack".into()))?;
    let id = pack_id(payload);
    let k = erasure::effective_k(payload.len(), params.k);
    let slices = slice_up(&id, payload, k, params.m)?;
    let members = members
        .into_iter()
        .map(|m| {
            let record = ChunkRecord {
                size: m.size,
                sealed_len: m.sealed_len,
                key_epoch: m.key_epoch,
                nonce: m.nonce,
                k: 0,
                m: 0,
                slices: Vec::new(),
                kind: ChunkKind::Member {
                    pack: id,
                    offset: m.offset,
                },
            };
            (m.id, record)
        })
        .collect();
    Ok(SealedChunk {
        id,
        record: ChunkRecord {
            size: len,
            sealed_len: len,
            key_epoch: 0,
            nonce: [0; 12],
            k,
            m: params.m,
            slices: slices.iter().map(|(h, _)| *h).collect(),
            kind: ChunkKind::Pack,
        },
        slices,
        members,
    })
}

/// A payload offset as stored in a member record.
fn offset_of(len: usize) -> Result<u32> {
    // A
    u32::try_from(len)
        .ok()
        .filter(|l| *l < MAX_PACK)
        .ok_or_else(|| Error::InvalidArgument("pack larger than the largest pack".into()))
}

/// The sealed bytes of a member at `offset..offset + len` of its pack, copied from the data
/// shards that cover them when those are all present (`None` otherwise: rebuild the pack).
/// Slices are not hash-checked on this path: the member's authentication tag and its id
/// check the bytes end to end, and a failure falls back to the checked path.
pub fn member_from_data_shards(
    pack: &ChunkRecord,
    shards: &[Option<&[u8]>],
    offset: u32,
    len: u32,
    out: &mut Vec<u8>,
) -> Option<()> {
    // PA
    out.clear();
    let k = pack.k as usize;
    let shard = pack.shard_len();
    let (start, end) = (offset as usize, offset as usize + len as usize);
    if end > pack.sealed_len as usize || shard == 0 {
        return None;
    }
    let mut at = start;
    while at < end {
        let i = at / shard;
        if i >= k {
            return None;
        }
        let data = (*shards.get(i)?)?;
        let from = at - i * shard;
        let to = (end - i * shard).min(shard);
        out.extend_from_slice(data.get(from..to)?);
        at = i * shard + to;
    }
    Some(())
}

/// Opens member `id` (record `member`, at `offset` of pack record `pack`) from the pack's
/// shards (`None` = missing or failed its hash): straight from the data shards that cover
/// it when they are intact, else from the pack's payload rebuilt from any k shards.
pub fn open_member_into(
    keys: &StoreKeys,
    id: &Hash,
    member: &ChunkRecord,
    pack: &ChunkRecord,
    shards: &[Option<&[u8]>],
    plain: &mut Vec<u8>,
) -> Result<()> {
    // PA
    let (_, offset) = member
        .pack()
        .ok_or_else(|| Error::Corrupt(format!("chunk {} is not in a pack", id.short())))?;
    let mut sealed = Vec::new();
    if member_from_data_shards(pack, shards, offset, member.sealed_len, &mut sealed).is_none() {
        let payload = erasure::reconstruct(pack.k, pack.m, pack.sealed_len as usize, shards)?;
        let range = offset as usize..offset as usize + member.sealed_len as usize;
        sealed = payload
            .get(range)
            .ok_or_else(|| {
                Error::Corrupt(format!("chunk {} lies beyond its pack's end", id.short()))
            })?
            .to_vec();
    }
    crate::seal::open_sealed_into(keys, id, member, &sealed, plain)
}

/// Indexes of the data shards that hold `offset..offset + len` of a pack's payload.
pub fn covering_shards(pack: &ChunkRecord, offset: u32, len: u32) -> std::ops::RangeInclusive<u8> {
    // A
    let shard = pack.shard_len().max(1);
    let first = offset as usize / shard;
    let last = (offset as usize + (len as usize).max(1) - 1) / shard;
    let top = (pack.k as usize).saturating_sub(1);
    (first.min(top) as u8)..=(last.min(top) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SealedSlice;
    use crate::seal::open_chunk;
    use crate::seal::sealer::open_sealed_into;
    use proptest::prelude::*;

    fn params() -> SealParams {
        SealParams {
            k: 4,
            m: 2,
            zstd_level: 3,
        }
    }

    fn payloads(sealed: &SealedChunk) -> Vec<Vec<u8>> {
        sealed
            .slices
            .iter()
            .map(|(_, b)| SealedSlice::split(b).unwrap().1.to_vec())
            .collect()
    }

    proptest! {
        /// Any member of any pack reads back from the data shards alone, and from any k
        /// shards after losing up to m of them.
        #[test]
        fn every_member_reads_back(files in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..40),
                                   lose in prop::collection::vec(any::<u8>(), 0..3)) {
            let keys = StoreKeys::generate();
            let chunks: Vec<(Hash, &[u8])> = files.iter().map(|f| (keys.chunk_id(f), f.as_slice())).collect();
            let sealed = seal_pack(&keys, params(), &chunks).unwrap();
            prop_assert_eq!(sealed.members.len(), chunks.len());
            prop_assert!(sealed.record.is_pack());
            let shards = payloads(&sealed);
            let all: Vec<Option<&[u8]>> = shards.iter().map(|s| Some(s.as_slice())).collect();
            let mut lossy = all.clone();
            for l in &lose { let n = lossy.len(); lossy[*l as usize % n] = None; }
            let rebuilt = erasure::reconstruct(sealed.record.k, sealed.record.m, sealed.record.sealed_len as usize, &lossy).unwrap();
            let mut buf = Vec::new();
            let mut plain = Vec::new();
            for ((id, record), (_, data)) in sealed.members.iter().zip(&chunks) {
                let (pack, offset) = record.pack().unwrap();
                prop_assert_eq!(pack, sealed.id);
                member_from_data_shards(&sealed.record, &all, offset, record.sealed_len, &mut buf).unwrap();
                open_sealed_into(&keys, id, record, &buf, &mut plain).unwrap();
                prop_assert_eq!(&plain, data);
                let range = offset as usize..(offset + record.sealed_len) as usize;
                open_sealed_into(&keys, id, record, &rebuilt[range], &mut plain).unwrap();
                prop_assert_eq!(&plain, data);
                for i in covering_shards(&sealed.record, offset, record.sealed_len) {
                    prop_assert!((i as usize) < sealed.record.k as usize);
                }
            }
        }
    }

    #[test]
    fn a_pack_is_no_chunk_and_a_flipped_byte_is_caught() {
        let keys = StoreKeys::generate();
        let a = b"first file".to_vec();
        let b = b"second file, a little longer".to_vec();
        let chunks = vec![(keys.chunk_id(&a), &a[..]), (keys.chunk_id(&b), &b[..])];
        let sealed = seal_pack(&keys, params(), &chunks).unwrap();
        let shards = payloads(&sealed);
        let view: Vec<Option<&[u8]>> = shards.iter().map(|s| Some(s.as_slice())).collect();
        assert!(open_chunk(&keys, &sealed.id, &sealed.record, &view).is_err());
        let (id, record) = &sealed.members[1];
        let mut buf = Vec::new();
        let (_, offset) = record.pack().unwrap();
        member_from_data_shards(&sealed.record, &view, offset, record.sealed_len, &mut buf)
            .unwrap();
        buf[3] ^= 1;
        let mut plain = Vec::new();
        assert!(open_sealed_into(&keys, id, record, &buf, &mut plain).is_err());
        assert!(plain.is_empty());
    }

    #[test]
    fn pack_ids_are_pinned() {
        assert_eq!(
            pack_id(b"").to_string(),
            "7041b461480c0803fbe93c5aa7aa9a99f87147904c654c6c3b3b5f876dc4cf2c"
        );
    }
}
