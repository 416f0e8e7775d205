//! DataRouter, cluster side: slices go where HashToNode places them, and reads fetch
//! slices from the nodes that hold them.
//!
//! A put seals every slice into the local store first (so it is durable on this node's
//! disk when it commits). A walk over new slice bundles then sends each slice that
//! placement gives to another node, and drops the local copy once that node has it on
//! disk. Slices whose node is unreachable stay here, counted as pending, and go when it
//! is back. `ouro` commands wait for this walk (`Flush`) before they report success.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ouroboros_db::model::ChunkRecord;
use ouroboros_db::route::hash_to_node;
use ouroboros_db::Hash;

use ouroboros_db::cas::{Acceptance, SliceDelivery};

use crate::context::Context;
use crate::custody::Ticket;
use crate::error::{ClusterError, Result};
use crate::group_commit::GroupCommit;
use crate::handler::blocking;
use crate::membership::{short_id, NodeId};
use crate::message::{Request, Response, SliceWant};
use crate::replication_monitoring::ReplicationMonitoring;
use crate::service::{message, Answer, Claim, Service, Task};
use crate::slices_many::{self, Found};

/// Slices of a chunk handed over, to drop here: the record they were sent with, and the
/// hand-over's ticket, which ends only once the drop is decided (see `custody.rs`).
struct Release {
    chunk: Hash,
    indexes: Vec<u8>,
    record: ChunkRecord,
    ticket: Ticket,
}

/// Bundles looked at per step of the walk.
const PAGE: usize = 256;
/// Chunks being handed over at once.
const IN_FLIGHT: usize = 16;
/// Time between walks when nothing wakes the router.
const EVERY: Duration = Duration::from_secs(1);

/// The DataRouter of a node: hands slices over to their nodes and takes those peers
/// place here.
pub(crate) struct DataRouter {
    cx: Arc<Context>,
    repair: Arc<ReplicationMonitoring>,
    wake: tokio::sync::Notify,
    walk: tokio::sync::Mutex<Option<u64>>,
    placed_over: Mutex<Vec<NodeId>>,
    pending: Mutex<HashSet<Hash>>,
    held: AtomicU64,
    /// Slices peers place here, stored in group commits.
    accepts: GroupCommit<SliceDelivery, Acceptance>,
    /// Slices handed over to their nodes, dropped here in group commits; None when kept.
    releases: GroupCommit<Release, Option<usize>>,
}

impl DataRouter {
    /// The router of the node with context `cx`; `repair` checks chunks whose sealing
    /// another node's won.
    pub fn new(cx: Arc<Context>, repair: Arc<ReplicationMonitoring>) -> Self {
        // A
        let accepts = GroupCommit::start(Arc::clone(cx.cas()), |cas, batch| {
            cas.replica().accept_slices_many(batch)
        });
        let custody = Arc::clone(cx.custody());
        let releases = GroupCommit::start(Arc::clone(cx.cas()), move |cas, batch: &[Release]| {
            let drops: Vec<(Hash, Vec<u8>)> =
                batch.iter().map(|r| (r.chunk, r.indexes.clone())).collect();
            Ok(cas
                .replica()
                // Kept when the chunk was sealed anew since (not the slices sent), or
                // when a slice of it arrived since the hand-over began.
                .release_slices_many(&drops, |pos, now| {
                    batch.get(pos).is_some_and(|r| {
                        now == Some(&r.record) && custody.may_drop(&r.chunk, r.ticket.at())
                    })
                })?
                .into_iter()
                .map(Ok)
                .collect())
        });
        DataRouter {
            cx,
            repair,
            wake: Default::default(),
            walk: Default::default(),
            placed_over: Default::default(),
            pending: Default::default(),
            held: Default::default(),
            accepts,
            releases,
        }
    }

    /// Asks for a walk soon (new slices arrived).
    pub fn wake(&self) {
        // A
        self.wake.notify_one();
    }

    /// Chunks with slices waiting for an unreachable node.
    pub fn pending(&self) -> u64 {
        // A
        self.pending.lock().map(|p| p.len() as u64).unwrap_or(0)
    }

    /// Chunks with slices on this node at the end of the last walk.
    pub fn chunks_held(&self) -> u64 {
        // A
        self.held.load(Ordering::Relaxed)
    }

    /// Walks new slices forever.
    async fn distribute_loop(self: Arc<Self>) {
        // A
        loop {
            if let Err(e) = self.walk().await {
                tracing::warn!(error = %e, "placing slices");
            }
            let _ = tokio::time::timeout(EVERY, self.wake.notified()).await;
        }
    }

