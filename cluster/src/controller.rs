//! ClusterController: a running node. It owns the QUIC endpoint, the connections to its
//! peers and the loops that keep the cluster together (ClusterMonitor heartbeats,
//! DistributedIndex replication, DataRouter placement), and serves peers and the local
//! control socket until told to stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ouroboros_db::cas::{Acceptance, SliceDelivery};
use ouroboros_db::{Cas, Hash};

use crate::authenticator::{NodeKey, PinSet};
use crate::availability::NodeAvailabilityTracker;
use crate::error::{ClusterError, Result};
use crate::group_commit::GroupCommit;
use crate::membership::{short_id, ClusterInfo, Membership, NodeId};
use crate::message::{decode_body, read_body, write_frame, Request, Response};
use crate::tunnel;

/// How long a call to a peer may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `ouro node run`.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The store directory.
    pub store: PathBuf,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address peers should use (default: the listen address, or this host's outgoing
    /// address when listening on all interfaces).
    pub advertise: Option<SocketAddr>,
    /// A join token, for a node that is not yet part of the cluster.
    pub join: Option<String>,
    /// How long a member may be silent before placement leaves it out and its slices are
    /// rebuilt on the others.
    pub repair_after: Duration,
    /// Bytes per second of slices a node may fetch for repairs.
    pub repair_rate: u64,
    /// How long a silent member holds back the compaction of tombstones.
    pub tombstone_horizon: Duration,
    /// Time between two inventory audits (each of one peer, in turn).
    pub audit_every: Duration,
}

impl NodeOptions {
    /// A node of `store` listening on `listen`, every other setting at the default
    /// `ouro node run` has.
    pub fn new(store: PathBuf, listen: SocketAddr) -> Self {
        // A
        NodeOptions {
            store,
            listen,
            advertise: None,
            join: None,
            repair_after: DEFAULT_REPAIR_AFTER,
            repair_rate: crate::replication_monitoring::REPAIR_BYTES_PER_SEC,
            tombstone_horizon: crate::deletion_wal::DEFAULT_HORIZON,
            audit_every: crate::inventory_audit::DEFAULT_EVERY,
        }
    }
}

/// Default of `--repair-after`: long enough to ride out a reboot or an upgrade.
pub const DEFAULT_REPAIR_AFTER: Duration = Duration::from_secs(600);

/// A running node.
pub struct Node {
    pub(crate) cas: Arc<Cas>,
    pub(crate) members: Membership,
    pub(crate) info: ClusterInfo,
    pub(crate) me: NodeId,
    pub(crate) admin: Option<NodeKey>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) addr: String,
    pub(crate) tracker: NodeAvailabilityTracker,
    peers: Mutex<HashMap<NodeId, quinn::Connection>>,
    pub(crate) incoming: Mutex<Vec<(NodeId, quinn::Connection)>>,
    pub(crate) router: crate::data_router::RouterState,
    /// Shared by every connection's requests: bounds this node's memory for incoming data.
    pub(crate) read_budget: tokio::sync::Semaphore,
    /// Connections per peer and each peer's share of the read budget.
    pub(crate) limits: crate::handler::PeerLimits,
    /// How long a request (and its answer) may take on the wire, in ms.
    request_timeout_ms: std::sync::atomic::AtomicU64,
    pub(crate) repair_after: Duration,
    pub(crate) repair_rate: u64,
    pub(crate) repair: crate::replication_monitoring::RepairState,
    /// Inventory audits of peers (SyncIndexTree over slices).
    pub(crate) audit: crate::inventory_audit::AuditState,
    pub(crate) audit_every: Duration,
    /// Bytes of `Changes` answers received (what convergence costs on the wire).
    pub(crate) replication_bytes: std::sync::atomic::AtomicU64,
    /// Members' acknowledgements of this node's tombstones.
    pub(crate) wal: crate::deletion_wal::WalState,
    /// Slices peers place here, stored in group commits.
    pub(crate) accepts: GroupCommit<SliceDelivery, Acceptance>,
    /// Slices handed over to their nodes, dropped here in group commits.
    pub(crate) releases: GroupCommit<(Hash, Vec<u8>), usize>,
    /// Sends heartbeats now (versions were written here).
    pub(crate) heartbeat_wake: tokio::sync::Notify,
    /// Pulls now (a peer's news says its logs moved).
    pub(crate) replicate_wake: tokio::sync::Notify,
}

