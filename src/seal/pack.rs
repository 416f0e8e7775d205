//! Packs: small chunks sealed together. Small chunks are gathered into *frames* of about
//! [`FRAME_BYTES`] of plaintext, each frame compressed and encrypted as one (small files
//! compress far better and faster together: a frame of source files is about a third smaller
//! than the same files compressed one by one), and the sealed frames of a pack are
//! concatenated into one payload that is erasure-coded as a unit. A tree of small files then
//! gets k data + m parity slices per pack, as a large file does, instead of 1 + 2 whole copies
//! per file, and LMDB stores one bundle per pack. Deduplication stays per chunk: each chunk
//! has its own record, naming its pack, frame and place in the frame.
//!
//! Data shards hold the payload in order (shard i = bytes `i*L .. (i+1)*L`), so a member is
//! read by opening its frame from the one or two data shards the frame lies in, without
//! rebuilding the pack.

use crate::crypto::StoreKeys;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::chunk::{MAX_FRAME, MAX_PACK};
use crate::model::{ChunkKind, ChunkRecord};
use crate::seal::delta::DeltaFrame;
use crate::seal::sealer::slice_up;
use crate::seal::{cipher, compress, erasure, frame_cache, SealParams, SealedChunk};

/// BLAKE3 key-derivation context of pack ids: a pack id is derived from its payload, in a
/// domain of its own, so it can never equal a chunk id (keyed by the store's secret).
const PACK_ID_CONTEXT: &str = "ouroboros-db 2026-12 pack id v1";
/// BLAKE3 key-derivation context of the value a frame's key is derived from (with the data
/// key, as a chunk's key is from its id).
const FRAME_KEY_CONTEXT: &str = "ouroboros-db 2026-12 frame key v1";

/// Plaintext bytes of small chunks gathered into one frame: big enough for zstd to find what
/// files share (at 256 KiB a source tree's frames take 3-5% less than at 128), small enough
/// that reading one small file decompresses little more than a quarter of a millisecond of
/// work.
pub const FRAME_BYTES: usize = 256 << 10;

/// Sealed bytes of live members at which gc closes a rewritten pack and starts another.
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

/// The AES-256-GCM key of the frame sealed with `nonce`: derived from the nonce, which is
/// random per frame, so no (key, nonce) pair ever repeats.
pub(crate) fn frame_key(keys: &StoreKeys, nonce: &[u8; 12]) -> [u8; 32] {
    // PA
    let id = blake3::Hasher::new_derive_key(FRAME_KEY_CONTEXT)
        .update(nonce)
        .finalize();
    keys.chunk_key(&Hash(*id.as_bytes()))
}

/// Seals `chunks` (`(id, plaintext)`, each under 64 KiB) into one pack: frames of about
/// [`FRAME_BYTES`], the pack's record and slices, and a member record per chunk; then each
/// of `deltas` (compressed already, against its base) as a frame of its own.
pub fn seal_pack(
    keys: &StoreKeys,
    params: SealParams,
    chunks: &[(Hash, &[u8])],
    deltas: &[DeltaFrame],
) -> Result<SealedChunk> {
    // PA
    let total: usize = chunks.iter().map(|(_, p)| p.len()).sum();
    let mut payload = Vec::with_capacity(total / 2 + 64);
    let mut members = Vec::with_capacity(chunks.len());
    let mut frame = Vec::with_capacity(FRAME_BYTES + (64 << 10));
    let mut at = Vec::new();
    let mut start = 0;
    for (n, (_, plaintext)) in chunks.iter().enumerate() {
        at.push(frame_offset(frame.len())?);
        frame.extend_from_slice(plaintext);
        if frame.len() >= FRAME_BYTES || n + 1 == chunks.len() {
            let sealed = seal_frame(keys, params.zstd_level, &frame, &mut payload)?;
            for (i, (id, p)) in chunks[start..=n].iter().enumerate() {
                members.push(Member {
                    id: *id,
                    size: p.len() as u32,
                    at: at[i],
                    frame: sealed,
                    base: None,
                });
            }
            frame.clear();
            at.clear();
            start = n + 1;
        }
    }
    for d in deltas {
        let start = payload.len();
        payload.extend_from_slice(&d.body);
        let sealed = encrypt_frame(keys, start, d.size as usize, &mut payload)?;
        members.push(Member {
            id: d.id,
            size: d.size,
            at: 0,
            frame: sealed,
            base: Some(d.base),
        });
    }
    build_pack(params, &payload, members)
}

