//! ReplicationMonitoring and DataReBalancer: every node checks, against the chunk records
//! (which every node has), that it holds the slices placement gives it: all records when
//! placement changes (and every `FULL_SWEEP_EVERY` (10 min) as a safety net), else only the chunks
//! that new versions brought and those still lacking, so an idle store costs nothing however
//! many chunks it holds. A slice it
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

use crate::context::Context;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::{short_id, NodeId};
use crate::message::{Request, Response};
use crate::service::{message, Claim, Service, Task};

/// Chunk records looked at per step of a sweep.
const PAGE: usize = 512;
/// Pause between sweeps that found nothing to do.
const IDLE: Duration = Duration::from_secs(2);
/// How often every chunk record is checked even when placement has not changed: catches a
/// slice lost some other way (a damaged slice dropped by `verify --repair`).
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How long a chunk lacks slices here before this node repairs it. Two sweeps in a row were
/// not enough: sweeps run 200 ms apart while anything lacks, and after a 512 MiB put on 6
/// nodes a receiver had fetched 797 slices (93 MB) that the writer was still handing over.
const LACKING_GRACE: Duration = Duration::from_secs(5);
/// Default repair traffic allowed per second (slices fetched for repair): `--repair-rate`.
pub const REPAIR_BYTES_PER_SEC: u64 = 64 << 20;

/// The ReplicationMonitoring of a node: its repair sweeps and what they found.
pub(crate) struct ReplicationMonitoring {
    cx: Arc<Context>,
    /// Bytes per second of slices fetched for repairs at most.
    rate: u64,
    wake: tokio::sync::Notify,
    backlog: AtomicU64,
    repaired: AtomicU64,
    bytes: AtomicU64,
    checked: AtomicU64,
    /// Sweeps completed since the node started.
    sweeps: AtomicU64,
    /// Chunks the previous sweep found lacking, and since when. A chunk is repaired only when
    /// it has lacked slices for [`LACKING_GRACE`] (over several sweeps): a fresh put's slices
    /// are normally on their way from the writer, and fetching them too would only double
    /// the traffic.
    seen: std::sync::Mutex<std::collections::HashMap<Hash, Instant>>,
    /// Placement as of the previous sweep, and the nodes that have left it since the last
    /// sweep that found nothing lacking: a slice whose holder left will not be handed over
    /// by anyone, so it is repaired without waiting.
    placed_over: std::sync::Mutex<(Vec<NodeId>, Vec<NodeId>)>,
    /// Chunks to check at the next sweep (their versions just arrived).
    fresh: std::sync::Mutex<std::collections::HashSet<Hash>>,
    /// The next sweep checks every chunk record.
    full: std::sync::atomic::AtomicBool,
    /// When the last sweep over every chunk record started.
    last_full: std::sync::Mutex<Option<Instant>>,
    /// [`placement_digest`] of the placement the last completed sweep checked against
    /// (0 before the first).
    swept_over: AtomicU64,
}

