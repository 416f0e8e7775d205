//! Per-stage throughput of the write and read pipelines, on real binaries.
//!
//! Input: the first 64 MiB of the regular files under /usr/lib/x86_64-linux-gnu (sorted by
//! name, symlinks skipped) concatenated; pseudo-random bytes when that is not readable.
//! Stage groups use a 1 MiB window (at 8 MiB into that data) and the first 64 KiB of it;
//! the `store` group puts and gets all 64 MiB through `Cas` on a tempdir.
//!
//! `cargo bench --bench stages` (add `-- --warm-up-time 1 --measurement-time 2` for a
//! quick run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ouroboros_db::chunk::{Chunker, ChunkingParams};
use ouroboros_db::crypto::StoreKeys;
use ouroboros_db::model::SealedSlice;
use ouroboros_db::seal::{cipher, compress, erasure, open_chunk, seal_chunk, SealParams};
use ouroboros_db::{Cas, CreateOptions, Identity, PutOptions};

const MIB: usize = 1 << 20;
const STORE_BYTES: usize = 64 * MIB;
const SOURCE_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// `n` bytes of real binaries, or pseudo-random bytes if none can be read.
fn sample_data(n: usize) -> Vec<u8> {
    // A
    let mut out = Vec::with_capacity(n);
    if let Ok(dir) = std::fs::read_dir(SOURCE_DIR) {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if out.len() >= n {
                break;
            }
            let is_file = std::fs::symlink_metadata(&p)
                .map(|m| m.file_type().is_file())
                .unwrap_or(false);
            if is_file {
                if let Ok(bytes) = std::fs::read(&p) {
                    out.extend_from_slice(&bytes);
                }
            }
        }
    }
    if out.len() >= n {
        out.truncate(n);
        eprintln!("input: {n} bytes of files under {SOURCE_DIR}");
        return out;
    }
    eprintln!("input: {SOURCE_DIR} not readable enough, using {n} pseudo-random bytes");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The stage inputs: 64 KiB and 1 MiB, taken from 8 MiB into the data.
fn inputs(all: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    // A
    let at = (8 * MIB).min(all.len() - MIB);
    let window = &all[at..at + MIB];
    vec![
        ("64KiB", window[..64 << 10].to_vec()),
        ("1MiB", window.to_vec()),
    ]
}

