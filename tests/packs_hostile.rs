//! Hostile tests of packs (review of the packs feature): the pack refcount invariant through
//! put / dedup / gc / repack, damaged and forged member records, the per-thread frame cache,
//! verify on a locked store, and how member records converge between cluster nodes.
//!
//! Tests marked `FINDING` failed on the code as first reviewed (2026-12-05) and guard the
//! fixes; each names the finding.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::packs::{files, new_store, opts, packs, put_all, records};
use common::{damage_slice as damage, random_bytes};
use ouroboros_db::cas::{Deletion, WalEntry};
use ouroboros_db::model::{ChunkKind, ChunkRecord};
use ouroboros_db::progress::NoProgress;
use ouroboros_db::route::remote::RemoteSlices;
use ouroboros_db::{
    sealing_id, wins_over, Adopted, Cas, ChunkReader, Damage, Hash, Identity, PutOptions,
};

const DAY: Duration = Duration::from_secs(86_400);

fn get(cas: &Cas, key: &str) -> ouroboros_db::Result<Vec<u8>> {
    let mut out = Vec::new();
    cas.get(key, &mut out).map(|_| out)
}

fn refs(cas: &Cas, id: &Hash) -> u64 {
    let txn = cas.replica().lmdb().read().unwrap();
    cas.replica().lmdb().chunks.refs(&txn, id).unwrap()
}

/// Fails with `context` and what is wrong when [`pack_invariant`] does not hold.
fn assert_pack_invariant(cas: &Cas, context: &str) {
    let wrong = pack_invariant(cas);
    assert!(wrong.is_empty(), "{context}: {wrong:?}");
}

/// FORMAT.md: "`chunk_refs` of a pack = the number of member records naming it, in every
/// committed state", and every member's pack is here. Returns what is wrong.
fn pack_invariant(cas: &Cas) -> Vec<String> {
    let recs = records(cas);
    let mut naming: HashMap<Hash, u64> = HashMap::new();
    let mut bad = Vec::new();
    let kinds: HashMap<Hash, bool> = recs.iter().map(|(id, r)| (*id, r.is_pack())).collect();
    for (id, r) in &recs {
        if let Some((p, _)) = r.pack() {
            *naming.entry(p).or_default() += 1;
            if kinds.get(&p) != Some(&true) {
                bad.push(format!(
                    "member {} names pack {} which is not here",
                    id.short(),
                    p.short()
                ));
            }
        }
    }
    for (id, r) in &recs {
        if r.is_pack() {
            let want = naming.get(id).copied().unwrap_or(0);
            let have = refs(cas, id);
            if want != have {
                bad.push(format!(
                    "pack {}: count {have}, {want} members name it",
                    id.short()
                ));
            }
        }
    }
    bad
}

/// The chunk id of a one-chunk version of `key`, with its record and its pack's.
fn only_chunk(cas: &Cas, key: &str) -> (Hash, ChunkRecord, Hash, ChunkRecord) {
    let (recs, _) = cas.versions_since(0, 10_000).unwrap();
    let v = recs.iter().rev().find(|v| v.blob.key == key).unwrap();
    assert_eq!(v.blob.chunks.len(), 1);
    let x = v.blob.chunks[0].id;
    let rec = v.chunks.iter().find(|(id, _)| *id == x).unwrap().1.clone();
    let (p, _) = rec.pack().expect("a small file is a pack member");
    let prec = v.chunks.iter().find(|(id, _)| *id == p).unwrap().1.clone();
    (x, rec, p, prec)
}

fn mark_cluster(cas: &Cas) {
    let lmdb = cas.replica().lmdb();
    let mut txn = lmdb.write().unwrap();
    lmdb.cluster.put(&mut txn, b"info", b"test").unwrap();
    lmdb.commit(txn).unwrap();
}

fn sync(from: &Cas, to: &Cas) {
    let (v, _) = from.versions_since(0, 10_000).unwrap();
    let (d, _) = from.replica().deletions_since(0, 10_000).unwrap();
    to.replica().import_versions(&v).unwrap();
    to.replica().import_deletions(&d).unwrap();
}

