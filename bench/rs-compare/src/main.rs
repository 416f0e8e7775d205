//! reed-solomon-simd 3.1 against reed-solomon-erasure 6.0 (pure Rust, galois_8, no
//! simd-accel) for ouroboros-db's default 4+2 on a 1 MiB chunk (4 x 256 KiB shards).
//!
//! Throughput is data bytes (1 MiB) per second, in MB/s (10^6 bytes); each row is the
//! median of 5 timed runs of ITERS iterations after one untimed warm-up run.
//! Reconstruct loses the two first data shards, so both must be rebuilt from parity.
//!
//! `cargo run --release` (from bench/rs-compare).

use std::hint::black_box;
use std::time::{Duration, Instant};

use reed_solomon_erasure::galois_8::ReedSolomon;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

const K: usize = 4;
const M: usize = 2;
const SHARD: usize = 256 * 1024;
const DATA_BYTES: usize = K * SHARD;
const RUNS: usize = 5;
const ITERS: usize = 40;
/// Data shards lost before reconstructing.
const LOST: [usize; 2] = [0, 1];

fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
    // A
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Median MB/s over RUNS runs; `iter` returns the time of one iteration's timed part.
fn measure(mut iter: impl FnMut() -> Duration) -> f64 {
    // A
    for _ in 0..ITERS {
        iter();
    }
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let total: Duration = (0..ITERS).map(|_| iter()).sum();
            (DATA_BYTES * ITERS) as f64 / total.as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[RUNS / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    // A
    let t = Instant::now();
    black_box(f());
    t.elapsed()
}

fn main() {
    // A
    let data = pseudo_random(DATA_BYTES, 0x1234_5678_9abc_def1);
    let originals: Vec<Vec<u8>> = data.chunks(SHARD).map(<[u8]>::to_vec).collect();

    // Reference parity from simd; reed-solomon-erasure uses another code, so each library
    // reconstructs from its own parity.
    let simd_parity = reed_solomon_simd::encode(K, M, &originals).unwrap();
    let rse = ReedSolomon::new(K, M).unwrap();
    let mut rse_shards: Vec<Vec<u8>> = originals.clone();
    rse_shards.extend((0..M).map(|_| vec![0u8; SHARD]));
    rse.encode(&mut rse_shards).unwrap();

    let mut rows: Vec<(&str, f64, f64)> = Vec::new();

    // 1. reed-solomon-simd one-shot functions (what src/seal/erasure.rs calls): a new
    //    encoder/decoder and output Vecs per call.
    let enc = measure(|| timed(|| reed_solomon_simd::encode(K, M, &originals).unwrap()));
    let dec = measure(|| {
        timed(|| {
            let present = originals
                .iter()
                .enumerate()
                .filter(|(i, _)| !LOST.contains(i));
            let restored =
                reed_solomon_simd::decode(K, M, present, simd_parity.iter().enumerate()).unwrap();
            assert_eq!(restored.len(), LOST.len());
            restored
        })
    });
    let check = reed_solomon_simd::decode(
        K,
        M,
        originals.iter().enumerate().skip(2),
        simd_parity.iter().enumerate(),
    )
    .unwrap();
    assert!(LOST.iter().all(|i| check[i] == originals[*i]));
    rows.push((
        "reed-solomon-simd 3.1, `encode`/`decode` fns (per call setup)",
        enc,
        dec,
    ));

    // 2. reed-solomon-simd with an encoder and a decoder kept across calls.
    let mut encoder = ReedSolomonEncoder::new(K, M, SHARD).unwrap();
    let enc = measure(|| {
        timed(|| {
            for o in &originals {
                encoder.add_original_shard(o).unwrap();
            }
            let r = encoder.encode().unwrap();
            black_box(r.recovery(0).unwrap()[0])
        })
    });
    let mut decoder = ReedSolomonDecoder::new(K, M, SHARD).unwrap();
    for (i, o) in originals.iter().enumerate().skip(2) {
        decoder.add_original_shard(i, o).unwrap();
    }
    for (i, p) in simd_parity.iter().enumerate() {
        decoder.add_recovery_shard(i, p).unwrap();
    }
    {
        let r = decoder.decode().unwrap();
        assert!(LOST
            .iter()
            .all(|&i| r.restored_original(i).unwrap() == originals[i].as_slice()));
    }
    let dec = measure(|| {
        timed(|| {
            for (i, o) in originals.iter().enumerate() {
                if !LOST.contains(&i) {
                    decoder.add_original_shard(i, o).unwrap();
                }
            }
            for (i, p) in simd_parity.iter().enumerate() {
                decoder.add_recovery_shard(i, p).unwrap();
            }
            let r = decoder.decode().unwrap();
            black_box(r.restored_original(1).unwrap()[0])
        })
    });
    rows.push((
        "reed-solomon-simd 3.1, reused `ReedSolomonEncoder`/`Decoder`",
        enc,
        dec,
    ));

    // 3. reed-solomon-erasure (galois_8, pure Rust), codec reused; encode writes parity
    //    into preallocated shards, reconstruct_data allocates the lost data shards.
    let enc = measure(|| timed(|| rse.encode(&mut rse_shards).unwrap()));
    let mut view: Vec<Option<Vec<u8>>> = rse_shards.iter().cloned().map(Some).collect();
    let dec = measure(|| {
        for i in LOST {
            view[i] = None;
        }
        let t = timed(|| rse.reconstruct_data(&mut view).unwrap());
        assert!(view[0].as_deref() == Some(originals[0].as_slice()));
        t
    });
    rows.push((
        "reed-solomon-erasure 6.0, galois_8 pure Rust (no simd-accel)",
        enc,
        dec,
    ));

    println!(
        "4+{M} on a {} KiB chunk ({} KiB shards), {} runs x {ITERS} iterations, median, MB/s of data:\n",
        DATA_BYTES / 1024,
        SHARD / 1024,
        RUNS
    );
    println!("| library | encode MB/s | reconstruct 2 lost MB/s |");
    println!("|---|---:|---:|");
    for (name, enc, dec) in rows {
        println!("| {name} | {enc:.0} | {dec:.0} |");
    }
}
