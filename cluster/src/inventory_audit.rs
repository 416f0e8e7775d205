//! SyncIndexTree over slice inventories, as ReplicationMonitoring uses it: now and then a
//! node audits one live peer in turn, comparing the Merkle tree of the slices that peer holds
//! with the tree of the slices placement gives it (computed here from the chunk records every
//! node has). Equal roots end the audit after one request; otherwise it descends only into
//! differing buckets, so its traffic follows the difference. Chunks the peer lacks are sent
//! to it (`CheckChunks`), and its repair sweep brings them back within seconds: a node that
//! lost slices without knowing it (rows lost with a damaged disk, a partial restore) does not
//! wait for its next full sweep.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ouroboros_db::cas::{leaf_difference, Inventory, InventoryEntry, SYNC_LEAF_DEPTH};
use ouroboros_db::{Cas, Hash};

use crate::context::Context;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::{short_id, NodeId};
use crate::message::{Request, Response};
use crate::service::{message, Claim, Service, Task};

/// Default time between two audits (each of one peer, in turn): `--audit-every`. An audit
/// walks every chunk record here (placement for each) and every bundle on the peer: about
/// 0.6 CPU s per 100,000 chunks with 7 nodes, so once every 5 minutes, twice the placement
/// work of the repair sweep's 10-minute full pass.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(300);
/// Most chunks named in one `CheckChunks`.
pub const MAX_CHECK: usize = 4096;

/// Answers an `InventoryTree` request from this store's held slices.
pub fn answer(cas: &Cas, prefix: &[u8]) -> Result<Response> {
    // A
    tree_node(cas, prefix, Inventory::Held)
}

/// The node of `inventory`'s tree at `prefix`, as an `InventoryTree` answer: the peer
/// answers over what it holds, the auditor computes the same over what it places there.
fn tree_node(cas: &Cas, prefix: &[u8], inventory: Inventory<'_>) -> Result<Response> {
    // A
    if prefix.len() < SYNC_LEAF_DEPTH {
        Ok(Response::SyncDigests(
            cas.replica().inventory_digests(prefix, inventory)?,
        ))
    } else if prefix.len() == SYNC_LEAF_DEPTH {
        Ok(Response::InventoryLeaf(
            cas.replica().inventory_leaf(prefix, inventory)?,
        ))
    } else {
        Err(ClusterError::Protocol(
            "inventory tree prefix too long".into(),
        ))
    }
}

/// What one audit found and cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Slices placement gives the peer that it does not hold, by chunk.
    pub lacking: Vec<InventoryEntry>,
    /// Slices the peer holds that placement gives to other nodes, by chunk.
    pub extra: Vec<InventoryEntry>,
    /// Tree requests made.
    pub requests: usize,
    /// Bytes of answers received (their encoded size).
    pub bytes: u64,
}

impl Audit {
    /// Slices lacking, over every chunk.
    pub fn lacking_slices(&self) -> u64 {
        // A
        self.lacking.iter().map(|e| e.slices.len() as u64).sum()
    }

    /// Slices in excess, over every chunk.
    pub fn extra_slices(&self) -> u64 {
        // A
        self.extra.iter().map(|e| e.slices.len() as u64).sum()
    }
}

/// Audits `peer`, reached through `ask`, against what placement among `nodes` gives it of
/// the chunks `cas` knows.
pub async fn audit<F, Fut>(cas: &Arc<Cas>, peer: NodeId, nodes: &[NodeId], ask: F) -> Result<Audit>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Result<Response>>,
{
    // A
    let mut out = Audit::default();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(prefix) = stack.pop() {
        let resp = ask(Request::InventoryTree {
            prefix: prefix.clone(),
        })
        .await?;
        out.requests += 1;
        out.bytes += postcard::to_stdvec(&resp).map_or(0, |v| v.len() as u64);
        let (c, p, n) = (Arc::clone(cas), prefix.clone(), nodes.to_vec());
        let mine = blocking(move || {
            let placed = Inventory::Placed {
                node: peer,
                nodes: &n,
            };
            tree_node(&c, &p, placed)
        })
        .await?;
        match (resp, mine) {
            (Response::SyncDigests(theirs), Response::SyncDigests(mine)) => {
                if theirs.len() != mine.len() {
                    return Err(ClusterError::Protocol(
                        "inventory tree of another shape".into(),
                    ));
                }
                for (b, (t, m)) in theirs.iter().zip(&mine).enumerate().rev() {
                    if t != m {
                        let mut child = prefix.clone();
                        child.push(b as u8);
                        stack.push(child);
                    }
                }
            }
            (Response::InventoryLeaf(held), Response::InventoryLeaf(placed)) => {
                let (lacking, extra) = leaf_difference(&placed, &held);
                out.lacking.extend(lacking);
                out.extra.extend(extra);
            }
            (other, _) => {
                return Err(ClusterError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))
            }
        }
    }
    Ok(out)
}

