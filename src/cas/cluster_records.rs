//! The `cluster` database as the cluster crate sees it: byte records under keys it chooses
//! (members, invitations, addresses, replication cursors), each read or written in a
//! transaction of its own, so that no LMDB type crosses into the cluster crate and nothing
//! there can touch the store's other databases.

use crate::cas::Replica;
use crate::error::{Error, Result};

impl Replica<'_> {
    /// The cluster record under `key`.
    pub fn cluster_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // A
        let txn = self.lmdb().read()?;
        self.lmdb().cluster.get(&txn, key)
    }

    /// Stores `value` under `key` among the cluster records.
    pub fn put_cluster_record(&self, key: &[u8], value: &[u8]) -> Result<()> {
        // PA
        let lmdb = self.lmdb();
        let mut txn = lmdb.write()?;
        lmdb.cluster.put(&mut txn, key, value)?;
        lmdb.commit(txn)
    }

    /// Stores the record saying which cluster this store belongs to (under
    /// [`CLUSTER_INFO_KEY`](crate::cas::CLUSTER_INFO_KEY)). Puts on a store of its own commit
    /// slices ahead of their records, which the cluster's hand-over walk must never meet:
    /// this waits for running puts (taking the gc lock exclusively) and frees what dead ones
    /// left unfinished, in the transaction that makes the store a cluster's.
    pub fn put_cluster_info(&self, value: &[u8]) -> Result<()> {
        // PA
        let _lock = crate::store::lock::GcLock::acquire(self.path(), true, &|| {
            tracing::warn!("waiting for running puts to finish")
        })?;
        let lmdb = self.lmdb();
        let mut txn = lmdb.write()?;
        lmdb.slices.discard_unfinished(&mut txn)?;
        lmdb.cluster
            .put(&mut txn, crate::cas::CLUSTER_INFO_KEY, value)?;
        lmdb.commit(txn)
    }

    /// Every cluster record whose key starts with `prefix`, in key order.
    pub fn cluster_records(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // A
        let txn = self.lmdb().read()?;
        self.lmdb().cluster.scan(&txn, prefix)
    }

    /// Reads the record under `key` and stores what `f` makes of it, in one write
    /// transaction (no other writer in between); `f` returning `None` leaves it. True when
    /// it stored something.
    pub fn update_cluster_record<E: From<Error>>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> std::result::Result<Option<Vec<u8>>, E>,
    ) -> std::result::Result<bool, E> {
        // PA
        let lmdb = self.lmdb();
        let mut txn = lmdb.write()?;
        let old = lmdb.cluster.get(&txn, key)?;
        let Some(new) = f(old.as_deref())? else {
            return Ok(false);
        };
        lmdb.cluster.put(&mut txn, key, &new)?;
        lmdb.commit(txn)?;
        Ok(true)
    }

    /// Bytes left on the store's file system, when known (a node's news to its peers).
    pub fn free_bytes(&self) -> Option<u64> {
        // A
        self.lmdb().free_bytes()
    }
}