/// A digest of a placement (its nodes, in order): two nodes that report the same one
/// checked their slices against the same placement.
pub(crate) fn placement_digest(nodes: &[NodeId]) -> u64 {
    // A
    let mut h = blake3::Hasher::new();
    h.update(b"ouro-placement-v1");
    for n in nodes {
        h.update(n);
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    // 0 means "no sweep yet".
    u64::from_le_bytes(first).max(1)
}

impl ReplicationMonitoring {
    /// The repairs of the node with context `cx`, fetching at most `rate` bytes per second.
    pub fn new(cx: Arc<Context>, rate: u64) -> Self {
        // A
        ReplicationMonitoring {
            cx,
            rate: rate.max(1),
            wake: Default::default(),
            backlog: Default::default(),
            repaired: Default::default(),
            bytes: Default::default(),
            checked: Default::default(),
            sweeps: Default::default(),
            seen: Default::default(),
            placed_over: Default::default(),
            fresh: Default::default(),
            full: Default::default(),
            last_full: Default::default(),
            swept_over: Default::default(),
        }
    }

    /// [`placement_digest`] of the placement the last completed sweep checked against: until
    /// it is the current placement's, this node's lacking slices are not known.
    pub fn swept_over(&self) -> u64 {
        // A
        self.swept_over.load(Ordering::Relaxed)
    }

    /// Asks for a sweep over every chunk record soon.
    pub fn wake(&self) {
        // A
        self.full.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Asks for these chunks (of versions that just arrived) to be checked soon.
    pub fn wake_for(&self, chunks: impl IntoIterator<Item = Hash>) {
        // A
        if let Ok(mut f) = self.fresh.lock() {
            f.extend(chunks);
        }
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

    /// Sweeps this node completed since it started (with or without an error).
    pub fn sweeps(&self) -> u64 {
        // A
        self.sweeps.load(Ordering::Relaxed)
    }

    /// Chunk records this node's sweeps have checked since it started: flat while the
    /// cluster is idle.
    pub fn checked(&self) -> u64 {
        // A
        self.checked.load(Ordering::Relaxed)
    }

    /// Sweeps forever.
    async fn repair_loop(self: Arc<Self>) {
        // A
        loop {
            let swept = self.sweep().await;
            self.sweeps.fetch_add(1, Ordering::Relaxed);
            match swept {
                Ok(0) => {
                    let _ = tokio::time::timeout(IDLE, self.wake.notified()).await;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "repair sweep");
                    tokio::time::sleep(IDLE).await;
                }
            }
        }
    }

    /// One pass over every chunk record, or over the chunks that are fresh or were lacking;
    /// returns how many lacked slices here.
    async fn sweep(self: &Arc<Self>) -> Result<u64> {
        // PA
        let nodes = self.cx.placement_nodes()?;
        let (departed, moved) = self
            .placed_over
            .lock()
            .map(|mut p| {
                let (prev, departed) = &mut *p;
                let moved = *prev != nodes;
                departed.extend(prev.iter().filter(|n| !nodes.contains(n)));
                departed.retain(|n| !nodes.contains(n));
                departed.sort_unstable();
                departed.dedup();
                *prev = nodes.clone();
                (departed.clone(), moved)
            })
            .unwrap_or_default();
        let overdue = self
            .last_full
            .lock()
            .map(|l| l.is_none_or(|t| t.elapsed() >= FULL_SWEEP_EVERY))
            .unwrap_or(true);
        let full = self.full.swap(false, Ordering::Relaxed) || moved || overdue;
        let fresh: Vec<Hash> = self
            .fresh
            .lock()
            .map(|mut f| f.drain().collect())
            .unwrap_or_default();
        let before = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut pass = Pass {
            before_departure: nodes.iter().chain(&departed).copied().collect(),
            nodes,
            departed,
            before,
            now_lacking: std::collections::HashMap::new(),
            lacking_chunks: 0,
            budget: Budget::new(self.rate),
        };
        if full {
            if let Ok(mut l) = self.last_full.lock() {
                *l = Some(Instant::now());
            }
            let mut after = None;
            loop {
                let cas = Arc::clone(self.cx.cas());
                let page =
                    blocking(move || Ok(cas.replica().chunk_widths_after(after, PAGE)?)).await?;
                let Some((last, _)) = page.last().copied() else {
                    break;
                };
                after = Some(last);
                for (chunk, width) in page {
                    pass.check(self, chunk, width).await?;
                }
            }
        } else {
            let mut chunks: Vec<Hash> = pass.before.keys().copied().chain(fresh).collect();
            chunks.sort_unstable();
            chunks.dedup();
            for chunk in chunks {
                let cas = Arc::clone(self.cx.cas());
                // A chunk gc freed since is no longer owed to anyone.
                if let Some(record) =
                    blocking(move || Ok(cas.replica().chunk_record(&chunk)?)).await?
                {
                    pass.check(self, chunk, record.slices.len()).await?;
                }
            }
        }
        let lacking_chunks = pass.lacking_chunks;
        self.backlog.store(lacking_chunks, Ordering::Relaxed);
        // A sweep whose placement moved was full, so every chunk was checked against `nodes`.
        self.swept_over
            .store(placement_digest(&pass.nodes), Ordering::Relaxed);
        if lacking_chunks == 0 {
            if let Ok(mut p) = self.placed_over.lock() {
                p.1.clear();
            }
        }
        if let Ok(mut s) = self.seen.lock() {
            *s = pass.now_lacking;
        }
        if lacking_chunks > 0 {
            tracing::info!(self = %short_id(&self.cx.me()), chunks = lacking_chunks, full, "repair sweep done");
        }
        Ok(lacking_chunks)
    }
}

impl Service for ReplicationMonitoring {
    fn name(&self) -> &'static str {
        // A
        "replication monitoring"
    }

    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        Some(Box::pin(self.repair_loop()))
    }

    fn answer(self: Arc<Self>, _peer: NodeId, req: Request) -> Claim {
        // A
        let Request::CheckChunks { chunks } = req else {
            return Claim::Theirs(req);
        };
        let r = if chunks.len() > crate::inventory_audit::MAX_CHECK {
            Err(ClusterError::Protocol(format!(
                "at most {} chunks per check",
                crate::inventory_audit::MAX_CHECK
            )))
        } else {
            self.wake_for(chunks);
            Ok(Response::Noted)
        };
        Claim::Mine(message(async move { r }))
    }
}

