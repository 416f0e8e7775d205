//! Reed-Solomon erasure coding (reed-solomon-simd): k data shards + m parity shards, any k
//! of which rebuild the sealed payload.

use crate::error::{Error, Result};
use reed_solomon_simd::engine::{DefaultEngine, Engine, Naive};
use reed_solomon_simd::rate::{DefaultRateEncoder, RateEncoder};
use reed_solomon_simd::ReedSolomonDecoder;

/// Smallest data shard worth splitting for: payloads under 2x this use k = 1, so that a
/// 100-byte file costs a few hundred bytes, not k+m slice headers and a 130 µs decode.
pub const MIN_SHARD_BYTES: usize = 1024;

/// Data shard count actually used for a payload of `sealed_len` bytes with target `k`.
pub fn effective_k(sealed_len: usize, k: u8) -> u8 {
    // PA
    let by_size = (sealed_len / MIN_SHARD_BYTES).clamp(1, 255) as u8;
    k.clamp(1, by_size)
}

/// Length of every shard: payload split in k, rounded up to an even length (the library
/// works on 16-bit symbols).
pub fn shard_len(sealed_len: usize, k: usize) -> usize {
    // PA
    let s = sealed_len.div_ceil(k.max(1)).max(2);
    s + (s & 1)
}

/// The bytes of `payload` that data shard `i` of length `len` holds (shorter than `len`, or
/// empty, at the end: the shard is zero-padded to `len`).
pub fn data_part(payload: &[u8], i: usize, len: usize) -> &[u8] {
    // PA
    let start = i.saturating_mul(len).min(payload.len());
    let end = start.saturating_add(len).min(payload.len());
    &payload[start..end]
}

/// Splits `payload` into k zero-padded data shards and computes m parity shards.
pub fn encode(payload: &[u8], k: u8, m: u8) -> Result<Vec<Vec<u8>>> {
    // PA
    let len = shard_len(payload.len(), usize::from(k));
    let mut shards: Vec<Vec<u8>> = (0..usize::from(k))
        .map(|i| {
            let mut s = Vec::with_capacity(len);
            s.extend_from_slice(data_part(payload, i, len));
            s.resize(len, 0);
            s
        })
        .collect();
    if m > 0 {
        let data: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
        let mut parity = Vec::with_capacity(usize::from(m));
        self::parity(&data, m, |p| {
            parity.push(p.to_vec());
            Ok(())
        })?;
        shards.extend(parity);
    }
    Ok(shards)
}

/// Parity shard counts up to this are computed with reed-solomon-simd's reference engine
/// (`Naive`), wider codes with its SIMD engines. The SIMD engines first fill an 8 MiB
/// multiplication table, which stays resident for the process's life (an eighth of
/// `put -r`'s peak); the reference engine computes each product from 384 KiB of log, exp and
/// skew tables, at 1.0-1.7 GB/s a thread for 1 MiB chunks with m <= 4 (5-6x slower than AVX2,
/// a few percent of a put's CPU), but 550 MB/s at m = 16 and 180 MB/s at m = 64, where it
/// would slow a put down. Both give the same bytes.
const NAIVE_MAX_PARITY: usize = 4;

/// Computes the m parity shards of the data shards `data` (all of one length) and hands
/// each, in index order, to `each`: no copy of the data shards is made, and the parity is
/// read straight out of the encoder.
pub fn parity(data: &[&[u8]], m: u8, each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    // PA
    if usize::from(m) <= NAIVE_MAX_PARITY {
        parity_with(Naive::new(), data, usize::from(m), each)
    } else {
        parity_with(DefaultEngine::new(), data, usize::from(m), each)
    }
}

/// [`parity`] with the engine `engine`.
fn parity_with<E: Engine>(
    engine: E,
    data: &[&[u8]],
    m: usize,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    // PA
    let k = data.len();
    let len = data.first().map_or(0, |d| d.len());
    let failed = |e: reed_solomon_simd::Error| {
        Error::InvalidArgument(format!("erasure coding {k}+{m}: {e}"))
    };
    let mut encoder = DefaultRateEncoder::<E>::new(k, m, len, engine, None).map_err(failed)?;
    for d in data {
        encoder.add_original_shard(d).map_err(failed)?;
    }
    let result = encoder.encode().map_err(failed)?;
    for p in result.recovery_iter() {
        each(p)?;
    }
    Ok(())
}

