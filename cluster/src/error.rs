//! Errors of the cluster layer, each with a one-line message that says what to do.

use crate::tunnel::TransportError;

/// What can go wrong in a node, a join or a call to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store below failed.
    #[error(transparent)]
    Store(#[from] ouroboros_db::Error),
    /// QUIC or TLS failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A join token that cannot be used.
    #[error("join token: {0}")]
    Token(String),
    /// The store does not belong to a cluster yet.
    #[error("{0} is not part of a cluster: run `ouro cluster init` on the first node, or `ouro node run --join TOKEN`")]
    NotInCluster(String),
    /// An operation that needs the cluster's admin key, on a node that lacks it.
    #[error("this node does not hold the cluster's admin key: run this on the node where `ouro cluster init` ran")]
    NotAdmin,
    /// No node process runs on the store.
    #[error("no node is running on {0}: start one with `ouro node run`")]
    NoNode(String),
    /// A frame refused as it was read: not ouro, another version, too large, truncated,
    /// malformed or stalled.
    #[error("protocol: {0}")]
    Frame(#[from] crate::message::FrameError),
    /// A peer or the local node broke the protocol or refused a request.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A request that cannot be done as given (the message says what to do instead).
    #[error("{0}")]
    Invalid(String),
    /// A key file others can read, or a node that is no longer a member.
    #[error("{0}")]
    Credentials(String),
    /// A named node is unknown.
    #[error("no member {0:?} in this cluster (see `ouro cluster status`)")]
    UnknownNode(String),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl ClusterError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        // A
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result of the cluster layer.
pub type Result<T> = std::result::Result<T, ClusterError>;
