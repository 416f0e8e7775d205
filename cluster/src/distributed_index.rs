//! DistributedIndex: metadata (versions, heads, tombstones, members) replicated to every
//! node. Each node pulls, from every live peer, the entries of the peer's blob log and
//! DeletionWAL after a cursor it keeps per peer; applying is idempotent and what is new is
//! logged again, so news also travels through intermediaries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ouroboros_db::Hash;

use crate::context::Context;
use crate::deletion_wal::DeletionWal;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::{short_id, NodeId};
use crate::message::{Request, Response};
use crate::replication_monitoring::ReplicationMonitoring;
use crate::service::{message, Claim, Service, Task};

/// Time between pulls from each peer when no heartbeat said its logs moved. News starts a
/// round at once, so this only bounds how late a missed wake-up or a failed pull is made
/// good, and how often members acknowledge WAL entries; polling faster cost an idle
/// 6-node cluster a request per peer pair every 400 ms.
pub const PULL_EVERY: Duration = Duration::from_secs(2);
/// Longest a pull from one peer may take before the round moves on to the next peer.
const PULL_AT_MOST: Duration = Duration::from_secs(5);
/// Time between member list pulls: a joining node is known everywhere within this (it
/// joins through one member, which has its record at once).
const MEMBERS_EVERY: Duration = Duration::from_secs(2);
const CURSOR: &[u8] = b"cur/";
/// Versions or deletions sent per pull.
const PAGE: usize = 512;

/// The DistributedIndex of a node: pulls its peers' logs and answers their pulls.
pub(crate) struct DistributedIndex {
    cx: Arc<Context>,
    /// Acknowledges the deletions members pulled, and learns when pulls end.
    wal: Arc<DeletionWal>,
    /// Checks the chunks of versions that arrive.
    repair: Arc<ReplicationMonitoring>,
    /// Bytes of `Changes` answers received (what convergence costs on the wire).
    replication_bytes: AtomicU64,
    /// Pulls now (a peer's news says its logs moved).
    wake: tokio::sync::Notify,
}

/// Where this node is in one peer's logs. `log` names the peer's logs: a peer restored from
/// a backup starts new ones (its sequence numbers repeat), and a cursor into the old ones
/// would skip entries, so a changed `log` starts the cursor over (cheap: hashes first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    log: Hash,
    blobs: u64,
    wal: u64,
}

impl DistributedIndex {
    /// The index of the node with context `cx`.
    pub fn new(
        cx: Arc<Context>,
        wal: Arc<DeletionWal>,
        repair: Arc<ReplicationMonitoring>,
    ) -> Self {
        // A
        DistributedIndex {
            cx,
            wal,
            repair,
            replication_bytes: AtomicU64::new(0),
            wake: Default::default(),
        }
    }

    /// Pulls from every live peer now (a peer's news says its logs moved).
    pub fn wake(&self) {
        // A
        self.wake.notify_one();
    }