thread_local! {
    /// This thread's erasure decoder, reset for each chunk.
    static DECODER: std::cell::RefCell<Option<ReedSolomonDecoder>> =
        const { std::cell::RefCell::new(None) };
}

/// The error for a chunk with only `present` of its `total` slices intact, `k` needed.
pub fn too_few(present: usize, total: usize, k: usize) -> Error {
    // A
    Error::Corrupt(format!(
        "only {present} of {total} slices are intact; {k} are needed"
    ))
}

/// Rebuilds the payload from any k present shards (`None` = missing or failed its hash).
pub fn reconstruct(k: u8, m: u8, sealed_len: usize, shards: &[Option<&[u8]>]) -> Result<Vec<u8>> {
    // PA
    let mut out = Vec::new();
    reconstruct_into(k, m, sealed_len, shards, &mut out)?;
    Ok(out)
}

/// [`reconstruct`] into `out` (replacing what it held), so that a reader can reuse one
/// buffer for every chunk.
pub fn reconstruct_into(
    k: u8,
    m: u8,
    sealed_len: usize,
    shards: &[Option<&[u8]>],
    out: &mut Vec<u8>,
) -> Result<()> {
    // PA
    out.clear();
    let (k, m) = (k as usize, m as usize);
    let len = shard_len(sealed_len, k);
    if k == 0 || shards.len() != k + m || shards.iter().flatten().any(|s| s.len() != len) {
        return Err(Error::Corrupt(
            "slices do not match the chunk record".into(),
        ));
    }
    let present = shards.iter().filter(|s| s.is_some()).count();
    if present < k {
        return Err(too_few(present, k + m, k));
    }
    crate::buffers::make_room(out, k * len);
    if shards[..k].iter().all(Option::is_some) {
        for s in shards[..k].iter().flatten() {
            out.extend_from_slice(s);
        }
    } else {
        let originals = shards[..k]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)));
        let recovery = shards[k..]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)));
        let failed =
            |e: reed_solomon_simd::Error| Error::Corrupt(format!("erasure decoding failed: {e}"));
        // Each thread keeps its decoder: its working space (several times a shard) is
        // reused rather than allocated, zeroed and faulted in again for every chunk.
        DECODER.with(|cell| -> Result<()> {
            let mut slot = cell.borrow_mut();
            let decoder = match slot.as_mut() {
                Some(d) => {
                    d.reset(k, m, len).map_err(failed)?;
                    d
                }
                None => slot.insert(ReedSolomonDecoder::new(k, m, len).map_err(failed)?),
            };
            for (i, s) in originals {
                decoder.add_original_shard(i, s).map_err(failed)?;
            }
            for (i, s) in recovery {
                decoder.add_recovery_shard(i, s).map_err(failed)?;
            }
            let restored = decoder.decode().map_err(failed)?;
            for (i, s) in shards[..k].iter().enumerate() {
                match (s, restored.restored_original(i)) {
                    (Some(s), _) => out.extend_from_slice(s),
                    (None, Some(r)) => out.extend_from_slice(r),
                    (None, None) => {
                        return Err(Error::Corrupt("a data shard was not restored".into()))
                    }
                }
            }
            Ok(())
        })?;
    }
    out.truncate(sealed_len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every choice of k present shards out of k+m rebuilds the payload exactly.
    #[test]
    fn every_k_subset_rebuilds() {
        let payload: Vec<u8> = (0..10_001u32).map(|i| (i * 31 % 251) as u8).collect();
        for (k, m) in [(4u8, 2u8), (3, 3), (1, 2), (2, 1)] {
            let shards = encode(&payload, k, m).unwrap();
            let n = (k + m) as u32;
            for mask in 0u32..(1 << n) {
                let view: Vec<Option<&[u8]>> = (0..n as usize)
                    .map(|i| (mask >> i & 1 == 1).then(|| shards[i].as_slice()))
                    .collect();
                let r = reconstruct(k, m, payload.len(), &view);
                if mask.count_ones() >= k as u32 {
                    assert_eq!(r.unwrap(), payload, "k={k} m={m} mask={mask:b}");
                } else {
                    assert!(r.is_err());
                }
            }
        }
    }

    /// Found by the `chunk_payload` fuzz target: with k = 0 nothing was rebuilt and an empty
    /// payload came back as if it were the chunk's.
    #[test]
    fn zero_data_shards_is_an_error() {
        assert!(reconstruct(0, 0, 3, &[]).is_err());
        assert!(reconstruct(0, 1, 3, &[Some(&[0, 0][..])]).is_err());
    }

    /// Pinned: the parity of a 4+2 encoding (FORMAT.md, content pipeline) never changes with
    /// an engine or a dependency upgrade.
    #[test]
    fn parity_is_pinned() {
        let payload: Vec<u8> = (0..64u32).map(|i| (i * 7 + 3) as u8).collect();
        let shards = encode(&payload, 4, 2).unwrap();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&shards[4]), PINNED_PARITY[0]);
        assert_eq!(hex(&shards[5]), PINNED_PARITY[1]);
    }

    const PINNED_PARITY: [&str; 2] = [
        "9ced3f4e4e1f78e9dca9a99c9c9c3030",
        "5c2d3f4e4edfb8e9dce9e99c9c9c7070",
    ];

    #[test]
    fn small_payloads_use_one_shard() {
        assert_eq!(effective_k(100, 4), 1);
        assert_eq!(effective_k(5000, 4), 4);
        assert_eq!(effective_k(3000, 4), 2);
    }

    proptest! {
        #[test]
        fn reconstruct_from_random_losses(payload in prop::collection::vec(any::<u8>(), 1..5000),
                                          k in 1u8..6, m in 1u8..4, drops in any::<u64>()) {
            let shards = encode(&payload, k, m).unwrap();
            let mut lost = 0;
            let view: Vec<Option<&[u8]>> = shards.iter().enumerate().map(|(i, s)| {
                if drops >> i & 1 == 1 && lost < m { lost += 1; None } else { Some(s.as_slice()) }
            }).collect();
            prop_assert_eq!(reconstruct(k, m, payload.len(), &view).unwrap(), payload.clone());
            // A buffer that held another chunk's payload gives the same result.
            let mut reused = vec![0xA5u8; payload.len() * 2 + 7];
            reconstruct_into(k, m, payload.len(), &view, &mut reused).unwrap();
            prop_assert_eq!(reused, payload);
        }

        /// The reference engine's parity is byte for byte the SIMD engines' (the crate's
        /// default, which stores written before the switch hold): the slices' hashes and
        /// every decoder depend on it. Both engines are compared at every m, whichever
        /// [`parity`] picks for it.
        #[test]
        fn parity_equals_the_default_engines(payload in prop::collection::vec(any::<u8>(), 1..9000),
                                             k in 1u8..=64, m in 1u8..=64) {
            let ours = encode(&payload, k, m).unwrap();
            let len = shard_len(payload.len(), usize::from(k));
            let mut simd = reed_solomon_simd::ReedSolomonEncoder::new(
                usize::from(k), usize::from(m), len).unwrap();
            for s in &ours[..usize::from(k)] {
                simd.add_original_shard(s).unwrap();
            }
            let result = simd.encode().unwrap();
            let theirs: Vec<&[u8]> = result.recovery_iter().collect();
            prop_assert_eq!(theirs.len(), usize::from(m));
            let data: Vec<&[u8]> = ours[..usize::from(k)].iter().map(Vec::as_slice).collect();
            let mut naive = Vec::new();
            parity_with(Naive::new(), &data, usize::from(m), |p| {
                naive.push(p.to_vec());
                Ok(())
            }).unwrap();
            for ((a, b), c) in ours[usize::from(k)..].iter().zip(&theirs).zip(&naive) {
                prop_assert_eq!(a.as_slice(), *b);
                prop_assert_eq!(c.as_slice(), *b);
            }
        }

        #[test]
        fn reconstruct_never_panics(k in 1u8..6, m in 0u8..4, len in 0usize..100,
                                    shards in prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..60)), 0..10)) {
            let view: Vec<Option<&[u8]>> = shards.iter().map(|s| s.as_deref()).collect();
            let _ = reconstruct(k, m, len, &view);
        }
    }
}
