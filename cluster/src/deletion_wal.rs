//! DeletionWAL, cluster side: acknowledgement and compaction of tombstones. Every member
//! pulls this node's WAL with a `Changes` request that carries its cursor, the sequence it
//! has applied up to: that is its acknowledgement. Entries every member has acknowledged
//! are compacted. A member silent for longer than the horizon (`--tombstone-horizon`) stops
//! holding them back; should it return, its pulls from below the floor are refused, and it
//! must be wiped and rejoin (it may hold versions deleted while it was away).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::controller::Node;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::NodeId;

/// Default of `--tombstone-horizon`: a member silent this long no longer holds back the
/// compaction of tombstones.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);
/// Time between compaction rounds.
const COMPACT_EVERY: Duration = Duration::from_secs(2);

/// Members' acknowledgements and the WAL's size, for compaction and `cluster status`.
pub struct WalState {
    /// Per member, the cursor of its latest `Changes` request; `None` until its second
    /// request since this node started (a first one may carry a cursor into this node's
    /// logs from before a restore, which the answer makes it drop).
    acks: Mutex<HashMap<NodeId, Option<u64>>>,
    /// How long a silent member holds back compaction.
    pub(crate) horizon: Duration,
    held: AtomicU64,
    floor: AtomicU64,
}

impl WalState {
    /// State for a node whose silent members hold tombstones back for `horizon`.
    pub fn new(horizon: Duration) -> Self {
        // A
        WalState {
            acks: Mutex::new(HashMap::new()),
            horizon,
            held: AtomicU64::new(0),
            floor: AtomicU64::new(0),
        }
    }

    /// Records that `peer` has applied this node's WAL up to `cursor`.
    pub(crate) fn acknowledge(&self, peer: NodeId, cursor: u64) {
        // PA
        if let Ok(mut a) = self.acks.lock() {
            match a.get_mut(&peer) {
                Some(ack) => *ack = Some(cursor),
                None => {
                    a.insert(peer, None);
                }
            }
        }
    }

    /// Tombstones held here (for heartbeats and status).
    pub fn held(&self) -> u64 {
        // A
        self.held.load(Ordering::Relaxed)
    }

    /// The last compacted sequence.
    pub fn floor(&self) -> u64 {
        // A
        self.floor.load(Ordering::Relaxed)
    }

    fn ack(&self, peer: &NodeId) -> Option<u64> {
        // A
        self.acks
            .lock()
            .ok()
            .and_then(|a| a.get(peer).copied().flatten())
    }
}

/// Refuses a pull from below the compaction floor: the tombstones it would need are gone.
/// A pull with both cursors at 0 is a new node's first: it learns no removed version, so
/// it needs none of them.
pub(crate) fn check_cursor(node: &Node, blobs: u64, cursor: u64) -> Result<()> {
    // PA
    let floor = node.wal.floor();
    if (cursor > 0 || blobs > 0) && cursor < floor {
        return Err(ClusterError::Protocol(format!(
            "this node's deletion log was compacted past your cursor ({cursor} < {floor}): you were away longer than the tombstone horizon; wipe this node's store and rejoin with a new token"
        )));
    }
    Ok(())
}

/// The sequence every member has applied, or `None` while some member's is unknown.
/// Members silent for longer than the horizon are left out.
fn acknowledged_by_all(node: &Node) -> Option<u64> {
    // PA
    let mut floor = u64::MAX;
    for peer in node.others() {
        if node.tracker.silence(&peer) > node.wal.horizon {
            continue;
        }
        floor = floor.min(node.wal.ack(&peer)?);
    }
    Some(floor)
}

/// Compacts acknowledged tombstones forever.
pub async fn compact_loop(node: Arc<Node>) {
    // A
    let mut tick = tokio::time::interval(COMPACT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = compact_once(&node).await {
            tracing::warn!(error = %e, "compacting tombstones");
        }
    }
}

/// One round: drop what every member acknowledged, refresh the counters.
async fn compact_once(node: &Arc<Node>) -> Result<()> {
    // PA
    let through = acknowledged_by_all(node);
    let cas = Arc::clone(&node.cas);
    let (dropped, (held, floor)) = blocking(move || {
        let dropped = match through {
            Some(t) => cas.compact_deletions(t)?,
            None => 0,
        };
        Ok((dropped, cas.tombstones()?))
    })
    .await?;
    if dropped > 0 {
        tracing::info!(dropped, floor, "compacted tombstones every member has");
    }
    node.wal.held.store(held, Ordering::Relaxed);
    node.wal.floor.store(floor, Ordering::Relaxed);
    Ok(())
}