    /// Counts `bytes` received to converge (SyncIndexTree's answers count too).
    pub fn count_bytes(&self, bytes: u64) {
        // A
        self.replication_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes received to converge since the node started.
    pub fn replication_bytes(&self) -> u64 {
        // A
        self.replication_bytes.load(Ordering::Relaxed)
    }

    /// The answer to a member's pull: what this node's logs hold after its cursors, which
    /// also acknowledge the deletions it has applied.
    async fn changes(self: Arc<Self>, peer: NodeId, blobs: u64, wal: u64) -> Result<Response> {
        // A
        self.wal.check_cursor(blobs, wal)?;
        self.wal.acknowledge(peer, wal);
        let cas = Arc::clone(self.cx.cas());
        let ((hashes, blobs), (entries, wal), log) = blocking(move || {
            Ok((
                cas.replica().version_hashes_since(blobs, PAGE)?,
                cas.replica().deletions_since(wal, PAGE)?,
                cas.replica().log_id()?,
            ))
        })
        .await?;
        Ok(Response::Changes {
            hashes,
            blobs,
            entries,
            wal,
            log,
        })
    }

    /// Pulls from every live peer forever: every [`PULL_EVERY`], and at once when a peer's
    /// heartbeat says its logs moved (a put elsewhere is then seen here within milliseconds).
    async fn replicate_loop(self: Arc<Self>) {
        // A
        let mut cursors: HashMap<NodeId, Cursor> = HashMap::new();
        let mut last_members = Instant::now() - MEMBERS_EVERY;
        loop {
            let _ = tokio::time::timeout(PULL_EVERY, self.wake.notified()).await;
            let members_due = last_members.elapsed() >= MEMBERS_EVERY;
            if members_due {
                last_members = Instant::now();
            }
            let peers: Vec<NodeId> = match self.cx.others() {
                Ok(o) => o
                    .into_iter()
                    .filter(|p| self.cx.tracker().is_alive(p))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the members: no pull this round");
                    continue;
                }
            };
            // One peer after the other: a version several peers announce at once is then
            // fetched whole from the first only (pulling in parallel fetched it from each).
            for peer in peers {
                let old = match cursors.get(&peer) {
                    Some(c) => *c,
                    None => load_cursor(self.cx.cas(), &peer),
                };
                let started = Instant::now();
                match tokio::time::timeout(PULL_AT_MOST, self.pull(&peer, old, members_due)).await {
                    Ok(Ok(cur)) => {
                        // Everything the peer had committed when the pull started is here now:
                        // what freeing condemned chunks waits for (src/deletion_wal.rs).
                        self.wal.pulled(peer, started);
                        cursors.insert(peer, cur);
                        continue;
                    }
                    // Refused for being away too long: the operator must act, so say it loudly.
                    Ok(Err(e)) if e.to_string().contains("tombstone horizon") => {
                        tracing::warn!(peer = %short_id(&peer), error = %e, "pull refused")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %short_id(&peer), error = %e, "pull failed")
                    }
                    Err(_) => tracing::debug!(peer = %short_id(&peer), "pull timed out"),
                }
                // A failed pull may have saved pages it applied: the next starts from the disk's.
                cursors.remove(&peer);
            }
        }
    }

    /// One round of pulls from `peer`; returns the new cursors, which it has saved.
    async fn pull(
        self: &Arc<Self>,
        peer: &NodeId,
        mut cur: Cursor,
        members: bool,
    ) -> Result<Cursor> {
        // A
        let mut saved = cur;
        if members {
            if let Response::Members { members, addrs } =
                self.cx.call(peer, &Request::Members).await?
            {
                for m in &members {
                    if let Err(e) = self.cx.members().merge_member(self.cx.info(), m) {
                        tracing::warn!(peer = %short_id(peer), error = %e, "ignored a member record");
                    }
                }
                for (n, a) in addrs {
                    if n != self.cx.me() && self.cx.members().addr(&n)?.is_none() {
                        self.cx.members().set_addr(&n, &a)?;
                    }
                }
            }
        }
        loop {
            let (blobs, wal) = (cur.blobs, cur.wal);
            let Response::Changes {
                hashes,
                blobs: b,
                entries,
                wal: w,
                log,
            } = self.cx.call(peer, &Request::Changes { blobs, wal }).await?
            else {
                return Err(ClusterError::Protocol("expected changes".into()));
            };
            if log != cur.log {
                if cur.blobs != 0 || cur.wal != 0 {
                    tracing::info!(peer = %short_id(peer), "peer's logs were restarted: pulling them from the start");
                }
                cur = Cursor {
                    log,
                    blobs: 0,
                    wal: 0,
                };
                if blobs != 0 || wal != 0 {
                    continue;
                }
            }
            if b == blobs && w == wal {
                break;
            }
            // Only what this node has not learned yet (from this peer or another) comes whole.
            let mut size = postcard::to_stdvec(&(&hashes, &entries)).map_or(0, |v| v.len() as u64);
            let cas = Arc::clone(self.cx.cas());
            let unknown = blocking(move || Ok(cas.replica().unknown_versions(&hashes)?)).await?;
            let records = if unknown.is_empty() {
                Vec::new()
            } else {
                let Response::Versions(records) = self
                    .cx
                    .call(peer, &Request::Versions { hashes: unknown })
                    .await?
                else {
                    return Err(ClusterError::Protocol("expected versions".into()));
                };
                size += postcard::to_stdvec(&records).map_or(0, |v| v.len() as u64);
                records
            };
            self.count_bytes(size);
            let chunks: Vec<Hash> = records
                .iter()
                .flat_map(|r| r.chunks.iter().map(|(id, _)| *id))
                .collect();
            let cas = Arc::clone(self.cx.cas());
            let next = Cursor {
                blobs: b,
                wal: w,
                ..cur
            };
            let from = *peer;
            let n = blocking(move || {
                let n = cas.replica().import_versions(&records)?;
                // Versions first: a deletion may name a version that arrives in the same page.
                cas.replica().import_deletions(&entries)?;
                // The cursor goes to disk with what it covers, not after the pull's last round
                // trip: a node killed in between would come back with a cursor below what it
                // holds (at 0, it would even pass for a new node).
                save_cursor(&cas, &from, next);
                Ok(n)
            })
            .await?;
            saved = next;
            if n > 0 {
                tracing::debug!(peer = %short_id(peer), new = n, "versions replicated");
            }
            if !chunks.is_empty() {
                // New chunks may owe this node slices (and a record adopted over this node's own
                // sealing leaves it without the winner's): check them soon.
                self.repair.wake_for(chunks);
            }
            cur.blobs = b;
            cur.wal = w;
        }
        // Moved without a page: the peer's logs were restarted and hold nothing yet.
        if cur != saved {
            save_cursor(self.cx.cas(), peer, cur);
        }
        Ok(cur)
    }
}

