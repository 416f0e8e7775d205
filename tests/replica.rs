//! Replication between two stores as cluster nodes do it, without the network: versions
//! and deletions pulled from logs, slices handed over and read back through a remote.

mod common;

use std::sync::Arc;

use common::random_bytes;
use ouroboros_db::cas::SliceDelivery;
use ouroboros_db::route::remote::RemoteSlices;
use ouroboros_db::{wins_over, Adopted, Cas, CreateOptions, Error, Hash, Identity, PutOptions};

struct Peer(Arc<Cas>);

impl RemoteSlices for Peer {
    fn fetch(
        &self,
        id: &Hash,
        wanted: &[u8],
        _need: usize,
    ) -> ouroboros_db::Result<Vec<(u8, Vec<u8>)>> {
        self.0.replica().local_slices(id, wanted)
    }
}

fn pair() -> (tempfile::TempDir, Identity, Cas, Cas) {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let a = Cas::create(&dir.path().join("a"), &CreateOptions::default(), &me).unwrap();
    let mut b =
        Cas::create_replica(&dir.path().join("b"), &a.replica().replica_seed().unwrap()).unwrap();
    b.unlock(&me).unwrap();
    (dir, me, a, b)
}

fn sync(from: &Cas, to: &Cas) -> usize {
    let (v, _) = from.versions_since(0, 1000).unwrap();
    let (d, _) = from.replica().deletions_since(0, 1000).unwrap();
    to.replica().import_versions(&v).unwrap() + to.replica().import_deletions(&d).unwrap()
}

fn heads(cas: &Cas, key: &str) -> Vec<Hash> {
    let mut h: Vec<Hash> = cas.heads(key).unwrap().iter().map(|v| v.hash).collect();
    h.sort();
    h
}

#[test]
fn versions_replicate_and_read_through_a_remote() {
    let (_d, _me, a, mut b) = pair();
    let data = random_bytes(3 << 20, 7);
    let v1 = a
        .put("docs/a.bin", &data[..], &PutOptions::default())
        .unwrap();
    assert_eq!(sync(&a, &b), 1);
    assert_eq!(sync(&a, &b), 0, "importing twice changes nothing");
    assert_eq!(heads(&b, "docs/a.bin"), vec![v1.hash]);
    // b has the version but none of its slices.
    let mut out = Vec::new();
    assert!(matches!(
        b.get("docs/a.bin", &mut out),
        Err(Error::Corrupt(_))
    ));
    let a = Arc::new(a);
    b.set_remote(Arc::new(Peer(Arc::clone(&a))));
    let mut out = Vec::new();
    b.get("docs/a.bin", &mut out).unwrap();
    assert_eq!(out, data);
}

