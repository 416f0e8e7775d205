//! ReplicationMonitoring and DataReBalancer: every node sweeps the chunk records (which
//! every node has) and checks that it holds the slices placement gives it. A slice it
//! lacks (its node died and was left out of placement after `--repair-after`, or this node
//! just joined and takes over a share) is fetched from whoever holds it, or rebuilt from
//! any k others and checked against the chunk record. The previous holders drop their
//! copies only when their walk has handed them over (DataRouter), so redundancy never dips
//! below what it was. Repair traffic is rate-limited so that it does not starve users.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ouroboros_db::route::hash_to_node;
use ouroboros_db::Hash;

use crate::controller::Node;
use crate::error::Result;
use crate::handler::blocking;
use crate::membership::{short_id, NodeId};

/// Chunk records looked at per step of a sweep.
const PAGE: usize = 512;
/// Pause between sweeps that found nothing to do.
const IDLE: Duration = Duration::from_secs(2);
/// How long a chunk lacks slices here before this node repairs it. Two sweeps in a row were
/// not enough: sweeps run 200 ms apart while anything lacks, and after a 512 MiB put on 6
/// nodes a receiver had fetched 797 slices (93 MB) that the writer was still handing over.
const LACKING_GRACE: Duration = Duration::from_secs(5);
/// Default repair traffic allowed per second (slices fetched for repair): `--repair-rate`.
pub const REPAIR_BYTES_PER_SEC: u64 = 64 << 20;

/// What the repair sweep found.
#[derive(Default)]
pub struct RepairState {
    wake: tokio::sync::Notify,
    backlog: AtomicU64,
    repaired: AtomicU64,
    bytes: AtomicU64,
    /// Chunks the previous sweep found lacking, and since when. A chunk is repaired only when
    /// it has lacked slices for [`LACKING_GRACE`] (over several sweeps): a fresh put's slices
    /// are normally on their way from the writer, and fetching them too would only double
    /// the traffic.
    seen: std::sync::Mutex<std::collections::HashMap<Hash, Instant>>,
    /// Placement as of the previous sweep, and the nodes that have left it since the last
    /// sweep that found nothing lacking: a slice whose holder left will not be handed over
    /// by anyone, so it is repaired without waiting.
    placed_over: std::sync::Mutex<(Vec<NodeId>, Vec<NodeId>)>,
}

impl RepairState {
    /// Asks for a sweep soon (new chunks arrived, or the set of nodes changed).
    pub fn wake(&self) {
        // A
        self.wake.notify_one();
    }

    /// Chunks lacking slices this node should hold, as of the last complete sweep (or the
    /// current one, when it has already found more).
    pub fn backlog(&self) -> u64 {
        // A
        self.backlog.load(Ordering::Relaxed)
    }

    /// Bytes of slices this node fetched for repairs since it started.
    pub fn bytes(&self) -> u64 {
        // A
        self.bytes.load(Ordering::Relaxed)
    }

    /// Slices this node has repaired since it started.
    pub fn repaired(&self) -> u64 {
        // A
        self.repaired.load(Ordering::Relaxed)
    }
}

