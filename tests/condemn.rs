//! Freeing chunks in a cluster, without the network: gc on a cluster store condemns the
//! sealings no live version uses, the condemnation travels with the deletions, no put
//! deduplicates against a condemned sealing, and freeing drops only unused ones.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{random_bytes, read};
use ouroboros_db::cas::{Deletion, WalEntry};
use ouroboros_db::progress::NoProgress;
use ouroboros_db::{sealing_id, Cas, CreateOptions, Error, Identity, PutOptions};

const DAY: Duration = Duration::from_secs(86_400);

/// Two stores as two nodes of one cluster would have them.
fn pair() -> (tempfile::TempDir, Cas, Cas) {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let a = Cas::create(&dir.path().join("a"), &CreateOptions::default(), &me).unwrap();
    let mut b =
        Cas::create_replica(&dir.path().join("b"), &a.replica().replica_seed().unwrap()).unwrap();
    b.unlock(&me).unwrap();
    for cas in [&a, &b] {
        let lmdb = cas.replica().lmdb();
        let mut txn = lmdb.write().unwrap();
        lmdb.cluster.put(&mut txn, b"info", b"test").unwrap();
        lmdb.commit(txn).unwrap();
    }
    (dir, a, b)
}

fn sync(from: &Cas, to: &Cas) {
    let (v, _) = from.versions_since(0, 1000).unwrap();
    let (d, _) = from.replica().deletions_since(0, 1000).unwrap();
    to.replica().import_versions(&v).unwrap();
    to.replica().import_deletions(&d).unwrap();
}

/// Marks chunk `id`'s sealing here condemned, as a condemnation from another node does.
fn condemn(cas: &Cas, id: ouroboros_db::Hash) {
    let record = cas.replica().chunk_record(&id).unwrap().unwrap();
    cas.replica()
        .import_deletions(&[WalEntry {
            time: 1,
            deletion: Deletion::Condemned {
                id,
                sealing: sealing_id(&record).unwrap(),
            },
        }])
        .unwrap();
}

#[test]
fn gc_on_a_cluster_store_condemns_and_a_put_of_that_content_seals_it_again() {
    let (_d, a, _b) = pair();
    let data = random_bytes(300_000, 1);
    a.put("old", &data[..], &PutOptions::default()).unwrap();
    let (recs, _) = a.versions_since(0, 10).unwrap();
    let (id, old_record) = recs[0].chunks[0].clone();
    a.remove("old").unwrap();
    let gc = a.gc(&NoProgress).unwrap();
    assert_eq!(gc.chunks_freed, 0, "{gc:?}");
    assert_eq!(gc.chunks_condemned, 1, "{gc:?}");
    assert_eq!(a.replica().condemned_count().unwrap(), 1);
    // The condemnation is in the deletion log, for the other nodes.
    let (entries, _) = a.replica().deletions_since(0, 10).unwrap();
    assert!(entries.iter().any(|e| e.deletion
        == Deletion::Condemned {
            id,
            sealing: sealing_id(&old_record).unwrap()
        }));
    // A put of the same content does not reuse the condemned sealing: it seals again.
    let new = a.put("new", &data[..], &PutOptions::default()).unwrap();
    assert_eq!(new.new_chunks, 1);
    assert!(new.stored_bytes > 0);
    let record = a.replica().chunk_record(&id).unwrap().unwrap();
    assert_ne!(
        sealing_id(&record).unwrap(),
        sealing_id(&old_record).unwrap()
    );
    // Freeing now drops the mark (that sealing is gone here) and keeps the new one.
    let freed = a.replica().free_condemned(u64::MAX, DAY).unwrap().unwrap();
    assert_eq!(
        (freed.chunks_freed, freed.marks_dropped),
        (0, 1),
        "{freed:?}"
    );
    assert_eq!(a.replica().condemned_count().unwrap(), 0);
    assert_eq!(read(&a, "new"), data);
}

