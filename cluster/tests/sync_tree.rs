//! SyncIndexTree: a store that missed versions finds exactly those by comparing trees, with
//! requests in proportion to the difference.

use std::sync::Arc;

use ouro_cluster::message::{Request, Response};
use ouro_cluster::sync_index_tree::reconcile;
use ouroboros_db::{Cas, CreateOptions, Identity, PutOptions};

fn answer(from: &Arc<Cas>, req: Request) -> ouro_cluster::Result<Response> {
    match req {
        Request::SyncTree { prefix } => ouro_cluster::sync_index_tree::answer(from, &prefix),
        Request::Versions { hashes } => Ok(Response::Versions(
            from.replica().versions_by_hash(&hashes)?,
        )),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_missed_versions_finds_exactly_those() {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let a = Arc::new(Cas::create(&dir.path().join("a"), &CreateOptions::default(), &me).unwrap());
    let b = Arc::new(
        Cas::create_replica(&dir.path().join("b"), &a.replica().replica_seed().unwrap()).unwrap(),
    );
    for i in 0..300 {
        a.put(
            &format!("k/{i}"),
            format!("v{i}").as_bytes(),
            &PutOptions::default(),
        )
        .unwrap();
    }
    let (all, _) = a.versions_since(0, 1000).unwrap();
    // b got every version but 7 (a log it could not read them from, say).
    let skipped: Vec<_> = all
        .iter()
        .step_by(43)
        .map(|r| r.blob.hash().unwrap())
        .collect();
    assert_eq!(skipped.len(), 7);
    let given: Vec<_> = all
        .iter()
        .filter(|r| !skipped.contains(&r.blob.hash().unwrap()))
        .cloned()
        .collect();
    b.replica().import_versions(&given).unwrap();
    assert_ne!(
        a.replica().sync_digests(&[]).unwrap(),
        b.replica().sync_digests(&[]).unwrap()
    );

    let from = Arc::clone(&a);
    let r = reconcile(&b, |req| {
        let from = Arc::clone(&from);
        async move { answer(&from, req) }
    })
    .await
    .unwrap();
    assert_eq!(r.imported, 7);
    // The root, at most 7 first-level buckets and 7 leaves: not the 300 versions.
    assert!(r.requests <= 1 + 7 + 7, "{r:?}");
    assert_eq!(
        a.replica().sync_digests(&[]).unwrap(),
        b.replica().sync_digests(&[]).unwrap()
    );

    // Equal trees: one request, nothing imported.
    let from = Arc::clone(&a);
    let again = reconcile(&b, |req| {
        let from = Arc::clone(&from);
        async move { answer(&from, req) }
    })
    .await
    .unwrap();
    assert_eq!((again.imported, again.requests), (0, 1));
    // A removed version leaves the tree of live versions.
    let before = a.replica().sync_digests(&[]).unwrap();
    a.remove("k/5").unwrap();
    assert_ne!(a.replica().sync_digests(&[]).unwrap(), before);
}
