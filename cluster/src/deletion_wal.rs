//! DeletionWAL, cluster side: acknowledgement and compaction of tombstones. Every member
//! pulls this node's WAL with a `Changes` request that carries its cursor, the sequence it
//! has applied up to: that is its acknowledgement. Entries every member has acknowledged
//! are compacted. A member silent for longer than the horizon (`--tombstone-horizon`) stops
//! holding them back; should it return, its pulls from below the floor are refused, and it
//! must be wiped and rejoin (it may hold versions deleted while it was away).
//!
//! The same acknowledgements free condemned chunks (`src/cas/condemn.rs`): a round takes
//! the sequence every member has applied, waits until this node has pulled every member's
//! logs to their end in pulls that started after that, then frees the condemned sealings
//! logged up to that sequence that no live version here uses. A member marks a sealing
//! before it acknowledges its entry and never deduplicates against it afterwards, and a
//! version that used it before is in that member's log before the acknowledgement: so
//! the pulls bring every such version here, and its count keeps the chunk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::NodeId;
use crate::service::{Service, Task};

/// Default of `--tombstone-horizon`: a member silent this long no longer holds back the
/// compaction of tombstones.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);
/// Time between compaction rounds.
const COMPACT_EVERY: Duration = Duration::from_secs(2);

/// The DeletionWAL of a node, cluster side: members' acknowledgements, compaction and
/// the freeing of condemned chunks, and the WAL's size for `cluster status`.
pub(crate) struct DeletionWal {
    cx: Arc<Context>,
    /// Per member, the cursor of its latest `Changes` request; `None` until its second
    /// request since this node started (a first one may carry a cursor into this node's
    /// logs from before a restore, which the answer makes it drop).
    acks: Mutex<HashMap<NodeId, Option<u64>>>,
    /// How long a silent member holds back compaction.
    horizon: Duration,
    held: AtomicU64,
    floor: AtomicU64,
    /// Per member, when the last pull from it that reached the end of its logs started.
    pulls: Mutex<HashMap<NodeId, Instant>>,
    /// Per member, how many pulls from it reached the end of its logs since this node
    /// started (`cluster status`: a check that nothing came back waits for two more).
    pull_counts: Mutex<HashMap<NodeId, u64>>,
    /// Condemned sealings marked here (refreshed every round).
    condemned: AtomicU64,
    /// Condemned chunks freed here since the node started.
    freed: AtomicU64,
    /// Compaction and freeing rounds completed since the node started.
    rounds: AtomicU64,
}