#[test]
fn condemnations_travel_and_each_node_frees_its_own_slices() {
    let (_d, a, b) = pair();
    let data = random_bytes(200_000, 2);
    let keep = random_bytes(200_000, 3);
    a.put("gone", &data[..], &PutOptions::default()).unwrap();
    a.put("kept", &keep[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    // b holds its own copy of the slices, as a placed node would.
    let (recs, _) = a.versions_since(0, 10).unwrap();
    for r in &recs {
        for (id, record) in &r.chunks {
            let all: Vec<u8> = (0..record.slices.len() as u8).collect();
            let slices = a.replica().local_slices(id, &all).unwrap();
            assert!(b
                .replica()
                .accept_slices(id, record, false, &slices)
                .unwrap()
                .is_none());
        }
    }
    a.remove("gone").unwrap();
    assert_eq!(a.gc(&NoProgress).unwrap().chunks_condemned, 1);
    sync(&a, &b);
    // b marked it and logged the condemnation under its own sequence.
    assert_eq!(b.replica().condemned_count().unwrap(), 1);
    let (entries, _) = b.replica().deletions_since(0, 10).unwrap();
    assert!(entries
        .iter()
        .any(|e| matches!(e.deletion, Deletion::Condemned { .. })));
    // b has not released the removed version yet: freeing keeps the chunk.
    let kept = b.replica().free_condemned(u64::MAX, DAY).unwrap().unwrap();
    assert_eq!(kept.still_used, 1, "{kept:?}");
    // A cursor that does not cover b's entry frees nothing.
    b.replica().release_removed(&NoProgress).unwrap();
    let none = b.replica().free_condemned(0, DAY).unwrap().unwrap();
    assert_eq!(none.chunks_freed, 0);
    let gone_rec = recs.iter().find(|r| r.blob.key == "gone").unwrap();
    let (gone_id, gone_record) = gone_rec.chunks[0].clone();
    let all: Vec<u8> = (0..gone_record.slices.len() as u8).collect();
    let late = a.replica().local_slices(&gone_id, &all).unwrap();
    for cas in [&a, &b] {
        let before = cas.stats().unwrap().chunks;
        let freed = cas
            .replica()
            .free_condemned(u64::MAX, DAY)
            .unwrap()
            .unwrap();
        assert_eq!(freed.chunks_freed, 1, "{freed:?}");
        assert!(freed.bytes_freed > 0);
        assert_eq!(cas.stats().unwrap().chunks, before - 1);
        assert_eq!(cas.replica().condemned_count().unwrap(), 0);
        assert_eq!(read(cas, "kept"), keep);
    }
    // A late hand-off of the freed sealing, without its mark, arrives condemned: a put of
    // that content seals it again rather than deduplicating against it.
    assert!(b
        .replica()
        .accept_slices(&gone_id, &gone_record, false, &late)
        .unwrap()
        .is_none());
    let again = b.put("again", &data[..], &PutOptions::default()).unwrap();
    assert_eq!(again.new_chunks, 1);
    assert_eq!(read(&b, "again"), data);
}

#[test]
fn compaction_keeps_a_pending_condemnation_for_nodes_that_join_later() {
    let (_d, a, _b) = pair();
    a.put("x", &random_bytes(100_000, 4)[..], &PutOptions::default())
        .unwrap();
    a.remove("x").unwrap();
    a.gc(&NoProgress).unwrap();
    let (_, last) = a.replica().deletions_since(0, 10).unwrap();
    a.replica().compact_deletions(last).unwrap();
    // The key removal went; the condemnation stays, below the floor, while it is pending.
    let (held, floor) = a.replica().tombstones().unwrap();
    assert_eq!((held, floor), (1, last));
    let (entries, _) = a.replica().deletions_since(0, 10).unwrap();
    assert!(matches!(
        entries[..],
        [WalEntry {
            deletion: Deletion::Condemned { .. },
            ..
        }]
    ));
    // New entries still get new sequences.
    a.put("y", &b"y"[..], &PutOptions::default()).unwrap();
    a.remove("y").unwrap();
    let (_, next) = a.replica().deletions_since(last, 10).unwrap();
    assert_eq!(next, last + 1);
    // Once freed, the kept entry goes too.
    assert_eq!(
        a.replica()
            .free_condemned(u64::MAX, DAY)
            .unwrap()
            .unwrap()
            .chunks_freed,
        1
    );
    let (entries, _) = a.replica().deletions_since(0, 10).unwrap();
    assert!(entries
        .iter()
        .all(|e| !matches!(e.deletion, Deletion::Condemned { .. })));
}

#[test]
fn a_live_sealing_wins_over_a_condemned_one_whatever_the_hashes() {
    let (_d, a, b) = pair();
    let data = random_bytes(150_000, 5);
    // The same content sealed on both, each with its own nonce.
    a.put("k", &data[..], &PutOptions::default()).unwrap();
    b.put("k2", &data[..], &PutOptions::default()).unwrap();
    let (ra, _) = a.versions_since(0, 10).unwrap();
    let (rb, _) = b.versions_since(0, 10).unwrap();
    let (id, rec_a) = ra[0].chunks[0].clone();
    let rec_b = rb[0].chunks[0].1.clone();
    assert_ne!(rec_a, rec_b);
    // Whichever sorts first, once b marks its own sealing condemned, a's wins on b.
    condemn(&b, id);
    b.replica().adopt_record(&id, &rec_a, false).unwrap();
    assert_eq!(b.replica().chunk_record(&id).unwrap(), Some(rec_a.clone()));
    // And a condemned sealing offered with its mark does not replace a live one.
    assert!(matches!(
        a.replica().adopt_record(&id, &rec_b, true).unwrap(),
        ouroboros_db::Adopted::Kept(_)
    ));
    assert_eq!(a.replica().chunk_record(&id).unwrap(), Some(rec_a));
    assert_eq!(read(&a, "k"), data);
}

/// Input that, once `at` bytes were read, runs `hook` (another node's condemnation
/// arriving while the put is under way).
struct Hooked<'a> {
    data: &'a [u8],
    pos: usize,
    at: usize,
    hook: Option<Box<dyn FnOnce() + Send + 'a>>,
}

impl Read for Hooked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.at {
            if let Some(h) = self.hook.take() {
                h();
            }
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_put_that_deduplicated_against_a_sealing_condemned_meanwhile_stores_nothing() {
    let (_d, a, _b) = pair();
    let data = random_bytes(16 << 20, 6);
    a.put("old", &data[..], &PutOptions::default()).unwrap();
    let (recs, _) = a.versions_since(0, 10).unwrap();
    let first = recs[0].blob.chunks[0].id;
    a.remove("old").unwrap();
    a.replica().release_removed(&NoProgress).unwrap();
    let input = Hooked {
        data: &data,
        pos: 0,
        at: 12 << 20,
        hook: Some(Box::new(|| condemn(&a, first))),
    };
    let err = a.put("new", input, &PutOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Retry(_)), "{err}");
    assert!(err.to_string().contains("run the command again"), "{err}");
    assert!(a.heads("new").unwrap_or_default().is_empty());
    // Run again, it seals that chunk anew and succeeds.
    let again = a.put("new", &data[..], &PutOptions::default()).unwrap();
    assert_eq!(again.new_chunks, 1);
    assert_eq!(read(&a, "new"), data);
}

#[test]
fn merge_and_copy_of_a_version_whose_chunk_is_condemned_seal_it_again() {
    let (_d, a, _b) = pair();
    let base = random_bytes(100_000, 7);
    let two = random_bytes(130_000, 9);
    let v0 = a.put("k", &base[..], &PutOptions::default()).unwrap();
    let at = |p: ouroboros_db::Hash| PutOptions {
        parents: Some(vec![p]),
        ..Default::default()
    };
    a.put("k", &b"one"[..], &at(v0.hash)).unwrap();
    let v2 = a.put("k", &two[..], &at(v0.hash)).unwrap();
    // Another node's gc condemned the chunk of v2 before it learned of v2 (it ran too
    // early): here v2 is live, so the chunk stays, but no new version may use that sealing.
    let (recs, _) = a.versions_since(0, 10).unwrap();
    let id = recs
        .iter()
        .find(|r| r.blob.hash().unwrap() == v2.hash)
        .unwrap()
        .blob
        .chunks[0]
        .id;
    let old = a.replica().chunk_record(&id).unwrap().unwrap();
    condemn(&a, id);
    let copied = a.copy_version(&v2.hash, "copy").unwrap();
    assert_ne!(
        a.replica().chunk_record(&id).unwrap().unwrap(),
        old,
        "sealed again"
    );
    assert_eq!(read(&a, "copy"), two);
    assert_eq!(a.heads("copy").unwrap()[0].hash, copied);
    // The same for a merge that picks v2's content.
    condemn(&a, id);
    let merged = a
        .merge("k", ouroboros_db::MergeSource::Pick(v2.hash))
        .unwrap();
    assert_eq!(read(&a, "k"), two);
    let heads = a.heads("k").unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].hash, merged);
    assert_eq!(read(&a, &format!("k@{}", v2.hash)), two);
}

