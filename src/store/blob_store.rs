//! Blob records by hash.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::Blob;
use crate::store::{Db, RoTxn, RwTxn};

/// The `blobs` database: blob hash -> encoded Blob.
pub struct BlobStore(pub(crate) Db);

impl BlobStore {
    /// Stores a blob under its hash and returns the hash.
    pub fn put(&self, txn: &mut RwTxn, blob: &Blob) -> Result<Hash> {
        // PA
        let bytes = blob.encode()?;
        let hash = Hash::of(&bytes);
        self.0.put(txn, &hash.0, &bytes)?;
        Ok(hash)
    }

    /// Reads and verifies a blob.
    pub fn get(&self, txn: &RoTxn, hash: &Hash) -> Result<Option<Blob>> {
        // A
        match self.0.get(txn, &hash.0)? {
            None => Ok(None),
            Some(b) if Hash::of(b) != *hash => Err(Error::Corrupt(format!(
                "blob record {} does not match its hash",
                hash.short()
            ))),
            Some(b) => Blob::decode(b).map(Some),
        }
    }

    /// Hashes of the blob records whose hash starts with `prefix` (in-memory lists keep
    /// a few bytes of a hash and find the rest here).
    pub fn with_prefix(&self, txn: &RoTxn, prefix: &[u8]) -> Result<Vec<Hash>> {
        // A
        let mut out = Vec::new();
        for item in self.0.prefix_iter(txn, prefix)? {
            let (k, _) = item?;
            if let Ok(k) = k.try_into() {
                out.push(Hash(k));
            }
        }
        Ok(out)
    }

    /// Deletes a blob record.
    pub fn delete(&self, txn: &mut RwTxn, hash: &Hash) -> Result<()> {
        // PA
        self.0.delete(txn, &hash.0)?;
        Ok(())
    }

    /// Up to `limit` blob hashes after `after`, in order (for streaming verification).
    pub fn page(&self, txn: &RoTxn, after: Option<Hash>, limit: usize) -> Result<Vec<Hash>> {
        // A
        let iter = crate::store::iter_after(&self.0, txn, after.as_ref().map(|a| &a.0[..]))?;
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, _) = item?;
            out.push(Hash(
                k.try_into()
                    .map_err(|_| Error::malformed("blob", "key is not 32 bytes"))?,
            ));
        }
        Ok(out)
    }

    /// Number of blob records.
    pub fn len(&self, txn: &RoTxn) -> Result<u64> {
        // A
        Ok(self.0.len(txn)?)
    }

    /// True when there are no blobs.
    pub fn is_empty(&self, txn: &RoTxn) -> Result<bool> {
        // A
        Ok(self.len(txn)? == 0)
    }
}
