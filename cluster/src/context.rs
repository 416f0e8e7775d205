//! What every service of a running node shares: the store, who this node is, the member
//! records (Membership), how each peer looks from here (NodeAvailabilityTracker), and the
//! MessageTunnel's connections to the peers, through which any service calls any peer.
//! Nothing here belongs to one service: a service's own state lives in its module.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use ouroboros_db::Cas;

use crate::authenticator::NodeKey;
use crate::availability::NodeAvailabilityTracker;
use crate::custody::Custody;
use crate::error::{ClusterError, Result};
use crate::handler::PeerLimits;
use crate::membership::{short_id, ClusterInfo, Membership, NodeId};
use crate::message::{decode_body, read_body, write_frame, Request, Response};
use crate::service::Services;
use crate::tunnel;

/// How long a call to a peer may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Who this node is and how it reaches the others.
pub(crate) struct Identity {
    /// The store.
    pub cas: Arc<Cas>,
    /// This node's key.
    pub me: NodeId,
    /// The cluster it belongs to.
    pub info: ClusterInfo,
    /// The cluster admin key, on the node that holds it (it admits new nodes).
    pub admin: Option<NodeKey>,
    /// Where this node listens, as peers should dial it.
    pub addr: String,
    /// The QUIC endpoint.
    pub endpoint: quinn::Endpoint,
    /// How long a member may be silent before placement leaves it out.
    pub repair_after: Duration,
}

/// The shared part of a running node; see the module documentation.
pub(crate) struct Context {
    id: Identity,
    members: Membership,
    tracker: NodeAvailabilityTracker,
    /// Slices arriving while others are handed over (the DataRouter and repair write here).
    custody: Arc<Custody>,
    /// Connections this node uses for calls, one per peer.
    peers: Mutex<HashMap<NodeId, quinn::Connection>>,
    /// Connections members opened to this node (closed when they are revoked).
    incoming: Mutex<Vec<(NodeId, quinn::Connection)>>,
    /// Shared by every connection's requests: bounds this node's memory for incoming data.
    read_budget: tokio::sync::Semaphore,
    /// Connections per peer and each peer's share of the read budget.
    limits: PeerLimits,
    /// How long a request (and its answer) may take on the wire, in ms.
    request_timeout_ms: AtomicU64,
    /// The services that answer requests on connections this node opens (set once they
    /// exist; weak, since they hold this context).
    services: OnceLock<Weak<Services>>,
}

impl Context {
    /// The context of a node with identity `id` and the member records of its store.
    pub fn new(id: Identity, members: Membership) -> Self {
        // A
        Context {
            id,
            members,
            tracker: NodeAvailabilityTracker::default(),
            custody: Arc::default(),
            peers: Mutex::new(HashMap::new()),
            incoming: Mutex::new(Vec::new()),
            read_budget: tokio::sync::Semaphore::new(crate::handler::READ_BUDGET_KIB),
            limits: PeerLimits::default(),
            request_timeout_ms: (CALL_TIMEOUT.as_millis() as u64).into(),
            services: OnceLock::new(),
        }
    }

    /// Names the services that answer peers on the connections this node opens.
    pub fn serve_with(&self, services: &Arc<Services>) {
        // A
        let _ = self.services.set(Arc::downgrade(services));
    }

    /// The services answering peers, while the node runs.
    pub fn services(&self) -> Option<Arc<Services>> {
        // A
        self.services.get().and_then(Weak::upgrade)
    }

    /// Which slices arrived while this node handed slices over: a copy a peer may rely on
    /// is not dropped (see `custody.rs`).
    pub fn custody(&self) -> &Arc<Custody> {
        // A
        &self.custody
    }

    /// The store.
    pub fn cas(&self) -> &Arc<Cas> {
        // A
        &self.id.cas
    }

    /// This node's key.
    pub fn me(&self) -> NodeId {
        // A
        self.id.me
    }

    /// The cluster this node belongs to.
    pub fn info(&self) -> &ClusterInfo {
        // A
        &self.id.info
    }

    /// The cluster admin key, when this node holds it.
    pub fn admin(&self) -> Option<&NodeKey> {
        // A
        self.id.admin.as_ref()
    }

    /// Where this node listens.
    pub fn addr(&self) -> &str {
        // A
        &self.id.addr
    }