#[test]
fn concurrent_releases_take_each_removed_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cas::create(dir.path(), &CreateOptions::default(), &Identity::generate()).unwrap();
    // Two versions of each key share their chunk; the older one is removed.
    let mut keep = Vec::new();
    for i in 0..300u64 {
        let data = random_bytes(2000, 100 + i);
        let k = format!("k{i}");
        let v1 = a.put(&k, &data[..], &PutOptions::default()).unwrap();
        a.put(&k, &data[..], &PutOptions::default()).unwrap();
        a.remove(&format!("{k}@{}", v1.hash)).unwrap();
        keep.push((k, data));
    }
    std::thread::scope(|s| {
        let one = s.spawn(|| a.replica().release_removed(&NoProgress).unwrap());
        let two = s.spawn(|| a.replica().release_removed(&NoProgress).unwrap());
        one.join().unwrap();
        two.join().unwrap();
    });
    let gc = a.gc(&NoProgress).unwrap();
    assert_eq!(gc.chunks_freed, 0, "every chunk is still used: {gc:?}");
    for (k, data) in keep {
        assert_eq!(read(&a, &k), data, "{k}");
    }
}

#[test]
fn a_version_committed_after_a_key_removal_is_dated_after_it_on_every_node() {
    let (_d, a, b) = pair();
    a.put("k", &b"one"[..], &PutOptions::default()).unwrap();
    a.remove("k").unwrap();
    // A put whose time was taken before the removal (a long put, a clock behind).
    let early = PutOptions {
        created: Some(1),
        ..Default::default()
    };
    let v = a.put("k", &b"two"[..], &early).unwrap();
    sync(&a, &b);
    // Both keep it live: their counts agree, so gc on either cannot free its chunk.
    assert_eq!(read(&a, "k"), b"two");
    assert_eq!(b.heads("k").unwrap()[0].hash, v.hash);
}
