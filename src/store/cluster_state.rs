//! Records of the cluster a store belongs to (members, invitations, cursors), kept in the
//! store's own transactions so that the node and `ouro` commands on the same store agree.
//! The cluster crate owns their encodings (FORMAT.md, "cluster"); here they are bytes.

use crate::error::Result;
use crate::store::{Db, RoTxn, RwTxn};

/// Key of the cluster identity record in the `cluster` database: a store that holds it is a
/// cluster node's (the cluster crate writes it; the library only asks whether it is there).
pub const CLUSTER_INFO_KEY: &[u8] = b"info";

/// The `cluster` database: byte key -> byte value.
pub struct ClusterState(pub(crate) Db);

impl ClusterState {
    /// The value under `key`.
    pub fn get(&self, txn: &RoTxn, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // A
        Ok(self.0.get(txn, key)?.map(<[u8]>::to_vec))
    }

    /// Sets `key` to `value`.
    pub fn put(&self, txn: &mut RwTxn, key: &[u8], value: &[u8]) -> Result<()> {
        // PA
        Ok(self.0.put(txn, key, value)?)
    }

    /// Deletes `key`.
    pub fn delete(&self, txn: &mut RwTxn, key: &[u8]) -> Result<()> {
        // PA
        self.0.delete(txn, key)?;
        Ok(())
    }

    /// Every `(key, value)` whose key starts with `prefix`.
    pub fn scan(&self, txn: &RoTxn, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // A
        let mut out = Vec::new();
        for item in self.0.prefix_iter(txn, prefix)? {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}