/// The inventory audits of a node: of its peers, one in turn, and the answers to theirs.
pub(crate) struct InventoryAudit {
    cx: Arc<Context>,
    /// Time between two audits.
    every: Duration,
    audits: AtomicU64,
    lacking: AtomicU64,
    extra: AtomicU64,
    bytes: AtomicU64,
}

impl InventoryAudit {
    /// The audits of the node with context `cx`, one every `every`.
    pub fn new(cx: Arc<Context>, every: Duration) -> Self {
        // A
        InventoryAudit {
            cx,
            every,
            audits: AtomicU64::new(0),
            lacking: AtomicU64::new(0),
            extra: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// `(audits made, slices lacking and in excess at the last one, its bytes)`, for
    /// `cluster status`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        // A
        (
            self.audits.load(Ordering::Relaxed),
            self.lacking.load(Ordering::Relaxed),
            self.extra.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Audits one live peer after another, forever.
    async fn audit_loop(self: Arc<Self>) {
        // A
        let mut turn = 0usize;
        loop {
            tokio::time::sleep(self.every).await;
            let Some(peer) = self.cx.live_peer_in_turn(&mut turn) else {
                continue;
            };
            let nodes = match self.cx.placement_nodes() {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the members: no audit this round");
                    continue;
                }
            };
            if !nodes.contains(&peer) {
                continue;
            }
            let cx = Arc::clone(&self.cx);
            let ask = |req| {
                let cx = Arc::clone(&cx);
                async move { cx.call(&peer, &req).await }
            };
            match audit(self.cx.cas(), peer, &nodes, ask).await {
                Ok(a) => self.record(peer, &a).await,
                Err(e) => tracing::debug!(peer = %short_id(&peer), error = %e, "inventory audit"),
            }
        }
    }

    /// Counts audit `a` of `peer`, and asks the peer to check the chunks it lacks.
    async fn record(&self, peer: NodeId, a: &Audit) {
        // A
        self.audits.fetch_add(1, Ordering::Relaxed);
        self.lacking.store(a.lacking_slices(), Ordering::Relaxed);
        self.extra.store(a.extra_slices(), Ordering::Relaxed);
        self.bytes.store(a.bytes, Ordering::Relaxed);
        if !a.lacking.is_empty() {
            tracing::info!(peer = %short_id(&peer), slices = a.lacking_slices(), "inventory audit: the peer lacks slices placement gives it");
            let chunks: Vec<Hash> = a.lacking.iter().take(MAX_CHECK).map(|e| e.chunk).collect();
            if let Err(e) = self.cx.call(&peer, &Request::CheckChunks { chunks }).await {
                tracing::debug!(peer = %short_id(&peer), error = %e, "check chunks");
            }
        }
    }
}

impl Service for InventoryAudit {
    fn name(&self) -> &'static str {
        // A
        "inventory audit"
    }

    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        Some(Box::pin(self.audit_loop()))
    }

    fn answer(self: Arc<Self>, _peer: NodeId, req: Request) -> Claim {
        // A
        let Request::InventoryTree { prefix } = req else {
            return Claim::Theirs(req);
        };
        let cas = Arc::clone(self.cx.cas());
        Claim::Mine(message(blocking(move || answer(&cas, &prefix))))
    }
}