/// Slices from several peers.
struct Peers(Vec<Arc<Cas>>);

impl RemoteSlices for Peers {
    fn fetch(
        &self,
        id: &Hash,
        wanted: &[u8],
        _need: usize,
    ) -> ouroboros_db::Result<Vec<(u8, Vec<u8>)>> {
        let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
        for p in &self.0 {
            for (i, b) in p.replica().local_slices(id, wanted)? {
                if !out.iter().any(|(j, _)| *j == i) {
                    out.push((i, b));
                }
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Checked and found fine
// ---------------------------------------------------------------------------------------

/// The pack count invariant holds through puts, dedup, removals, gc and repack over
/// several rounds, every live file reads back, and verify is clean.
#[test]
fn invariant_holds_through_dedup_gc_and_repack_rounds() {
    let (_d, cas) = new_store();
    let mut live: HashMap<String, Vec<u8>> = HashMap::new();
    for round in 0..4usize {
        // New files, and copies of files of the round before (dedup against old packs).
        let mut batch = files(150, round * 1000);
        for (k, d) in live.iter().take(40) {
            batch.push((format!("copy{round}/{k}"), d.clone()));
        }
        put_all(&cas, &batch);
        for (k, d) in batch {
            live.insert(k, d);
        }
        assert_pack_invariant(&cas, &format!("after put {round}"));
        // Remove most files, sparing some of every frame's neighbourhood.
        let mut keys: Vec<String> = live.keys().cloned().collect();
        keys.sort();
        for (n, k) in keys.iter().enumerate() {
            if n % 5 != 0 {
                cas.remove(k).unwrap();
                live.remove(k);
            }
        }
        let gc = cas.gc(&NoProgress).unwrap();
        assert_pack_invariant(&cas, &format!("after gc {round} {gc:?}"));
        for (k, d) in &live {
            assert!(get(&cas, k).unwrap() == *d, "{k} after round {round}");
        }
        let again = cas.gc(&NoProgress).unwrap();
        assert_eq!(
            (again.chunks_freed, again.packs_freed, again.packs_rewritten),
            (0, 0, 0),
            "round {round}"
        );
    }
    let report = cas.verify(false, &NoProgress).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.unreferenced_chunks, 0);
    // Everything gone: no pack, no slice left.
    for k in live.keys() {
        cas.remove(k).unwrap();
    }
    cas.gc(&NoProgress).unwrap();
    let s = cas.stats().unwrap();
    assert_eq!(
        (s.chunks, s.packs, s.slices, s.stored_with_parity_bytes),
        (0, 0, 0, 0)
    );
}

/// Repack copies a frame several live members share once, and those members keep reading
/// (frame cache cleared in between by reading another store's file on this thread).
#[test]
fn repack_moves_members_of_one_frame_together() {
    let (_d, cas) = new_store();
    // Compressible files: many per 128 KiB frame.
    let fs: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("f{i:03}"),
                format!("entry {i} of a long list\n")
                    .repeat(150)
                    .into_bytes(),
            )
        })
        .collect();
    put_all(&cas, &fs);
    let before = records(&cas);
    // Keep 3 consecutive files (same frame) and drop the rest.
    for (k, _) in fs
        .iter()
        .filter(|(k, _)| !["f100", "f101", "f102"].contains(&k.as_str()))
    {
        cas.remove(k).unwrap();
    }
    let gc = cas.gc(&NoProgress).unwrap();
    assert!(gc.packs_rewritten >= 1, "{gc:?}");
    let after = records(&cas);
    let members: Vec<&ChunkRecord> = after
        .iter()
        .filter_map(|(_, r)| r.pack().map(|_| r))
        .collect();
    assert_eq!(members.len(), 3);
    let offsets: std::collections::HashSet<(Hash, u32)> =
        members.iter().map(|r| r.pack().unwrap()).collect();
    let old_offsets: std::collections::HashSet<u32> = before
        .iter()
        .filter(|(id, _)| after.iter().any(|(a, _)| a == id))
        .filter_map(|(_, r)| r.pack().map(|p| p.1))
        .collect();
    assert!(
        offsets.len() <= old_offsets.len(),
        "a shared frame is copied once"
    );
    let (_d2, other) = new_store();
    put_all(&other, &fs[..3]);
    for k in ["f100", "f101", "f102"] {
        let _ = get(&other, "f000"); // another store's frame in this thread's cache
        let want = &fs.iter().find(|(n, _)| n == k).unwrap().1;
        assert!(get(&cas, k).unwrap() == *want, "{k}");
    }
    assert_pack_invariant(&cas, "");
}

