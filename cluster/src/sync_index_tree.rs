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

use crate::context::Context;
use crate::distributed_index::DistributedIndex;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::{short_id, NodeId};
use crate::message::{Request, Response};
use crate::replication_monitoring::ReplicationMonitoring;
use crate::service::{message, Claim, Service, Task};

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

/// The SyncIndexTree of a node: answers peers' tree requests and compares its own tree
/// with theirs.
pub(crate) struct SyncIndexTree {
    cx: Arc<Context>,
    /// Counts what comparisons cost on the wire.
    index: Arc<DistributedIndex>,
    /// Checks every chunk once a comparison brought versions.
    repair: Arc<ReplicationMonitoring>,
}

impl SyncIndexTree {
    /// The tree of the node with context `cx`.
    pub fn new(
        cx: Arc<Context>,
        index: Arc<DistributedIndex>,
        repair: Arc<ReplicationMonitoring>,
    ) -> Self {
        // A
        SyncIndexTree { cx, index, repair }
    }

    /// Compares with one live peer after another, forever.
    async fn anti_entropy_loop(self: Arc<Self>) {
        // A
        let mut turn = 0usize;
        loop {
            tokio::time::sleep(EVERY).await;
            let Some(peer) = self.cx.live_peer_in_turn(&mut turn) else {
                continue;
            };
            let cx = Arc::clone(&self.cx);
            let r = reconcile(self.cx.cas(), |req| {
                let cx = Arc::clone(&cx);
                async move { cx.call(&peer, &req).await }
            })
            .await;
            match r {
                Ok(r) => {
                    self.index.count_bytes(r.bytes);
                    if r.imported > 0 {
                        tracing::info!(peer = %short_id(&peer), versions = r.imported, "anti-entropy found versions the logs had not brought");
                        self.repair.wake();
                    }
                }
                Err(e) => tracing::debug!(peer = %short_id(&peer), error = %e, "anti-entropy"),
            }
        }
    }
}

impl Service for SyncIndexTree {
    fn name(&self) -> &'static str {
        // A
        "sync index tree"
    }

    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        Some(Box::pin(self.anti_entropy_loop()))
    }

    fn answer(self: Arc<Self>, _peer: NodeId, req: Request) -> Claim {
        // A
        let Request::SyncTree { prefix } = req else {
            return Claim::Theirs(req);
        };
        let cas = Arc::clone(self.cx.cas());
        Claim::Mine(message(blocking(move || answer(&cas, &prefix))))
    }
}