    /// The QUIC endpoint.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        // A
        &self.id.endpoint
    }

    /// The member records of the store.
    pub fn members(&self) -> &Membership {
        // A
        &self.members
    }

    /// How each peer looks from here.
    pub fn tracker(&self) -> &NodeAvailabilityTracker {
        // A
        &self.tracker
    }

    /// The read budget all peers' requests share.
    pub fn read_budget(&self) -> &tokio::sync::Semaphore {
        // A
        &self.read_budget
    }

    /// Per-peer connection counts and read budgets.
    pub fn limits(&self) -> &PeerLimits {
        // A
        &self.limits
    }

    /// How long a peer may take to send one whole request, and to take its answer
    /// ([`CALL_TIMEOUT`], as long as callers wait): a stalled stream is then answered with
    /// an error and closed.
    pub fn request_timeout(&self) -> Duration {
        // A
        Duration::from_millis(self.request_timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes [`Context::request_timeout`] (tests cannot wait 30 s).
    pub fn set_request_timeout(&self, wait: Duration) {
        // A
        self.request_timeout_ms.store(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Active members other than this node.
    pub fn others(&self) -> Result<Vec<NodeId>> {
        // A
        // An error is not "no members": callers that took it so counted every peer as
        // departed (repair) or as having acknowledged everything (compaction).
        let me = self.me();
        Ok(self
            .members
            .active()?
            .into_iter()
            .filter(|n| *n != me)
            .collect())
    }

    /// The live peer whose turn it is, for work done with one peer at a time (anti-entropy,
    /// inventory audits); None when no peer is alive.
    pub fn live_peer_in_turn(&self, turn: &mut usize) -> Option<NodeId> {
        // A
        let peers: Vec<NodeId> = match self.others() {
            Ok(o) => o.into_iter().filter(|p| self.tracker.is_alive(p)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the members: no peer this turn");
                return None;
            }
        };
        let peer = *peers.get(*turn % peers.len().max(1))?;
        *turn += 1;
        Some(peer)
    }

    /// The nodes placement spreads slices over: active members, minus those silent for
    /// longer than `repair_after` (their slices are rebuilt elsewhere) and those never heard
    /// from since this node started that a live peer reports silent that long, in key order.
    pub fn placement_nodes(&self) -> Result<Vec<NodeId>> {
        // PA
        let me = self.me();
        Ok(self
            .members
            .active()?
            .into_iter()
            .filter(|n| *n == me || self.tracker.counts_for_placement(n, self.id.repair_after))
            .collect())
    }

    /// The members this node has not heard from for a while, with the seconds of silence,
    /// which its heartbeats report (see `NodeNews::silent`).
    pub fn silent(&self) -> Result<Vec<(NodeId, u64)>> {
        // A
        Ok(self.tracker.silent(&self.others()?))
    }

    /// A connection to `node`, reusing a live one. A new one also serves the peer's
    /// requests, since the peer may adopt it for its calls.
    async fn conn(self: &Arc<Self>, node: &NodeId) -> Result<quinn::Connection> {
        // A
        if let Some(c) = self.peers.lock().ok().and_then(|p| p.get(node).cloned()) {
            if c.close_reason().is_none() {
                return Ok(c);
            }
        }
        let addr: SocketAddr = self
            .members
            .addr(node)?
            .ok_or_else(|| {
                ClusterError::Protocol(format!("no address known for {}", short_id(node)))
            })?
            .parse()
            .map_err(|_| ClusterError::Protocol(format!("bad address for {}", short_id(node))))?;
        let c = tunnel::connect(self.endpoint(), addr).await?;
        if tunnel::peer_key(&c) != Some(*node) {
            c.close(1u32.into(), b"unexpected key");
            return Err(ClusterError::Protocol(format!(
                "{addr} answered with another key than {}'s",
                short_id(node)
            )));
        }
        if let Ok(mut p) = self.peers.lock() {
            p.insert(*node, c.clone());
        }
        tokio::spawn(crate::handler::serve_member(
            Arc::clone(self),
            c.clone(),
            *node,
        ));
        Ok(c)
    }

    /// Sends one request to `node` and waits for its response.
    pub async fn call(self: &Arc<Self>, node: &NodeId, req: &Request) -> Result<Response> {
        // A
        let body = self.call_body(node, req).await?;
        match decode_body::<Response>(&body)? {
            Response::Error(e) => Err(ClusterError::Protocol(format!(
                "{} refused: {e}",
                short_id(node)
            ))),
            r => Ok(r),
        }
    }

    /// [`Context::call`], up to the answer's body, undecoded: a caller that takes slices
    /// out of it decodes it in place (`slices_many`).
    pub async fn call_body(self: &Arc<Self>, node: &NodeId, req: &Request) -> Result<Vec<u8>> {
        // A
        let c = self.conn(node).await?;
        let exchange = async {
            let (mut send, mut recv) = c.open_bi().await.map_err(|e| {
                ClusterError::Protocol(format!("opening a stream to {}: {e}", short_id(node)))
            })?;
            write_frame(&mut send, req).await?;
            let _ = send.finish();
            read_body(&mut recv).await
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => {
                self.forget(node, &c);
                Err(e)
            }
            Err(_) => {
                self.forget(node, &c);
                Err(ClusterError::Protocol(format!(
                    "{} did not answer in time",
                    short_id(node)
                )))
            }
        }
    }

    /// Drops the cached connection to `node` if it is `conn`: the next call reconnects.
    fn forget(&self, node: &NodeId, conn: &quinn::Connection) {
        // A
        if let Ok(mut p) = self.peers.lock() {
            if p.get(node)
                .is_some_and(|c| c.stable_id() == conn.stable_id())
            {
                p.remove(node);
            }
        }
    }

    /// Uses a connection a peer opened to this node for calls to it too: when a peer
    /// restarts, its new connection replaces the dead one this node kept (which QUIC would
    /// notice only after its idle timeout). One connection serves both directions.
    pub fn adopt(&self, node: &NodeId, conn: &quinn::Connection) {
        // A
        if let Ok(mut p) = self.peers.lock() {
            p.insert(*node, conn.clone());
        }
    }

    /// Remembers a member's connection to this node, to close it if the member is revoked.
    pub fn note_incoming(&self, node: NodeId, conn: &quinn::Connection) {
        // A
        if let Ok(mut inc) = self.incoming.lock() {
            inc.push((node, conn.clone()));
        }
    }

    /// Closes every connection to or from a node that is no longer a member.
    pub fn cut_revoked(&self) {
        // PA
        let gone = |n: &NodeId| !self.members.is_member(n);
        if let Ok(mut p) = self.peers.lock() {
            p.retain(|n, c| {
                if gone(n) {
                    c.close(2u32.into(), b"revoked");
                    false
                } else {
                    true
                }
            });
        }
        if let Ok(mut inc) = self.incoming.lock() {
            inc.retain(|(n, c)| {
                if c.close_reason().is_some() {
                    return false;
                }
                if gone(n) {
                    c.close(2u32.into(), b"revoked");
                    return false;
                }
                true
            });
        }
    }
}