/// The frame cache is keyed by (pack id, offset) and every hit is checked against the
/// member's id: two stores with the same file names read alternately on one thread, and a
/// store holding a copy of another store's pack and member records (other keys), never get
/// each other's bytes.
#[test]
fn frame_cache_never_serves_another_stores_frame() {
    let (_d1, a) = new_store();
    let (_d2, b) = new_store();
    let fa = files(40, 0);
    let fb: Vec<(String, Vec<u8>)> = fa
        .iter()
        .map(|(k, d)| (k.clone(), d.iter().map(|x| x ^ 0x55).collect()))
        .collect();
    put_all(&a, &fa);
    put_all(&b, &fb);
    for _ in 0..2 {
        for i in 0..fa.len() {
            assert!(get(&a, &fa[i].0).unwrap() == fa[i].1);
            assert!(get(&b, &fb[i].0).unwrap() == fb[i].1);
        }
    }
    // b gets a's pack (record and slices) and one of a's member records, under a's ids.
    let (x, rec, p, prec) = only_chunk(&a, &fa[3].0);
    let all: Vec<u8> = (0..prec.slices.len() as u8).collect();
    let slices = a.replica().local_slices(&p, &all).unwrap();
    assert!(b
        .replica()
        .accept_slices(&p, &prec, false, &slices)
        .unwrap()
        .is_none());
    b.replica().adopt_record(&x, &rec, false).unwrap();
    // a's frame is in this thread's cache now; b must not read it with its keys.
    assert!(a.read_chunk(&x).unwrap() == fa[3].1);
    assert!(
        b.read_chunk(&x).is_err(),
        "b has other keys: the member is not readable there"
    );
    assert!(a.read_chunk(&x).unwrap() == fa[3].1);
}

