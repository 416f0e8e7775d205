//! Deltas on a real store: a small file edited between two puts is stored as a delta
//! against its previous version (a fraction of its size), every version reads back, chains
//! stop at their longest, gc keeps a base while a delta needs it and frees it after, and a
//! delta reads back through damage to its pack and its base's pack, and after repair.

mod common;

use common::damage_slice as damage;
use common::packs::{new_store, records};
use common::read;
use ouroboros_db::model::chunk::MAX_DELTA_DEPTH;
use ouroboros_db::{Cas, Hash, NoProgress, PutOptions};

/// Version `n` of a source file: 300 lines, one of them edited per version.
fn version(n: usize) -> Vec<u8> {
    (0..300usize)
        .map(|i| match i {
            i if i < n => format!("    value_{i} = compute({i}, edited in version {i})\n"),
            i => format!(
                "    value_{i} = compute({}, {})\n",
                i * 7919 % 1000,
                i * 104_729
            ),
        })
        .collect::<String>()
        .into_bytes()
}

fn put(cas: &Cas, key: &str, data: &[u8]) -> Hash {
    cas.put(key, data, &PutOptions::default()).unwrap().hash
}

/// The record of the single chunk of a one-chunk version.
fn chunk_of(cas: &Cas, hash: &Hash) -> (Hash, ouroboros_db::model::ChunkRecord) {
    let blob = cas.blob(hash).unwrap();
    let id = blob.chunks[0].id;
    let record = records(cas).into_iter().find(|(c, _)| *c == id).unwrap().1;
    (id, record)
}

#[test]
fn an_edited_small_file_is_stored_as_a_delta_and_every_version_reads_back() {
    let (_d, cas) = new_store();
    let v1 = put(&cas, "src/app.py", &version(0));
    let after_first = cas.stats().unwrap().stored_bytes;
    let v2 = put(&cas, "src/app.py", &version(1));
    let stats = cas.stats().unwrap();
    assert_eq!(stats.deltas, 1);
    let (_, record) = chunk_of(&cas, &v2);
    assert_eq!(record.base(), Some(chunk_of(&cas, &v1).0));
    let added = stats.stored_bytes - after_first;
    assert!(
        added * 10 < after_first,
        "the edit cost {added} bytes against {after_first}"
    );
    assert_eq!(read(&cas, "src/app.py"), version(1));
    assert_eq!(read(&cas, &format!("src/app.py@{}", v1)), version(0));
    let report = cas.verify(false, &NoProgress).unwrap();
    assert!(report.is_healthy(), "{:?}", report.damage);
    assert_eq!(report.decrypted, 2, "the delta and its base opened");
}

#[test]
fn chains_stop_at_their_longest_and_start_again() {
    let (_d, cas) = new_store();
    let n = MAX_DELTA_DEPTH as usize + 4;
    let hashes: Vec<Hash> = (0..n).map(|i| put(&cas, "lib.rs", &version(i))).collect();
    // Version 0 whole, then MAX_DELTA_DEPTH deltas, one whole again, then deltas on it.
    let whole: Vec<usize> = (0..n)
        .filter(|i| chunk_of(&cas, &hashes[*i]).1.base().is_none())
        .collect();
    assert_eq!(whole, vec![0, MAX_DELTA_DEPTH as usize + 1]);
    assert_eq!(cas.stats().unwrap().deltas, n as u64 - 2);
    for (i, h) in hashes.iter().enumerate() {
        assert_eq!(
            read(&cas, &format!("lib.rs@{h}")),
            version(i),
            "version {i}"
        );
    }
}