impl Node {
    /// Opens (or, with a join token, creates) the store's node and binds its endpoint.
    pub async fn start(opts: &NodeOptions) -> Result<Arc<Node>> {
        // PA
        let key = crate::membership::node_key(&opts.store)?;
        let cas = match &opts.join {
            Some(token) if !ouroboros_db::store::Lmdb::exists(&opts.store) => {
                crate::bootstrapper::join(&opts.store, token, &key, &advertised(opts)?).await?
            }
            Some(_) => {
                let cas = Arc::new(Cas::open(&opts.store)?);
                if !cas.in_cluster()? {
                    return Err(ClusterError::Token(format!(
                        "{} already holds a store of its own: a joining node creates its store, so pass an empty --store",
                        opts.store.display()
                    )));
                }
                // Already a member: a restart, the token is not needed.
                cas
            }
            None => Arc::new(Cas::open(&opts.store)?),
        };
        let members = Membership::new(Arc::clone(&cas));
        let info = members.require_info()?;
        let me = key.public();
        if !members.is_member(&me) {
            return Err(ClusterError::Credentials(format!(
                "node {} is not (or no longer) a member of this cluster",
                short_id(&me)
            )));
        }
        let admin = crate::membership::admin_key(&opts.store).ok();
        let pins: Arc<dyn PinSet> = Arc::new(members.clone());
        let endpoint = tunnel::endpoint(opts.listen, &key, pins)?;
        let bound = endpoint
            .local_addr()
            .map_err(|e| ClusterError::io(format!("binding {}", opts.listen), e))?;
        let addr = match opts.advertise {
            Some(a) => a.to_string(),
            None if opts.listen.port() == 0 => advertise_for(bound)?.to_string(),
            None => advertised(opts)?.to_string(),
        };
        members.set_self_addr(&addr)?;
        members.set_addr(&me, &addr)?;
        tracing::info!(node = %short_id(&me), %addr, "node listening");
        let accepts = GroupCommit::start(Arc::clone(&cas), |cas, batch| {
            cas.replica().accept_slices_many(batch)
        });
        let releases = GroupCommit::start(Arc::clone(&cas), |cas, batch| {
            Ok(cas
                .replica()
                .release_slices_many(batch)?
                .into_iter()
                .map(Ok)
                .collect())
        });
        Ok(Arc::new(Node {
            cas,
            members,
            info,
            me,
            admin,
            endpoint,
            addr,
            tracker: NodeAvailabilityTracker::default(),
            peers: Mutex::new(HashMap::new()),
            incoming: Mutex::new(Vec::new()),
            router: Default::default(),
            read_budget: tokio::sync::Semaphore::new(crate::handler::READ_BUDGET_KIB),
            limits: Default::default(),
            request_timeout_ms: (CALL_TIMEOUT.as_millis() as u64).into(),
            repair_after: opts.repair_after,
            repair_rate: opts.repair_rate.max(1),
            repair: Default::default(),
            audit: Default::default(),
            audit_every: opts.audit_every,
            replication_bytes: Default::default(),
            wal: crate::deletion_wal::WalState::new(opts.tombstone_horizon),
            accepts,
            releases,
            heartbeat_wake: Default::default(),
            replicate_wake: Default::default(),
        }))
    }

    /// This node's key.
    pub fn id(&self) -> NodeId {
        // A
        self.me
    }

    /// Where this node listens.
    pub fn addr(&self) -> &str {
        // A
        &self.addr
    }

    /// The store.
    pub fn store(&self) -> &Path {
        // A
        self.cas.path()
    }

    /// The membership records of this node's store.
    pub fn members(&self) -> &Membership {
        // A
        &self.members
    }