    /// Hands every slice written so far to its node; returns the chunks still pending.
    pub async fn walk(self: &Arc<Self>) -> Result<u64> {
        // PA
        let mut cursor = self.walk.lock().await;
        let members = self.cx.placement_nodes()?;
        // When the set of nodes changes, slices may now belong elsewhere: walk everything again
        // (a joining node takes over its share; copies go only once the new holder has them).
        if let Ok(mut last) = self.placed_over.lock() {
            if *last != members {
                *last = members.clone();
                *cursor = None;
            }
        }
        let slices = self.cx.cas().config().k as usize + self.cx.cas().config().m as usize;
        // Retry what waited for an unreachable node, then look at what is new.
        let retry: Vec<Hash> = self
            .pending
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        let mut work: Vec<(Hash, Vec<u8>)> = Vec::new();
        for chunk in retry {
            let cas = Arc::clone(self.cx.cas());
            let held = blocking(move || Ok(cas.replica().local_slices_held(&chunk)?)).await?;
            work.push((chunk, held));
        }
        self.hand_over(&members, slices, std::mem::take(&mut work))
            .await;
        loop {
            let cas = Arc::clone(self.cx.cas());
            let after = *cursor;
            let page = blocking(move || Ok(cas.replica().held_slices_after(after, PAGE)?)).await?;
            let Some((last, _, _)) = page.last() else {
                break;
            };
            *cursor = Some(*last);
            let work: Vec<(Hash, Vec<u8>)> = page.into_iter().map(|(_, c, i)| (c, i)).collect();
            self.hand_over(&members, slices, work).await;
        }
        if let Ok(n) = self.cx.cas().replica().chunks_held() {
            self.held.store(n, Ordering::Relaxed);
        }
        Ok(self.pending())
    }