#[test]
fn gc_keeps_a_base_while_a_delta_needs_it_and_frees_it_after() {
    let (_d, cas) = new_store();
    let v1 = put(&cas, "a.txt", &version(0));
    let v2 = put(&cas, "a.txt", &version(1));
    let (base, _) = chunk_of(&cas, &v1);
    cas.remove(&format!("a.txt@{v1}")[..]).unwrap();
    cas.gc(&NoProgress).unwrap();
    assert!(
        records(&cas).iter().any(|(id, _)| *id == base),
        "the base stays"
    );
    assert_eq!(read(&cas, "a.txt"), version(1));
    assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
    // The delta's own version gone too: both go, and so do their packs.
    cas.remove(&format!("a.txt@{v2}")[..]).unwrap();
    let report = cas.gc(&NoProgress).unwrap();
    assert_eq!(report.chunks_freed, 2, "{report:?}");
    assert_eq!(report.packs_freed, 2, "{report:?}");
    assert!(records(&cas).is_empty(), "{:?}", records(&cas));
    let stats = cas.stats().unwrap();
    assert_eq!((stats.chunks, stats.slices), (0, 0));
}

#[test]
fn a_delta_reads_back_through_damage_to_its_pack_and_its_base_and_after_repair() {
    for lost in 0..4u8 {
        let (_d, cas) = new_store();
        let v1 = put(&cas, "doc.md", &version(0));
        let v2 = put(&cas, "doc.md", &version(1));
        let (base_pack, _) = chunk_of(&cas, &v1).1.pack().unwrap();
        let (delta_pack, _) = chunk_of(&cas, &v2).1.pack().unwrap();
        assert_ne!(base_pack, delta_pack);
        // Up to m = 2 slices of each pack: a data slice and a parity slice.
        for pack in [base_pack, delta_pack] {
            damage(&cas, &pack, lost, None);
            damage(&cas, &pack, 5, Some(b"garbage"));
        }
        assert_eq!(read(&cas, "doc.md"), version(1), "data slice {lost} lost");
        assert!(!cas.verify(false, &NoProgress).unwrap().is_healthy());
        let repaired = cas.verify(true, &NoProgress).unwrap();
        assert!(repaired.is_healthy(), "{:?}", repaired.damage);
        let clean = cas.verify(false, &NoProgress).unwrap();
        assert!(clean.damage.is_empty(), "{:?}", clean.damage);
        assert_eq!(read(&cas, "doc.md"), version(1));
        assert_eq!(read(&cas, &format!("doc.md@{v1}")), version(0));
    }
}

#[test]
fn a_delta_whose_base_is_lost_is_reported_never_misread() {
    let (_d, cas) = new_store();
    let v1 = put(&cas, "x", &version(0));
    let v2 = put(&cas, "x", &version(1));
    let (base_pack, _) = chunk_of(&cas, &v1).1.pack().unwrap();
    for i in 0..3 {
        damage(&cas, &base_pack, i, None);
    }
    let mut out = Vec::new();
    assert!(
        cas.get("x", &mut out).is_err(),
        "more than m slices of the base lost"
    );
    let report = cas.verify(false, &NoProgress).unwrap();
    assert!(!report.is_healthy());
    // Both versions are reported: the base's, and the delta's, which cannot open without it.
    let text = format!("{:?}", report.damage);
    for v in [v1, v2] {
        assert!(text.contains(&format!("x@{}", v.short())), "{v}: {text}");
    }
}

#[test]
fn a_store_whose_config_says_format_7_opens_upgraded_and_takes_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let id = ouroboros_db::Identity::generate();
    let cas = Cas::create(&path, &common::packs::opts(), &id).unwrap();
    let lmdb = cas.replica().lmdb();
    let format = |cas: &Cas| {
        let lmdb = cas.replica().lmdb();
        lmdb.meta.config(&lmdb.read().unwrap()).unwrap().format
    };
    let mut txn = lmdb.write().unwrap();
    let old = ouroboros_db::store::StoreConfig {
        format: 7,
        ..cas.config().clone()
    };
    lmdb.meta.put_config(&mut txn, &old).unwrap();
    txn.commit().unwrap();
    put(&cas, "f", &version(0));
    drop(cas);
    // Its rows are this format's already: the upgrade leaves them as they are.
    let mut cas = Cas::open(&path).unwrap();
    cas.unlock(&id).unwrap();
    assert_eq!(format(&cas), 10);
    assert_eq!(read(&cas, "f"), version(0));
    put(&cas, "f", &version(1));
    assert_eq!(cas.stats().unwrap().deltas, 1);
    assert_eq!(read(&cas, "f"), version(1));
    let r = cas.verify(false, &NoProgress).unwrap();
    assert!(r.is_healthy(), "{:?}", r.damage);
}

