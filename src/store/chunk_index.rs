//! Chunk records and their reference counts. A chunk is referenced once per occurrence in a
//! committed blob; gc frees chunks whose count is zero, so it never needs the whole index
//! in memory and never frees a chunk another blob still shares. A pack's count is the
//! number of member records that name it, kept here by every put and delete of a record, so
//! no caller can forget it: a pack is freed, like a chunk, once its count is zero. A delta
//! counts, the same way, as a reference of its base.

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

    /// Stores a chunk record (its slices must be stored in the same transaction). A member
    /// record counts as a reference of its pack, a delta also of its base; replacing one
    /// moves the references.
    pub fn put(&self, txn: &mut RwTxn, id: &Hash, record: &ChunkRecord) -> Result<()> {
        // PA
        let old = self.get(txn, id)?;
        if old.as_ref() == Some(record) {
            return Ok(());
        }
        // Taken first, then released: a record moved within the same pack or onto the same
        // base never lets a count touch zero in between.
        for held in record.holds() {
            self.add_refs(txn, &held, 1)?;
        }
        for held in old.iter().flat_map(ChunkRecord::holds) {
            self.release(txn, &held)?;
        }
        Ok(self.records.put(txn, &id.0, &record.encode()?)?)
    }

    /// Takes one reference from a pack whose member record goes (or a base whose delta
    /// does); true when none is left.
    /// A count already at zero (a damaged store) stays there rather than stopping gc.
    fn release(&self, txn: &mut RwTxn, pack: &Hash) -> Result<bool> {
        // PA
        Ok(match self.refs(txn, pack)? {
            0 => true,
            _ => self.add_refs(txn, pack, -1)? == 0,
        })
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

    /// Deletes a chunk record and its count. Returns the records this one held (its pack,
    /// a delta's base) that it was the last reference of: they are then free to go.
    pub fn delete(&self, txn: &mut RwTxn, id: &Hash) -> Result<Vec<Hash>> {
        // PA
        let old = match self.records.get(txn, &id.0)? {
            Some(bytes) => ChunkRecord::decode(bytes).ok(),
            None => None,
        };
        self.records.delete(txn, &id.0)?;
        self.refs.delete(txn, &id.0)?;
        let mut emptied = Vec::new();
        for held in old.iter().flat_map(ChunkRecord::holds) {
            if self.release(txn, &held)? {
                emptied.push(held);
            }
        }
        Ok(emptied)
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