impl DeletionWal {
    /// The WAL of the node with context `cx`, whose silent members hold tombstones back for
    /// `horizon`.
    pub fn new(cx: Arc<Context>, horizon: Duration) -> Self {
        // A
        DeletionWal {
            cx,
            acks: Mutex::new(HashMap::new()),
            horizon,
            held: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            pulls: Mutex::new(HashMap::new()),
            pull_counts: Mutex::new(HashMap::new()),
            condemned: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
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

    /// Records that a pull from `peer` which started at `started` reached the end of its
    /// logs.
    pub(crate) fn pulled(&self, peer: NodeId, started: Instant) {
        // PA
        if let Ok(mut p) = self.pulls.lock() {
            p.insert(peer, started);
        }
        if let Ok(mut c) = self.pull_counts.lock() {
            *c.entry(peer).or_default() += 1;
        }
    }

    /// Pulls from `peer` that reached the end of its logs since this node started.
    pub fn pulls_from(&self, peer: &NodeId) -> u64 {
        // A
        self.pull_counts
            .lock()
            .ok()
            .and_then(|c| c.get(peer).copied())
            .unwrap_or(0)
    }

    /// Condemned sealings marked here.
    pub fn condemned(&self) -> u64 {
        // A
        self.condemned.load(Ordering::Relaxed)
    }

    /// Condemned chunks freed here since the node started.
    pub fn freed(&self) -> u64 {
        // A
        self.freed.load(Ordering::Relaxed)
    }

    /// Rounds of compaction and freeing completed since the node started.
    pub fn rounds(&self) -> u64 {
        // A
        self.rounds.load(Ordering::Relaxed)
    }

    fn pulled_since(&self, peer: &NodeId, t: Instant) -> bool {
        // PA
        self.pulls
            .lock()
            .ok()
            .and_then(|p| p.get(peer).copied())
            .is_some_and(|s| s > t)
    }

    fn ack(&self, peer: &NodeId) -> Option<u64> {
        // A
        self.acks
            .lock()
            .ok()
            .and_then(|a| a.get(peer).copied().flatten())
    }

    /// Refuses a pull from below the compaction floor: the tombstones it would need are gone.
    /// A pull with both cursors at 0 is a new node's first: it learns no removed version, so
    /// it needs none of them.
    pub(crate) fn check_cursor(&self, blobs: u64, cursor: u64) -> Result<()> {
        // PA
        let floor = self.floor();
        // A cursor at a condemnation kept below the floor came from a page that ended there.
        let kept = || {
            self.cx
                .cas()
                .replica()
                .holds_deletion(cursor)
                .unwrap_or(false)
        };
        if (cursor > 0 || blobs > 0) && cursor < floor && !kept() {
            return Err(ClusterError::Protocol(format!(
                "this self's deletion log was compacted past your cursor ({cursor} < {floor}): you were away longer than the tombstone horizon; wipe this self's store and rejoin with a new token"
            )));
        }
        Ok(())
    }

    /// The members whose acknowledgements count: all but those silent for longer than the
    /// horizon.
    fn counted_members(&self) -> Result<Vec<NodeId>> {
        // PA
        let mut m: Vec<NodeId> = self
            .cx
            .others()?
            .into_iter()
            .filter(|p| self.cx.tracker().silence(p) <= self.horizon)
            .collect();
        m.sort_unstable();
        Ok(m)
    }

    /// The sequence every member has applied, or `None` while some member's (or the member
    /// list) is unknown. Members silent for longer than the horizon are left out.
    fn acknowledged_by_all(&self) -> Option<u64> {
        // PA
        let mut floor = u64::MAX;
        for peer in self.counted_members().ok()? {
            floor = floor.min(self.ack(&peer)?);
        }
        Some(floor)
    }

    /// Compacts acknowledged tombstones and frees condemned chunks forever.
    async fn compact_loop(self: Arc<Self>) {
        // A
        let mut tick = tokio::time::interval(COMPACT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round = None;
        loop {
            tick.tick().await;
            if let Err(e) = self.compact_once().await {
                tracing::warn!(error = %e, "compacting tombstones");
            }
            if let Err(e) = self.free_once(&mut round).await {
                tracing::warn!(error = %e, "freeing condemned chunks");
                round = None;
            }
            self.rounds.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One step of freeing: start a round, or finish it once every member was pulled since.
    async fn free_once(self: &Arc<Self>, round: &mut Option<Round>) -> Result<()> {
        // PA
        let cas = Arc::clone(self.cx.cas());
        let marks = blocking(move || Ok(cas.replica().condemned_count()?)).await?;
        self.condemned.store(marks, Ordering::Relaxed);
        if marks == 0 {
            *round = None;
            return Ok(());
        }
        let members = self.counted_members()?;
        let Some(r) = round.as_ref() else {
            if let Some(through) = self.acknowledged_by_all() {
                *round = Some(Round {
                    through,
                    started: Instant::now(),
                    members,
                });
            }
            return Ok(());
        };
        // A member that joined since may have deduplicated against a sealing before it marked
        // it: its acknowledgement is needed too.
        if r.members != members || r.started.elapsed() > ROUND_AT_MOST {
            *round = None;
            return Ok(());
        }
        if !members.iter().all(|p| self.pulled_since(p, r.started)) {
            return Ok(());
        }
        let through = r.through;
        let horizon = self.horizon;
        let cas = Arc::clone(self.cx.cas());
        let report = blocking(move || {
            // Counts must say how many live versions use a chunk here: removed versions let go
            // of their chunks first (gc's first step, without the gc lock: it frees nothing).
            cas.replica()
                .release_removed(&ouroboros_db::progress::NoProgress)?;
            Ok(cas.replica().free_condemned(through, horizon)?)
        })
        .await?;
        // A put holds the gc lock: the round stays, and the next tick tries again.
        let Some(report) = report else {
            return Ok(());
        };
        *round = None;
        self.freed.fetch_add(report.chunks_freed, Ordering::Relaxed);
        if report.chunks_freed > 0 || report.marks_dropped > 0 {
            tracing::info!(
                freed = report.chunks_freed,
                bytes = report.bytes_freed,
                dropped = report.marks_dropped,
                still_used = report.still_used,
                "freed condemned chunks every member acknowledged"
            );
        }
        Ok(())
    }

    /// One round: drop what every member acknowledged, refresh the counters.
    async fn compact_once(self: &Arc<Self>) -> Result<()> {
        // PA
        let through = self.acknowledged_by_all();
        let cas = Arc::clone(self.cx.cas());
        let (dropped, (held, floor)) = blocking(move || {
            let dropped = match through {
                Some(t) => cas.replica().compact_deletions(t)?,
                None => 0,
            };
            Ok((dropped, cas.replica().tombstones()?))
        })
        .await?;
        if dropped > 0 {
            tracing::info!(dropped, floor, "compacted tombstones every member has");
        }
        self.held.store(held, Ordering::Relaxed);
        self.floor.store(floor, Ordering::Relaxed);
        Ok(())
    }
}

// Answers nothing: its entries travel in DistributedIndex's `Changes`, which acknowledges
// them here.
impl Service for DeletionWal {
    fn name(&self) -> &'static str {
        // A
        "deletion WAL"
    }

    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        Some(Box::pin(self.compact_loop()))
    }
}

/// A freeing round: the sequence every member had applied when it started, and who the
/// members were.
struct Round {
    through: u64,
    started: Instant,
    members: Vec<NodeId>,
}

/// A round waits this long at most for its pulls, then starts over.
const ROUND_AT_MOST: Duration = Duration::from_secs(60);
