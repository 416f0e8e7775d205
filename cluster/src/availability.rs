//! NodeAvailabilityTracker: when each peer was last heard from, and what it said. A peer
//! silent for [`SUSPECT_AFTER`] is suspect, for [`DEAD_AFTER`] dead; one heartbeat brings it
//! back. Every node probes every other directly, so each sees a failure within seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::membership::NodeId;
use crate::message::NodeNews;

/// Silence after which a peer is suspect.
pub const SUSPECT_AFTER: Duration = Duration::from_secs(2);
/// Silence after which a peer is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(6);

/// How a peer looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Heard from recently.
    Alive,
    /// Silent for a little while.
    Suspect,
    /// Silent for long.
    Dead,
}

impl State {
    /// The name `cluster status` prints.
    pub fn name(self) -> &'static str {
        // A
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
        }
    }
}

/// Last contact and news per peer.
pub struct NodeAvailabilityTracker {
    started: Instant,
    peers: Mutex<HashMap<NodeId, (Instant, NodeNews)>>,
}

impl Default for NodeAvailabilityTracker {
    fn default() -> Self {
        // A
        NodeAvailabilityTracker {
            started: Instant::now(),
            peers: Mutex::new(HashMap::new()),
        }
    }
}

impl NodeAvailabilityTracker {
    /// Records a heartbeat from `node`.
    pub fn seen(&self, node: NodeId, news: NodeNews) {
        // A
        if let Ok(mut p) = self.peers.lock() {
            p.insert(node, (Instant::now(), news));
        }
    }

    /// Time since `node` was last heard from (since this node started when never).
    pub fn silence(&self, node: &NodeId) -> Duration {
        // A
        let last = self
            .peers
            .lock()
            .ok()
            .and_then(|p| p.get(node).map(|(t, _)| *t))
            .unwrap_or(self.started);
        last.elapsed()
    }

    /// The state of `node`.
    pub fn state(&self, node: &NodeId) -> State {
        // A
        let s = self.silence(node);
        if s >= DEAD_AFTER {
            State::Dead
        } else if s >= SUSPECT_AFTER || self.news(node).is_none() {
            State::Suspect
        } else {
            State::Alive
        }
    }

    /// True when `node` answered recently.
    pub fn is_alive(&self, node: &NodeId) -> bool {
        // A
        self.state(node) == State::Alive
    }

    /// What `node` said last.
    pub fn news(&self, node: &NodeId) -> Option<NodeNews> {
        // A
        self.peers
            .lock()
            .ok()
            .and_then(|p| p.get(node).map(|(_, n)| n.clone()))
    }
}