/// Damaged member records (offsets past the pack, a place outside the frame, another frame's
/// offset with this one's nonce, a pack that is not a pack, itself as its pack) fail with an
/// error, never a panic or wrong bytes; and a bad hit in the frame cache drops the frame
/// without hurting the next good read.
#[test]
fn damaged_member_records_fail_cleanly() {
    let (_d, cas) = new_store();
    let fs: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            (
                format!("f{i:03}"),
                format!("text {i} repeated\n").repeat(100 + i).into_bytes(),
            )
        })
        .collect();
    put_all(&cas, &fs);
    let recs = records(&cas);
    let pack = packs(&cas)[0];
    let prec = recs.iter().find(|(id, _)| *id == pack).unwrap().1.clone();
    let members: Vec<(Hash, ChunkRecord)> = recs
        .iter()
        .filter(|(_, r)| r.pack().is_some())
        .cloned()
        .collect();
    let frames: std::collections::BTreeSet<u32> =
        members.iter().map(|(_, r)| r.pack().unwrap().1).collect();
    assert!(frames.len() >= 2, "several frames");
    let (good_id, good) = members[0].clone();
    let ChunkKind::Member {
        offset,
        frame_size,
        at,
        ..
    } = good.kind
    else {
        unreachable!()
    };
    let other_offset = *frames.iter().find(|o| **o != offset).unwrap();
    let member = |pack: Hash, offset: u32, frame_size: u32, at: u32, size: u32, sealed_len: u32| {
        ChunkRecord {
            size,
            sealed_len,
            kind: ChunkKind::Member {
                pack,
                offset,
                frame_size,
                at,
            },
            ..good.clone()
        }
    };
    let forged = [
        member(
            pack,
            prec.sealed_len - 1,
            frame_size,
            at,
            good.size,
            good.sealed_len,
        ),
        member(
            pack,
            offset,
            frame_size,
            frame_size - good.size,
            good.size,
            good.sealed_len,
        ),
        member(
            pack,
            other_offset,
            frame_size,
            at,
            good.size,
            good.sealed_len,
        ),
        member(
            pack,
            offset,
            4 << 20,
            (4 << 20) - 65535,
            65535,
            good.sealed_len,
        ),
        member(good_id, offset, frame_size, at, good.size, good.sealed_len),
        member(
            Hash([9; 32]),
            offset,
            frame_size,
            at,
            good.size,
            good.sealed_len,
        ),
    ];
    for (n, f) in forged.iter().enumerate() {
        assert!(
            ChunkRecord::decode(&f.encode().unwrap()).is_ok(),
            "forged {n} passes decode"
        );
        let id = Hash([n as u8 + 1; 32]);
        let mut txn = cas.replica().lmdb().write().unwrap();
        cas.replica().lmdb().chunks.put(&mut txn, &id, f).unwrap();
        cas.replica().lmdb().commit(txn).unwrap();
        // The good member's frame in the cache, then the forged one.
        assert!(cas.read_chunk(&good_id).is_ok());
        assert!(cas.read_chunk(&id).is_err(), "forged {n} is refused");
        assert!(cas.read_chunk(&good_id).is_ok(), "after forged {n}");
    }
    // Verify opens members in pack order rather than one by one: every forged record is
    // reported lost, no honest member is, and every member was decrypted.
    let report = cas.verify(false, &NoProgress).unwrap();
    let lost: std::collections::HashSet<Hash> = report
        .damage
        .iter()
        .filter_map(|d| match d {
            Damage::Chunk { chunk, .. } => Some(*chunk),
            _ => None,
        })
        .collect();
    let forged_ids = (0..forged.len()).map(|n| Hash([n as u8 + 1; 32])).collect();
    assert_eq!(lost, forged_ids, "{:?}", report.damage);
    // The two forged records naming no pack are lost before any decryption.
    assert!(report.decrypted as usize >= members.len() + forged.len() - 2);
    // The forged records have no references: gc frees them and the counts they took (on
    // the pack, on a member, on an absent id) go back.
    cas.gc(&NoProgress).unwrap();
    for (k, d) in &fs {
        assert!(get(&cas, k).unwrap() == *d);
    }
    assert_pack_invariant(&cas, "");
}

/// A forged record of a pack id that is not a pack, or a blob naming a pack id, is refused
/// or harmless: reading a pack id as a chunk fails cleanly.
#[test]
fn a_pack_id_read_as_a_chunk_fails_cleanly() {
    let (_d, cas) = new_store();
    put_all(&cas, &files(20, 0));
    let p = packs(&cas)[0];
    assert!(cas.read_chunk(&p).is_err());
}

/// The writer's replacement of a member held in a condemned pack (take_place), and two
/// nodes' sealings of the same content settled by import (adopt_record_in replacing a
/// member record), keep every pack's count equal to its members; freeing the condemned pack
/// then drops it and nothing live.
#[test]
fn replacing_member_records_keeps_pack_counts() {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let a = Cas::create(&dir.path().join("a"), &opts(), &me).unwrap();
    let mut b =
        Cas::create_replica(&dir.path().join("b"), &a.replica().replica_seed().unwrap()).unwrap();
    b.unlock(&me).unwrap();
    mark_cluster(&a);
    mark_cluster(&b);
    let fs = files(40, 0);
    put_all(&a, &fs);
    let on_b: Vec<(String, Vec<u8>)> = fs[10..]
        .iter()
        .map(|(k, d)| (format!("b/{k}"), d.clone()))
        .collect();
    put_all(&b, &on_b);
    sync(&a, &b);
    sync(&b, &a);
    sync(&a, &b);
    for s in [&a, &b] {
        assert_pack_invariant(s, "");
    }
    // Condemn a's pack(s), then put the same files again on a: every member sealed anew.
    for p in packs(&a) {
        let prec = a.replica().chunk_record(&p).unwrap().unwrap();
        a.replica()
            .import_deletions(&[WalEntry {
                time: 1,
                deletion: Deletion::Condemned {
                    id: p,
                    sealing: sealing_id(&prec).unwrap(),
                },
            }])
            .unwrap();
    }
    let again: Vec<(String, Vec<u8>)> = fs
        .iter()
        .map(|(k, d)| (format!("again/{k}"), d.clone()))
        .collect();
    put_all(&a, &again);
    assert_pack_invariant(&a, "");
    a.replica().free_condemned(u64::MAX, DAY).unwrap();
    assert_pack_invariant(&a, "");
    for (k, d) in fs.iter().chain(&again) {
        assert!(get(&a, k).unwrap() == *d, "{k}");
    }
}

