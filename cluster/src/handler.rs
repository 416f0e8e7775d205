//! Requests from peers: every connection was authenticated by the TLS handshake against
//! the pin set; here a member may ask for metadata and slices, and a holder of an open
//! invitation may only ask to join.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::controller::Node;
use crate::error::{ClusterError, Result};
use crate::membership::{now_nanos, short_id, MemberRecord, NodeId};
use crate::message::{
    read_frame_within, write_frame, FrameError, LogEnds, NodeNews, Request, Response, SliceWant,
};
use crate::slices_many::Found;
use crate::tunnel;

/// Requests one connection may have in progress: a peer that sends faster than this node
/// answers waits (QUIC flow control holds it), instead of growing this node's memory.
pub const PER_CONNECTION: usize = 32;
/// Bytes of requests being read from all peers at once, in KiB (256 MiB): with the largest
/// frame at 64 MiB, at least four are always possible.
pub const READ_BUDGET_KIB: usize = 256 * 1024;
/// The share of [`READ_BUDGET_KIB`] one peer may hold (128 MiB, two of the largest frames),
/// over all its connections: a peer that stalls or floods leaves the rest to the others.
pub const PEER_BUDGET_KIB: usize = READ_BUDGET_KIB / 2;
/// Connections one key may have open to this node at once (a node needs one, a few while
/// it restarts or after calls that timed out): a further one closes the oldest, with the
/// reason `too many connections`, so a flood keeps at most this many.
pub const MAX_PEER_CONNECTIONS: usize = 4;
/// Versions or deletions sent per pull.
const PAGE: usize = 512;

const _: () = assert!(PEER_BUDGET_KIB >= crate::message::MAX_FRAME as usize / 1024);

/// Per-key limits: the connections a key opened to this node, and its share of the read
/// budget. Entries stay (one per key that ever passed the handshake: members and
/// invitations, a short list).
#[derive(Default)]
pub(crate) struct PeerLimits {
    peers: Mutex<HashMap<NodeId, PeerSlot>>,
}

struct PeerSlot {
    /// Open connections, oldest first.
    open: Vec<quinn::Connection>,
    budget: Arc<Semaphore>,
}

impl PeerLimits {
    fn with<T>(&self, peer: &NodeId, f: impl FnOnce(&mut PeerSlot) -> T) -> T {
        // A
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let slot = peers.entry(*peer).or_insert_with(|| PeerSlot {
            open: Vec::new(),
            budget: Arc::new(Semaphore::new(PEER_BUDGET_KIB)),
        });
        f(slot)
    }

    /// The read budget `peer`'s requests share.
    fn budget(&self, peer: &NodeId) -> Arc<Semaphore> {
        // A
        self.with(peer, |s| Arc::clone(&s.budget))
    }
}

/// One counted connection from a peer; uncounted when dropped.
struct ConnectionSlot {
    node: Arc<Node>,
    peer: NodeId,
    id: usize,
}

impl ConnectionSlot {
    /// Counts a connection from `peer`; when the peer already has
    /// [`MAX_PEER_CONNECTIONS`] open, closes its oldest.
    fn take(node: &Arc<Node>, peer: NodeId, conn: &quinn::Connection) -> Self {
        // A
        node.limits.with(&peer, |s| {
            s.open.retain(|c| c.close_reason().is_none());
            if s.open.len() >= MAX_PEER_CONNECTIONS {
                let oldest = s.open.remove(0);
                oldest.close(4u32.into(), b"too many connections");
                tracing::debug!(peer = %short_id(&peer), "closed a connection over the limit");
            }
            s.open.push(conn.clone());
        });
        ConnectionSlot {
            node: Arc::clone(node),
            peer,
            id: conn.stable_id(),
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        // A
        self.node
            .limits
            .with(&self.peer, |s| s.open.retain(|c| c.stable_id() != self.id));
    }
}

/// What a connected peer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Member,
    Invited,
}

/// An answer to a peer: a message, or a `SlicesMany` frame as pieces (`slices_many`).
enum Answer {
    Message(Response),
    Pieces(Vec<Bytes>),
}

