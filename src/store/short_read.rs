//! A read transaction shared by a run of quick lookups.
//!
//! `put -r`'s reading thread looks up two or three rows per small file (the key's heads,
//! each chunk's record). A read transaction of its own for each cost an allocation, a slot
//! in LMDB's reader table and a look at the meta pages, about as much as the lookup itself.
//! Sharing one for long would keep LMDB from reusing the pages the writer frees meanwhile,
//! so it is renewed after a few lookups or milliseconds, and let go before any wait.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::{Lmdb, RoTxn};

/// Lookups one transaction serves at most.
const USES: u32 = 64;
/// Oldest a transaction gets before it is renewed.
const AGE: Duration = Duration::from_millis(5);

/// A read transaction renewed every [`USES`] lookups or [`AGE`].
pub(crate) struct ShortRead<'e> {
    lmdb: &'e Lmdb,
    txn: Option<(RoTxn<'e>, u32, Instant)>,
}

impl<'e> ShortRead<'e> {
    /// No transaction yet: the first lookup opens one.
    pub(crate) fn new(lmdb: &'e Lmdb) -> Self {
        // A
        ShortRead { lmdb, txn: None }
    }

    /// The transaction for one more lookup: the open one while it is young and not used
    /// up, else a new one.
    pub(crate) fn txn(&mut self) -> Result<&RoTxn<'e>> {
        // A
        let fresh =
            |(_, uses, opened): &(RoTxn, u32, Instant)| *uses < USES && opened.elapsed() < AGE;
        if !self.txn.as_ref().is_some_and(fresh) {
            // The old one first: LMDB frees its reader slot for the new one.
            self.txn = None;
            self.txn = Some((self.lmdb.read()?, 0, Instant::now()));
        } else {
            // Counted as `Lmdb::read` counts each transaction: what the lookups map is
            // bounded the same way (src/store/mapped_pages.rs).
            self.lmdb.slices.mapped.note_lookup();
        }
        match &mut self.txn {
            Some((txn, uses, _)) => {
                *uses += 1;
                Ok(txn)
            }
            None => Err(crate::error::Error::Internal("no read transaction".into())),
        }
    }

    /// Ends the open transaction, before a wait of unknown length.
    pub(crate) fn release(&mut self) {
        // A
        self.txn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lmdb;

    #[test]
    fn a_transaction_serves_a_few_lookups_then_is_renewed_and_sees_new_writes() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let mut r = ShortRead::new(&lmdb);
        let first = r.txn().unwrap().id();
        for _ in 1..USES {
            assert_eq!(r.txn().unwrap().id(), first);
        }
        let id = crate::hash::Hash::of(b"log");
        let mut w = lmdb.write().unwrap();
        lmdb.meta.put_log_id(&mut w, &id).unwrap();
        lmdb.commit(w).unwrap();
        let t = r.txn().unwrap();
        assert_ne!(t.id(), first);
        assert_eq!(lmdb.meta.log_id(t).unwrap(), Some(id));
        r.release();
        assert!(r.txn.is_none());
    }
}
