//! Versions removed by `rm` and not yet reclaimed by gc.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// Type tag of a removal record.
pub const REMOVED_TAG: u8 = b'R';

/// Why and when a version was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Time of the `rm` (ns).
    pub time: i64,
    /// True when the whole key was deleted (gc drops the record); false for one version,
    /// whose record gc keeps, hollow, so that history stays walkable.
    pub whole_key: bool,
    /// True once gc released the version's chunk references.
    pub released: bool,
}

/// The `removed` database: blob hash -> Removal.
pub struct Removed(pub(crate) Db);

impl Removed {
    /// Marks a version removed.
    pub fn put(&self, txn: &mut RwTxn, hash: &Hash, r: &Removal) -> Result<()> {
        // PA
        Ok(self.0.put(txn, &hash.0, &codec::encode(REMOVED_TAG, r)?)?)
    }

    /// The removal of a version, if removed.
    pub fn get(&self, txn: &RoTxn, hash: &Hash) -> Result<Option<Removal>> {
        // A
        self.0
            .get(txn, &hash.0)?
            .map(|b| codec::decode("removal", REMOVED_TAG, b))
            .transpose()
    }

    /// Forgets a removal (its blob is gone).
    pub fn delete(&self, txn: &mut RwTxn, hash: &Hash) -> Result<()> {
        // PA
        self.0.delete(txn, &hash.0)?;
        Ok(())
    }

    /// Up to `limit` removals gc still has work on (content to release or records to drop).
    pub fn pending(
        &self,
        txn: &RoTxn,
        after: Option<Hash>,
        limit: usize,
    ) -> Result<Vec<(Hash, Removal)>> {
        // A
        let iter = crate::store::iter_after(&self.0, txn, after.as_ref().map(|a| &a.0[..]))?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            let r: Removal = codec::decode("removal", REMOVED_TAG, v)?;
            let h = Hash(
                k.try_into()
                    .map_err(|_| Error::malformed("removal", "key is not 32 bytes"))?,
            );
            // Whole-key removals are pending until gc drops their records, even when an
            // earlier single-version removal already released the content.
            if !r.released || r.whole_key {
                out.push((h, r));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