/// Accepts connections until the endpoint closes.
pub async fn accept_loop(node: Arc<Node>) {
    // A
    while let Some(incoming) = node.endpoint.accept().await {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(node, incoming).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

async fn serve_connection(node: Arc<Node>, incoming: quinn::Incoming) -> Result<()> {
    // PA
    let conn = incoming
        .await
        .map_err(|e| ClusterError::Protocol(format!("handshake refused: {e}")))?;
    let peer = tunnel::peer_key(&conn)
        .ok_or_else(|| ClusterError::Protocol("peer without a key".into()))?;
    let role = if node.members.is_member(&peer) {
        Role::Member
    } else if node.members.is_open_invite(&peer) {
        Role::Invited
    } else {
        conn.close(3u32.into(), b"not a member");
        return Err(ClusterError::Protocol(format!(
            "refused {}",
            short_id(&peer)
        )));
    };
    let _slot = ConnectionSlot::take(&node, peer, &conn);
    if role == Role::Member {
        node.adopt(&peer, &conn);
    }
    serve_streams(node, conn, peer, role).await
}

/// Serves a member's requests on a connection this node opened to it.
pub(crate) async fn serve_member(node: Arc<Node>, conn: quinn::Connection, peer: NodeId) {
    // A
    if let Err(e) = serve_streams(node, conn, peer, Role::Member).await {
        tracing::trace!(error = %e, "outgoing connection ended");
    }
}

async fn serve_streams(
    node: Arc<Node>,
    conn: quinn::Connection,
    peer: NodeId,
    role: Role,
) -> Result<()> {
    // PA
    if role == Role::Member {
        if let Ok(mut inc) = node.incoming.lock() {
            inc.push((peer, conn.clone()));
        }
    }
    let limit = Arc::new(Semaphore::new(PER_CONNECTION));
    let budget = node.limits.budget(&peer);
    loop {
        let (mut send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| ClusterError::Protocol(format!("{}: {e}", short_id(&peer))))?;
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .map_err(|_| ClusterError::Protocol("closing".into()))?;
        let node = Arc::clone(&node);
        let budget = Arc::clone(&budget);
        tokio::spawn(async move {
            let _permit = permit;
            let wait = node.request_timeout();
            let budgets = [&*budget, &node.read_budget];
            let read = read_frame_within::<Request>(&mut recv, &budgets);
            let answer = match tokio::time::timeout(wait, read).await {
                // Slices go out where they are, without one more copy into a frame.
                Ok(Ok(Request::GetSlicesMany { items })) if role == Role::Member => {
                    match held_slices(&node, items)
                        .await
                        .and_then(|found| crate::slices_many::frame_pieces(&found))
                    {
                        Ok(pieces) => Answer::Pieces(pieces),
                        Err(e) => Answer::Message(Response::Error(e.to_string())),
                    }
                }
                Ok(Ok(req)) => Answer::Message(
                    handle(&node, role, peer, req)
                        .await
                        .unwrap_or_else(|e| Response::Error(e.to_string())),
                ),
                Ok(Err(e)) => Answer::Message(Response::Error(e.to_string())),
                Err(_) => Answer::Message(Response::Error(
                    ClusterError::from(FrameError::Timeout(wait)).to_string(),
                )),
            };
            let write = async {
                match answer {
                    Answer::Message(r) => write_frame(&mut send, &r).await,
                    Answer::Pieces(mut pieces) => send
                        .write_all_chunks(&mut pieces)
                        .await
                        .map_err(|e| ClusterError::Protocol(format!("writing a frame: {e}"))),
                }
            };
            // A peer that does not take its answer gives the permit back after `wait` too.
            if tokio::time::timeout(wait, write).await.is_ok() {
                let _ = send.finish();
            } else {
                let _ = send.reset(0u32.into());
            }
        });
    }
}

/// Bytes of slices past which a `GetSlicesMany` answer takes no more chunks.
const ANSWER_BUDGET: usize = 16 << 20;

/// The slices a `GetSlicesMany` asks for that this node holds, chunk by chunk.
async fn held_slices(node: &Node, items: Vec<SliceWant>) -> Result<Found> {
    // A
    if items.len() > crate::message::MAX_ITEMS {
        return Err(ClusterError::Protocol(format!(
            "{} chunks in one request; at most {}",
            items.len(),
            crate::message::MAX_ITEMS
        )));
    }
    let cas = Arc::clone(&node.cas);
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

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    // A
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClusterError::Protocol(format!("worker failed: {e}")))?
}

/// This node's news for a heartbeat.
pub(crate) fn news(node: &Node) -> NodeNews {
    // A
    NodeNews {
        addr: node.addr.clone(),
        chunks_held: node.router.chunks_held(),
        free_bytes: node.cas.replica().lmdb().free_bytes().unwrap_or(0),
        pending_chunks: node.router.pending(),
        repair_backlog: node.repair.backlog(),
        repaired_slices: node.repair.repaired(),
        repair_bytes: node.repair.bytes(),
        replication_bytes: node
            .replication_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        tombstones: node.wal.held(),
        swept_over: node.repair.swept_over(),
        logs: node
            .cas
            .replica()
            .log_ends()
            .map(|(log, blobs, wal)| LogEnds { log, blobs, wal })
            .unwrap_or_default(),
    }
}

async fn handle(node: &Arc<Node>, role: Role, peer: NodeId, req: Request) -> Result<Response> {
    // PA
    if role == Role::Invited {
        return match req {
            Request::Join { node: new, addr } => admit(node, peer, new, addr).await,
            _ => Err(ClusterError::Protocol("an invitation may only join".into())),
        };
    }
    let cas = Arc::clone(&node.cas);
    Ok(match req {
        Request::Hello(n) => {
            check_addr(&n.addr)?;
            node.members.set_addr(&peer, &n.addr)?;
            if node.tracker.seen(peer, n) {
                node.replicate_wake.notify_one();
            }
            Response::Hello(news(node))
        }
        Request::Changes { blobs, wal } => {
            crate::deletion_wal::check_cursor(node, blobs, wal)?;
            node.wal.acknowledge(peer, wal);
            let ((hashes, blobs), (entries, wal), log) = blocking(move || {
                Ok((
                    cas.replica().version_hashes_since(blobs, PAGE)?,
                    cas.replica().deletions_since(wal, PAGE)?,
                    cas.replica().log_id()?,
                ))
            })
            .await?;
            Response::Changes {
                hashes,
                blobs,
                entries,
                wal,
                log,
            }
        }
        Request::Members => members_response(node)?,
        Request::SyncTree { prefix } => {
            blocking(move || crate::sync_index_tree::answer(&cas, &prefix)).await?
        }
        Request::InventoryTree { prefix } => {
            blocking(move || crate::inventory_audit::answer(&cas, &prefix)).await?
        }
        Request::CheckChunks { chunks } => {
            if chunks.len() > crate::inventory_audit::MAX_CHECK {
                return Err(ClusterError::Protocol(format!(
                    "at most {} chunks per check",
                    crate::inventory_audit::MAX_CHECK
                )));
            }
            node.repair.wake_for(chunks);
            Response::Noted
        }
        Request::Versions { hashes } => {
            if hashes.len() > PAGE {
                return Err(ClusterError::Protocol(format!(
                    "at most {PAGE} versions per request"
                )));
            }
            Response::Versions(
                blocking(move || Ok(cas.replica().versions_by_hash(&hashes)?)).await?,
            )
        }
        Request::PutSlices {
            chunk,
            record,
            slices,
            condemned,
        } => {
            let delivery = ouroboros_db::cas::SliceDelivery {
                id: chunk,
                record,
                condemned,
                slices: crate::message::from_wire(slices),
            };
            match node.accepts.submit(delivery).await? {
                None => {
                    node.router.wake();
                    Response::Stored
                }
                Some((winner, dead)) => Response::Superseded(winner, dead),
            }
        }
        Request::GetSlices { chunk, mut wanted } => {
            // One copy of each slice, however often the request names it.
            wanted.sort_unstable();
            wanted.dedup();
            Response::Slices(crate::message::to_wire(
                blocking(move || Ok(cas.replica().local_slices(&chunk, &wanted)?)).await?,
            ))
        }
        Request::Join { .. } => return Err(ClusterError::Protocol("already a member".into())),
        // Answered as pieces by `serve_streams` (`held_slices`).
        Request::GetSlicesMany { .. } => {
            return Err(ClusterError::Protocol("slices are answered apart".into()))
        }
        Request::Fetch { .. } | Request::FetchMany { .. } | Request::Flush | Request::Status => {
            return Err(ClusterError::Protocol(
                "control requests go to the local socket".into(),
            ))
        }
    })
}

/// Member records and known addresses.
pub(crate) fn members_response(node: &Node) -> Result<Response> {
    // A
    let members = node.members.members()?;
    let addrs = members
        .iter()
        .filter_map(|m| {
            node.members
                .addr(&m.node)
                .ok()
                .flatten()
                .map(|a| (m.node, a))
        })
        .collect();
    Ok(Response::Members { members, addrs })
}

/// Refuses an address a peer announces that is no `ip:port` socket address.
fn check_addr(addr: &str) -> Result<()> {
    // A
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| {
            ClusterError::Protocol(format!(
                "announced address {:?} is not a socket address",
                addr.chars().take(64).collect::<String>()
            ))
        })
}

/// Admits a node that presented an open invitation, once.
async fn admit(node: &Arc<Node>, invite: NodeId, new: NodeId, addr: String) -> Result<Response> {
    // PA
    let admin = node
        .admin
        .as_ref()
        .ok_or(crate::error::ClusterError::NotAdmin)?;
    check_addr(&addr)?;
    if !node.members.claim_invite(&invite)? {
        return Err(ClusterError::Token("already used or expired".into()));
    }
    let admitted = now_nanos();
    let msg = crate::membership::member_message(&node.info.cluster_id, &new, admitted);
    let rec = MemberRecord {
        node: new,
        admitted,
        sig: admin.sign(&msg).to_vec(),
        revoked: None,
    };
    node.members.merge_member(&node.info, &rec)?;
    node.members.set_addr(&new, &addr)?;
    tracing::info!(node = %short_id(&new), %addr, "admitted a new node");
    let cas = Arc::clone(&node.cas);
    let seed = blocking(move || Ok(cas.replica().replica_seed()?)).await?;
    let Response::Members { members, addrs } = members_response(node)? else {
        return Err(ClusterError::Protocol("members".into()));
    };
    Ok(Response::Joined {
        seed,
        info: node.info.clone(),
        members,
        addrs,
    })
}
