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
use ouroboros_db::route::hash_to_node;
use ouroboros_db::Hash;

use crate::controller::Node;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::{short_id, NodeId};
use crate::message::{FetchWant, Request, Response, SliceWant, MAX_ITEMS};
use crate::slices_many::{self, Found};

/// Bundles looked at per step of the walk.
const PAGE: usize = 256;
/// Chunks being handed over at once.
const IN_FLIGHT: usize = 16;
/// Time between walks when nothing wakes the router.
const EVERY: Duration = Duration::from_secs(1);

/// The router's state in a node.
#[derive(Default)]
pub struct RouterState {
    wake: tokio::sync::Notify,
    walk: tokio::sync::Mutex<Option<u64>>,
    placed_over: Mutex<Vec<NodeId>>,
    pending: Mutex<HashSet<Hash>>,
    held: AtomicU64,
}

impl RouterState {
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
}

/// Walks new slices forever.
pub async fn distribute_loop(node: Arc<Node>) {
    // A
    loop {
        if let Err(e) = walk(&node).await {
            tracing::warn!(error = %e, "placing slices");
        }
        let _ = tokio::time::timeout(EVERY, node.router.wake.notified()).await;
    }
}

/// Hands every slice written so far to its node; returns the chunks still pending.
pub async fn walk(node: &Arc<Node>) -> Result<u64> {
    // PA
    let mut cursor = node.router.walk.lock().await;
    let members = node.placement_nodes()?;
    // When the set of nodes changes, slices may now belong elsewhere: walk everything again
    // (a joining node takes over its share; copies go only once the new holder has them).
    if let Ok(mut last) = node.router.placed_over.lock() {
        if *last != members {
            *last = members.clone();
            *cursor = None;
        }
    }
    let slices = node.cas.config().k as usize + node.cas.config().m as usize;
    // Retry what waited for an unreachable node, then look at what is new.
    let retry: Vec<Hash> = node
        .router
        .pending
        .lock()
        .map(|p| p.iter().copied().collect())
        .unwrap_or_default();
    let mut work: Vec<(Hash, Vec<u8>)> = Vec::new();
    for chunk in retry {
        let cas = Arc::clone(&node.cas);
        let held = blocking(move || Ok(cas.replica().local_slices_held(&chunk)?)).await?;
        work.push((chunk, held));
    }
    hand_over(node, &members, slices, std::mem::take(&mut work)).await;
    loop {
        let cas = Arc::clone(&node.cas);
        let after = *cursor;
        let page = blocking(move || Ok(cas.replica().held_slices_after(after, PAGE)?)).await?;
        let Some((last, _, _)) = page.last() else {
            break;
        };
        *cursor = Some(*last);
        let work: Vec<(Hash, Vec<u8>)> = page.into_iter().map(|(_, c, i)| (c, i)).collect();
        hand_over(node, &members, slices, work).await;
    }
    if let Ok(n) = node.cas.replica().chunks_held() {
        node.router.held.store(n, Ordering::Relaxed);
    }
    Ok(node.router.pending())
}

