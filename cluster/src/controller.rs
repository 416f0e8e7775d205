//! ClusterController: a running node. It opens the store and binds the endpoint, builds
//! the shared context and the services (each owns its state and answers its own requests:
//! `service`), starts their loops with the request handler and the control socket, and
//! stops them all when told to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ouroboros_db::Cas;

use crate::admission::Admission;
use crate::authenticator::PinSet;
pub use crate::context::CALL_TIMEOUT;
use crate::context::{Context, Identity};
use crate::control::Control;
use crate::data_router::DataRouter;
use crate::deletion_wal::DeletionWal;
use crate::distributed_index::DistributedIndex;
use crate::error::{ClusterError, Result};
use crate::inventory_audit::InventoryAudit;
use crate::membership::{short_id, Membership, NodeId};
use crate::message::{Request, Response};
use crate::monitor::ClusterMonitor;
use crate::replication_monitoring::ReplicationMonitoring;
use crate::service::{Service, Services};
use crate::sync_index_tree::SyncIndexTree;
use crate::tunnel;

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
    cx: Arc<Context>,
    services: Arc<Services>,
    control: Arc<Control>,
}

impl Node {
    /// Opens (or, with a join token, creates) the store's node and binds its endpoint.
    pub async fn start(opts: &NodeOptions) -> Result<Arc<Node>> {
        // PA
        let key = crate::membership::node_key(&opts.store)?;
        let cas = open_store(opts, &key).await?;
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
        let id = Identity {
            cas,
            me,
            info,
            admin,
            addr,
            endpoint,
            repair_after: opts.repair_after,
        };
        Ok(Arc::new(Node::assemble(
            Arc::new(Context::new(id, members)),
            opts,
        )))
    }

    /// Builds the services over context `cx`, each given the others it asks things of.
    fn assemble(cx: Arc<Context>, opts: &NodeOptions) -> Node {
        // A
        let repair = Arc::new(ReplicationMonitoring::new(
            Arc::clone(&cx),
            opts.repair_rate,
        ));
        let wal = Arc::new(DeletionWal::new(Arc::clone(&cx), opts.tombstone_horizon));
        let router = Arc::new(DataRouter::new(Arc::clone(&cx), Arc::clone(&repair)));
        let index = Arc::new(DistributedIndex::new(
            Arc::clone(&cx),
            Arc::clone(&wal),
            Arc::clone(&repair),
        ));
        let audit = Arc::new(InventoryAudit::new(Arc::clone(&cx), opts.audit_every));
        let sync = Arc::new(SyncIndexTree::new(
            Arc::clone(&cx),
            Arc::clone(&index),
            Arc::clone(&repair),
        ));
        let monitor = Arc::new(ClusterMonitor::new(
            Arc::clone(&cx),
            Arc::clone(&router),
            Arc::clone(&repair),
            Arc::clone(&index),
            Arc::clone(&wal),
            Arc::clone(&audit),
        ));
        let control = Arc::new(Control::new(
            Arc::clone(&cx),
            Arc::clone(&router),
            Arc::clone(&monitor),
        ));
        let services = Arc::new(Services::new(vec![
            monitor as Arc<dyn Service>,
            router,
            index,
            repair,
            wal,
            audit,
            sync,
            Arc::new(Admission::new(Arc::clone(&cx))),
        ]));
        cx.serve_with(&services);
        Node {
            cx,
            services,
            control,
        }
    }

    /// This node's key.
    pub fn id(&self) -> NodeId {
        // A
        self.cx.me()
    }

    /// Where this node listens.
    pub fn addr(&self) -> &str {
        // A
        self.cx.addr()
    }

    /// The store.
    pub fn store(&self) -> &Path {
        // A
        self.cx.cas().path()
    }

    /// The membership records of this node's store.
    pub fn members(&self) -> &Membership {
        // A
        self.cx.members()
    }

    /// Changes how long a peer may take to send a request and take its answer (30 s):
    /// for tests, which cannot wait that long.
    #[doc(hidden)]
    pub fn set_request_timeout(&self, wait: Duration) {
        // A
        self.cx.set_request_timeout(wait);
    }

    /// Records where `node` listens (normally learned from heartbeats and member lists).
    pub fn remember_addr(&self, node: &NodeId, addr: &str) -> Result<()> {
        // A
        self.cx.members().set_addr(node, addr)
    }

    /// Sends one request to a peer and waits for the answer.
    pub async fn request(&self, node: &NodeId, req: &Request) -> Result<Response> {
        // A
        self.cx.call(node, req).await
    }

    /// Runs the node until `stop` completes (the `ouro` binary completes it on SIGTERM or
    /// SIGINT): serves peers and the control socket and runs every service's loop.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        // A
        let socket = crate::control::socket_path(self.store());
        let listener = crate::control::bind(&socket)?;
        let mut tasks = tokio::task::JoinSet::new();
        for s in self.services.all() {
            if let Some(task) = Arc::clone(s).run() {
                tracing::debug!(service = s.name(), "starting");
                tasks.spawn(task);
            }
        }
        tasks.spawn(crate::handler::accept_loop(Arc::clone(&self.cx)));
        tasks.spawn(Arc::clone(&self.control).serve(listener));
        tokio::select! {
            _ = stop => tracing::info!("stopping"),
            Some(r) = tasks.join_next() => tracing::error!(?r, "a node task ended"),
        }
        let _ = std::fs::remove_file(&socket);
        self.cx.endpoint().close(0u32.into(), b"node stopping");
        tasks.abort_all();
        // Let close frames go out so peers see the node leave at once.
        tokio::time::timeout(Duration::from_millis(500), self.cx.endpoint().wait_idle())
            .await
            .ok();
        Ok(())
    }
}

/// The store of `opts`: opened, or created by joining with the token.
async fn open_store(opts: &NodeOptions, key: &crate::authenticator::NodeKey) -> Result<Arc<Cas>> {
    // PA
    Ok(match &opts.join {
        Some(token) if !Cas::exists(&opts.store) => {
            crate::bootstrapper::join(&opts.store, token, key, &advertised(opts)?).await?
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
    })
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