impl Service for DistributedIndex {
    fn name(&self) -> &'static str {
        // A
        "distributed index"
    }

    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        Some(Box::pin(self.replicate_loop()))
    }

    fn answer(self: Arc<Self>, peer: NodeId, req: Request) -> Claim {
        // A
        match req {
            Request::Changes { blobs, wal } => Claim::Mine(message(self.changes(peer, blobs, wal))),
            Request::Versions { hashes } => {
                let cas = Arc::clone(self.cx.cas());
                Claim::Mine(message(async move {
                    if hashes.len() > PAGE {
                        return Err(ClusterError::Protocol(format!(
                            "at most {PAGE} versions per request"
                        )));
                    }
                    let records = blocking(move || Ok(cas.replica().versions_by_hash(&hashes)?));
                    Ok(Response::Versions(records.await?))
                }))
            }
            other => Claim::Theirs(other),
        }
    }
}

fn load_cursor(cas: &ouroboros_db::Cas, peer: &NodeId) -> Cursor {
    // A
    match cas
        .replica()
        .cluster_record(&[CURSOR, peer.as_slice()].concat())
    {
        Ok(Some(b)) if b.len() == 48 => {
            let mut a = [0u8; 8];
            let mut c = [0u8; 8];
            let mut log = [0u8; 32];
            a.copy_from_slice(&b[..8]);
            c.copy_from_slice(&b[8..16]);
            log.copy_from_slice(&b[16..]);
            Cursor {
                log: Hash(log),
                blobs: u64::from_le_bytes(a),
                wal: u64::from_le_bytes(c),
            }
        }
        _ => Cursor::default(),
    }
}

fn save_cursor(cas: &ouroboros_db::Cas, peer: &NodeId, cur: Cursor) {
    // A
    let mut v = cur.blobs.to_le_bytes().to_vec();
    v.extend_from_slice(&cur.wal.to_le_bytes());
    v.extend_from_slice(&cur.log.0);
    let r = cas
        .replica()
        .put_cluster_record(&[CURSOR, peer.as_slice()].concat(), &v);
    if let Err(e) = r {
        tracing::warn!(error = %e, "saving a replication cursor");
    }
}
