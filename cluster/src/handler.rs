//! MessageTunnel, serving side: connections from peers, each authenticated by the TLS
//! handshake against the pin set, limited per peer, their requests read within a budget and
//! answered by the service each belongs to (`service`). A member may ask anything but to
//! join; a holder of an open invitation may only ask to join.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::context::Context;
use crate::error::{ClusterError, Result};
use crate::membership::{short_id, NodeId};
use crate::message::{read_frame_within, write_frame, FrameError, Request, Response};
use crate::service::{Answer, Services};
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
    cx: Arc<Context>,
    peer: NodeId,
    id: usize,
}

impl ConnectionSlot {
    /// Counts a connection from `peer`; when the peer already has
    /// [`MAX_PEER_CONNECTIONS`] open, closes its oldest.
    fn take(cx: &Arc<Context>, peer: NodeId, conn: &quinn::Connection) -> Self {
        // A
        cx.limits().with(&peer, |s| {
            s.open.retain(|c| c.close_reason().is_none());
            if s.open.len() >= MAX_PEER_CONNECTIONS {
                let oldest = s.open.remove(0);
                oldest.close(4u32.into(), b"too many connections");
                tracing::debug!(peer = %short_id(&peer), "closed a connection over the limit");
            }
            s.open.push(conn.clone());
        });
        ConnectionSlot {
            cx: Arc::clone(cx),
            peer,
            id: conn.stable_id(),
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        // A
        self.cx
            .limits()
            .with(&self.peer, |s| s.open.retain(|c| c.stable_id() != self.id));
    }
}

/// What a connected peer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Member,
    Invited,
}

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept_loop(cx: Arc<Context>) {
    // A
    while let Some(incoming) = cx.endpoint().accept().await {
        let cx = Arc::clone(&cx);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(cx, incoming).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

async fn serve_connection(cx: Arc<Context>, incoming: quinn::Incoming) -> Result<()> {
    // PA
    let conn = incoming
        .await
        .map_err(|e| ClusterError::Protocol(format!("handshake refused: {e}")))?;
    let peer = tunnel::peer_key(&conn)
        .ok_or_else(|| ClusterError::Protocol("peer without a key".into()))?;
    let role = if cx.members().is_member(&peer) {
        Role::Member
    } else if cx.members().is_open_invite(&peer) {
        Role::Invited
    } else {
        conn.close(3u32.into(), b"not a member");
        return Err(ClusterError::Protocol(format!(
            "refused {}",
            short_id(&peer)
        )));
    };
    let _slot = ConnectionSlot::take(&cx, peer, &conn);
    if role == Role::Member {
        cx.adopt(&peer, &conn);
    }
    serve_streams(cx, conn, peer, role).await
}

/// Serves a member's requests on a connection this node opened to it.
pub(crate) async fn serve_member(cx: Arc<Context>, conn: quinn::Connection, peer: NodeId) {
    // A
    if let Err(e) = serve_streams(cx, conn, peer, Role::Member).await {
        tracing::trace!(error = %e, "outgoing connection ended");
    }
}

async fn serve_streams(
    cx: Arc<Context>,
    conn: quinn::Connection,
    peer: NodeId,
    role: Role,
) -> Result<()> {
    // PA
    if role == Role::Member {
        cx.note_incoming(peer, &conn);
    }
    let services = cx
        .services()
        .ok_or_else(|| ClusterError::Protocol("the node is stopping".into()))?;
    let limit = Arc::new(Semaphore::new(PER_CONNECTION));
    let budget = cx.limits().budget(&peer);
    loop {
        let (mut send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| ClusterError::Protocol(format!("{}: {e}", short_id(&peer))))?;
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .map_err(|_| ClusterError::Protocol("closing".into()))?;
        let cx = Arc::clone(&cx);
        let budget = Arc::clone(&budget);
        let services = Arc::clone(&services);
        tokio::spawn(async move {
            let _permit = permit;
            let wait = cx.request_timeout();
            let budgets = [&*budget, cx.read_budget()];
            let read = read_frame_within::<Request>(&mut recv, &budgets);
            let answer = match tokio::time::timeout(wait, read).await {
                Ok(Ok(req)) => handle(&services, role, peer, req).await,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ClusterError::from(FrameError::Timeout(wait))),
            }
            .unwrap_or_else(|e| Answer::Message(Response::Error(e.to_string())));
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

/// Answers one request: an invitation may only join, a member anything but that; the
/// service the request belongs to answers it.
async fn handle(services: &Services, role: Role, peer: NodeId, req: Request) -> Result<Answer> {
    // PA
    let joining = matches!(req, Request::Join { .. });
    match role {
        Role::Invited if !joining => {
            Err(ClusterError::Protocol("an invitation may only join".into()))
        }
        Role::Member if joining => Err(ClusterError::Protocol("already a member".into())),
        _ => services.answer(peer, req).await,
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