/// Sends the slices of `work` that placement gives to other nodes, several chunks at once.
async fn hand_over(
    node: &Arc<Node>,
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
            if let Some(n) = placed.get(i as usize).filter(|n| **n != node.me) {
                // A node known dead would only make this walk wait for a timeout.
                if node.tracker.state(n) == crate::availability::State::Dead {
                    waiting = true;
                } else {
                    away.entry(*n).or_default().push(i);
                }
            }
        }
        if waiting {
            if let Ok(mut p) = node.router.pending.lock() {
                p.insert(chunk);
            }
        }
        if away.is_empty() {
            if !waiting {
                if let Ok(mut p) = node.router.pending.lock() {
                    p.remove(&chunk);
                }
            }
            continue;
        }
        while set.len() >= IN_FLIGHT {
            set.join_next().await;
        }
        let node = Arc::clone(node);
        set.spawn(async move {
            let ok = send_chunk(&node, chunk, away).await && !waiting;
            if let Ok(mut p) = node.router.pending.lock() {
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
async fn send_chunk(node: &Arc<Node>, chunk: Hash, away: BTreeMap<NodeId, Vec<u8>>) -> bool {
    // PA
    let cas = Arc::clone(&node.cas);
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
        let node = Arc::clone(node);
        let record = record.clone();
        let (slices, rest): (Vec<_>, Vec<_>) = held.into_iter().partition(|(i, _)| idx.contains(i));
        held = rest;
        set.spawn(async move {
            if slices.is_empty() {
                return Ok((Vec::new(), false));
            }
            let sent: Vec<u8> = slices.iter().map(|(i, _)| *i).collect();
            match node
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
                    let cas = Arc::clone(&node.cas);
                    let adopted =
                        blocking(move || Ok(cas.replica().adopt_record(&chunk, &winner, dead)?)).await?;
                    node.repair.wake_for([chunk]);
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
                tracing::debug!(chunk = %chunk.short(), error = %e, "slices wait for their node");
                all = false;
            }
        }
    }
    // The peers have them on disk: this node's copies can go, in one rewrite of the
    // bundle, committed with other chunks' releases. When another sealing won, adopting
    // it already dropped this node's slices of the losing one.
    if !stored_there.is_empty() && !superseded {
        if let Err(e) = node.releases.submit((chunk, stored_there)).await {
            tracing::warn!(chunk = %chunk.short(), error = %e, "dropping handed-over slices");
            all = false;
        }
    }
    all
}

/// Fetches slices of a chunk from the nodes that hold them. Data slices first (a chunk
/// rebuilt from its data slices needs no erasure decoding), from the nodes placement names,
/// in parallel; parity slices and other live nodes only for what is still missing.
/// Answers as soon as `need` slices arrived, so a node that died a moment ago (not yet
/// known dead) costs at most a short wait.
pub async fn fetch(
    node: &Arc<Node>,
    chunk: Hash,
    wanted: Vec<u8>,
    need: usize,
) -> Result<Vec<(u8, Vec<u8>)>> {
    // A
    let members = node.placement_nodes()?;
    let k = node.cas.config().k as usize;
    let slices = k + node.cas.config().m as usize;
    let placed = hash_to_node::place(&chunk, &members, slices);
    let askable = askable(node, &placed, &wanted);
    let data = data_first(&askable, k, need);
    let mut got = ask(node, chunk, data, need, Some(DATA_FIRST)).await;
    if got.len() < need {
        let mut parity: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
        for (i, n) in askable
            .iter()
            .filter(|(i, _)| !got.iter().any(|(j, _)| j == i))
        {
            parity.entry(*n).or_default().push(*i);
        }
        for (i, b) in ask(node, chunk, parity, need - got.len(), Some(ASK_AT_MOST)).await {
            if !got.iter().any(|(j, _)| *j == i) {
                got.push((i, b));
            }
        }
    }
    if got.len() < need {
        let missing: Vec<u8> = wanted
            .iter()
            .copied()
            .filter(|i| !got.iter().any(|(j, _)| j == i))
            .collect();
        let rest: BTreeMap<NodeId, Vec<u8>> = node
            .others()?
            .into_iter()
            .filter(|n| node.tracker.is_alive(n))
            .map(|n| (n, missing.clone()))
            .collect();
        for (i, b) in ask(node, chunk, rest, need - got.len(), Some(ASK_AT_MOST)).await {
            if !got.iter().any(|(j, _)| *j == i) {
                got.push((i, b));
            }
        }
    }
    Ok(got)
}

/// [`fetch`] for several chunks: the data slices of all of them are asked of each holder
/// in one `GetSlicesMany` (a round trip and its wake-ups per peer, rather than per chunk
/// and peer); a chunk still short after that goes through [`fetch`] (parity, other nodes).
/// Slices stay in the answers they came in (see `slices_many`).
pub async fn fetch_many(node: &Arc<Node>, items: Vec<FetchWant>) -> Result<Found> {
    // A
    if items.len() > MAX_ITEMS {
        return Err(ClusterError::Protocol(format!(
            "{} chunks in one read; at most {MAX_ITEMS}",
            items.len()
        )));
    }
    let members = node.placement_nodes()?;
    let k = node.cas.config().k as usize;
    let width = k + node.cas.config().m as usize;
    // Per peer: (item position, slice indexes) of the data slices it is asked for, as
    // many per chunk as the reader needs (see `fetch`).
    let mut by_peer: BTreeMap<NodeId, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
    for (pos, it) in items.iter().enumerate() {
        let placed = hash_to_node::place(&it.chunk, &members, width);
        let askable = askable(node, &placed, &it.wanted);
        for (n, idx) in data_first(&askable, k, it.need as usize) {
            by_peer.entry(n).or_default().push((pos, idx));
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (peer, asks) in by_peer {
        let node = Arc::clone(node);
        let want = asks
            .iter()
            .map(|(pos, idx)| SliceWant {
                chunk: items[*pos].chunk,
                wanted: idx.clone(),
            })
            .collect();
        set.spawn(async move {
            let answer = node
                .call_body(&peer, &Request::GetSlicesMany { items: want })
                .await
                .and_then(|body| {
                    let spans = slices_many::answer_spans(&body, asks.len())?;
                    Ok(slices_many::share(body, spans))
                });
            match answer {
                Ok(found) => asks.into_iter().map(|(pos, _)| pos).zip(found).collect(),
                Err(e) => {
                    tracing::debug!(peer = %short_id(&peer), error = %e, "fetching slices");
                    Vec::new()
                }
            }
        });
    }
    let mut got: Found = vec![Vec::new(); items.len()];
    let deadline = tokio::time::Instant::now() + BATCH_FIRST;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        for (pos, slices) in r.unwrap_or_default() {
            let Some(have) = got.get_mut(pos) else {
                continue;
            };
            for (i, b) in slices {
                if items[pos].wanted.contains(&i) && !have.iter().any(|(j, _)| *j == i) {
                    have.push((i, b));
                }
            }
        }
    }
    // What the data round did not bring: parity, other nodes, as for a single chunk.
    let mut rest = tokio::task::JoinSet::new();
    for (pos, it) in items.into_iter().enumerate() {
        let have = &got[pos];
        if have.len() >= it.need as usize {
            continue;
        }
        let wanted: Vec<u8> = it
            .wanted
            .iter()
            .copied()
            .filter(|i| !have.iter().any(|(j, _)| j == i))
            .collect();
        let need = it.need as usize - have.len();
        let node = Arc::clone(node);
        rest.spawn(async move { (pos, fetch(&node, it.chunk, wanted, need).await) });
    }
    while let Some(r) = rest.join_next().await {
        if let Ok((pos, Ok(more))) = r {
            if let Some(have) = got.get_mut(pos) {
                have.extend(more.into_iter().map(|(i, b)| (i, Bytes::from(b))));
            }
        }
    }
    Ok(got)
}

/// How long a batched read waits for the data slices of all its chunks before asking
/// for the missing ones chunk by chunk.
const BATCH_FIRST: Duration = Duration::from_secs(1);

/// The wanted slices another live node holds by placement (`placed`), with that node.
fn askable(node: &Node, placed: &[NodeId], wanted: &[u8]) -> Vec<(u8, NodeId)> {
    // A
    wanted
        .iter()
        .filter_map(|i| {
            placed
                .get(*i as usize)
                .filter(|n| {
                    **n != node.me && node.tracker.state(n) != crate::availability::State::Dead
                })
                .map(|n| (*i, *n))
        })
        .collect()
}

/// The first `need` data slices (index below `k`) among `askable`, by node. Only as many as
/// needed: when this node holds a parity slice, asking for every data slice would move one
/// more slice than the rebuild uses.
fn data_first(askable: &[(u8, NodeId)], k: usize, need: usize) -> BTreeMap<NodeId, Vec<u8>> {
    // A
    let mut m: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
    for (i, n) in askable.iter().filter(|(i, _)| (*i as usize) < k).take(need) {
        m.entry(*n).or_default().push(*i);
    }
    m
}

/// How long a read waits for data slices before asking for parity.
const DATA_FIRST: Duration = Duration::from_millis(300);
/// How long a read waits for any one round of answers: a peer that died a moment ago
/// holds a call until QUIC gives up on it (10 s), which a read should not wait for.
const ASK_AT_MOST: Duration = Duration::from_secs(3);

/// Asks nodes in parallel; returns once `need` distinct slices arrived, all answered, or
/// `within` passed.
async fn ask(
    node: &Arc<Node>,
    chunk: Hash,
    by_node: BTreeMap<NodeId, Vec<u8>>,
    need: usize,
    within: Option<Duration>,
) -> Vec<(u8, Vec<u8>)> {
    // A
    let mut set = tokio::task::JoinSet::new();
    for (peer, wanted) in by_node {
        let node = Arc::clone(node);
        set.spawn(async move {
            tracing::trace!(peer = %short_id(&peer), chunk = %chunk.short(), ?wanted, "asking for slices");
            match node
                .call(&peer, &Request::GetSlices { chunk, wanted })
                .await
            {
                Ok(Response::Slices(s)) => crate::message::from_wire(s),
                Ok(_) => Vec::new(),
                Err(e) => {
                    tracing::debug!(peer = %short_id(&peer), error = %e, "fetching slices");
                    Vec::new()
                }
            }
        });
    }
    let deadline = within.map(|w| tokio::time::Instant::now() + w);
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, set.join_next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => set.join_next().await,
        };
        let Some(r) = next else { break };
        for (i, b) in r.unwrap_or_default() {
            if !out.iter().any(|(j, _)| *j == i) {
                out.push((i, b));
            }
        }
        if out.len() >= need {
            break;
        }
    }
    out
}
