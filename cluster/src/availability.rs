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
/// Silent members kept from one peer's news (far more than a cluster has).
const MAX_SILENT: usize = 1024;

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
    peers: Mutex<HashMap<NodeId, Heard>>,
}

/// The last heartbeat from one peer.
struct Heard {
    at: Instant,
    news: NodeNews,
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
    /// Records a heartbeat from `node`. True when its logs moved since its last heartbeat
    /// (or it is the first): worth a pull now.
    pub fn seen(&self, node: NodeId, mut news: NodeNews) -> bool {
        // A
        // Every placement looks through the peers' lists: a member cannot make that slow.
        news.silent.truncate(MAX_SILENT);
        let Ok(mut p) = self.peers.lock() else {
            return false;
        };
        let moved = p.get(&node).is_none_or(|h| h.news.logs != news.logs);
        p.insert(
            node,
            Heard {
                at: Instant::now(),
                news,
            },
        );
        moved
    }

    /// When `node` was last heard from, if ever (no copy of its news).
    fn heard_at(&self, node: &NodeId) -> Option<Instant> {
        // A
        self.peers
            .lock()
            .ok()
            .and_then(|p| p.get(node).map(|h| h.at))
    }

    /// Time since `node` was last heard from (since this node started when never).
    pub fn silence(&self, node: &NodeId) -> Duration {
        // A
        self.heard_at(node).unwrap_or(self.started).elapsed()
    }

    /// The state of `node`.
    pub fn state(&self, node: &NodeId) -> State {
        // A
        // One lookup, no copy of the news: reads ask this for every slice they place.
        let heard = self.heard_at(node);
        let s = heard.unwrap_or(self.started).elapsed();
        if s >= DEAD_AFTER {
            State::Dead
        } else if s >= SUSPECT_AFTER || heard.is_none() {
            State::Suspect
        } else {
            State::Alive
        }
    }

    /// Whether `node` stays in placement: silent for less than `repair_after`, and not a
    /// member this node has never heard from since it started while a live peer reports it
    /// silent for `repair_after` (a restarted node would otherwise place slices on
    /// long-dead members for `repair_after`, against every other node's placement).
    pub fn counts_for_placement(&self, node: &NodeId, repair_after: Duration) -> bool {
        // PA
        let Ok(p) = self.peers.lock() else {
            return self.silence(node) < repair_after;
        };
        match p.get(node) {
            Some(h) => h.at.elapsed() < repair_after,
            None => {
                self.started.elapsed() < repair_after
                    && !p.values().any(|h| {
                        h.at.elapsed() < SUSPECT_AFTER
                            && h.news.silent.iter().any(|(n, secs)| {
                                n == node && Duration::from_secs(*secs) >= repair_after
                            })
                    })
            }
        }
    }

    /// The peers this node has not heard from for [`DEAD_AFTER`] (since it started, for
    /// those never heard from), with the seconds of silence: what its heartbeats report.
    pub fn silent(&self, peers: &[NodeId]) -> Vec<(NodeId, u64)> {
        // A
        peers
            .iter()
            .filter_map(|n| {
                let s = self.silence(n);
                (s >= DEAD_AFTER).then_some((*n, s.as_secs()))
            })
            .collect()
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
            .and_then(|p| p.get(node).map(|h| h.news.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::LogEnds;
    use ouroboros_db::Hash;

    fn news(blobs: u64, wal: u64) -> NodeNews {
        NodeNews {
            logs: LogEnds {
                log: Hash([1; 32]),
                blobs,
                wal,
            },
            ..NodeNews::default()
        }
    }

    #[test]
    fn a_heartbeat_is_worth_a_pull_when_the_logs_moved() {
        let t = NodeAvailabilityTracker::default();
        let peer = [3; 32];
        assert_eq!(t.state(&peer), State::Suspect, "never heard from");
        assert!(t.seen(peer, news(1, 0)), "first news");
        assert!(!t.seen(peer, news(1, 0)), "nothing moved");
        assert!(t.seen(peer, news(2, 0)), "blob log moved");
        assert!(t.seen(peer, news(2, 5)), "DeletionWAL moved");
        assert_eq!(t.state(&peer), State::Alive);
        assert_eq!(t.news(&peer).map(|n| n.logs.wal), Some(5));
    }

    #[test]
    fn a_member_a_live_peer_reports_long_silent_leaves_placement_until_heard_from() {
        let t = NodeAvailabilityTracker::default();
        let (peer, gone, late) = ([3; 32], [9; 32], [8; 32]);
        let long = Duration::from_secs(600);
        assert!(
            t.counts_for_placement(&gone, long),
            "nobody said anything yet"
        );
        t.seen(
            peer,
            NodeNews {
                silent: vec![(gone, 700), (late, 60)],
                ..news(1, 0)
            },
        );
        assert!(
            !t.counts_for_placement(&gone, long),
            "silent for longer than repair_after"
        );
        assert!(
            t.counts_for_placement(&late, long),
            "silent, but not for that long"
        );
        assert!(
            !t.counts_for_placement(&late, Duration::from_secs(60)),
            "this node's own setting applies"
        );
        assert!(t.counts_for_placement(&peer, long));
        assert_eq!(
            t.silent(&[peer, gone]),
            Vec::new(),
            "this node started just now"
        );
        // Heard from itself: this node's own knowledge wins.
        t.seen(gone, news(1, 0));
        assert!(t.counts_for_placement(&gone, long));
    }
}
