//! DataRouter, read side: slices of a chunk fetched from the nodes that hold them, data
//! slices first, for reads through the control socket (`Fetch`, `FetchMany`) and for the
//! repair of lacking slices (ReplicationMonitoring). It keeps no state of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ouroboros_db::route::hash_to_node;
use ouroboros_db::Hash;

use crate::context::Context;
use crate::error::{ClusterError, Result};
use crate::membership::{short_id, NodeId};
use crate::message::{FetchWant, Request, Response, SliceWant, MAX_ITEMS};
use crate::slices_many::{self, Found};

/// Fetches slices of a chunk from the nodes that hold them. Data slices first (a chunk
/// rebuilt from its data slices needs no erasure decoding), from the nodes placement names,
/// in parallel; parity slices and other live nodes only for what is still missing.
/// Answers as soon as `need` slices arrived, so a node that died a moment ago (not yet
/// known dead) costs at most a short wait.
pub async fn fetch(
    cx: &Arc<Context>,
    chunk: Hash,
    wanted: Vec<u8>,
    need: usize,
) -> Result<Vec<(u8, Vec<u8>)>> {
    // A
    let members = cx.placement_nodes()?;
    let k = cx.cas().config().k as usize;
    let slices = k + cx.cas().config().m as usize;
    let placed = hash_to_node::place(&chunk, &members, slices);
    let askable = askable(cx, &placed, &wanted);
    let data = data_first(&askable, k, need);
    let mut got = ask(cx, chunk, data, need, Some(DATA_FIRST)).await;
    if got.len() < need {
        let mut parity: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
        for (i, n) in askable
            .iter()
            .filter(|(i, _)| !got.iter().any(|(j, _)| j == i))
        {
            parity.entry(*n).or_default().push(*i);
        }
        for (i, b) in ask(cx, chunk, parity, need - got.len(), Some(ASK_AT_MOST)).await {
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
        let rest: BTreeMap<NodeId, Vec<u8>> = cx
            .others()?
            .into_iter()
            .filter(|n| cx.tracker().is_alive(n))
            .map(|n| (n, missing.clone()))
            .collect();
        for (i, b) in ask(cx, chunk, rest, need - got.len(), Some(ASK_AT_MOST)).await {
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
pub async fn fetch_many(cx: &Arc<Context>, items: Vec<FetchWant>) -> Result<Found> {
    // A
    if items.len() > MAX_ITEMS {
        return Err(ClusterError::Protocol(format!(
            "{} chunks in one read; at most {MAX_ITEMS}",
            items.len()
        )));
    }
    let members = cx.placement_nodes()?;
    let k = cx.cas().config().k as usize;
    let width = k + cx.cas().config().m as usize;
    // Per peer: (item position, slice indexes) of the data slices it is asked for, as
    // many per chunk as the reader needs (see `fetch`).
    let mut by_peer: BTreeMap<NodeId, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
    for (pos, it) in items.iter().enumerate() {
        let placed = hash_to_node::place(&it.chunk, &members, width);
        let askable = askable(cx, &placed, &it.wanted);
        for (n, idx) in data_first(&askable, k, it.need as usize) {
            by_peer.entry(n).or_default().push((pos, idx));
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (peer, asks) in by_peer {
        let cx = Arc::clone(cx);
        let want = asks
            .iter()
            .map(|(pos, idx)| SliceWant {
                chunk: items[*pos].chunk,
                wanted: idx.clone(),
            })
            .collect();
        set.spawn(async move {
            let answer = cx
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
        let cx = Arc::clone(cx);
        rest.spawn(async move { (pos, fetch(&cx, it.chunk, wanted, need).await) });
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
fn askable(cx: &Context, placed: &[NodeId], wanted: &[u8]) -> Vec<(u8, NodeId)> {
    // A
    wanted
        .iter()
        .filter_map(|i| {
            placed
                .get(*i as usize)
                .filter(|n| {
                    **n != cx.me() && cx.tracker().state(n) != crate::availability::State::Dead
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
    cx: &Arc<Context>,
    chunk: Hash,
    by_node: BTreeMap<NodeId, Vec<u8>>,
    need: usize,
    within: Option<Duration>,
) -> Vec<(u8, Vec<u8>)> {
    // A
    let mut set = tokio::task::JoinSet::new();
    for (peer, wanted) in by_node {
        let cx = Arc::clone(cx);
        set.spawn(async move {
            tracing::trace!(peer = %short_id(&peer), chunk = %chunk.short(), ?wanted, "asking for slices");
            match cx
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
