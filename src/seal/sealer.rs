//! Seals one chunk into slices (compress -> encrypt -> erasure-code) and opens it again,
//! verifying the result against the chunk id end to end.

use crate::codec;
use crate::crypto::StoreKeys;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::slice::{SliceHeader, SLICE_TAG};
use crate::model::{ChunkKind, ChunkRecord};
use crate::seal::{cipher, compress, erasure};

/// Per-store sealing parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealParams {
    /// Data shards per chunk.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
    /// zstd level.
    pub zstd_level: i32,
}

/// A sealed chunk (or pack) ready to store: its record and its encoded slices with their
/// hashes.
pub struct SealedChunk {
    /// The chunk id (a pack's id for a pack).
    pub id: Hash,
    /// The record to store under the id.
    pub record: ChunkRecord,
    /// `(slice hash, encoded SealedSlice)`, data slices first.
    pub slices: Vec<(Hash, Vec<u8>)>,
    /// A pack's members: `(chunk id, record)`, each naming this pack (empty for a chunk).
    pub members: Vec<(Hash, ChunkRecord)>,
}

/// What sealing one chunk's plaintext into a buffer recorded about it.
pub(crate) struct SealedBody {
    /// Plaintext length.
    pub size: u32,
    /// The nonce drawn for it.
    pub nonce: [u8; 12],
    /// Sealed bytes appended.
    pub sealed_len: u32,
}

