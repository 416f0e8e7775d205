//! parentChildIndex: parent -> children, to find the heads a removal exposes and to walk
//! history forwards. A row names the child by its blob log sequence: a parent may not be
//! stored (yet), but a child always is.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::blob_store::BlobStore;
use crate::store::{Db, RoTxn, RwTxn};

/// The `parent_child` database: `[parent hash][child sequence u64 BE]` -> empty, over the
/// blob records it names.
pub struct ParentChild {
    /// The rows.
    pub(crate) rows: Db,
    /// The blob records, which give each child's hash.
    pub(crate) blobs: BlobStore,
}

/// The row of the edge from `parent` to the child logged at `child`.
pub(crate) fn row(parent: &Hash, child: u64) -> [u8; 40] {
    // A
    let mut r = [0u8; 40];
    r[..32].copy_from_slice(&parent.0);
    r[32..].copy_from_slice(&child.to_be_bytes());
    r
}

impl ParentChild {
    /// Records that the version logged at `child` has `parent`.
    pub fn put(&self, txn: &mut RwTxn, parent: &Hash, child: u64) -> Result<()> {
        // PA
        Ok(self.rows.put(txn, &row(parent, child), &[])?)
    }

    /// Forgets the edge.
    pub fn delete(&self, txn: &mut RwTxn, parent: &Hash, child: u64) -> Result<()> {
        // PA
        self.rows.delete(txn, &row(parent, child))?;
        Ok(())
    }

    /// The children of a version.
    pub fn children(&self, txn: &RoTxn, parent: &Hash) -> Result<Vec<Hash>> {
        // A
        let mut out = Vec::new();
        for item in self.rows.prefix_iter(txn, &parent.0)? {
            let (k, _) = item?;
            let seq = k
                .get(32..)
                .and_then(|c| <[u8; 8]>::try_from(c).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::malformed("parent_child", "bad row"))?;
            // A child with no log row (damage verify reports) is left out.
            match self.blobs.hash_at(txn, seq) {
                Ok(Some(child)) => out.push(child),
                Ok(None) => tracing::warn!(seq, "a listed child version has no record"),
                Err(e) => tracing::warn!(seq, error = %e, "a listed child version is damaged"),
            }
        }
        Ok(out)
    }
}
