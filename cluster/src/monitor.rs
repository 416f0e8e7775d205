//! ClusterMonitor: heartbeats to every member every second (how joins, suspicion and
//! death become visible within seconds), revocations enforced on open connections, and
//! the status `ouro cluster status` prints.

use std::sync::Arc;
use std::time::Duration;

use ouroboros_db::route::hash_to_node;

use crate::admission::check_addr;
use crate::availability::State;
use crate::context::Context;
use crate::data_router::DataRouter;
use crate::deletion_wal::DeletionWal;
use crate::distributed_index::DistributedIndex;
use crate::error::Result;
use crate::inventory_audit::InventoryAudit;
use crate::membership::{short_id, NodeId};
use crate::message::{ClusterStatus, LogEnds, MemberStatus, NodeNews, Request, Response};
use crate::replication_monitoring::{placement_digest, ReplicationMonitoring};
use crate::service::{message, Claim, Service, Task};

/// Time between heartbeats. Each one is a `Hello` exchange that carries news both ways,
/// so a pair of nodes hears from each other about twice a second; suspicion waits for
/// [`crate::availability::SUSPECT_AFTER`].
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The ClusterMonitor of a node: heartbeats, and what this node and its peers report.
pub(crate) struct ClusterMonitor {
    cx: Arc<Context>,
    router: Arc<DataRouter>,
    repair: Arc<ReplicationMonitoring>,
    index: Arc<DistributedIndex>,
    wal: Arc<DeletionWal>,
    audit: Arc<InventoryAudit>,
    /// Sends heartbeats now (versions were written here).
    wake: tokio::sync::Notify,
}

impl ClusterMonitor {
    /// The monitor of the node with context `cx`, reporting what the other services count.
    pub fn new(
        cx: Arc<Context>,
        router: Arc<DataRouter>,
        repair: Arc<ReplicationMonitoring>,
        index: Arc<DistributedIndex>,
        wal: Arc<DeletionWal>,
        audit: Arc<InventoryAudit>,
    ) -> Self {
        // A
        ClusterMonitor {
            cx,
            router,
            repair,
            index,
            wal,
            audit,
            wake: Default::default(),
        }
    }

    /// Sends heartbeats now: a command wrote here, and peers learn of it from the news.
    pub fn beat_now(&self) {
        // A
        self.wake.notify_one();
    }

    /// Takes a peer's news: its address, its liveness, and whether its logs moved.
    fn heard(&self, peer: NodeId, news: NodeNews) {
        // A
        let _ = self.cx.members().set_addr(&peer, &news.addr);
        if self.cx.tracker().seen(peer, news) {
            self.index.wake();
        }
    }

    /// This node's news for a heartbeat.
    fn news(&self) -> NodeNews {
        // A
        let cas = self.cx.cas();
        NodeNews {
            addr: self.cx.addr().to_string(),
            chunks_held: self.router.chunks_held(),
            free_bytes: cas.replica().free_bytes().unwrap_or(0),
            pending_chunks: self.router.pending(),
            repair_backlog: self.repair.backlog(),
            repaired_slices: self.repair.repaired(),
            repair_bytes: self.repair.bytes(),
            replication_bytes: self.index.replication_bytes(),
            tombstones: self.wal.held(),
            swept_over: self.repair.swept_over(),
            logs: cas
                .replica()
                .log_ends()
                .map(|(log, blobs, wal)| LogEnds { log, blobs, wal })
                .unwrap_or_default(),
            silent: self.cx.silent().unwrap_or_default(),
        }
    }