/// Compresses and encrypts the plaintext of chunk `id` onto the end of `out`, under the
/// chunk's own key and a fresh nonce.
pub(crate) fn seal_body(
    keys: &StoreKeys,
    zstd_level: i32,
    id: &Hash,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<SealedBody> {
    // PA
    let size = u32::try_from(plaintext.len())
        .map_err(|_| Error::InvalidArgument("chunk larger than 4 GiB".into()))?;
    let start = out.len();
    compress::compress_into(plaintext, zstd_level, out)?;
    let nonce: [u8; 12] = rand::random();
    cipher::seal_tail(&keys.chunk_key(id), nonce, out, start)?;
    let sealed_len = u32::try_from(out.len() - start)
        .map_err(|_| Error::InvalidArgument("chunk larger than 4 GiB".into()))?;
    Ok(SealedBody {
        size,
        nonce,
        sealed_len,
    })
}

/// Erasure-codes `payload` into k+m encoded SealedSlices of `id`, with their hashes. Each
/// shard is written once, straight into its encoded slice: building the shards apart and
/// then copying them into slices held the payload three times over.
pub(crate) fn slice_up(id: &Hash, payload: &[u8], k: u8, m: u8) -> Result<Vec<(Hash, Vec<u8>)>> {
    // PA
    let len = erasure::shard_len(payload.len(), usize::from(k));
    let header = |index: usize| -> Result<Vec<u8>> {
        let mut out = codec::encode(
            SLICE_TAG,
            &SliceHeader {
                chunk: *id,
                index: index as u8,
                k,
                m,
            },
        )?;
        out.reserve_exact(len);
        Ok(out)
    };
    let mut slices = Vec::with_capacity(usize::from(k) + usize::from(m));
    let mut at = 0;
    for i in 0..usize::from(k) {
        let mut s = header(i)?;
        at = s.len();
        s.extend_from_slice(erasure::data_part(payload, i, len));
        s.resize(at + len, 0);
        slices.push(s);
    }
    if m > 0 {
        let data: Vec<&[u8]> = slices.iter().map(|s| &s[at..]).collect();
        let mut parity = Vec::with_capacity(usize::from(m));
        erasure::parity(&data, m, |p| {
            let mut s = header(usize::from(k) + parity.len())?;
            s.extend_from_slice(p);
            parity.push(s);
            Ok(())
        })?;
        slices.extend(parity);
    }
    Ok(slices.into_iter().map(|s| (Hash::of(&s), s)).collect())
}

/// Seals plaintext whose id is `id` under the keys of the current epoch.
pub fn seal_chunk(
    keys: &StoreKeys,
    params: SealParams,
    id: Hash,
    plaintext: &[u8],
) -> Result<SealedChunk> {
    // PA
    let mut buf = Vec::with_capacity(plaintext.len() / 2 + 64);
    let body = seal_body(keys, params.zstd_level, &id, plaintext, &mut buf)?;
    sliced(keys, params, id, buf, body)
}

/// [`seal_chunk`] of plaintext it owns, freed once compressed: the put pipeline's workers
/// then hold one form of a chunk at a time, not its plaintext, payload and slices at once.
pub(crate) fn seal_owned_chunk(
    keys: &StoreKeys,
    params: SealParams,
    id: Hash,
    plaintext: Vec<u8>,
) -> Result<SealedChunk> {
    // PA
    let mut buf = Vec::with_capacity(plaintext.len() / 2 + 64);
    let body = seal_body(keys, params.zstd_level, &id, &plaintext, &mut buf)?;
    drop(plaintext);
    sliced(keys, params, id, buf, body)
}

/// [`seal_chunk`] of a chunk compressed already (`compressed` = `[flag][body]` of
/// `size` bytes of plaintext, as [`compress::compress_into`] writes it): encrypted in place
/// and erasure-coded (a put that compared a delta with the chunk alone keeps the latter).
pub(crate) fn seal_compressed_chunk(
    keys: &StoreKeys,
    params: SealParams,
    id: Hash,
    size: u32,
    mut compressed: Vec<u8>,
) -> Result<SealedChunk> {
    // PA
    let nonce: [u8; 12] = rand::random();
    cipher::seal_tail(&keys.chunk_key(&id), nonce, &mut compressed, 0)?;
    let sealed_len = u32::try_from(compressed.len())
        .map_err(|_| Error::InvalidArgument("chunk larger than 4 GiB".into()))?;
    let body = SealedBody {
        size,
        nonce,
        sealed_len,
    };
    sliced(keys, params, id, compressed, body)
}

/// The sealed chunk `id` whose compressed and encrypted payload is `buf`.
fn sliced(
    keys: &StoreKeys,
    params: SealParams,
    id: Hash,
    buf: Vec<u8>,
    body: SealedBody,
) -> Result<SealedChunk> {
    // PA
    let k = erasure::effective_k(buf.len(), params.k);
    let slices = slice_up(&id, &buf, k, params.m)?;
    drop(buf);
    Ok(SealedChunk {
        id,
        record: ChunkRecord {
            size: body.size,
            sealed_len: body.sealed_len,
            key_epoch: keys.epoch,
            nonce: body.nonce,
            k,
            m: params.m,
            slices: slices.iter().map(|(h, _)| *h).collect(),
            kind: ChunkKind::Sliced,
        },
        slices,
        members: Vec::new(),
    })
}

/// Rebuilds, decrypts and decompresses a chunk from its shard payloads (`None` = missing or
/// failed its hash), then checks that the plaintext hashes back to the chunk id.
pub fn open_chunk(
    keys: &StoreKeys,
    id: &Hash,
    record: &ChunkRecord,
    shards: &[Option<&[u8]>],
) -> Result<Vec<u8>> {
    // PA
    let mut plain = Vec::new();
    open_chunk_into(keys, id, record, shards, &mut plain)?;
    Ok(plain)
}

thread_local! {
    /// This thread's buffer for a chunk's sealed payload between erasure decoding and
    /// decompression: reused, so that reading a chunk does not fault in fresh pages for it.
    static PAYLOAD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`open_chunk`] into `plain` (replacing what it held; left empty on an error), so that a
/// reader can hand the same plaintext buffers round.
pub fn open_chunk_into(
    keys: &StoreKeys,
    id: &Hash,
    record: &ChunkRecord,
    shards: &[Option<&[u8]>],
    plain: &mut Vec<u8>,
) -> Result<()> {
    // PA
    with_payload(|payload| {
        erasure::reconstruct_into(
            record.k,
            record.m,
            record.sealed_len as usize,
            shards,
            payload,
        )?;
        open_payload(keys, id, record, payload, plain)
    })
}

/// Runs `f` with this thread's payload buffer.
fn with_payload(f: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
    // A
    PAYLOAD.with(|cell| {
        // A borrow that fails would mean re-entry, which nothing here does; a fresh buffer
        // is still correct.
        let mut fresh = Vec::new();
        let mut held = cell.try_borrow_mut();
        let payload = match held.as_mut() {
            Ok(p) => &mut **p,
            Err(_) => &mut fresh,
        };
        f(payload)
    })
}

/// Decrypts `payload` in place (its first `sealed_len` bytes), decompresses into `plain`
/// and checks the result against the chunk id.
fn open_payload(
    keys: &StoreKeys,
    id: &Hash,
    record: &ChunkRecord,
    payload: &mut [u8],
    plain: &mut Vec<u8>,
) -> Result<()> {
    // PA
    let sealed = payload
        .get_mut(..record.sealed_len as usize)
        .ok_or_else(|| Error::Corrupt(format!("chunk {}: payload too short", id.short())))?;
    let n = cipher::open_in_place(&keys.chunk_key(id), record.nonce, sealed)?;
    compress::decompress_into(&sealed[..n], record.size as usize, plain)?;
    check_id(keys, id, plain)
}

/// Checks opened plaintext against its chunk id; on a mismatch it is cleared (no caller
/// can hand on other bytes than the id names).
pub(crate) fn check_id(keys: &StoreKeys, id: &Hash, plain: &mut Vec<u8>) -> Result<()> {
    // PA
    if keys.chunk_id(plain) != *id {
        plain.clear();
        return Err(Error::Corrupt(format!(
            "chunk {} does not match its id",
            id.short()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SealedSlice;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_with_losses(data in prop::collection::vec(any::<u8>(), 0..20_000), lose in any::<u8>()) {
            let keys = StoreKeys::generate();
            let params = SealParams { k: 4, m: 2, zstd_level: 3 };
            let id = keys.chunk_id(&data);
            let sealed = seal_chunk(&keys, params, id, &data).unwrap();
            let headers: Vec<(SliceHeader, Vec<u8>)> = sealed.slices.iter()
                .map(|(h, b)| { prop_assert_eq!(Hash::of(b), *h); let (hd, p) = SealedSlice::split(b).unwrap(); Ok((hd, p.to_vec())) })
                .collect::<Result<_, TestCaseError>>()?;
            let n = headers.len();
            let view: Vec<Option<&[u8]>> = headers.iter().enumerate()
                .map(|(i, (_, p))| (i != lose as usize % n).then_some(p.as_slice())).collect();
            prop_assert_eq!(open_chunk(&keys, &id, &sealed.record, &view).unwrap(), data);
        }
    }

    /// Slices written straight from the payload are the slices of the shards
    /// `erasure::encode` cuts, encoded one by one: stored slices keep their bytes.
    #[test]
    fn slices_are_the_encoded_shards() {
        for (n, k, m) in [
            (0usize, 1u8, 2u8),
            (1, 1, 0),
            (5000, 4, 2),
            (4097, 4, 2),
            (9999, 3, 1),
        ] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7 + i / 13) as u8).collect();
            let id = Hash([5; 32]);
            let expected: Vec<Vec<u8>> = erasure::encode(&payload, k, m)
                .unwrap()
                .into_iter()
                .enumerate()
                .map(|(i, payload)| {
                    let header = SliceHeader {
                        chunk: id,
                        index: i as u8,
                        k,
                        m,
                    };
                    SealedSlice { header, payload }.encode().unwrap()
                })
                .collect();
            let got: Vec<Vec<u8>> = slice_up(&id, &payload, k, m)
                .unwrap()
                .into_iter()
                .map(|(h, b)| {
                    assert_eq!(h, Hash::of(&b));
                    b
                })
                .collect();
            assert_eq!(got, expected, "n={n} k={k} m={m}");
        }
    }

    #[test]
    fn ciphertext_never_contains_plaintext() {
        let keys = StoreKeys::generate();
        let data = b"TOP-SECRET-PLAINTEXT-MARKER ".repeat(100);
        let id = keys.chunk_id(&data);
        let sealed = seal_chunk(
            &keys,
            SealParams {
                k: 2,
                m: 1,
                zstd_level: 1,
            },
            id,
            &data,
        )
        .unwrap();
        for (_, b) in &sealed.slices {
            assert!(!b.windows(10).any(|w| w == b"TOP-SECRET"));
        }
        let other = StoreKeys::generate();
        let shards: Vec<Vec<u8>> = sealed
            .slices
            .iter()
            .map(|(_, b)| SealedSlice::split(b).unwrap().1.to_vec())
            .collect();
        let view: Vec<Option<&[u8]>> = shards.iter().map(|s| Some(s.as_slice())).collect();
        assert!(open_chunk(&other, &id, &sealed.record, &view).is_err());
    }
}
