//! KeyIndex: which recipient can unwrap which key. Each row holds one epoch's secret bundle
//! wrapped (age) for one recipient; adding a recipient adds rows, never re-encrypts data.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// Type tag of a KeyIndex row.
pub const WRAPPED_TAG: u8 = b'W';

/// One wrapped key bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The recipient in text form (`age1...`).
    pub recipient: String,
    /// Binary age file holding the epoch's key bundle.
    pub wrapped: Vec<u8>,
}

/// The `key_index` database: `[epoch u32 BE][recipient fingerprint]` -> WrappedKey.
pub struct KeyIndex(pub(crate) Db);

fn row_key(epoch: u32, fingerprint: &Hash) -> [u8; 36] {
    // A
    let mut k = [0u8; 36];
    k[..4].copy_from_slice(&epoch.to_be_bytes());
    k[4..].copy_from_slice(&fingerprint.0);
    k
}

impl KeyIndex {
    /// Stores a wrapped bundle for a recipient.
    pub fn put(
        &self,
        txn: &mut RwTxn,
        epoch: u32,
        fingerprint: &Hash,
        w: &WrappedKey,
    ) -> Result<()> {
        // PA
        Ok(self.0.put(
            txn,
            &row_key(epoch, fingerprint),
            &codec::encode(WRAPPED_TAG, w)?,
        )?)
    }

    /// The bundle wrapped for one recipient in one epoch.
    pub fn get(&self, txn: &RoTxn, epoch: u32, fingerprint: &Hash) -> Result<Option<WrappedKey>> {
        // A
        self.0
            .get(txn, &row_key(epoch, fingerprint))?
            .map(|b| codec::decode("wrapped key", WRAPPED_TAG, b))
            .transpose()
    }

    /// Removes a recipient's row for an epoch; true when it existed.
    pub fn delete(&self, txn: &mut RwTxn, epoch: u32, fingerprint: &Hash) -> Result<bool> {
        // PA
        Ok(self.0.delete(txn, &row_key(epoch, fingerprint))?)
    }

    /// Every recipient of an epoch.
    pub fn recipients(&self, txn: &RoTxn, epoch: u32) -> Result<Vec<WrappedKey>> {
        // A
        let mut out = Vec::new();
        for item in self.0.prefix_iter(txn, &epoch.to_be_bytes())? {
            let (_, v) = item?;
            out.push(codec::decode("wrapped key", WRAPPED_TAG, v)?);
        }
        if out.is_empty() {
            return Err(Error::Corrupt(format!(
                "key epoch {epoch} has no recipients"
            )));
        }
        Ok(out)
    }
}
