//! Sequence numbers that never come back: the next number of a database whose keys start
//! with a `u64` big-endian is above its last key's and at least a mark kept in `meta`, so deleting (or
//! losing) the last row never hands its number out again. A number given out twice would
//! let one index row name two records, and a replication cursor skip a version.

use crate::error::{Error, Result};
use crate::store::{Db, RoTxn, RwTxn};

/// The numbering of one database.
#[derive(Clone, Copy)]
pub(crate) struct Sequence {
    /// The database numbered (keys: `u64` big-endian, perhaps followed by more).
    pub(crate) db: Db,
    /// The store's `meta` database, which holds the mark.
    pub(crate) meta: Db,
    /// The mark's key in `meta` (value: the next number, `u64` little-endian).
    pub(crate) mark: &'static [u8],
    /// The first number given out.
    pub(crate) first: u64,
}

/// Parses an 8-byte big-endian sequence number.
pub(crate) fn seq_of(what: &'static str, bytes: &[u8]) -> Result<u64> {
    // A
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::malformed(what, "sequence is not 8 bytes"))
}

impl Sequence {
    /// The number the next row will take.
    pub(crate) fn peek(&self, txn: &RoTxn) -> Result<u64> {
        // A
        let after_last = match self.db.last(txn)? {
            None => self.first,
            Some((k, _)) => seq_of("sequence", k.get(..8).unwrap_or(k))?
                .checked_add(1)
                .ok_or_else(|| Error::Corrupt("the last sequence number is the largest".into()))?,
        };
        let mark = match self.meta.get(txn, self.mark)? {
            Some(b) => u64::from_le_bytes(b.try_into().map_err(|_| {
                Error::Corrupt(format!("bad {} mark", String::from_utf8_lossy(self.mark)))
            })?),
            None => 0,
        };
        Ok(after_last.max(mark))
    }

    /// Takes the next number.
    pub(crate) fn take(&self, txn: &mut RwTxn) -> Result<u64> {
        // PA
        let seq = self.peek(txn)?;
        self.meta.put(txn, self.mark, &(seq + 1).to_le_bytes())?;
        Ok(seq)
    }

    /// Makes the next number at least `next` (an upgrade that dropped the last rows).
    pub(crate) fn raise_to(&self, txn: &mut RwTxn, next: u64) -> Result<()> {
        // PA
        let seq = self.peek(txn)?.max(next);
        Ok(self.meta.put(txn, self.mark, &seq.to_le_bytes())?)
    }

    /// Writes the mark again, unchanged (see `LocalSealedSliceStore::rewrite_next_seq`).
    pub(crate) fn rewrite(&self, txn: &mut RwTxn) -> Result<()> {
        // A
        let seq = self.peek(txn)?;
        Ok(self.meta.put(txn, self.mark, &seq.to_le_bytes())?)
    }
}
