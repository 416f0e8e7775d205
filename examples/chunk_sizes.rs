//! Dedup against speed for FastCDC parameter sets (min/avg/max).
//!
//! ```text
//! cargo run --release --example chunk_sizes -- /tmp/v1.tar [/tmp/v2.tar]
//! ```
//!
//! Version 1 is the given file; version 2 is the second file if given, else v1 with 100
//! small edits at pseudo-random offsets (fixed seed): 90 16-byte overwrites and 10 100-byte
//! insertions. Cut points depend on the store's secret seed, so every figure but the
//! throughput is the mean over 3 fresh `StoreKeys`. For each parameter set it reports
//! - chunking + chunk-id throughput of v1 (in memory, median of 3 runs x 3 seeds, MB = 10^6
//!   bytes),
//! - chunks in v1,
//! - the fraction of v2's bytes in chunks that v1 does not have (what an update stores),
//! - metadata: chunks x (blob entry + chunk record + 6 slice headers), both with the rough
//!   36 + 300 bytes per chunk and with the real encoded sizes of a 4+2 chunk,
//! - the zstd level 3 size of v1's unique chunks, as the sealer compresses them.

use std::collections::HashSet;
use std::time::Instant;

use ouroboros_db::chunk::{Chunker, ChunkingParams};
use ouroboros_db::crypto::StoreKeys;
use ouroboros_db::model::slice::SliceHeader;
use ouroboros_db::model::{ChunkRecord, ChunkRef, SealedSlice};
use ouroboros_db::seal::compress;
use ouroboros_db::Hash;

const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;
const EDITS: usize = 100;
const INSERTS: usize = 10;
/// Stores (random seeds and chunk-id keys) the dedup figures are averaged over.
const SEEDS: usize = 3;
/// Timed chunking runs of v1 per seed.
const RUNS: usize = 3;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // A
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        // A
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// v1 with EDITS edits: INSERTS 100-byte insertions, the rest 16-byte overwrites.
fn edit(v1: &[u8]) -> Vec<u8> {
    // A
    let mut rng = Rng(0x005E_ED0F_ED17);
    let mut edits: Vec<(usize, bool)> = (0..EDITS)
        .map(|i| ((rng.next() % (v1.len() as u64 - 16)) as usize, i < INSERTS))
        .collect();
    edits.sort();
    let mut v2 = Vec::with_capacity(v1.len() + INSERTS * 100);
    let mut at = 0;
    for (off, insert) in edits {
        let off = off.max(at);
        v2.extend_from_slice(&v1[at..off]);
        if insert {
            v2.extend_from_slice(&rng.bytes(100));
            at = off;
        } else {
            let end = (off + 16).min(v1.len());
            v2.extend_from_slice(&rng.bytes(end - off));
            at = end;
        }
    }
    v2.extend_from_slice(&v1[at..]);
    v2
}

/// (id, length) of every chunk of `data`.
fn chunk_ids(data: &[u8], params: ChunkingParams, keys: &StoreKeys) -> Vec<(Hash, usize)> {
    // A
    Chunker::new(data, params, keys.cdc_seed)
        .unwrap()
        .map(|c| {
            let c = c.unwrap();
            (keys.chunk_id(&c), c.len())
        })
        .collect()
}

/// Encoded bytes of one chunk's metadata for 4+2: (blob entry, chunk record, 6 slice headers).
fn metadata_bytes(avg: u32) -> (usize, usize, usize) {
    // A
    let id = Hash([0xAB; 32]);
    let entry = postcard::to_allocvec(&ChunkRef { id, size: avg })
        .unwrap()
        .len();
    let record = ChunkRecord {
        size: avg,
        sealed_len: avg / 2,
        key_epoch: 0,
        nonce: [0; 12],
        k: 4,
        m: 2,
        slices: vec![id; 6],
        kind: ouroboros_db::model::ChunkKind::Sliced,
    }
    .encode()
    .map_or(0, |b| b.len());
    let header = SealedSlice {
        header: SliceHeader {
            chunk: id,
            index: 5,
            k: 4,
            m: 2,
        },
        payload: Vec::new(),
    }
    .encode()
    .map_or(0, |b| b.len());
    (entry, record, 6 * header)
}

fn size(b: u32) -> String {
    // A
    if b >= MIB {
        format!("{}M", b / MIB)
    } else {
        format!("{}K", b / KIB)
    }
}

fn human(bytes: f64) -> String {
    // A
    if bytes >= 1e6 {
        format!("{:.2} MB", bytes / 1e6)
    } else {
        format!("{:.1} kB", bytes / 1e3)
    }
}

