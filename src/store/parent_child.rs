//! parentChildIndex: parent -> children, to find the heads a removal exposes and to walk
//! history forwards.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// The `parent_child` database: `[parent][child]` -> empty.
pub struct ParentChild(pub(crate) Db);

fn row(parent: &Hash, child: &Hash) -> [u8; 64] {
    // A
    let mut r = [0u8; 64];
    r[..32].copy_from_slice(&parent.0);
    r[32..].copy_from_slice(&child.0);
    r
}

impl ParentChild {
    /// Records that `child` has `parent`.
    pub fn put(&self, txn: &mut RwTxn, parent: &Hash, child: &Hash) -> Result<()> {
        // PA
        Ok(self.0.put(txn, &row(parent, child), &[])?)
    }

    /// Forgets the edge.
    pub fn delete(&self, txn: &mut RwTxn, parent: &Hash, child: &Hash) -> Result<()> {
        // PA
        self.0.delete(txn, &row(parent, child))?;
        Ok(())
    }

    /// The children of a version.
    pub fn children(&self, txn: &RoTxn, parent: &Hash) -> Result<Vec<Hash>> {
        // A
        let mut out = Vec::new();
        for item in self.0.prefix_iter(txn, &parent.0)? {
            let (k, _) = item?;
            let c: [u8; 32] = k
                .get(32..)
                .and_then(|c| c.try_into().ok())
                .ok_or_else(|| Error::malformed("parent_child", "bad row"))?;
            out.push(Hash(c));
        }
        Ok(out)
    }
}