/// Compresses and encrypts one frame onto the end of `payload`.
fn seal_frame(
    keys: &StoreKeys,
    zstd_level: i32,
    frame: &[u8],
    payload: &mut Vec<u8>,
) -> Result<Frame> {
    // PA
    let start = payload.len();
    compress::compress_into(frame, zstd_level, payload)?;
    encrypt_frame(keys, start, frame.len(), payload)
}

/// Encrypts the frame at `start..` of `payload` (compressed, opening to `size` bytes) in
/// place, under a key of its own.
fn encrypt_frame(
    keys: &StoreKeys,
    start: usize,
    size: usize,
    payload: &mut Vec<u8>,
) -> Result<Frame> {
    // PA
    let offset = offset_of(start)?;
    let nonce: [u8; 12] = rand::random();
    cipher::seal_tail(&frame_key(keys, &nonce), nonce, payload, start)?;
    Ok(Frame {
        offset,
        sealed_len: (payload.len() - start) as u32,
        size: frame_offset(size)?,
        nonce,
        key_epoch: keys.epoch,
    })
}

/// A sealed frame: where it lies in the payload and how to open it.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    pub offset: u32,
    pub sealed_len: u32,
    pub size: u32,
    pub nonce: [u8; 12],
    pub key_epoch: u32,
}

/// A member about to be placed in a pack: `size` bytes at `at` of its frame's plaintext;
/// with a `base`, a delta (its frame holds it alone, compressed against the base).
pub(crate) struct Member {
    pub id: Hash,
    pub size: u32,
    pub at: u32,
    pub frame: Frame,
    pub base: Option<Hash>,
}

impl Member {
    /// The member of a stored record, its frame now at `offset` of a new payload (gc).
    pub(crate) fn moved(id: Hash, record: &ChunkRecord, offset: u32) -> Option<Member> {
        // A
        let (frame_size, at, base) = match record.kind {
            ChunkKind::Member { frame_size, at, .. } => (frame_size, at, None),
            ChunkKind::Delta { base, .. } => (record.size, 0, Some(base)),
            _ => return None,
        };
        Some(Member {
            id,
            size: record.size,
            at,
            frame: Frame {
                offset,
                sealed_len: record.sealed_len,
                size: frame_size,
                nonce: record.nonce,
                key_epoch: record.key_epoch,
            },
            base,
        })
    }
}