/// Sweeps forever.
pub async fn repair_loop(node: Arc<Node>) {
    // A
    loop {
        match sweep(&node).await {
            Ok(0) => {
                let _ = tokio::time::timeout(IDLE, node.repair.wake.notified()).await;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => {
                tracing::warn!(error = %e, "repair sweep");
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}

/// One pass over every chunk; returns how many lacked slices here.
async fn sweep(node: &Arc<Node>) -> Result<u64> {
    // PA
    let nodes = node.placement_nodes();
    let departed = node
        .repair
        .placed_over
        .lock()
        .map(|mut p| {
            let (prev, departed) = &mut *p;
            departed.extend(prev.iter().filter(|n| !nodes.contains(n)));
            departed.retain(|n| !nodes.contains(n));
            departed.sort_unstable();
            departed.dedup();
            *prev = nodes.clone();
            departed.clone()
        })
        .unwrap_or_default();
    let before_departure: Vec<NodeId> = nodes.iter().chain(&departed).copied().collect();
    let slices = node.cas.config().k as usize + node.cas.config().m as usize;
    let mut after = None;
    let mut lacking_chunks = 0u64;
    let mut budget = Budget::new(node.repair_rate);
    let before = node
        .repair
        .seen
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let mut now_lacking = std::collections::HashMap::new();
    loop {
        let cas = Arc::clone(&node.cas);
        let page = blocking(move || Ok(cas.chunk_ids_after(after, PAGE)?)).await?;
        let Some(last) = page.last().copied() else {
            break;
        };
        after = Some(last);
        for chunk in page {
            let placed = hash_to_node::place(&chunk, &nodes, slices);
            let mine: Vec<u8> = (0..slices as u8)
                .filter(|i| placed.get(*i as usize) == Some(&node.me))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let cas = Arc::clone(&node.cas);
            let held = blocking(move || Ok(cas.local_slices_held(&chunk)?)).await?;
            let lacking: Vec<u8> = mine.into_iter().filter(|i| !held.contains(i)).collect();
            if lacking.is_empty() {
                continue;
            }
            lacking_chunks += 1;
            node.repair
                .backlog
                .fetch_max(lacking_chunks, Ordering::Relaxed);
            let since = before.get(&chunk).copied().unwrap_or_else(Instant::now);
            let holder_left = !departed.is_empty() && {
                let old = hash_to_node::place(&chunk, &before_departure, slices);
                lacking
                    .iter()
                    .any(|i| old.get(*i as usize).is_some_and(|n| departed.contains(n)))
            };
            if !holder_left && since.elapsed() < LACKING_GRACE {
                now_lacking.insert(chunk, since);
                continue;
            }
            tracing::debug!(chunk = %chunk.short(), ?lacking, "repairing");
            match repair_chunk(node, chunk, &held, &lacking).await {
                Ok(bytes) => {
                    tracing::debug!(chunk = %chunk.short(), slices = ?lacking, "repaired");
                    node.repair
                        .repaired
                        .fetch_add(lacking.len() as u64, Ordering::Relaxed);
                    node.repair.bytes.fetch_add(bytes, Ordering::Relaxed);
                    budget.spend(bytes).await;
                }
                Err(e) => {
                    now_lacking.insert(chunk, since);
                    tracing::debug!(chunk = %chunk.short(), error = %e, "repair waits");
                }
            }
        }
    }
    node.repair.backlog.store(lacking_chunks, Ordering::Relaxed);
    if lacking_chunks == 0 {
        if let Ok(mut p) = node.repair.placed_over.lock() {
            p.1.clear();
        }
    }
    if let Ok(mut s) = node.repair.seen.lock() {
        *s = now_lacking;
    }
    if lacking_chunks > 0 {
        tracing::info!(node = %short_id(&node.me), chunks = lacking_chunks, "repair sweep done");
    }
    Ok(lacking_chunks)
}

/// Gets the slices `lacking` of a chunk onto this node: copied from a node that holds them,
/// else rebuilt from any k. Returns the bytes fetched.
async fn repair_chunk(node: &Arc<Node>, chunk: Hash, held: &[u8], lacking: &[u8]) -> Result<u64> {
    // PA
    let k = node.cas.config().k as usize;
    let n = k + node.cas.config().m as usize;
    let cas = Arc::clone(&node.cas);
    let record = blocking(move || {
        cas.chunk_record(&chunk)?
            .ok_or_else(|| ouroboros_db::Error::NotFound(format!("chunk {}", chunk.short())))
            .map_err(Into::into)
    })
    .await?;
    // Someone may still hold exactly these (an old placement, a writer with pending slices).
    let mut got = crate::data_router::fetch(node, chunk, lacking.to_vec(), lacking.len()).await?;
    let mut bytes: u64 = got.iter().map(|(_, b)| b.len() as u64).sum();
    // A peer that has not yet adopted the winning sealing (src/cas/sealing.rs) answers with
    // slices of another: only this record's count.
    got.retain(|(i, b)| {
        record
            .slices
            .get(*i as usize)
            .is_some_and(|h| Hash::of(b) == *h)
    });
    let still: Vec<u8> = lacking
        .iter()
        .copied()
        .filter(|i| !got.iter().any(|(j, _)| j == i))
        .collect();
    if !still.is_empty() {
        let others: Vec<u8> = (0..n as u8).filter(|i| !held.contains(i)).collect();
        let need = k.saturating_sub(held.len());
        let given = crate::data_router::fetch(node, chunk, others, need).await?;
        bytes += given.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        let cas = Arc::clone(&node.cas);
        let want = still.clone();
        let rebuilt = blocking(move || Ok(cas.rebuild_slices(&chunk, &given, &want)?)).await?;
        got.extend(rebuilt);
    }
    got.retain(|(i, _)| lacking.contains(i));
    let cas = Arc::clone(&node.cas);
    blocking(move || {
        cas.accept_slices(&chunk, &record, &got)?;
        Ok(())
    })
    .await?;
    Ok(bytes)
}

/// A token bucket over repair traffic.
struct Budget {
    rate: u64,
    start: Instant,
    spent: u64,
}

impl Budget {
    fn new(rate: u64) -> Self {
        // A
        Budget {
            rate,
            start: Instant::now(),
            spent: 0,
        }
    }

    /// Waits until `bytes` more fit the rate since the start.
    async fn spend(&mut self, bytes: u64) {
        // A
        self.spent += bytes;
        let due = Duration::from_secs_f64(self.spent as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}