fn stages(c: &mut Criterion) {
    // A
    let all = sample_data(STORE_BYTES);
    let inputs = inputs(&all);
    let keys = StoreKeys::generate();

    let mut g = c.benchmark_group("chunk");
    let small = ChunkingParams {
        min: 16 << 10,
        avg: 64 << 10,
        max: 256 << 10,
    };
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        for (pname, params) in [
            ("default_512K_1M_4M", ChunkingParams::default()),
            ("16K_64K_256K", small),
        ] {
            g.bench_with_input(BenchmarkId::new(pname, name), data, |b, data| {
                b.iter(|| {
                    let mut n = 0usize;
                    for chunk in Chunker::new(&data[..], params, keys.cdc_seed).unwrap() {
                        n += chunk.unwrap().len();
                    }
                    black_box(n)
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("chunk_id");
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::new("keyed_blake3", name), data, |b, data| {
            b.iter(|| black_box(keys.chunk_id(black_box(data))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("zstd");
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        for level in [1, 3] {
            let mut out = Vec::with_capacity(data.len() + 1024);
            compress::compress_into(data, level, &mut out).unwrap();
            eprintln!(
                "zstd level {level} on {name}: {} -> {} bytes (ratio {:.2})",
                data.len(),
                out.len(),
                data.len() as f64 / out.len() as f64
            );
            g.bench_with_input(
                BenchmarkId::new(format!("level{level}"), name),
                data,
                |b, data| {
                    b.iter(|| {
                        out.clear();
                        compress::compress_into(black_box(data), level, &mut out).unwrap();
                        black_box(out.len())
                    })
                },
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("aes_gcm");
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        let key = keys.chunk_key(&keys.chunk_id(data));
        let mut buf = Vec::with_capacity(data.len() + cipher::TAG_LEN);
        buf.extend_from_slice(data);
        g.bench_with_input(BenchmarkId::new("seal_in_place", name), data, |b, data| {
            b.iter(|| {
                // Re-encrypting the previous ciphertext costs the same as the plaintext.
                buf.truncate(data.len());
                cipher::seal_in_place(&key, [7; 12], &mut buf).unwrap();
                black_box(buf.len())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("erasure_4+2");
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode", name), data, |b, data| {
            b.iter(|| black_box(erasure::encode(black_box(data), 4, 2).unwrap()))
        });
        let shards = erasure::encode(data, 4, 2).unwrap();
        // Lose two data shards so the decoder has to rebuild them from parity.
        let view: Vec<Option<&[u8]>> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (i >= 2).then_some(s.as_slice()))
            .collect();
        assert_eq!(
            &erasure::reconstruct(4, 2, data.len(), &view).unwrap(),
            data
        );
        g.bench_with_input(
            BenchmarkId::new("reconstruct_2_lost", name),
            data,
            |b, data| {
                b.iter(|| {
                    black_box(erasure::reconstruct(4, 2, data.len(), black_box(&view)).unwrap())
                })
            },
        );
    }
    g.finish();

    let params = SealParams {
        k: 4,
        m: 2,
        zstd_level: 3,
    };
    let mut g = c.benchmark_group("sealer");
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        let id = keys.chunk_id(data);
        g.bench_with_input(BenchmarkId::new("seal_chunk", name), data, |b, data| {
            b.iter(|| black_box(seal_chunk(&keys, params, id, black_box(data)).unwrap()))
        });
        let sealed = seal_chunk(&keys, params, id, data).unwrap();
        let payloads: Vec<&[u8]> = sealed
            .slices
            .iter()
            .map(|(_, bytes)| SealedSlice::split(bytes).unwrap().1)
            .collect();
        let all_present: Vec<Option<&[u8]>> = payloads.iter().map(|p| Some(*p)).collect();
        let two_lost: Vec<Option<&[u8]>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (i >= 2).then_some(*p))
            .collect();
        for (vname, view) in [
            ("open_chunk", &all_present),
            ("open_chunk_2_lost", &two_lost),
        ] {
            assert_eq!(&open_chunk(&keys, &id, &sealed.record, view).unwrap(), data);
            g.bench_with_input(BenchmarkId::new(vname, name), data, |b, _| {
                b.iter(|| {
                    black_box(open_chunk(&keys, &id, &sealed.record, black_box(view)).unwrap())
                })
            });
        }
    }
    g.finish();
}

/// A fresh, unlocked store in its own tempdir (the tempdir must outlive the store).
fn new_store() -> (tempfile::TempDir, Cas) {
    // A
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::create(dir.path(), &CreateOptions::default(), &Identity::generate()).unwrap();
    (dir, cas)
}

fn store(c: &mut Criterion) {
    // A
    let data = sample_data(STORE_BYTES);
    let mut g = c.benchmark_group("store");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(data.len() as u64));

    // Every iteration gets an empty store, so every chunk is new and sealed.
    g.bench_function(BenchmarkId::new("put_new", "64MiB"), |b| {
        b.iter_batched_ref(
            new_store,
            |(_dir, cas)| black_box(cas.put("bench", &data[..], &PutOptions::default()).unwrap()),
            BatchSize::PerIteration,
        )
    });

    // Content already in the store: chunking, ids and dedup lookups only.
    let (_dir, cas) = new_store();
    cas.put("bench", &data[..], &PutOptions::default()).unwrap();
    let mut n = 0u64;
    g.bench_function(BenchmarkId::new("put_dedup", "64MiB"), |b| {
        b.iter(|| {
            n += 1;
            black_box(
                cas.put(&format!("copy{n}"), &data[..], &PutOptions::default())
                    .unwrap(),
            )
        })
    });

    g.bench_function(BenchmarkId::new("get", "64MiB"), |b| {
        b.iter(|| black_box(cas.get("bench", std::io::sink()).unwrap()))
    });
    g.finish();
    let mut out = Vec::with_capacity(data.len());
    cas.get("bench", &mut out).unwrap();
    assert!(out == data, "get returned other bytes");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = stages, store
}
criterion_main!(benches);