// ---------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------

/// FINDING 1 (wrong report): verify on a locked store checks a member only for its pack's
/// presence, so a pack that cannot be rebuilt is reported under the pack id alone: no version
/// using its members is reported damaged (a chunk sealed alone puts its versions in the
/// report).
#[test]
fn locked_verify_reports_the_versions_of_a_lost_pack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let fs = files(60, 0);
    {
        let cas = Cas::create(&path, &opts(), &Identity::generate()).unwrap();
        put_all(&cas, &fs);
        let p = packs(&cas)[0];
        for i in 0..3u8 {
            damage(&cas, &p, i, None);
        }
    }
    let locked = Cas::open(&path).unwrap();
    let report = locked.verify(false, &NoProgress).unwrap();
    assert!(!report.is_healthy());
    let blobs = report
        .damage
        .iter()
        .filter(|d| matches!(d, Damage::Blob { .. }))
        .count();
    assert!(
        blobs > 0,
        "a lost pack makes {} versions unreadable, locked verify names none: {:?}",
        fs.len(),
        report.damage
    );
}

/// A pack damaged beyond its parity is lost, but members whose data slices are intact still
/// read: unlocked verify (which opens every member) names as damaged exactly the versions
/// that cannot be read, not every version of the pack.
#[test]
fn unlocked_verify_names_exactly_the_unreadable_versions_of_a_lost_pack() {
    let (_d, cas) = new_store();
    let fs = files(200, 0);
    put_all(&cas, &fs);
    let p = packs(&cas)[0];
    // 4+2: data slice 0 and both parity slices gone, data slices 1-3 intact.
    for i in [0u8, 4, 5] {
        damage(&cas, &p, i, None);
    }
    let report = cas.verify(false, &NoProgress).unwrap();
    assert!(report
        .damage
        .iter()
        .any(|d| matches!(d, Damage::Chunk { chunk, .. } if *chunk == p)));
    let named: std::collections::HashSet<String> = report
        .damage
        .iter()
        .filter_map(|d| match d {
            Damage::Blob { key, .. } => key.clone(),
            _ => None,
        })
        .collect();
    let unreadable: std::collections::HashSet<String> = fs
        .iter()
        .filter(|(k, _)| get(&cas, k).is_err())
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !unreadable.is_empty() && unreadable.len() < fs.len(),
        "{}",
        unreadable.len()
    );
    assert_eq!(named, unreadable);
    for (k, d) in &fs {
        if !unreadable.contains(k) {
            assert!(get(&cas, k).unwrap() == *d, "{k} reads back whole");
        }
    }
}

/// FINDING 2 (data loss from one forged/damaged peer record): adopt_record applies the
/// one-sealing rule across kinds. A Member record sent under a pack's id that sorts first
/// replaces the pack's record and drops its slices: every member of the pack (up to 1,024
/// files) is lost, where SECURITY.md bounds a forged record to one chunk.
#[test]
fn a_member_record_under_a_pack_id_does_not_replace_the_pack() {
    let (_d, cas) = new_store();
    let fs = files(50, 0);
    put_all(&cas, &fs);
    let p = packs(&cas)[0];
    let prec = cas.replica().chunk_record(&p).unwrap().unwrap();
    let mut forged = None;
    for n in 0u32..10_000 {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&n.to_le_bytes());
        let f = ChunkRecord {
            size: 1,
            sealed_len: 17,
            key_epoch: 0,
            nonce,
            k: 0,
            m: 0,
            slices: Vec::new(),
            kind: ChunkKind::Member {
                pack: Hash([7; 32]),
                offset: 0,
                frame_size: 1,
                at: 0,
            },
        };
        if wins_over(&f, &prec).unwrap() {
            forged = Some(f);
            break;
        }
    }
    let adopted = cas
        .replica()
        .adopt_record(&p, &forged.unwrap(), false)
        .unwrap();
    let lost = fs.iter().filter(|(k, _)| get(&cas, k).is_err()).count();
    assert_eq!(
        lost,
        0,
        "adopt_record said {adopted:?}; {lost} of {} files lost",
        fs.len()
    );
}

