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

// Parts kept in files of their own, declared last so that they see the macros above.
#[path = "packs_hostile/findings.rs"]
mod findings;