    /// Sends heartbeats forever, and at once when woken (a command wrote versions here: peers
    /// learn of them from the news and pull them without waiting for the next beat).
    async fn heartbeat_loop(self: Arc<Self>) {
        // A
        loop {
            self.cx.cut_revoked();
            let hello = Request::Hello(self.news());
            let peers = self.cx.others().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the members: no heartbeat this beat");
                Vec::new()
            });
            for peer in peers {
                let this = Arc::clone(&self);
                let hello = hello.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HEARTBEAT * 2, this.cx.call(&peer, &hello)).await {
                        Ok(Ok(Response::Hello(n))) => this.heard(peer, n),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::trace!(peer = %short_id(&peer), error = %e, "heartbeat failed")
                        }
                        Err(_) => tracing::trace!(peer = %short_id(&peer), "heartbeat timed out"),
                    }
                });
            }
            let _ = tokio::time::timeout(HEARTBEAT, self.wake.notified()).await;
        }
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> Result<ClusterStatus> {
        // A
        let me = self.news();
        let mut members = vec![MemberStatus {
            id: short_id(&self.cx.me()),
            addr: self.cx.addr().to_string(),
            state: "alive".into(),
            last_seen_secs: 0.0,
            chunks_held: me.chunks_held,
            free_bytes: me.free_bytes,
            tombstones: me.tombstones,
            pulls: 0,
            placed: true,
        }];
        let mut pending = me.pending_chunks + self.repair.backlog();
        let mut repaired = me.repaired_slices;
        let mut repair_bytes = me.repair_bytes;
        let mut replication_bytes = me.replication_bytes;
        let others = self.cx.others()?;
        // Nodes whose last sweep checked another placement than the current one (one just
        // left or joined): what they lack is not known yet, so their chunks count as under-
        // replicated until they have swept (a count of 0 must mean every slice is in place).
        let placed_over = self.cx.placement_nodes()?;
        let current = placement_digest(&placed_over);
        let mut unsettled = Vec::new();
        if self.repair.swept_over() != current {
            unsettled.push(self.cx.me());
        }
        for peer in &others {
            let state = self.cx.tracker().state(peer);
            let n = self.cx.tracker().news(peer).unwrap_or_default();
            if state == State::Alive {
                if n.swept_over != current {
                    unsettled.push(*peer);
                }
                pending += n.pending_chunks + n.repair_backlog;
                repaired += n.repaired_slices;
                repair_bytes += n.repair_bytes;
                replication_bytes += n.replication_bytes;
            }
            members.push(MemberStatus {
                id: short_id(peer),
                addr: self
                    .cx
                    .members()
                    .addr(peer)
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                state: state.name().into(),
                last_seen_secs: self.cx.tracker().silence(peer).as_secs_f64(),
                chunks_held: n.chunks_held,
                free_bytes: n.free_bytes,
                tombstones: n.tombstones,
                pulls: self.wal.pulls_from(peer),
                placed: placed_over.contains(peer),
            });
        }
        let k = self.cx.cas().config().k;
        let m = self.cx.cas().config().m;
        let (audits, lacking, extra, audit_bytes) = self.audit.snapshot();
        let n = others.len() + 1;
        let slices = k as usize + m as usize;
        let placement = if n >= slices {
            format!("{n} nodes: the {slices} slices of each chunk are on distinct nodes")
        } else {
            format!(
                "only {n} self(s) for {slices} slices per chunk: some nodes hold several slices of a chunk, so losing one can cost more than one slice (add {} self(s))",
                slices - n
            )
        };
        Ok(ClusterStatus {
            node: short_id(&self.cx.me()),
            k,
            m,
            under_replicated_chunks: pending
                + on_dead_nodes(&self.cx, &placed_over, &others, &unsettled),
            repaired_slices: repaired,
            repair_bytes,
            replication_bytes,
            members,
            placement,
            repair_chunks_checked: self.repair.checked(),
            condemned_chunks: self.wal.condemned(),
            freed_chunks: self.wal.freed(),
            inventory_audits: audits,
            audit_lacking_slices: lacking,
            audit_extra_slices: extra,
            audit_bytes,
            repair_sweeps: self.repair.sweeps(),
            wal_rounds: self.wal.rounds(),
        })
    }
}

impl Service for ClusterMonitor {
    fn name(&self) -> &'static str {
        // A
        "cluster monitor"
    }

    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        Some(Box::pin(self.heartbeat_loop()))
    }

    fn answer(self: Arc<Self>, peer: NodeId, req: Request) -> Claim {
        // A
        let Request::Hello(n) = req else {
            return Claim::Theirs(req);
        };
        Claim::Mine(message(async move {
            check_addr(&n.addr)?;
            self.heard(peer, n);
            Ok(Response::Hello(self.news()))
        }))
    }
}

/// Chunks that placement (`all`) puts partly on nodes that are not alive, or on
/// `unsettled` ones.
fn on_dead_nodes(
    cx: &Context,
    all: &[crate::membership::NodeId],
    others: &[crate::membership::NodeId],
    unsettled: &[crate::membership::NodeId],
) -> u64 {
    // A
    let down: Vec<_> = others
        .iter()
        .filter(|p| !cx.tracker().is_alive(p))
        .chain(unsettled)
        .copied()
        .collect();
    if down.is_empty() {
        return 0;
    }
    let mut count = 0;
    let mut after = None;
    while let Ok(page) = cx.cas().replica().chunk_widths_after(after, 4096) {
        let Some((last, _)) = page.last().copied() else {
            break;
        };
        for (id, slices) in &page {
            if hash_to_node::place(id, all, *slices)
                .iter()
                .any(|n| down.contains(n))
            {
                count += 1;
            }
        }
        after = Some(last);
    }
    count
}
