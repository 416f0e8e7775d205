//! LocalSealedSliceStore: sealed slices by their hash, verified on every read.

use crate::error::Result;
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// The `slices` database: slice hash -> encoded SealedSlice.
pub struct LocalSealedSliceStore(pub(crate) Db);

/// What a read of one slice found.
pub enum SliceRead<'t> {
    /// Present and its bytes hash to its address.
    Ok(&'t [u8]),
    /// Absent.
    Missing,
    /// Present but damaged (hash mismatch).
    Corrupt,
}

impl LocalSealedSliceStore {
    /// Stores a slice (idempotent: same hash, same bytes).
    pub fn put(&self, txn: &mut RwTxn, hash: &Hash, encoded: &[u8]) -> Result<()> {
        // PA
        Ok(self.0.put(txn, &hash.0, encoded)?)
    }

    /// Reads a slice and checks it against its hash; the bytes borrow the memory map.
    pub fn get<'t>(&self, txn: &'t RoTxn, hash: &Hash) -> Result<SliceRead<'t>> {
        // A
        Ok(match self.0.get(txn, &hash.0)? {
            None => SliceRead::Missing,
            Some(b) if Hash::of(b) == *hash => SliceRead::Ok(b),
            Some(_) => SliceRead::Corrupt,
        })
    }

    /// Stored length of a slice, if present (no hash check).
    pub fn len_of(&self, txn: &RoTxn, hash: &Hash) -> Result<Option<usize>> {
        // A
        Ok(self.0.get(txn, &hash.0)?.map(<[u8]>::len))
    }

    /// Deletes a slice; true when it existed.
    pub fn delete(&self, txn: &mut RwTxn, hash: &Hash) -> Result<bool> {
        // PA
        Ok(self.0.delete(txn, &hash.0)?)
    }

    /// Number of slices and their total encoded bytes (streams over the database).
    pub fn totals(&self, txn: &RoTxn) -> Result<(u64, u64)> {
        // A
        let mut n = 0;
        let mut bytes = 0;
        for item in self.0.iter(txn)? {
            let (_, v) = item?;
            n += 1;
            bytes += v.len() as u64;
        }
        Ok((n, bytes))
    }

    /// Overwrites a slice's stored bytes without any check: only for tests that simulate
    /// bit rot.
    #[doc(hidden)]
    pub fn damage_for_tests(
        &self,
        txn: &mut RwTxn,
        hash: &Hash,
        bytes: Option<&[u8]>,
    ) -> Result<()> {
        // A
        match bytes {
            Some(b) => self.0.put(txn, &hash.0, b)?,
            None => {
                self.0.delete(txn, &hash.0)?;
            }
        }
        Ok(())
    }
}