    /// Sends the slices of `work` that placement gives to other nodes, several chunks at once.
    async fn hand_over(
        self: &Arc<Self>,
        members: &[NodeId],
        slices: usize,
        work: Vec<(Hash, Vec<u8>)>,
    ) {
        // PA
        let mut set = tokio::task::JoinSet::new();
        for (chunk, held) in work {
            let placed = hash_to_node::place(&chunk, members, slices);
            let mut away: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
            let mut waiting = false;
            for i in held {
                if let Some(n) = placed.get(i as usize).filter(|n| **n != self.cx.me()) {
                    // A node known dead would only make this walk wait for a timeout.
                    if self.cx.tracker().state(n) == crate::availability::State::Dead {
                        waiting = true;
                    } else {
                        away.entry(*n).or_default().push(i);
                    }
                }
            }
            if waiting {
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(chunk);
                }
            }
            if away.is_empty() {
                if !waiting {
                    if let Ok(mut p) = self.pending.lock() {
                        p.remove(&chunk);
                    }
                }
                continue;
            }
            while set.len() >= IN_FLIGHT {
                set.join_next().await;
            }
            let this = Arc::clone(self);
            set.spawn(async move {
                let ok = this.send_chunk(chunk, away).await && !waiting;
                if let Ok(mut p) = this.pending.lock() {
                    if ok {
                        p.remove(&chunk);
                    } else {
                        p.insert(chunk);
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Sends one chunk's slices to their nodes in parallel; true when all arrived.
    async fn send_chunk(self: &Arc<Self>, chunk: Hash, away: BTreeMap<NodeId, Vec<u8>>) -> bool {
        // PA
        // Before the slices are read: one arriving from now on may be a copy a peer relies on.
        let ticket = self.cx.custody().begin();
        let cas = Arc::clone(self.cx.cas());
        let want: Vec<u8> = away.values().flatten().copied().collect();
        let Ok((Some((record, condemned)), mut held)) = blocking(move || {
            Ok((
                cas.replica().chunk_record_marked(&chunk)?,
                cas.replica().local_slices(&chunk, &want)?,
            ))
        })
        .await
        else {
            return false;
        };
        let mut set = tokio::task::JoinSet::new();
        for (peer, idx) in away {
            let this = Arc::clone(self);
            let record = record.clone();
            let (slices, rest): (Vec<_>, Vec<_>) =
                held.into_iter().partition(|(i, _)| idx.contains(i));
            held = rest;
            set.spawn(async move {
                if slices.is_empty() {
                    return Ok((Vec::new(), false));
                }
                let sent: Vec<u8> = slices.iter().map(|(i, _)| *i).collect();
                match this
                    .cx
                    .call(
                        &peer,
                        &Request::PutSlices {
                            chunk,
                            record,
                            slices: crate::message::to_wire(slices),
                            condemned,
                        },
                    )
                    .await?
                {
                    Response::Stored => {}
                    // The peer keeps a sealing that wins: adopting it drops this node's slices
                    // of the losing one (nothing left to hand over); if this node meanwhile
                    // holds a sealing that wins over both, the peer adopts that one later.
                    Response::Superseded(winner, dead) => {
                        let cas = Arc::clone(this.cx.cas());
                        let adopted =
                            blocking(move || Ok(cas.replica().adopt_record(&chunk, &winner, dead)?)).await?;
                        this.repair.wake_for([chunk]);
                        tracing::info!(chunk = %chunk.short(), to = %short_id(&peer), ?adopted, "another sealing wins");
                        return Ok((Vec::new(), true));
                    }
                    other => {
                        return Err(ClusterError::Protocol(format!(
                            "unexpected answer {other:?}"
                        )))
                    }
                }
                tracing::debug!(chunk = %chunk.short(), slices = ?sent, to = %short_id(&peer), "handed over");
                Ok::<_, ClusterError>((sent, false))
            });
        }
        let mut all = true;
        let mut stored_there: Vec<u8> = Vec::new();
        let mut superseded = false;
        while let Some(r) = set.join_next().await {
            match r.map_err(|e| ClusterError::Protocol(e.to_string())) {
                Ok(Ok((sent, lost))) => {
                    stored_there.extend(sent);
                    superseded |= lost;
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::debug!(chunk = %chunk.short(), error = %e, "slices wait for their self");
                    all = false;
                }
            }
        }
        // The peers have them on disk: this node's copies can go, in one rewrite of the
        // bundle, committed with other chunks' releases. When another sealing won, adopting
        // it already dropped this node's slices of the losing one.
        if !stored_there.is_empty() && !superseded {
            let release = Release {
                chunk,
                indexes: stored_there,
                record,
                ticket,
            };
            match self.releases.submit(release).await {
                Ok(Some(_)) => {}
                // Slices of it arrived meanwhile (a peer handed them back), or it was sealed
                // anew: keep them and look at the chunk again on the next walk.
                Ok(None) => {
                    tracing::debug!(chunk = %chunk.short(), "slices arrived or resealed while handing over: kept");
                    all = false;
                }
                Err(e) => {
                    tracing::warn!(chunk = %chunk.short(), error = %e, "dropping handed-over slices");
                    all = false;
                }
            }
        }
        all
    }
}

impl Service for DataRouter {
    fn name(&self) -> &'static str {
        // A
        "data router"
    }

    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        Some(Box::pin(self.distribute_loop()))
    }

    fn answer(self: Arc<Self>, _peer: NodeId, req: Request) -> Claim {
        // A
        match req {
            Request::PutSlices {
                chunk,
                record,
                slices,
                condemned,
            } => {
                let delivery = SliceDelivery {
                    id: chunk,
                    record,
                    condemned,
                    slices: crate::message::from_wire(slices),
                };
                // Noted before the write: a hand-over of this chunk in flight keeps its copy.
                self.cx.custody().arriving(&chunk);
                Claim::Mine(message(async move {
                    Ok(match self.accepts.submit(delivery).await? {
                        None => {
                            self.wake();
                            Response::Stored
                        }
                        Some((winner, dead)) => Response::Superseded(winner, dead),
                    })
                }))
            }
            Request::GetSlices { chunk, mut wanted } => {
                // One copy of each slice, however often the request names it.
                wanted.sort_unstable();
                wanted.dedup();
                let cas = Arc::clone(self.cx.cas());
                Claim::Mine(message(async move {
                    let held =
                        blocking(move || Ok(cas.replica().local_slices(&chunk, &wanted)?)).await?;
                    Ok(Response::Slices(crate::message::to_wire(held)))
                }))
            }
            // Slices go out where they are, without one more copy into a frame.
            Request::GetSlicesMany { items } => Claim::Mine(Box::pin(async move {
                let found = held_slices(&self.cx, items).await?;
                Ok(Answer::Pieces(slices_many::frame_pieces(&found)?))
            })),
            other => Claim::Theirs(other),
        }
    }
}

/// Bytes of slices past which a `GetSlicesMany` answer takes no more chunks.
const ANSWER_BUDGET: usize = 16 << 20;

/// The slices a `GetSlicesMany` asks for that this node holds, chunk by chunk.
async fn held_slices(cx: &Context, items: Vec<SliceWant>) -> Result<Found> {
    // A
    if items.len() > crate::message::MAX_ITEMS {
        return Err(ClusterError::Protocol(format!(
            "{} chunks in one request; at most {}",
            items.len(),
            crate::message::MAX_ITEMS
        )));
    }
    let cas = Arc::clone(cx.cas());
    blocking(move || {
        let mut out = Vec::with_capacity(items.len());
        let mut bytes = 0;
        for mut it in items {
            // One copy of each slice, however often the request names it; and once the
            // answer is large, the remaining chunks get nothing (the reader asks for those
            // one by one), so a request naming one chunk 64 times cannot make this node
            // build a huge answer.
            it.wanted.sort_unstable();
            it.wanted.dedup();
            let slices = if bytes < ANSWER_BUDGET {
                cas.replica().local_slices(&it.chunk, &it.wanted)?
            } else {
                Vec::new()
            };
            bytes += slices.iter().map(|(_, b)| b.len()).sum::<usize>();
            out.push(
                slices
                    .into_iter()
                    .map(|(i, b)| (i, Bytes::from(b)))
                    .collect(),
            );
        }
        Ok(out)
    })
    .await
}
