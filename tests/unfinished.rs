//! Slices committed ahead of their records: a put appends its slices as unfinished bundles in
//! small transactions and records them with its versions later. A put that dies in between
//! leaves those bundles to gc; puts racing on the same content keep one copy.

mod common;

use common::packs::{files, new_store, put_all};
use common::{random_bytes, read};
use ouroboros_db::{Hash, NoProgress, PutOptions};

#[test]
fn gc_frees_the_bundles_a_dead_put_left_unfinished_and_nothing_else() {
    let (_d, cas) = new_store();
    let small = files(40, 0);
    put_all(&cas, &small);
    let big = random_bytes(12 << 20, 5);
    cas.put("big", &big[..], &PutOptions::default()).unwrap();
    let report = cas.gc(&NoProgress).unwrap();
    assert_eq!(
        report.bytes_freed, 0,
        "a put that finished leaves nothing: {report:?}"
    );
    let before = cas.stats().unwrap().stored_with_parity_bytes;

    // What a put killed between its slices' commit and its records' leaves.
    let lmdb = cas.replica().lmdb();
    let mut txn = lmdb.write().unwrap();
    let slices: [&[u8]; 2] = [b"one", b"three"];
    lmdb.slices
        .append_unfinished(&mut txn, &Hash([7; 32]), &slices)
        .unwrap();
    lmdb.commit(txn).unwrap();
    let stats = cas.stats().unwrap();
    assert_eq!(stats.stored_with_parity_bytes, before + 8);
    assert_eq!(stats.unfinished_bytes, 8, "{stats:?}");

    let report = cas.gc(&NoProgress).unwrap();
    assert_eq!(
        (report.slices_freed, report.bytes_freed),
        (2, 8),
        "{report:?}"
    );
    let stats = cas.stats().unwrap();
    assert_eq!(stats.stored_with_parity_bytes, before);
    assert_eq!(stats.unfinished_bytes, 0, "{stats:?}");
    for (k, d) in &small {
        assert!(read(&cas, k) == *d, "{k}");
    }
    assert!(read(&cas, "big") == big);
    let verified = cas.verify(false, &NoProgress).unwrap();
    assert!(verified.is_healthy(), "{:?}", verified.damage);
    assert_eq!(cas.gc(&NoProgress).unwrap().bytes_freed, 0);
}

#[test]
fn puts_of_the_same_content_at_once_store_it_once() {
    let data = random_bytes(24 << 20, 9);
    let (_d, alone) = new_store();
    alone.put("a", &data[..], &PutOptions::default()).unwrap();
    let once = alone.stats().unwrap().stored_with_parity_bytes;

    for round in 0..3 {
        let (_d, cas) = new_store();
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for key in ["a", "b"] {
                let (cas, data, start) = (&cas, &data, &start);
                s.spawn(move || {
                    start.wait();
                    cas.put(key, &data[..], &PutOptions::default()).unwrap();
                });
            }
        });
        let stats = cas.stats().unwrap();
        // Chunk boundaries follow each store's secret, so sizes match only roughly. A last
        // chunk under 64 KiB (where a store's cut points leave one) is sealed into a pack of
        // 1+2 slices with none of its own: at most 4+2 slices per chunk, not exactly.
        assert!(stats.slices <= 6 * stats.chunks, "round {round}: {stats:?}");
        assert!(
            stats.stored_with_parity_bytes < once + once / 100,
            "round {round}: one copy: {stats:?}"
        );
        assert_eq!(cas.gc(&NoProgress).unwrap().bytes_freed, 0, "round {round}");
        assert!(read(&cas, "a") == data && read(&cas, "b") == data);
        let verified = cas.verify(false, &NoProgress).unwrap();
        assert!(verified.is_healthy(), "{:?}", verified.damage);
    }
}

#[test]
fn joining_a_cluster_frees_what_dead_puts_left_unfinished() {
    let (_d, cas) = new_store();
    let small = files(20, 0);
    put_all(&cas, &small);
    let lmdb = cas.replica().lmdb();
    let mut txn = lmdb.write().unwrap();
    let slices: [&[u8]; 1] = [b"left"];
    lmdb.slices
        .append_unfinished(&mut txn, &Hash([8; 32]), &slices)
        .unwrap();
    lmdb.commit(txn).unwrap();
    assert_eq!(cas.stats().unwrap().unfinished_bytes, 4);
    // The cluster's hand-over walk must never meet a bundle nothing locates.
    cas.replica().put_cluster_info(b"info").unwrap();
    assert!(cas.in_cluster().unwrap());
    assert_eq!(cas.stats().unwrap().unfinished_bytes, 0);
    for (k, d) in &small {
        assert!(read(&cas, k) == *d, "{k}");
    }
}