#[test]
fn concurrent_writes_become_two_heads_on_both() {
    let (_d, _me, a, b) = pair();
    let v1 = a.put("k", &b"one"[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    let on_a = a.put("k", &b"two"[..], &PutOptions::default()).unwrap();
    let on_b = b.put("k", &b"three"[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    sync(&b, &a);
    let mut want = vec![on_a.hash, on_b.hash];
    want.sort();
    assert_eq!(heads(&a, "k"), want);
    assert_eq!(heads(&b, "k"), want);
    assert!(!want.contains(&v1.hash));
}

#[test]
fn removals_replicate_and_cover_older_versions_arriving_late() {
    let (_d, _me, a, b) = pair();
    a.put("gone", &b"x"[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    let late = b.put("late", &b"y"[..], &PutOptions::default()).unwrap();
    a.remove("gone").unwrap();
    sync(&a, &b);
    assert!(matches!(
        b.get("gone", Vec::new()),
        Err(Error::KeyDeleted { .. })
    ));
    // An rm of a key on b whose version a learns of only afterwards.
    b.remove("late").unwrap();
    let (d, _) = b.replica().deletions_since(0, 100).unwrap();
    a.replica().import_deletions(&d).unwrap();
    let (v, _) = b.versions_since(0, 100).unwrap();
    a.replica().import_versions(&v).unwrap();
    assert!(matches!(
        a.get("late", Vec::new()),
        Err(Error::KeyDeleted { .. })
    ));
    // A removed version is not shipped at all: once its tombstone is compacted, nothing
    // could mark it removed on arrival.
    assert!(a.blob(&late.hash).is_err());
}

#[test]
fn slices_handed_over_are_checked_and_released() {
    let (_d, _me, a, b) = pair();
    let data = random_bytes(1 << 20, 9);
    a.put("f", &data[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    let held = a.replica().held_slices_after(None, 100).unwrap();
    assert!(!held.is_empty());
    for (_, chunk, idx) in &held {
        let record = a.replica().chunk_record(chunk).unwrap().unwrap();
        let give: Vec<u8> = idx.iter().copied().filter(|i| i % 2 == 0).collect();
        let slices = a.replica().local_slices(chunk, &give).unwrap();
        // A slice that does not match the record is refused.
        let mut bad = slices.clone();
        bad[0].1[10] ^= 1;
        assert!(b
            .replica()
            .accept_slices(chunk, &record, false, &bad)
            .is_err());
        b.replica()
            .accept_slices(chunk, &record, false, &slices)
            .unwrap();
        // Once b knows the record, a forged record cannot plant a slice under an index b
        // does not hold yet.
        // (A record that sorts first would replace it: the one-sealing rule, tested below.)
        let odd = idx.iter().copied().find(|i| i % 2 == 1).unwrap();
        let (forged, forged_slice) = (0..)
            .map(|seed| {
                let slice = random_bytes(slices[0].1.len(), 77 + seed);
                let mut forged = record.clone();
                forged.slices[odd as usize] = Hash::of(&slice);
                (forged, slice)
            })
            .find(|(forged, _)| wins_over(&record, forged).unwrap())
            .unwrap();
        assert_eq!(
            b.replica()
                .accept_slices(chunk, &forged, false, &[(odd, forged_slice)])
                .unwrap(),
            Some((record.clone(), false))
        );
        assert!(b.replica().local_slices(chunk, &[odd]).unwrap().is_empty());
        assert_eq!(
            b.replica().chunk_record(chunk).unwrap(),
            Some(record.clone())
        );
        assert_eq!(a.release_slices(chunk, &give).unwrap(), give.len());
    }
    let b = Arc::new(b);
    let mut a = a;
    a.set_remote(Arc::new(Peer(Arc::clone(&b))));
    let mut out = Vec::new();
    a.get("f", &mut out).unwrap();
    assert_eq!(out, data);
}

#[test]
fn deliveries_in_one_batch_are_answered_each_and_a_bad_one_stores_nothing() {
    let (_d, _me, a, b) = pair();
    // Over twice the largest chunk (4 MiB): at least two chunks whatever the cut points, which
    // follow the store's random CDC seed (3 MiB was one chunk in about 1 run of 30).
    let data = random_bytes(9 << 20, 11);
    a.put("f", &data[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    let held = a.replica().held_slices_after(None, 100).unwrap();
    assert!(held.len() >= 2, "{} chunks", held.len());
    let mut batch: Vec<SliceDelivery> = held
        .iter()
        .map(|(_, chunk, idx)| SliceDelivery {
            id: *chunk,
            record: a.replica().chunk_record(chunk).unwrap().unwrap(),
            condemned: false,
            slices: a.replica().local_slices(chunk, idx).unwrap(),
        })
        .collect();
    batch[1].slices[0].1[10] ^= 1;
    let answers = b.replica().accept_slices_many(&batch).unwrap();
    assert_eq!(answers.len(), batch.len());
    for (i, (answer, d)) in answers.iter().zip(&batch).enumerate() {
        let stored = b.replica().local_slices_held(&d.id).unwrap();
        if i == 1 {
            assert!(answer.is_err());
            assert!(stored.is_empty(), "a bad delivery stored {stored:?}");
        } else {
            assert!(matches!(answer, Ok(None)), "{answer:?}");
            assert_eq!(stored.len(), d.slices.len());
        }
    }
    let releases: Vec<(Hash, Vec<u8>)> = held.iter().map(|(_, c, i)| (*c, i.clone())).collect();
    // Releasing in one batch drops each chunk's slices, but for one the check keeps.
    // The check sees each chunk's record as stored (a node compares it with the one it
    // sent the slices with: a chunk sealed anew meanwhile keeps its slices).
    let records: Vec<_> = releases
        .iter()
        .map(|(c, _)| a.replica().chunk_record(c).unwrap())
        .collect();
    let dropped = a
        .replica()
        .release_slices_many(&releases, |pos, record| {
            assert!(record.is_some() && record == records[pos].as_ref());
            pos != 0
        })
        .unwrap();
    let mut want: Vec<Option<usize>> = held.iter().map(|(_, _, i)| Some(i.len())).collect();
    want[0] = None;
    assert_eq!(dropped, want);
    assert_eq!(a.replica().chunks_held().unwrap(), 1);
    assert_eq!(
        a.replica().local_slices_held(&held[0].1).unwrap(),
        held[0].2,
        "the kept chunk lost slices"
    );
}

#[test]
fn bundle_sequences_never_come_back_after_the_last_bundle_is_released() {
    // A node's hand-over walk remembers the last sequence it walked: a new bundle must get
    // a higher one even when every slice of the last bundle went to other nodes.
    let (_d, _me, a, _b) = pair();
    a.put("first", &random_bytes(4000, 1)[..], &PutOptions::default())
        .unwrap();
    let held = a.replica().held_slices_after(None, 100).unwrap();
    let last = held.iter().map(|(seq, _, _)| *seq).max().unwrap();
    let all: Vec<(Hash, Vec<u8>)> = held.iter().map(|(_, c, i)| (*c, i.clone())).collect();
    a.replica().release_slices_many(&all, |_, _| true).unwrap();
    assert!(a.replica().held_slices_after(None, 100).unwrap().is_empty());
    a.put("second", &random_bytes(4000, 2)[..], &PutOptions::default())
        .unwrap();
    let after = a.replica().held_slices_after(Some(last), 100).unwrap();
    assert!(!after.is_empty(), "the new bundle reused a walked sequence");
}

#[test]
fn a_version_removed_before_it_arrives_arrives_removed() {
    let (_d, _me, a, b) = pair();
    let v1 = a.put("k", &b"one"[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    let v2 = a.put("k", &b"two"[..], &PutOptions::default()).unwrap();
    a.remove(&format!("k@{}", v2.hash.to_hex())).unwrap();
    // b learns of the removal first, then of the version.
    let (d, _) = a.replica().deletions_since(0, 100).unwrap();
    b.replica().import_deletions(&d).unwrap();
    let (v, _) = a.versions_since(0, 100).unwrap();
    b.replica().import_versions(&v).unwrap();
    assert_eq!(heads(&b, "k"), vec![v1.hash]);
    assert!(b.log("k", 10).unwrap().iter().all(|v| v.hash != v2.hash));
    b.gc(&ouroboros_db::NoProgress).unwrap();
}

#[test]
fn content_sealed_on_two_nodes_settles_on_one_sealing() {
    let (_d, _me, a, b) = pair();
    let data = random_bytes(3 << 20, 21);
    // Both seal the same content before either hears of the other: two records per chunk.
    a.put("from-a", &data[..], &PutOptions::default()).unwrap();
    b.put("from-b", &data[..], &PutOptions::default()).unwrap();
    // Chunks sealed alone: a tail under 64 KiB goes into a pack of each node's own, and the
    // rule settles its member records instead (members are compared below, by reading).
    let chunks: Vec<Hash> = a
        .replica()
        .held_slices_after(None, 100)
        .unwrap()
        .into_iter()
        .map(|(_, c, _)| c)
        .filter(|c| {
            a.replica()
                .chunk_record(c)
                .unwrap()
                .is_some_and(|r| !r.is_pack())
        })
        .collect();
    let before: Vec<_> = chunks
        .iter()
        .map(|c| {
            let (ra, rb) = (
                a.replica().chunk_record(c).unwrap().unwrap(),
                b.replica().chunk_record(c).unwrap().unwrap(),
            );
            assert_ne!(ra, rb, "each node sealed with its own nonce");
            if wins_over(&ra, &rb).unwrap() {
                ra
            } else {
                rb
            }
        })
        .collect();
    // Each learns the other's version: both keep the winning record of every chunk, and
    // the node whose sealing lost drops its slices of it.
    sync(&a, &b);
    sync(&b, &a);
    for (c, winner) in chunks.iter().zip(&before) {
        assert_eq!(a.replica().chunk_record(c).unwrap().as_ref(), Some(winner));
        assert_eq!(b.replica().chunk_record(c).unwrap().as_ref(), Some(winner));
        let (held_a, held_b) = (
            a.replica().local_slices_held(c).unwrap().len(),
            b.replica().local_slices_held(c).unwrap().len(),
        );
        assert_eq!(
            held_a + held_b,
            winner.slices.len(),
            "only the winner's slices stay"
        );
        // Learning a record again, or a losing one, changes nothing.
        assert_eq!(
            a.replica().adopt_record(c, winner, false).unwrap(),
            Adopted::Same
        );
    }
    // Each reads both keys: its own slices of the winner, the rest from the other.
    let b = Arc::new(b);
    let mut a = a;
    a.set_remote(Arc::new(Peer(Arc::clone(&b))));
    for key in ["from-a", "from-b"] {
        let mut out = Vec::new();
        a.get(key, &mut out).unwrap();
        assert_eq!(out, data, "{key}");
    }
}

/// A peer whose slices are "in transit" for its first `late` answers (a cluster that is
/// rebalancing: the reader asks the new holder before the slice arrives).
struct LatePeer {
    peer: Peer,
    late: usize,
    asked: std::sync::atomic::AtomicUsize,
}

impl RemoteSlices for LatePeer {
    fn fetch(
        &self,
        id: &Hash,
        wanted: &[u8],
        need: usize,
    ) -> ouroboros_db::Result<Vec<(u8, Vec<u8>)>> {
        self.peer.fetch(id, wanted, need)
    }

    fn fetch_many(
        &self,
        items: &[ouroboros_db::route::remote::Wanted],
    ) -> ouroboros_db::Result<ouroboros_db::route::remote::FetchedMany> {
        let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < self.late {
            return Ok(ouroboros_db::route::remote::FetchedMany::gather(vec![
                Vec::new();
                items.len()
            ]));
        }
        self.peer.fetch_many(items)
    }
}

#[test]
fn a_read_asks_again_for_slices_in_transit_and_gives_up_on_lost_ones() {
    let (_d, _me, a, mut b) = pair();
    let data = random_bytes(1 << 20, 9);
    a.put("k", &data[..], &PutOptions::default()).unwrap();
    sync(&a, &b);
    let a = Arc::new(a);
    // Two empty answers, then the slices: the read succeeds on its third try.
    let peer = Arc::new(LatePeer {
        peer: Peer(Arc::clone(&a)),
        late: 2,
        asked: Default::default(),
    });
    b.set_remote(peer.clone());
    let mut out = Vec::new();
    b.get("k", &mut out).unwrap();
    assert_eq!(out, data);
    assert_eq!(peer.asked.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Slices nobody has: the read fails after its retries, within seconds.
    b.set_remote(Arc::new(LatePeer {
        peer: Peer(Arc::clone(&a)),
        late: usize::MAX,
        asked: Default::default(),
    }));
    let started = std::time::Instant::now();
    let err = b.get("k", &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("slices are intact"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}
