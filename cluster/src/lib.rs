//! The ouro cluster: nodes that keep their own LMDB store, admit each other with a
//! cluster admin key and one-time join tokens, talk QUIC with pinned TLS 1.3 raw public
//! keys, spread the sealed slices of every chunk over nodes by rendezvous hashing, and
//! replicate metadata (versions, heads, tombstones, members) to every node.
//!
//! Components, named as in the design: [`controller`] (ClusterController),
//! [`tunnel`] + [`message`] (MessageTunnel), [`authenticator`] (MessageAuthenticator),
//! [`bootstrapper`] (BootStrapper), [`monitor`] (ClusterMonitor), [`availability`]
//! (NodeAvailabilityTracker), HashToNode (in the library: `ouroboros_db::route::hash_to_node`),
//! [`distributed_index`] (DistributedIndex), [`data_router`] (DataRouter, cluster side),
//! [`replication_monitoring`] (ReplicationMonitoring and DataReBalancer: repair),
//! [`sync_index_tree`] (SyncIndexTree: Merkle anti-entropy).

pub mod admin;
pub mod authenticator;
pub mod availability;
pub mod bootstrapper;
pub mod control;
pub mod controller;
pub mod data_router;
pub mod deletion_wal;
pub mod distributed_index;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod group_commit;
pub mod handler;
pub mod inventory_audit;
pub mod membership;
pub mod message;
pub mod monitor;
pub mod replication_monitoring;
pub mod slices_many;
pub mod sync_index_tree;
pub mod tunnel;

pub use control::ControlClient;
pub use controller::{Node, NodeOptions};
pub use error::{ClusterError, Result};