fn main() {
    // A
    let mut args = std::env::args().skip(1);
    let Some(v1_path) = args.next() else {
        eprintln!("usage: chunk_sizes V1_FILE [V2_FILE]");
        std::process::exit(2);
    };
    let v1 = std::fs::read(&v1_path).expect("reading v1");
    let v2 = match args.next() {
        Some(p) => std::fs::read(p).expect("reading v2"),
        None => edit(&v1),
    };
    // Cut points depend on the secret seed, so dedup figures are averaged over SEEDS stores.
    let all_keys: Vec<StoreKeys> = (0..SEEDS).map(|_| StoreKeys::generate()).collect();
    let keys = &all_keys[0];
    println!(
        "v1: {v1_path}, {} bytes; v2: {} bytes ({EDITS} edits: {} x 16 B overwrites, \
         {INSERTS} x 100 B insertions); {SEEDS} random store seeds, figures are means\n",
        v1.len(),
        v2.len(),
        EDITS - INSERTS
    );

    let sets = [
        (64 * KIB, 128 * KIB, 512 * KIB),
        (128 * KIB, 256 * KIB, MIB),
        (256 * KIB, 512 * KIB, 2 * MIB),
        (512 * KIB, MIB, 4 * MIB),
        (MIB, 2 * MIB, 8 * MIB),
    ];
    let mut table = Vec::new();
    let mut zstd_table = Vec::new();
    for (min, avg, max) in sets {
        let params = ChunkingParams { min, avg, max };
        let mut times = Vec::new();
        let (mut chunks1, mut chunks2, mut new_chunks) = (0usize, 0usize, 0usize);
        let mut new_fracs = Vec::new();
        for keys in &all_keys {
            let mut c1 = Vec::new();
            for _ in 0..RUNS {
                let t = Instant::now();
                c1 = chunk_ids(&v1, params, keys);
                times.push(t.elapsed().as_secs_f64());
            }
            let c2 = chunk_ids(&v2, params, keys);
            let known: HashSet<Hash> = c1.iter().map(|(id, _)| *id).collect();
            let new: Vec<&(Hash, usize)> =
                c2.iter().filter(|(id, _)| !known.contains(id)).collect();
            let new_bytes: usize = new.iter().map(|(_, l)| l).sum();
            chunks1 += c1.len();
            chunks2 += c2.len();
            new_chunks += new.len();
            new_fracs.push(new_bytes as f64 / v2.len() as f64);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let mbps = v1.len() as f64 / times[times.len() / 2] / 1e6;
        let n = SEEDS as f64;
        let chunks = chunks1 as f64 / n;
        let frac = new_fracs.iter().sum::<f64>() / n;
        let lo = new_fracs.iter().cloned().fold(f64::MAX, f64::min);
        let hi = new_fracs.iter().cloned().fold(0.0, f64::max);
        let (entry, record, headers) = metadata_bytes(avg);
        let per_chunk = entry + record + headers;
        let name = format!("{}/{}/{}", size(min), size(avg), size(max));
        eprintln!("{name}: {chunks:.0} chunks, {mbps:.0} MB/s");
        table.push(format!(
            "| {name} | {mbps:.0} | {chunks:.1} | {:.0} | {:.1} / {:.1} | {} = {:.2} % ({:.1}..{:.1}) | {} | {} ({per_chunk} B: {entry} + {record} + {headers}) |",
            v1.len() as f64 / chunks / 1024.0,
            new_chunks as f64 / n,
            chunks2 as f64 / n,
            human(frac * v2.len() as f64),
            100.0 * frac,
            100.0 * lo,
            100.0 * hi,
            human(chunks * 336.0),
            human(chunks * per_chunk as f64),
        ));

        // zstd 3 over v1's unique chunks, as the sealer compresses them ([flag][body]).
        let mut seen = HashSet::new();
        let (mut plain, mut packed) = (0usize, 0usize);
        let mut out = Vec::new();
        let t = Instant::now();
        for c in Chunker::new(&v1[..], params, keys.cdc_seed).unwrap() {
            let c = c.unwrap();
            if !seen.insert(keys.chunk_id(&c)) {
                continue;
            }
            out.clear();
            compress::compress_into(&c, 3, &mut out).unwrap();
            plain += c.len();
            packed += out.len();
        }
        let secs = t.elapsed().as_secs_f64();
        zstd_table.push(format!(
            "| {name} | {plain} | {packed} | {:.3} | {:.0} |",
            plain as f64 / packed as f64,
            plain as f64 / secs / 1e6
        ));
    }

    println!(
        "| min/avg/max | chunk+id MB/s (v1) | chunks in v1 | mean chunk KiB | new chunks / chunks in v2 | \
         new bytes in v2 (min..max %) | metadata @336 B/chunk | metadata, encoded |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in table {
        println!("{row}");
    }
    println!(
        "\nzstd level 3 over v1's unique chunks (first seed; chunking + id + compression MB/s):\n\n\
         | min/avg/max | plaintext bytes | compressed bytes | ratio | MB/s |\n|---|---:|---:|---:|---:|"
    );
    for row in zstd_table {
        println!("{row}");
    }
}
