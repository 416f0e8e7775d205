//! The ouro cluster: nodes that keep their own LMDB store, admit each other with a
//! cluster admin key and one-time join tokens, talk QUIC with pinned TLS 1.3 raw public
//! keys, spread the sealed slices of every chunk over nodes by rendezvous hashing, and
//! replicate metadata (versions, heads, tombstones, members) to every node.
//!
//! Components, named as in the design: [`controller`] (ClusterController) builds a running
//! node from a shared context and services, each owning its state, answering its own peer
//! requests and running its own loop: [`monitor`] (ClusterMonitor), [`distributed_index`]
//! (DistributedIndex), [`deletion_wal`] (DeletionWAL), [`data_router`] (DataRouter, cluster
//! side), [`replication_monitoring`] (ReplicationMonitoring and DataReBalancer: repair),
//! [`inventory_audit`] and [`sync_index_tree`] (SyncIndexTree over slices and over versions),
//! and the inviter's side of [`bootstrapper`] (BootStrapper). Around them: [`tunnel`] +
//! [`message`] + [`handler`] (MessageTunnel), [`authenticator`] (MessageAuthenticator),
//! [`availability`] (NodeAvailabilityTracker), [`membership`], [`control`] (the local socket),
//! and HashToNode (in the library: `ouroboros_db::route::hash_to_node`).

pub mod admin;
mod admission;
pub mod authenticator;
pub mod availability;
pub mod bootstrapper;
mod context;
pub mod control;
pub mod controller;
mod custody;
pub mod data_router;
pub mod deletion_wal;
pub mod distributed_index;
pub mod error;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod group_commit;
pub mod handler;
pub mod inventory_audit;
pub mod membership;
pub mod message;
pub mod monitor;
pub mod replication_monitoring;
mod service;
pub mod slices_many;
pub mod sync_index_tree;
pub mod tunnel;

pub use control::ControlClient;
pub use controller::{Node, NodeOptions};
pub use error::{ClusterError, Result};
