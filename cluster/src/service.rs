//! The shape of a node's services: each design component (ClusterMonitor, DistributedIndex,
//! DeletionWAL, DataRouter, ReplicationMonitoring, the inventory audit, SyncIndexTree,
//! BootStrapper) owns its state, may run a loop while the node runs, and answers the peer
//! requests that are its own. The controller starts them; the request handler asks them in
//! turn; a new request touches its service and the message enum only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ClusterError, Result};
use crate::membership::NodeId;
use crate::message::{Request, Response};

/// A future a service hands out: its loop, or the answer to one request.
pub(crate) type Task<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An answer to a peer: a message, or a `SlicesMany` frame as pieces (`slices_many`),
/// which go out without one more copy into a frame.
pub(crate) enum Answer {
    Message(Response),
    Pieces(Vec<Bytes>),
}

/// A service's reply to a request it is offered.
pub(crate) enum Claim {
    /// The request is this service's: the task answers it.
    Mine(Task<Result<Answer>>),
    /// Another service's request, given back.
    Theirs(Request),
}

/// What the controller starts and the request handler asks.
pub(crate) trait Service: Send + Sync + 'static {
    /// Its name, for logs.
    fn name(&self) -> &'static str;

    /// Its loop, when it has one: runs until the node stops.
    fn run(self: Arc<Self>) -> Option<Task<()>> {
        // A
        None
    }

    /// The answer to `req` from `peer` when the request is one of this service's, else the
    /// request back, for the next service.
    fn answer(self: Arc<Self>, peer: NodeId, req: Request) -> Claim {
        // A
        let _ = peer;
        Claim::Theirs(req)
    }
}

/// The services of a running node, in the order they are asked.
pub(crate) struct Services(Vec<Arc<dyn Service>>);

impl Services {
    /// The services, each answering its own requests.
    pub fn new(list: Vec<Arc<dyn Service>>) -> Self {
        // A
        Services(list)
    }

    /// Every service.
    pub fn all(&self) -> &[Arc<dyn Service>] {
        // A
        &self.0
    }

    /// Has the service whose request `req` is answer it.
    pub async fn answer(&self, peer: NodeId, mut req: Request) -> Result<Answer> {
        // A
        for s in &self.0 {
            match Arc::clone(s).answer(peer, req) {
                Claim::Mine(task) => return task.await,
                Claim::Theirs(back) => req = back,
            }
        }
        Err(ClusterError::Protocol(match req {
            Request::Fetch { .. }
            | Request::FetchMany { .. }
            | Request::Flush
            | Request::Status => "control requests go to the local socket".into(),
            _ => "no service answers this request".into(),
        }))
    }
}

/// Boxes an answer that is a message.
pub(crate) fn message<F>(f: F) -> Task<Result<Answer>>
where
    F: Future<Output = Result<Response>> + Send + 'static,
{
    // A
    Box::pin(async move { f.await.map(Answer::Message) })
}
