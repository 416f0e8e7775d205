//! SyncIndexTree, cluster side: Merkle anti-entropy over the live versions. Now and then a
//! node compares the tree of one live peer with its own, from the top, descending only into
//! buckets whose digests differ, and fetches the versions it has never seen. The logs that
//! nodes pull (DistributedIndex) carry news within a second; this catches whatever a log
//! cannot tell (a store restored from an old backup, entries a log no longer has), and its
//! traffic follows the difference: 8 KiB per level visited plus the differing leaves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ouroboros_db::{Cas, Hash};

use crate::controller::Node;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::short_id;
use crate::message::{Request, Response};

/// Time between two comparisons (each with one peer, in turn).
pub const EVERY: Duration = Duration::from_secs(30);
/// Versions asked for per request.
const BATCH: usize = 512;

/// Answers a `SyncTree` request from the store.
pub fn answer(cas: &Cas, prefix: &[u8]) -> Result<Response> {
    // A
    if prefix.len() < ouroboros_db::cas::SYNC_LEAF_DEPTH {
        Ok(Response::SyncDigests(cas.replica().sync_digests(prefix)?))
    } else if prefix.len() == ouroboros_db::cas::SYNC_LEAF_DEPTH {
        Ok(Response::SyncLeaf(cas.replica().sync_leaf(prefix)?))
    } else {
        Err(ClusterError::Protocol("sync tree prefix too long".into()))
    }
}

/// What one comparison found and cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Versions fetched and imported.
    pub imported: usize,
    /// Tree requests made.
    pub requests: usize,
    /// Bytes of answers received (approximate: their encoded size).
    pub bytes: u64,
}

/// Compares `cas` with a peer reached through `ask`, and imports the versions the peer has
/// and `cas` has never seen.
pub async fn reconcile<F, Fut>(cas: &Arc<Cas>, ask: F) -> Result<Reconciled>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Result<Response>>,
{
    // A
    let mut out = Reconciled::default();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    let mut missing: Vec<Hash> = Vec::new();
    while let Some(prefix) = stack.pop() {
        let resp = ask(Request::SyncTree {
            prefix: prefix.clone(),
        })
        .await?;
        out.requests += 1;
        out.bytes += postcard::to_stdvec(&resp).map_or(0, |v| v.len() as u64);
        match resp {
            Response::SyncDigests(theirs) => {
                let c = Arc::clone(cas);
                let p = prefix.clone();
                let mine = blocking(move || Ok(c.replica().sync_digests(&p)?)).await?;
                if theirs.len() != mine.len() {
                    return Err(ClusterError::Protocol("sync tree of another shape".into()));
                }
                for (b, (t, m)) in theirs.iter().zip(&mine).enumerate() {
                    // An empty bucket there has nothing for this node.
                    if t != m && *t != Hash([0; 32]) {
                        let mut child = prefix.clone();
                        child.push(b as u8);
                        stack.push(child);
                    }
                }
            }
            Response::SyncLeaf(hashes) => {
                let c = Arc::clone(cas);
                missing.extend(blocking(move || Ok(c.replica().unknown_versions(&hashes)?)).await?);
            }
            other => {
                return Err(ClusterError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))
            }
        }
    }
    for batch in missing.chunks(BATCH) {
        let resp = ask(Request::Versions {
            hashes: batch.to_vec(),
        })
        .await?;
        out.bytes += postcard::to_stdvec(&resp).map_or(0, |v| v.len() as u64);
        let Response::Versions(records) = resp else {
            return Err(ClusterError::Protocol("expected versions".into()));
        };
        let c = Arc::clone(cas);
        out.imported += blocking(move || Ok(c.replica().import_versions(&records)?)).await?;
    }
    Ok(out)
}

/// Compares with one live peer after another, forever.
pub async fn anti_entropy_loop(node: Arc<Node>) {
    // A
    let mut turn = 0usize;
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(peer) = node.live_peer_in_turn(&mut turn) else {
            continue;
        };
        let n = Arc::clone(&node);
        let r = reconcile(&node.cas, |req| {
            let n = Arc::clone(&n);
            async move { n.call(&peer, &req).await }
        })
        .await;
        match r {
            Ok(r) => {
                node.replication_bytes
                    .fetch_add(r.bytes, std::sync::atomic::Ordering::Relaxed);
                if r.imported > 0 {
                    tracing::info!(peer = %short_id(&peer), versions = r.imported, "anti-entropy found versions the logs had not brought");
                    node.repair.wake();
                }
            }
            Err(e) => tracing::debug!(peer = %short_id(&peer), error = %e, "anti-entropy"),
        }
    }
}
