//! Packs of small chunks on a real store: every file reads back with up to m slices of its
//! pack damaged, and again after `verify --repair`; gc frees packs whose members are all
//! gone and rewrites packs that are mostly dead, keeping the live files readable.

mod common;

use common::damage_slice as damage;
use common::packs::{files, new_store, packs, put_all};
use common::read;
use ouroboros_db::NoProgress;

#[test]
fn small_files_share_a_pack_and_read_back_through_damage_and_repair() {
    let (_d, cas) = new_store();
    let files = files(120, 0);
    put_all(&cas, &files);
    let packs = packs(&cas);
    assert_eq!(packs.len(), 1, "120 small files in one put make one pack");
    let stats = cas.stats().unwrap();
    assert_eq!(stats.slices, 6, "one pack: 4+2 slices, not 3 per file");
    // Each data slice lost in turn with a parity slice (m = 2): every file still reads, the
    // members in the lost data slice through the rebuilt pack.
    for lost in 0..4u8 {
        let (_d, cas) = new_store();
        put_all(&cas, &files);
        let pack = self::packs(&cas)[0];
        damage(&cas, &pack, lost, None);
        damage(&cas, &pack, 5, Some(b"garbage"));
        for (k, d) in &files {
            assert!(read(&cas, k) == *d, "{k} with data slice {lost} lost");
        }
        let report = cas.verify(false, &NoProgress).unwrap();
        assert!(!report.is_healthy(), "damage is reported");
        let repaired = cas.verify(true, &NoProgress).unwrap();
        assert!(repaired.is_healthy(), "{:?}", repaired.damage);
        let clean = cas.verify(false, &NoProgress).unwrap();
        assert!(clean.damage.is_empty(), "{:?}", clean.damage);
        assert_eq!(clean.decrypted, files.len() as u64, "every member opened");
        for (k, d) in &files {
            assert!(read(&cas, k) == *d);
        }
    }
}

#[test]
fn a_damaged_data_slice_is_caught_by_the_members_tag_and_read_around() {
    let (_d, cas) = new_store();
    let files = files(60, 0);
    put_all(&cas, &files);
    let pack = packs(&cas)[0];
    // Same length, different bytes: the fast path reads it and the tag check refuses it.
    let txn = cas.replica().lmdb().read().unwrap();
    let mut slice = cas
        .replica()
        .lmdb()
        .slices
        .bundle(&txn, &pack)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec();
    drop(txn);
    let n = slice.len();
    for b in &mut slice[40..n] {
        *b ^= 0xa5;
    }
    damage(&cas, &pack, 0, Some(&slice));
    for (k, d) in &files {
        assert!(read(&cas, k) == *d, "{k}");
    }
}

#[test]
fn gc_frees_dead_packs_and_rewrites_mostly_dead_ones() {
    let (_d, cas) = new_store();
    let files = files(100, 0);
    put_all(&cas, &files);
    let old = packs(&cas);
    assert_eq!(old.len(), 1);
    let before = cas.stats().unwrap();
    // Remove 80 of 100: fewer than half of the pack's bytes stay live.
    for (k, _) in &files[..80] {
        cas.remove(k).unwrap();
    }
    let gc = cas.gc(&NoProgress).unwrap();
    assert_eq!(gc.chunks_freed, 80, "{gc:?}");
    assert_eq!(gc.packs_rewritten, 1, "{gc:?}");
    assert_eq!(
        cas.stats().unwrap().dead_pack_bytes,
        0,
        "only live frames moved"
    );
    let now = packs(&cas);
    assert_eq!(now.len(), 1);
    assert_ne!(now, old, "the live members moved to a new pack");
    // Live frames move whole (dead members inside them keep their bytes): the last 20 files
    // lie in one or two of the pack's four frames.
    let after = cas.stats().unwrap();
    assert!(
        after.stored_with_parity_bytes * 2 < before.stored_with_parity_bytes,
        "{} -> {} bytes",
        before.stored_with_parity_bytes,
        after.stored_with_parity_bytes
    );
    for (k, d) in &files[80..] {
        assert!(read(&cas, k) == *d, "{k} survives the repack");
    }
    let report = cas.verify(false, &NoProgress).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.unreferenced_chunks, 0);
    // A second gc finds nothing to do.
    let again = cas.gc(&NoProgress).unwrap();
    assert_eq!(
        (again.chunks_freed, again.packs_rewritten, again.packs_freed),
        (0, 0, 0)
    );
    // All gone: the pack goes with its last member.
    for (k, _) in &files[80..] {
        cas.remove(k).unwrap();
    }
    let gc = cas.gc(&NoProgress).unwrap();
    assert_eq!((gc.chunks_freed, gc.packs_freed), (20, 1), "{gc:?}");
    let empty = cas.stats().unwrap();
    assert_eq!((empty.chunks, empty.packs, empty.slices), (0, 0, 0));
    assert_eq!(empty.stored_with_parity_bytes, 0);
}

/// Frames whose members all died stay in their pack until it is mostly dead: `stats`
/// counts them, so users see what a later gc can give back.
#[test]
fn stats_counts_the_dead_frames_a_pack_keeps() {
    let (_d, cas) = new_store();
    let files = files(200, 0);
    put_all(&cas, &files);
    let before = cas.stats().unwrap();
    assert_eq!(before.dead_pack_bytes, 0, "{before:?}");
    // 200 files of 4.6 KiB on average make a pack of four 256 KiB frames; the last 60
    // files: at least its last frame (about 55 files) dies whole.
    for (k, _) in &files[140..] {
        cas.remove(k).unwrap();
    }
    let gc = cas.gc(&NoProgress).unwrap();
    assert_eq!((gc.chunks_freed, gc.packs_rewritten), (60, 0), "{gc:?}");
    let after = cas.stats().unwrap();
    assert!(
        after.dead_pack_bytes > 0 && after.dead_pack_bytes * 2 < after.stored_bytes,
        "{after:?}"
    );
    assert_eq!(
        after.stored_bytes, before.stored_bytes,
        "the pack stays whole"
    );
    for (k, d) in &files[..70] {
        assert!(read(&cas, k) == *d, "{k} reads");
    }
}

#[test]
fn a_pack_whose_members_were_all_stored_already_is_not_kept() {
    let (_d, cas) = new_store();
    let files = files(30, 0);
    put_all(&cas, &files);
    // The same content under other keys: deduplicated, no second pack.
    let again: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(k, d)| (format!("copy/{k}"), d.clone()))
        .collect();
    put_all(&cas, &again);
    assert_eq!(packs(&cas).len(), 1);
    for (k, d) in &again {
        assert!(read(&cas, k) == *d);
    }
}

/// Verify judges a member by what is stored now: a frame a read kept earlier (the members
/// of a frame are read one after another) must not make a member of a lost pack look whole.
#[test]
fn verify_reports_a_lost_pack_whose_frame_a_read_kept() {
    let (_d, cas) = new_store();
    let files = files(3, 7);
    put_all(&cas, &files);
    for (k, d) in &files {
        assert!(read(&cas, k) == *d);
    }
    // Reads and verify keep the last frame they opened on their thread.
    assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
    let pack = packs(&cas)[0];
    for lost in 0..3u8 {
        damage(&cas, &pack, lost, None);
    }
    let report = cas.verify(false, &NoProgress).unwrap();
    let named: Vec<_> = report
        .damage
        .iter()
        .filter_map(|d| match d {
            ouroboros_db::Damage::Blob { key, .. } => key.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(named.len(), files.len(), "{:?}", report.damage);
}
