//! Stores of small files for the pack tests: a 4+2 store, files of a few KiB (half random,
//! half compressible), put through one pipeline as `put -r` does, and the records they made.

use ouroboros_db::model::ChunkRecord;
use ouroboros_db::{Cas, CreateOptions, Hash, Identity, NoProgress, PutItem};

use super::random_bytes;

/// The 4+2 store options of the pack tests.
pub fn opts() -> CreateOptions {
    CreateOptions {
        k: 4,
        m: 2,
        ..CreateOptions::default()
    }
}

/// A new 4+2 store in a temp dir (the dir must outlive it).
pub fn new_store() -> (tempfile::TempDir, Cas) {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::create(&dir.path().join("s"), &opts(), &Identity::generate()).unwrap();
    (dir, cas)
}

/// `n` small files (200 B to 9 KiB), keys `dir/fileNNNN` from `seed` on.
pub fn files(n: usize, seed: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let j = i + seed;
            let size = 200 + (j * 977) % 9000;
            let data = match j % 2 {
                0 => random_bytes(size, j as u64),
                _ => format!("line {j}\n").repeat(size / 8).into_bytes(),
            };
            (format!("dir/file{j:04}"), data)
        })
        .collect()
}

/// Puts all files through one pipeline (as `put -r` does), so they share packs.
pub fn put_all(cas: &Cas, files: &[(String, Vec<u8>)]) {
    let items = files.iter().map(|(k, d)| PutItem {
        key: k.clone(),
        reader: Box::new(&d[..]),
        size_hint: Some(d.len() as u64),
        parents: None,
        created: None,
        skip_if_unchanged: false,
        meta: Default::default(),
    });
    for r in cas.put_many(items, &NoProgress).unwrap() {
        r.unwrap();
    }
}

/// Every chunk record that decodes.
pub fn records(cas: &Cas) -> Vec<(Hash, ChunkRecord)> {
    let txn = cas.replica().lmdb().read().unwrap();
    cas.replica()
        .lmdb()
        .chunks
        .page(&txn, None, usize::MAX)
        .unwrap()
        .into_iter()
        .filter_map(|(id, r)| r.ok().map(|r| (id, r)))
        .collect()
}

/// The ids of the packs in the store.
pub fn packs(cas: &Cas) -> Vec<Hash> {
    records(cas)
        .into_iter()
        .filter(|(_, r)| r.is_pack())
        .map(|(id, _)| id)
        .collect()
}
