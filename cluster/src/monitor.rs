//! ClusterMonitor: heartbeats to every member every second (how joins, suspicion and
//! death become visible within seconds), revocations enforced on open connections, and
//! the status `ouro cluster status` prints.

use std::sync::Arc;
use std::time::Duration;

use ouroboros_db::route::hash_to_node;

use crate::availability::State;
use crate::controller::Node;
use crate::handler::news;
use crate::membership::short_id;
use crate::message::{ClusterStatus, MemberStatus, Request, Response};
use crate::replication_monitoring::placement_digest;

/// Time between heartbeats. Each one is a `Hello` exchange that carries news both ways,
/// so a pair of nodes hears from each other about twice a second; suspicion waits for
/// [`crate::availability::SUSPECT_AFTER`].
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Sends heartbeats forever, and at once when woken (a command wrote versions here: peers
/// learn of them from the news and pull them without waiting for the next beat).
pub async fn heartbeat_loop(node: Arc<Node>) {
    // A
    loop {
        node.cut_revoked();
        let hello = Request::Hello(news(&node));
        let peers = node.others().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the members: no heartbeat this beat");
            Vec::new()
        });
        for peer in peers {
            let node = Arc::clone(&node);
            let hello = hello.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HEARTBEAT * 2, node.call(&peer, &hello)).await {
                    Ok(Ok(Response::Hello(n))) => {
                        let _ = node.members.set_addr(&peer, &n.addr);
                        if node.tracker.seen(peer, n) {
                            node.replicate_wake.notify_one();
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::trace!(peer = %short_id(&peer), error = %e, "heartbeat failed")
                    }
                    Err(_) => tracing::trace!(peer = %short_id(&peer), "heartbeat timed out"),
                }
            });
        }
        let _ = tokio::time::timeout(HEARTBEAT, node.heartbeat_wake.notified()).await;
    }
}

/// The cluster as this node sees it.
pub fn status(node: &Node) -> crate::Result<ClusterStatus> {
    // A
    let me = news(node);
    let mut members = vec![MemberStatus {
        id: short_id(&node.me),
        addr: node.addr.clone(),
        state: "alive".into(),
        last_seen_secs: 0.0,
        chunks_held: me.chunks_held,
        free_bytes: me.free_bytes,
        tombstones: me.tombstones,
        pulls: 0,
    }];
    let mut pending = me.pending_chunks + node.repair.backlog();
    let mut repaired = me.repaired_slices;
    let mut repair_bytes = me.repair_bytes;
    let mut replication_bytes = me.replication_bytes;
    let others = node.others()?;
    // Nodes whose last sweep checked another placement than the current one (one just
    // left or joined): what they lack is not known yet, so their chunks count as under-
    // replicated until they have swept (a count of 0 must mean every slice is in place).
    let placed_over = node.placement_nodes()?;
    let current = placement_digest(&placed_over);
    let mut unsettled = Vec::new();
    if node.repair.swept_over() != current {
        unsettled.push(node.me);
    }
    for peer in &others {
        let state = node.tracker.state(peer);
        let n = node.tracker.news(peer).unwrap_or_default();
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
            addr: node.members.addr(peer).ok().flatten().unwrap_or_default(),
            state: state.name().into(),
            last_seen_secs: node.tracker.silence(peer).as_secs_f64(),
            chunks_held: n.chunks_held,
            free_bytes: n.free_bytes,
            tombstones: n.tombstones,
            pulls: node.wal.pulls_from(peer),
        });
    }
    let k = node.cas.config().k;
    let m = node.cas.config().m;
    let (audits, lacking, extra, audit_bytes) = node.audit.snapshot();
    let n = others.len() + 1;
    let slices = k as usize + m as usize;
    let placement = if n >= slices {
        format!("{n} nodes: the {slices} slices of each chunk are on distinct nodes")
    } else {
        format!(
            "only {n} node(s) for {slices} slices per chunk: some nodes hold several slices of a chunk, so losing one can cost more than one slice (add {} node(s))",
            slices - n
        )
    };
    Ok(ClusterStatus {
        node: short_id(&node.me),
        k,
        m,
        under_replicated_chunks: pending + on_dead_nodes(node, &placed_over, &others, &unsettled),
        repaired_slices: repaired,
        repair_bytes,
        replication_bytes,
        members,
        placement,
        repair_chunks_checked: node.repair.checked(),
        condemned_chunks: node.wal.condemned(),
        freed_chunks: node.wal.freed(),
        inventory_audits: audits,
        audit_lacking_slices: lacking,
        audit_extra_slices: extra,
        audit_bytes,
        repair_sweeps: node.repair.sweeps(),
        wal_rounds: node.wal.rounds(),
    })
}

/// Chunks that placement (`all`) puts partly on nodes that are not alive, or on
/// `unsettled` ones.
fn on_dead_nodes(
    node: &Node,
    all: &[crate::membership::NodeId],
    others: &[crate::membership::NodeId],
    unsettled: &[crate::membership::NodeId],
) -> u64 {
    // A
    let down: Vec<_> = others
        .iter()
        .filter(|p| !node.tracker.is_alive(p))
        .chain(unsettled)
        .copied()
        .collect();
    if down.is_empty() {
        return 0;
    }
    let mut count = 0;
    let mut after = None;
    while let Ok(page) = node.cas.replica().chunk_widths_after(after, 4096) {
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