/// The state of one sweep.
struct Pass {
    nodes: Vec<NodeId>,
    departed: Vec<NodeId>,
    before_departure: Vec<NodeId>,
    /// Chunks the previous sweep found lacking, and since when.
    before: std::collections::HashMap<Hash, Instant>,
    now_lacking: std::collections::HashMap<Hash, Instant>,
    lacking_chunks: u64,
    budget: Budget,
}

impl Pass {
    /// Checks that this node holds the slices of `chunk` (which has `width` slices: k+m, or
    /// fewer for a chunk too small to split k ways) placement gives it, and repairs what it
    /// lacks once that has lasted [`LACKING_GRACE`] (at once when their holder left).
    async fn check(
        &mut self,
        rm: &Arc<ReplicationMonitoring>,
        chunk: Hash,
        width: usize,
    ) -> Result<()> {
        // PA
        rm.checked.fetch_add(1, Ordering::Relaxed);
        let placed = hash_to_node::place(&chunk, &self.nodes, width);
        let mine: Vec<u8> = (0..width as u8)
            .filter(|i| placed.get(*i as usize) == Some(&rm.cx.me()))
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let cas = Arc::clone(rm.cx.cas());
        let held = blocking(move || Ok(cas.replica().local_slices_held(&chunk)?)).await?;
        let lacking: Vec<u8> = mine.into_iter().filter(|i| !held.contains(i)).collect();
        if lacking.is_empty() {
            return Ok(());
        }
        self.lacking_chunks += 1;
        rm.backlog.fetch_max(self.lacking_chunks, Ordering::Relaxed);
        let since = self
            .before
            .get(&chunk)
            .copied()
            .unwrap_or_else(Instant::now);
        let holder_left = !self.departed.is_empty() && {
            let old = hash_to_node::place(&chunk, &self.before_departure, width);
            lacking.iter().any(|i| {
                old.get(*i as usize)
                    .is_some_and(|n| self.departed.contains(n))
            })
        };
        if !holder_left && since.elapsed() < LACKING_GRACE {
            self.now_lacking.insert(chunk, since);
            return Ok(());
        }
        tracing::debug!(chunk = %chunk.short(), ?lacking, "repairing");
        match repair_chunk(&rm.cx, chunk, &held, &lacking).await {
            Ok(bytes) => {
                tracing::debug!(chunk = %chunk.short(), slices = ?lacking, "repaired");
                rm.repaired
                    .fetch_add(lacking.len() as u64, Ordering::Relaxed);
                rm.bytes.fetch_add(bytes, Ordering::Relaxed);
                self.budget.spend(bytes).await;
            }
            Err(e) => {
                self.now_lacking.insert(chunk, since);
                tracing::debug!(chunk = %chunk.short(), error = %e, "repair waits");
            }
        }
        Ok(())
    }
}

/// Gets the slices `lacking` of a chunk onto this node: copied from a node that holds them,
/// else rebuilt from any k. Returns the bytes fetched.
async fn repair_chunk(cx: &Arc<Context>, chunk: Hash, held: &[u8], lacking: &[u8]) -> Result<u64> {
    // PA
    let cas = Arc::clone(cx.cas());
    let (record, condemned) = blocking(move || {
        cas.replica()
            .chunk_record_marked(&chunk)?
            .ok_or_else(|| ouroboros_db::Error::NotFound(format!("chunk {}", chunk.short())))
            .map_err(Into::into)
    })
    .await?;
    // The record's own k and width: a small chunk has fewer of both than the store's k+m.
    let k = usize::from(record.k);
    let n = record.slices.len();
    // Someone may still hold exactly these (an old placement, a writer with pending slices).
    let mut got = crate::fetch::fetch(cx, chunk, lacking.to_vec(), lacking.len()).await?;
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
        let given = crate::fetch::fetch(cx, chunk, others, need).await?;
        bytes += given.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        let cas = Arc::clone(cx.cas());
        let want = still.clone();
        let rebuilt =
            blocking(move || Ok(cas.replica().rebuild_slices(&chunk, &given, &want)?)).await?;
        got.extend(rebuilt);
    }
    got.retain(|(i, _)| lacking.contains(i));
    cx.custody().arriving(&chunk);
    let cas = Arc::clone(cx.cas());
    blocking(move || {
        // With its mark: if this node freed the sealing meanwhile, it comes back condemned.
        cas.replica()
            .accept_slices(&chunk, &record, condemned, &got)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_digests_tell_placements_apart_and_are_never_zero() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let d = placement_digest(&[a, b, c]);
        assert_eq!(d, placement_digest(&[a, b, c]));
        assert_ne!(d, placement_digest(&[a, b]), "a node left");
        assert_ne!(d, placement_digest(&[a, c, b]), "another order");
        assert_ne!(placement_digest(&[]), 0, "0 means no sweep yet");
    }
}
