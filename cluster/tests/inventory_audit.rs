//! SyncIndexTree over slice inventories: an audit finds exactly the slices a node lacks
//! against placement (and those it holds beyond it), with requests in proportion to the
//! difference.

use std::sync::Arc;

use ouro_cluster::inventory_audit::{answer, audit};
use ouro_cluster::message::{Request, Response};
use ouroboros_db::cas::InventoryEntry;
use ouroboros_db::{Cas, CreateOptions, Hash, Identity, PutOptions};

fn ask(from: &Arc<Cas>) -> impl Fn(Request) -> std::future::Ready<ouro_cluster::Result<Response>> {
    let from = Arc::clone(from);
    move |req| {
        std::future::ready(match req {
            Request::InventoryTree { prefix } => answer(&from, &prefix),
            other => panic!("unexpected {other:?}"),
        })
    }
}

fn drop_slice(cas: &Cas, chunk: &Hash, index: u8) {
    let mut txn = cas.replica().lmdb().write().unwrap();
    cas.replica()
        .lmdb()
        .slices
        .damage_for_tests(&mut txn, chunk, index, None)
        .unwrap();
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_finds_exactly_the_slices_a_node_lacks_or_holds_beyond_placement() {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let cas = Arc::new(Cas::create(&dir.path().join("s"), &CreateOptions::default(), &me).unwrap());
    for i in 0..400 {
        cas.put(
            &format!("k/{i}"),
            format!("value {i}").as_bytes(),
            &PutOptions::default(),
        )
        .unwrap();
    }
    let chunks = cas.chunk_ids_after(None, 10_000).unwrap();
    assert_eq!(chunks.len(), 400);
    // A store alone is the only node placement knows: it must hold every slice.
    let node = [7u8; 32];
    let alone = [node];
    let a = audit(&cas, node, &alone, ask(&cas)).await.unwrap();
    assert!(a.lacking.is_empty() && a.extra.is_empty(), "{a:?}");
    assert_eq!(a.requests, 1, "equal roots end the audit");

    // Five slices go missing without the store knowing.
    let lost: Vec<(Hash, u8)> = chunks
        .iter()
        .step_by(83)
        .enumerate()
        .map(|(i, c)| (*c, (i % 2) as u8))
        .collect();
    assert_eq!(lost.len(), 5);
    for (c, i) in &lost {
        drop_slice(&cas, c, *i);
    }
    let a = audit(&cas, node, &alone, ask(&cas)).await.unwrap();
    let mut want: Vec<InventoryEntry> = lost
        .iter()
        .map(|(c, i)| InventoryEntry {
            chunk: *c,
            slices: vec![*i],
        })
        .collect();
    want.sort();
    let mut got = a.lacking.clone();
    got.sort();
    assert_eq!(got, want);
    assert!(a.extra.is_empty());
    // The root, at most 5 first-level buckets and 5 leaves: not 400 chunks.
    assert!(a.requests <= 1 + 5 + 5, "{a:?}");

    // With a second node in placement, what placement gives that one is held here in excess.
    let two = [node, [9u8; 32]];
    let a = audit(&cas, node, &two, ask(&cas)).await.unwrap();
    let held: u64 = chunks
        .iter()
        .map(|c| cas.replica().local_slices_held(c).unwrap().len() as u64)
        .sum();
    let placed_here: u64 = chunks
        .iter()
        .map(|c| {
            let width = cas.replica().chunk_record(c).unwrap().unwrap().slices.len();
            ouroboros_db::route::hash_to_node::place(c, &two, width)
                .iter()
                .filter(|n| **n == node)
                .count() as u64
        })
        .sum();
    assert_eq!(
        placed_here + a.extra_slices() - a.lacking_slices(),
        held,
        "{a:?}"
    );
    assert!(a.extra_slices() > 0);
}