/// FINDING 2b (same): a Pack record under a pack id that sorts first replaces the stored
/// one (honest copies of a pack record are identical: the id derives from the payload, k and
/// m from the store's configuration), dropping the slices of every member.
#[test]
fn a_stored_pack_record_is_never_replaced() {
    let (_d, cas) = new_store();
    let fs = files(50, 0);
    put_all(&cas, &fs);
    let p = packs(&cas)[0];
    let prec = cas.replica().chunk_record(&p).unwrap().unwrap();
    let mut forged = None;
    for n in 0u8..=255 {
        let mut f = prec.clone();
        f.slices[0] = Hash([n; 32]);
        if wins_over(&f, &prec).unwrap() {
            forged = Some(f);
            break;
        }
    }
    let adopted = cas
        .replica()
        .adopt_record(&p, &forged.unwrap(), false)
        .unwrap();
    assert!(matches!(adopted, Adopted::Kept(_)), "{adopted:?}");
}

/// FINDING 3 (cluster: dedup churn): sealing.rs promises "a chunk sealed again after its
/// condemnation must not be pulled back to it", but a member is condemned through its pack,
/// and wins_here only looks at marks on the member's own sealing. The old member record
/// (naming the condemned pack), offered by a peer, wins by hash half of the time, and the
/// chunk is back in the condemned pack: not deduplicable, sealed again by every put. Fails
/// now (once the old record sorts first, which the loop waits for).
#[test]
fn a_member_sealed_again_after_its_pack_was_condemned_is_not_pulled_back() {
    let data = random_bytes(5000, 42);
    for _attempt in 0..24 {
        let (_d, a) = new_store();
        mark_cluster(&a);
        a.put("f", &data[..], &PutOptions::default()).unwrap();
        let (x, old, p, prec) = only_chunk(&a, "f");
        a.replica()
            .import_deletions(&[WalEntry {
                time: 1,
                deletion: Deletion::Condemned {
                    id: p,
                    sealing: sealing_id(&prec).unwrap(),
                },
            }])
            .unwrap();
        let again = a.put("g", &data[..], &PutOptions::default()).unwrap();
        assert_eq!(again.new_chunks, 1, "the pack is condemned: sealed again");
        let new = a.replica().chunk_record(&x).unwrap().unwrap();
        assert_ne!(new.pack().unwrap().0, p);
        if !wins_over(&old, &new).unwrap() {
            continue;
        }
        // A peer that has not seen the new sealing yet ships the old record, and its
        // pack marked condemned (versions_by_hash).
        a.replica().adopt_record(&p, &prec, true).unwrap();
        let adopted = a.replica().adopt_record(&x, &old, false).unwrap();
        let now = a.replica().chunk_record(&x).unwrap().unwrap();
        assert_eq!(
            now.pack().unwrap().0,
            new.pack().unwrap().0,
            "adopt said {adopted:?}: the member went back into its condemned pack"
        );
        return;
    }
    panic!("the old record never sorted first");
}

