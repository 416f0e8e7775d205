//! Chunk records and their reference counts. A chunk is referenced once per occurrence in a
//! committed blob; gc frees chunks whose count is zero, so it never needs the whole index
//! in memory and never frees a chunk another blob still shares.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::store::{Db, RoTxn, RwTxn};

/// The `chunks` and `chunk_refs` databases.
pub struct ChunkIndex {
    pub(crate) records: Db,
    pub(crate) refs: Db,
}

impl ChunkIndex {
    /// The record of a chunk, if stored.
    pub fn get(&self, txn: &RoTxn, id: &Hash) -> Result<Option<ChunkRecord>> {
        // A
        self.records
            .get(txn, &id.0)?
            .map(ChunkRecord::decode)
            .transpose()
    }

    /// True when the chunk is stored.
    pub fn contains(&self, txn: &RoTxn, id: &Hash) -> Result<bool> {
        // A
        Ok(self.records.get(txn, &id.0)?.is_some())
    }

    /// Stores a chunk record (its slices must be stored in the same transaction).
    pub fn put(&self, txn: &mut RwTxn, id: &Hash, record: &ChunkRecord) -> Result<()> {
        // PA
        Ok(self.records.put(txn, &id.0, &record.encode())?)
    }

    /// Current reference count (0 when absent).
    pub fn refs(&self, txn: &RoTxn, id: &Hash) -> Result<u64> {
        // A
        Ok(match self.refs.get(txn, &id.0)? {
            None => 0,
            Some(b) => u64::from_le_bytes(
                b.try_into()
                    .map_err(|_| Error::malformed("chunk refcount", "not 8 bytes"))?,
            ),
        })
    }

    /// Adds `delta` (may be negative) to the reference count; a count of zero is deleted.
    pub fn add_refs(&self, txn: &mut RwTxn, id: &Hash, delta: i64) -> Result<u64> {
        // PA
        let now = self.refs(txn, id)? as i64 + delta;
        if now < 0 {
            return Err(Error::Corrupt(format!(
                "reference count of chunk {} would go negative",
                id.short()
            )));
        }
        if now == 0 {
            self.refs.delete(txn, &id.0)?;
        } else {
            self.refs.put(txn, &id.0, &(now as u64).to_le_bytes())?;
        }
        Ok(now as u64)
    }

    /// Deletes a chunk record and its count.
    pub fn delete(&self, txn: &mut RwTxn, id: &Hash) -> Result<()> {
        // PA
        self.records.delete(txn, &id.0)?;
        self.refs.delete(txn, &id.0)?;
        Ok(())
    }

    /// Up to `limit` chunks after `after` (exclusive), in id order: lets gc and verify stream
    /// over the index in short transactions. A record that does not decode comes back as its
    /// error, so one damaged record never stops a scan.
    pub fn page(
        &self,
        txn: &RoTxn,
        after: Option<Hash>,
        limit: usize,
    ) -> Result<Vec<(Hash, Result<ChunkRecord>)>> {
        // A
        let mut out = Vec::new();
        let iter = crate::store::iter_after(&self.records, txn, after.as_ref().map(|a| &a.0[..]))?;
        for item in iter.take(limit) {
            let (k, v) = item?;
            let id = Hash(
                k.try_into()
                    .map_err(|_| Error::malformed("chunk", "key is not 32 bytes"))?,
            );
            out.push((id, ChunkRecord::decode(v)));
        }
        Ok(out)
    }

    /// Number of chunk records.
    pub fn len(&self, txn: &RoTxn) -> Result<u64> {
        // A
        Ok(self.records.len(txn)?)
    }

    /// True when no chunk is stored.
    pub fn is_empty(&self, txn: &RoTxn) -> Result<bool> {
        // A
        Ok(self.len(txn)? == 0)
    }
}