    /// How long a peer may take to send one whole request, and to take its answer
    /// ([`CALL_TIMEOUT`], as long as callers wait): a stalled stream is then answered with
    /// an error and closed.
    pub(crate) fn request_timeout(&self) -> Duration {
        // A
        Duration::from_millis(
            self.request_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Changes [`Node::request_timeout`]: for tests, which cannot wait 30 s.
    #[doc(hidden)]
    pub fn set_request_timeout(&self, wait: Duration) {
        // A
        self.request_timeout_ms.store(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Records where `node` listens (normally learned from heartbeats and member lists).
    pub fn remember_addr(&self, node: &NodeId, addr: &str) -> Result<()> {
        // A
        self.members.set_addr(node, addr)
    }

    /// Sends one request to a peer and waits for the answer.
    pub async fn request(self: &Arc<Self>, node: &NodeId, req: &Request) -> Result<Response> {
        // A
        self.call(node, req).await
    }

    /// Active members other than this node.
    pub(crate) fn others(&self) -> Result<Vec<NodeId>> {
        // A
        // An error is not "no members": callers that took it so counted every peer as
        // departed (repair) or as having acknowledged everything (compaction).
        Ok(self
            .members
            .active()?
            .into_iter()
            .filter(|n| *n != self.me)
            .collect())
    }

    /// The live peer whose turn it is, for work done with one peer at a time (anti-entropy,
    /// inventory audits); None when no peer is alive.
    pub(crate) fn live_peer_in_turn(&self, turn: &mut usize) -> Option<NodeId> {
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
    /// longer than `repair_after` (their slices are rebuilt elsewhere), in key order.
    pub(crate) fn placement_nodes(&self) -> Result<Vec<NodeId>> {
        // PA
        Ok(self
            .members
            .active()?
            .into_iter()
            .filter(|n| *n == self.me || self.tracker.silence(n) < self.repair_after)
            .collect())
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
        let c = tunnel::connect(&self.endpoint, addr).await?;
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
    pub(crate) async fn call(self: &Arc<Self>, node: &NodeId, req: &Request) -> Result<Response> {
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

    /// [`Node::call`], up to the answer's body, undecoded: a caller that takes slices out
    /// of it decodes it in place (`slices_many`).
    pub(crate) async fn call_body(
        self: &Arc<Self>,
        node: &NodeId,
        req: &Request,
    ) -> Result<Vec<u8>> {
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
    pub(crate) fn forget(&self, node: &NodeId, conn: &quinn::Connection) {
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
    pub(crate) fn adopt(&self, node: &NodeId, conn: &quinn::Connection) {
        // A
        if let Ok(mut p) = self.peers.lock() {
            p.insert(*node, conn.clone());
        }
    }

    /// Closes every connection to or from a node that is no longer a member.
    pub(crate) fn cut_revoked(&self) {
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

    /// Runs the node until `stop` completes (the `ouro` binary completes it on SIGTERM or
    /// SIGINT): serves peers and the control socket and runs the background loops.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        // A
        let socket = crate::control::socket_path(self.store());
        let listener = crate::control::bind(&socket)?;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(crate::sync_index_tree::anti_entropy_loop(Arc::clone(&self)));
        tasks.spawn(crate::inventory_audit::audit_loop(
            Arc::clone(&self),
            self.audit_every,
        ));
        tasks.spawn(crate::handler::accept_loop(Arc::clone(&self)));
        tasks.spawn(crate::control::serve(Arc::clone(&self), listener));
        tasks.spawn(crate::monitor::heartbeat_loop(Arc::clone(&self)));
        tasks.spawn(crate::distributed_index::replicate_loop(Arc::clone(&self)));
        tasks.spawn(crate::data_router::distribute_loop(Arc::clone(&self)));
        tasks.spawn(crate::replication_monitoring::repair_loop(Arc::clone(
            &self,
        )));
        tasks.spawn(crate::deletion_wal::compact_loop(Arc::clone(&self)));
        tokio::select! {
            _ = stop => tracing::info!("stopping"),
            Some(r) = tasks.join_next() => tracing::error!(?r, "a node task ended"),
        }
        let _ = std::fs::remove_file(&socket);
        self.endpoint.close(0u32.into(), b"node stopping");
        tasks.abort_all();
        // Let close frames go out so peers see the node leave at once.
        tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle())
            .await
            .ok();
        Ok(())
    }
}

/// The address peers should use when none was given.
fn advertised(opts: &NodeOptions) -> Result<SocketAddr> {
    // A
    if let Some(a) = opts.advertise {
        return Ok(a);
    }
    advertise_for(opts.listen)
}

/// `addr`, or this host's outgoing address with `addr`'s port when `addr` is unspecified.
fn advertise_for(addr: SocketAddr) -> Result<SocketAddr> {
    // A
    if !addr.ip().is_unspecified() {
        return Ok(addr);
    }
    // Connecting a UDP socket sends nothing; it only picks the outgoing interface.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| ClusterError::io("finding this host's address (pass --advertise)", e))?;
    Ok(SocketAddr::new(probe.ip(), addr.port()))
}
