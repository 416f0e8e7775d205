//! Requests from peers: every connection was authenticated by the TLS handshake against
//! the pin set; here a member may ask for metadata and slices, and a holder of an open
//! invitation may only ask to join.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::controller::Node;
use crate::error::{ClusterError, Result};
use crate::membership::{now_nanos, short_id, MemberRecord, NodeId};
use crate::message::{read_frame_within, write_frame, NodeNews, Request, Response};
use crate::tunnel;

/// Requests one connection may have in progress: a peer that sends faster than this node
/// answers waits (QUIC flow control holds it), instead of growing this node's memory.
const PER_CONNECTION: usize = 32;
/// Bytes of requests being read from all peers at once, in KiB (256 MiB): with the largest
/// frame at 64 MiB, at least four are always possible.
pub const READ_BUDGET_KIB: usize = 256 * 1024;
/// Versions or deletions sent per pull.
const PAGE: usize = 512;

/// What a connected peer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Member,
    Invited,
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
        tokio::spawn(async move {
            let _permit = permit;
            let resp = match read_frame_within::<Request>(&mut recv, &node.read_budget).await {
                Ok(req) => handle(&node, role, peer, req)
                    .await
                    .unwrap_or_else(|e| Response::Error(e.to_string())),
                Err(e) => Response::Error(e.to_string()),
            };
            let _ = write_frame(&mut send, &resp).await;
            let _ = send.finish();
        });
    }
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
        free_bytes: node.cas.lmdb().free_bytes().unwrap_or(0),
        pending_chunks: node.router.pending(),
        repair_backlog: node.repair.backlog(),
        repaired_slices: node.repair.repaired(),
        repair_bytes: node.repair.bytes(),
        replication_bytes: node
            .replication_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
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
            node.members.set_addr(&peer, &n.addr)?;
            node.tracker.seen(peer, n);
            Response::Hello(news(node))
        }
        Request::Changes { blobs, wal } => {
            let ((hashes, blobs), (entries, wal), log) = blocking(move || {
                Ok((
                    cas.version_hashes_since(blobs, PAGE)?,
                    cas.deletions_since(wal, PAGE)?,
                    cas.log_id()?,
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
        Request::Versions { hashes } => {
            if hashes.len() > PAGE {
                return Err(ClusterError::Protocol(format!(
                    "at most {PAGE} versions per request"
                )));
            }
            Response::Versions(blocking(move || Ok(cas.versions_by_hash(&hashes)?)).await?)
        }
        Request::PutSlices {
            chunk,
            record,
            slices,
        } => {
            let slices = crate::message::from_wire(slices);
            blocking(move || Ok(cas.accept_slices(&chunk, &record, &slices)?)).await?;
            node.router.wake();
            Response::Stored
        }
        Request::GetSlices { chunk, wanted } => Response::Slices(crate::message::to_wire(
            blocking(move || Ok(cas.local_slices(&chunk, &wanted)?)).await?,
        )),
        Request::Join { .. } => return Err(ClusterError::Protocol("already a member".into())),
        Request::Fetch { .. } | Request::Flush | Request::Status => {
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

/// Admits a node that presented an open invitation, once.
async fn admit(node: &Arc<Node>, invite: NodeId, new: NodeId, addr: String) -> Result<Response> {
    // PA
    let admin = node
        .admin
        .as_ref()
        .ok_or(crate::error::ClusterError::NotAdmin)?;
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
    let seed = blocking(move || Ok(cas.replica_seed()?)).await?;
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