/// FINDING 4 (cluster: a live version unreadable, its pack freed everywhere else): member
/// records travel only with versions (a member has no slices, so hand-offs never meet a
/// conflicting sealing of it), and a node that already has a version never takes records
/// from it again. Node C learned X's losing member record from the loser's version; the
/// winner's version was removed before C pulled it, so nothing ever brings C the winning
/// record. The other nodes count no member in the losing pack, condemn it and free their
/// slices of it, while C's live version still reads X through it.
#[test]
fn a_third_node_converges_on_the_winning_member_record() {
    let data = random_bytes(5000, 7);
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let n0 = Cas::create(&dir.path().join("n0"), &opts(), &me).unwrap();
    let seed = n0.replica().replica_seed().unwrap();
    let mut n1 = Cas::create_replica(&dir.path().join("n1"), &seed).unwrap();
    let mut c = Cas::create_replica(&dir.path().join("c"), &seed).unwrap();
    n1.unlock(&me).unwrap();
    c.unlock(&me).unwrap();
    for s in [&n0, &n1, &c] {
        mark_cluster(s);
    }
    // The same small file put on two nodes at once: two sealings of X in two packs.
    n0.put("f0", &data[..], &PutOptions::default()).unwrap();
    n1.put("f1", &data[..], &PutOptions::default()).unwrap();
    let (x, r0, p0, pr0) = only_chunk(&n0, "f0");
    let (x1, r1, p1, pr1) = only_chunk(&n1, "f1");
    assert_eq!(x, x1);
    // w: the node whose sealing wins; l: the other.
    let ((w, wkey, pw), (l, lkey, pl, prl)) = if wins_over(&r0, &r1).unwrap() {
        ((n0, "f0", p0), (n1, "f1", p1, pr1))
    } else {
        ((n1, "f1", p1), (n0, "f0", p0, pr0))
    };
    let _ = pw;
    // Placement: w also holds the slices of l's pack.
    let all: Vec<u8> = (0..prl.slices.len() as u8).collect();
    let sl = l.replica().local_slices(&pl, &all).unwrap();
    assert!(w
        .replica()
        .accept_slices(&pl, &prl, false, &sl)
        .unwrap()
        .is_none());
    // c pulls l's version first; then w and l exchange theirs and settle on w's record.
    sync(&l, &c);
    sync(&w, &l);
    sync(&l, &w);
    assert_eq!(
        l.replica().chunk_record(&x).unwrap(),
        w.replica().chunk_record(&x).unwrap(),
        "w and l agree"
    );
    // c can read l's file now (l's pack's slices are on w and l); in another thread, so this
    // thread's frame cache holds nothing of it.
    let w = Arc::new(w);
    let l = Arc::new(l);
    c.set_remote(Arc::new(Peers(vec![Arc::clone(&w), Arc::clone(&l)])));
    let c = Arc::new(c);
    let read_l = |c: &Arc<Cas>| {
        let c = Arc::clone(c);
        let key = lkey.to_string();
        std::thread::spawn(move || get(&c, &key).ok())
            .join()
            .unwrap()
    };
    assert!(read_l(&c) == Some(data.clone()), "readable on c before");
    // w's version is removed before c pulls it; c pulls everything else.
    w.remove(wkey).unwrap();
    for (from, to) in [(&w, &l), (&l, &w), (&w, &c), (&l, &c), (&c, &w), (&c, &l)] {
        sync(from, to);
    }
    let on_c = c.replica().chunk_record(&x).unwrap().unwrap();
    let on_w = w.replica().chunk_record(&x).unwrap().unwrap();
    // gc on every node, the condemnations exchanged, and every node frees what it may.
    for s in [&w, &l, &c] {
        s.gc(&NoProgress).unwrap();
    }
    for _ in 0..2 {
        for (from, to) in [(&w, &l), (&l, &w), (&w, &c), (&c, &w), (&l, &c), (&c, &l)] {
            sync(from, to);
        }
    }
    for s in [&w, &l, &c] {
        s.replica().free_condemned(u64::MAX, DAY).unwrap();
    }
    let after = read_l(&c);
    assert!(
        after == Some(data.clone()),
        "{lkey} (live) is unreadable on c: c's record of X names pack {}, w's names {}; \
         slices of {} left: w {} l {}",
        on_c.pack().unwrap().0.short(),
        on_w.pack().unwrap().0.short(),
        pl.short(),
        w.replica().local_slices(&pl, &all).unwrap().len(),
        l.replica().local_slices(&pl, &all).unwrap().len(),
    );
}
