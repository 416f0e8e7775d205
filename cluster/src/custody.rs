//! Custody of slices handed over: a node may drop its copy of a slice it gave away only if
//! no slice of that chunk arrived here since the hand-over began.
//!
//! Two nodes whose placements disagree for a moment (one already counts a node that just
//! joined, the other not yet) can each hand the same slice to the other. Each then drops
//! its copy because the other "has it on disk", and the slice is gone from both. With this
//! rule the second arrival keeps the first sender's copy: a drop happens only when the
//! copy dropped is the one the receiver confirmed, never one a peer just gave up relying
//! on this node. The check runs inside the transaction that drops (see
//! [`Custody::may_drop`]), and an arrival is noted before its own transaction begins, so
//! either the drop sees the arrival or the arrival's write lands after the drop.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ouroboros_db::Hash;

/// Arrivals of slices per chunk and the hand-overs in flight, in one order of events.
#[derive(Default)]
pub(crate) struct Custody {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The next event number; taken under the lock, so numbers follow the lock's order.
    next: u64,
    /// The latest arrival of a slice of each chunk, as an event number.
    arrived: HashMap<Hash, u64>,
    /// Hand-overs in flight by the event number they began at (with a count).
    open: BTreeMap<u64, usize>,
}

/// A hand-over in flight; ends when dropped (after its release committed or failed).
pub(crate) struct Ticket {
    at: u64,
    custody: Arc<Custody>,
}

impl Ticket {
    /// The event number the hand-over began at.
    pub fn at(&self) -> u64 {
        // A
        self.at
    }
}

impl Custody {
    /// Notes that slices of `chunk` are about to be stored here (a peer's hand-over or a
    /// repair). Call before the write begins.
    pub fn arriving(&self, chunk: &Hash) {
        // PA
        if let Ok(mut i) = self.inner.lock() {
            // With no hand-over in flight, none can need it: a later one begins after it.
            if !i.open.is_empty() {
                let at = i.next;
                i.next += 1;
                i.arrived.insert(*chunk, at);
            }
        }
    }

    /// Begins a hand-over; call before reading the slices to send.
    pub fn begin(self: &Arc<Self>) -> Ticket {
        // PA
        // A poisoned lock yields a ticket no drop will pass (`may_drop` is false then).
        let at = match self.inner.lock() {
            Ok(mut i) => {
                let at = i.next;
                i.next += 1;
                *i.open.entry(at).or_default() += 1;
                at
            }
            Err(_) => 0,
        };
        Ticket {
            at,
            custody: Arc::clone(self),
        }
    }

    /// True when no slice of `chunk` arrived since the hand-over that began at `at`: the
    /// copies here are the ones the receiver confirmed, and may go. False for a hand-over
    /// no longer in flight (its ticket ended, its arrivals may be forgotten) and when the
    /// bookkeeping's lock is poisoned: keeping a copy is always safe.
    pub fn may_drop(&self, chunk: &Hash, at: u64) -> bool {
        // PA
        match self.inner.lock() {
            Ok(i) => i.open.contains_key(&at) && i.arrived.get(chunk).is_none_or(|a| *a < at),
            Err(_) => false,
        }
    }

    /// Ends a hand-over; arrivals older than every hand-over still in flight are forgotten.
    fn end(&self, at: u64) {
        // A
        let Ok(mut i) = self.inner.lock() else {
            return;
        };
        if let Some(n) = i.open.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                i.open.remove(&at);
            }
        }
        match i.open.keys().next().copied() {
            Some(oldest) => i.arrived.retain(|_, a| *a >= oldest),
            None => i.arrived.clear(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A
        self.custody.end(self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks with a remembered arrival (what the bookkeeping holds).
    fn remembered(c: &Custody) -> usize {
        c.inner.lock().map(|i| i.arrived.len()).unwrap_or(0)
    }

    #[test]
    fn a_slice_that_arrived_during_a_hand_over_is_kept() {
        let c = Arc::new(Custody::default());
        let chunk = Hash([1; 32]);
        let other = Hash([2; 32]);
        c.arriving(&chunk);
        assert_eq!(remembered(&c), 0, "no hand-over in flight needs it");
        let t = c.begin();
        assert!(c.may_drop(&chunk, t.at()), "nothing arrived");
        c.arriving(&chunk);
        assert!(
            !c.may_drop(&chunk, t.at()),
            "the peer gave it back meanwhile"
        );
        assert!(c.may_drop(&other, t.at()), "another chunk is not concerned");
        // A hand-over that begins after the arrival hands over the copy that arrived.
        let later = c.begin();
        assert!(c.may_drop(&chunk, later.at()));
        // Once a hand-over's ticket ended (cancelled), it may drop nothing.
        let at = later.at();
        drop(later);
        assert!(!c.may_drop(&other, at));
    }

    #[test]
    fn arrivals_are_forgotten_once_no_hand_over_can_need_them() {
        let c = Arc::new(Custody::default());
        let t = c.begin();
        c.arriving(&Hash([1; 32]));
        let u = c.begin();
        c.arriving(&Hash([2; 32]));
        drop(t);
        assert_eq!(remembered(&c), 1, "only what arrived after u began");
        assert!(!c.may_drop(&Hash([2; 32]), u.at()));
        drop(u);
        assert_eq!(remembered(&c), 0);
    }
}