/// The pack of `payload` (sealed frames at their offsets): slices, pack record and member
/// records. Also used by gc to rewrite the live frames of half-empty packs.
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
                sealed_len: m.frame.sealed_len,
                key_epoch: m.frame.key_epoch,
                nonce: m.frame.nonce,
                k: 0,
                m: 0,
                slices: Vec::new(),
                kind: match m.base {
                    Some(base) => ChunkKind::Delta {
                        pack: id,
                        offset: m.frame.offset,
                        base,
                    },
                    None => ChunkKind::Member {
                        pack: id,
                        offset: m.frame.offset,
                        frame_size: m.frame.size,
                        at: m.at,
                    },
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

/// An offset in a frame's plaintext as stored in a member record.
fn frame_offset(len: usize) -> Result<u32> {
    // A
    u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| Error::InvalidArgument("frame larger than the largest frame".into()))
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

/// Opens member `id` (record `member`, in a frame at `offset` of pack record `pack`) from
/// the pack's shards (`None` = missing or failed its hash): its frame straight from the data
/// shards that cover it when they are intact, else from the pack's payload rebuilt from any
/// k shards.
pub fn open_member_into(
    keys: &StoreKeys,
    id: &Hash,
    member: &ChunkRecord,
    pack: &ChunkRecord,
    shards: &[Option<&[u8]>],
    plain: &mut Vec<u8>,
) -> Result<()> {
    // PA
    let (pack_id, sealed) = frame_bytes(id, member, pack, shards)?;
    open_member_from_frame(keys, &pack_id, id, member, sealed, plain)
}

/// The pack's id and the sealed bytes of the frame of member (or delta) `id` from the
/// pack's shards: straight from the data shards that cover them when they are intact, else
/// from the payload rebuilt from any k shards.
pub(crate) fn frame_bytes(
    id: &Hash,
    member: &ChunkRecord,
    pack: &ChunkRecord,
    shards: &[Option<&[u8]>],
) -> Result<(Hash, Vec<u8>)> {
    // PA
    let (pack_id, offset) = member
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
    Ok((pack_id, sealed))
}

/// Opens member `id` of pack `pack_id` given its frame's sealed bytes (decrypted in place,
/// not copied): decrypts and decompresses the frame (or takes it from this thread's last
/// one), cuts the member out and checks it against its id, into `plain`.
pub fn open_member_from_frame(
    keys: &StoreKeys,
    pack_id: &Hash,
    id: &Hash,
    member: &ChunkRecord,
    sealed: Vec<u8>,
    plain: &mut Vec<u8>,
) -> Result<()> {
    // PA
    if let Some(done) = open_member_cached(keys, pack_id, id, member, plain) {
        return done;
    }
    let (offset, frame_size, _) = frame_of(id, member)?;
    let frame = open_frame(keys, member, sealed, frame_size)?;
    frame_cache::keep(*pack_id, offset, frame);
    open_member_cached(keys, pack_id, id, member, plain).unwrap_or_else(|| {
        Err(Error::Internal(
            "frame cache in use: a read inside a read".into(),
        ))
    })
}

/// Opens member `id` from this thread's last frame when that is its frame; `None` when it
/// is not. A member that does not match its id drops the frame.
pub fn open_member_cached(
    keys: &StoreKeys,
    pack_id: &Hash,
    id: &Hash,
    member: &ChunkRecord,
    plain: &mut Vec<u8>,
) -> Option<Result<()>> {
    // PA
    plain.clear();
    let (offset, _, range) = match frame_of(id, member) {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    frame_cache::with(pack_id, offset, |frame| {
        if let Some(bytes) = frame.get(range) {
            plain.extend_from_slice(bytes);
            if keys.chunk_id(plain) == *id {
                return (Ok(()), true);
            }
        }
        plain.clear();
        let e = Error::Corrupt(format!("chunk {} does not match its id", id.short()));
        (Err(e), false)
    })
}

/// A member's frame offset, frame size and byte range in the frame.
fn frame_of(id: &Hash, member: &ChunkRecord) -> Result<(u32, u32, std::ops::Range<usize>)> {
    // A
    match member.kind {
        ChunkKind::Member {
            offset,
            frame_size,
            at,
            ..
        } => Ok((
            offset,
            frame_size,
            at as usize..at as usize + member.size as usize,
        )),
        _ => Err(Error::Corrupt(format!(
            "chunk {} is not in a pack",
            id.short()
        ))),
    }
}

/// Decrypts and decompresses one frame.
fn open_frame(
    keys: &StoreKeys,
    member: &ChunkRecord,
    mut buf: Vec<u8>,
    frame_size: u32,
) -> Result<Vec<u8>> {
    // PA
    if buf.len() != member.sealed_len as usize {
        return Err(Error::Corrupt(
            "a frame of another length than its record says".into(),
        ));
    }
    let n = cipher::open_in_place(&frame_key(keys, &member.nonce), member.nonce, &mut buf)?;
    let mut frame = Vec::new();
    compress::decompress_into(&buf[..n], frame_size as usize, &mut frame)?;
    Ok(frame)
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
pub(crate) mod tests {
    use super::*;
    use crate::model::SealedSlice;
    use crate::seal::open_chunk;
    use proptest::prelude::*;

    /// The 4+2, zstd 3 parameters of the seal tests.
    pub(crate) fn params() -> SealParams {
        SealParams {
            k: 4,
            m: 2,
            zstd_level: 3,
        }
    }

    /// The shard payloads of a sealed pack's slices, in order.
    pub(crate) fn payloads(sealed: &SealedChunk) -> Vec<Vec<u8>> {
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
        fn every_member_reads_back(files in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..30_000), 1..40),
                                   lose in prop::collection::vec(any::<u8>(), 0..3)) {
            let keys = StoreKeys::generate();
            let chunks: Vec<(Hash, &[u8])> = files.iter().map(|f| (keys.chunk_id(f), f.as_slice())).collect();
            let sealed = seal_pack(&keys, params(), &chunks, &[]).unwrap();
            prop_assert_eq!(sealed.members.len(), chunks.len());
            prop_assert!(sealed.record.is_pack());
            let shards = payloads(&sealed);
            let all: Vec<Option<&[u8]>> = shards.iter().map(|s| Some(s.as_slice())).collect();
            let mut lossy = all.clone();
            for l in &lose { let n = lossy.len(); lossy[*l as usize % n] = None; }
            let mut plain = Vec::new();
            for ((id, record), (_, data)) in sealed.members.iter().zip(&chunks) {
                prop_assert_eq!(record.pack().unwrap().0, sealed.id);
                prop_assert!(ChunkRecord::decode(&record.encode().unwrap()).is_ok());
                open_member_into(&keys, id, record, &sealed.record, &all, &mut plain).unwrap();
                prop_assert_eq!(&plain, data);
                open_member_into(&keys, id, record, &sealed.record, &lossy, &mut plain).unwrap();
                prop_assert_eq!(&plain, data);
                let (_, offset) = record.pack().unwrap();
                for i in covering_shards(&sealed.record, offset, record.sealed_len) {
                    prop_assert!((i as usize) < sealed.record.k as usize);
                }
            }
        }
    }

    #[test]
    fn small_files_share_frames_and_a_flipped_byte_is_caught() {
        let keys = StoreKeys::generate();
        let files: Vec<Vec<u8>> = (0..50)
            .map(|i| {
                format!("file {i}: the same words again and again\n")
                    .repeat(40)
                    .into_bytes()
            })
            .collect();
        let chunks: Vec<(Hash, &[u8])> = files.iter().map(|f| (keys.chunk_id(f), &f[..])).collect();
        let sealed = seal_pack(&keys, params(), &chunks, &[]).unwrap();
        let frames: std::collections::HashSet<u32> = sealed
            .members
            .iter()
            .map(|(_, r)| r.pack().unwrap().1)
            .collect();
        assert!(frames.len() < files.len() / 4, "{} frames", frames.len());
        let plain_total: usize = files.iter().map(Vec::len).sum();
        assert!(
            (sealed.record.sealed_len as usize) < plain_total / 10,
            "together they compress"
        );
        let shards = payloads(&sealed);
        let view: Vec<Option<&[u8]>> = shards.iter().map(|s| Some(s.as_slice())).collect();
        assert!(
            open_chunk(&keys, &sealed.id, &sealed.record, &view).is_err(),
            "no chunk"
        );
        let (id, record) = &sealed.members[1];
        let (_, offset) = record.pack().unwrap();
        let mut buf = Vec::new();
        member_from_data_shards(&sealed.record, &view, offset, record.sealed_len, &mut buf)
            .unwrap();
        buf[3] ^= 1;
        let mut plain = Vec::new();
        // Another pack id: the frame is not taken from the cache.
        let other = Hash([9; 32]);
        assert!(
            open_member_from_frame(&keys, &other, id, record, buf.clone(), &mut plain).is_err()
        );
        assert!(plain.is_empty());
        let wrong_keys = StoreKeys::generate();
        buf[3] ^= 1;
        let third = Hash([8; 32]);
        assert!(open_member_from_frame(&wrong_keys, &third, id, record, buf, &mut plain).is_err());
    }

    #[test]
    fn pack_ids_are_pinned() {
        assert_eq!(
            pack_id(b"").to_string(),
            "7041b461480c0803fbe93c5aa7aa9a99f87147904c654c6c3b3b5f876dc4cf2c"
        );
    }
}