#[test]
fn a_replica_receives_a_deltas_base_chain_and_refuses_a_delta_without_its_base() {
    let (_d, a) = new_store();
    let dir = tempfile::tempdir().unwrap();
    put(&a, "f", &version(0));
    put(&a, "f", &version(1));
    let v3 = put(&a, "f", &version(2));
    let (v, _) = a.versions_since(0, 100).unwrap();
    let last = v.iter().find(|r| r.blob.hash().unwrap() == v3).unwrap();
    // The delta, its base (a delta too), that one's base, and their packs, bases first.
    let ids: Vec<Hash> = last.chunks.iter().map(|(id, _)| *id).collect();
    let (delta, record) = chunk_of(&a, &v3);
    assert_eq!(ids.last(), Some(&delta));
    let base = record.base().unwrap();
    let pos = |h: &Hash| ids.iter().position(|i| i == h).unwrap();
    assert!(pos(&base) < pos(&delta));
    assert!(pos(&record.pack().unwrap().0) < pos(&delta));
    let seed = a.replica().replica_seed().unwrap();
    let b = Cas::create_replica(&dir.path().join("b"), &seed).unwrap();
    assert_eq!(
        b.replica()
            .import_versions(std::slice::from_ref(last))
            .unwrap(),
        1
    );
    assert_eq!(
        records(&b)
            .iter()
            .filter(|(_, r)| r.base().is_some())
            .count(),
        2
    );
    // A hostile or damaged peer: the same delta naming itself, or a base never sent.
    for bad_base in [delta, Hash([7; 32])] {
        let c =
            Cas::create_replica(&dir.path().join(format!("c{}", bad_base.short())), &seed).unwrap();
        let mut rec = last.clone();
        if let Some((_, r)) = rec.chunks.iter_mut().find(|(id, _)| *id == delta) {
            if let ouroboros_db::model::ChunkKind::Delta { base, .. } = &mut r.kind {
                *base = bad_base;
            }
        }
        rec.chunks.retain(|(id, _)| *id != bad_base || *id == delta);
        let err = c.replica().import_versions(&[rec]).unwrap_err();
        assert!(err.to_string().contains("without a usable base"), "{err}");
        assert!(records(&c).iter().all(|(_, r)| r.base().is_none()));
    }
}

/// `n` bytes of text that compresses about as source code does, edited at `edits`.
fn big_text(n: usize, edits: &[usize]) -> Vec<u8> {
    let mut out: Vec<u8> = (0..)
        .flat_map(|i: u64| {
            format!("{:x} ", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40).into_bytes()
        })
        .take(n)
        .collect();
    for e in edits {
        out[*e] = b'!';
    }
    out
}

#[test]
fn a_large_file_edited_stores_its_changed_chunks_as_deltas() {
    let (_d, cas) = new_store();
    // One chunk of 300 KiB (sealed alone), then a 3 MiB file of several chunks.
    let (one, many) = (300 << 10, 3 << 20);
    put(&cas, "one", &big_text(one, &[]));
    put(&cas, "many", &big_text(many, &[]));
    let before = cas.stats().unwrap();
    put(&cas, "one", &big_text(one, &[1000]));
    let v = put(&cas, "many", &big_text(many, &[1_500_000]));
    let after = cas.stats().unwrap();
    assert_eq!(
        after.deltas, 2,
        "the 300 KiB chunk and the edited chunk of the 3 MiB file"
    );
    let blob = cas.blob(&v).unwrap();
    assert!(blob.chunks.len() > 1);
    let added = after.stored_bytes - before.stored_bytes;
    assert!(added < 16 << 10, "{added} bytes for two edits");
    assert_eq!(read(&cas, "one"), big_text(one, &[1000]));
    assert_eq!(read(&cas, "many"), big_text(many, &[1_500_000]));
    assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
}
