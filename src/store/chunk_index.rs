//! Chunk records and their reference counts. A chunk is referenced once per occurrence in a
//! committed blob; gc frees chunks whose count is zero, so it never needs the whole index
//! in memory and never frees a chunk another blob still shares. A pack's count is the
//! number of member records that name it, kept here by every put and delete of a record, so
//! no caller can forget it: a pack is freed, like a chunk, once its count is zero. A delta
//! counts, the same way, as a reference of its base.
//!
//! Records are appended under a sequence number, and a chunk id maps to its sequence and
//! count in 16 bytes: a put rewrites the last pages of the records and one small index page
//! per new chunk, instead of a random page of records and one of counts (the pages a commit
//! rewrites stay in the file as free pages until the next put).

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::store::sequence::Sequence;
use crate::store::{Db, RoTxn, RwTxn};

/// The `chunks` (sequence -> ChunkRecord) and `chunk_refs` (chunk id -> sequence and
/// reference count) databases.
pub struct ChunkIndex {
    /// Sequence number (u64 BE, from 1) -> encoded ChunkRecord.
    pub(crate) records: Db,
    /// Chunk id -> [`Entry`].
    pub(crate) refs: Db,
    /// The store's `meta` database, which keeps sequence numbers from coming back.
    pub(crate) meta: Db,
}

/// `meta` key of the next chunk record sequence number (`u64` little-endian).
const NEXT_SEQ_KEY: &[u8] = b"next_chunk_seq";

/// A chunk id's row in `chunk_refs`: where its record is (0: none, only references) and how
/// many references it has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The record's sequence in `chunks`; 0 when the chunk has no record.
    pub(crate) seq: u64,
    /// Reference count.
    pub(crate) refs: u64,
}

impl Entry {
    /// Bytes of an encoded entry.
    pub(crate) const LEN: usize = 16;

    /// `seq` u64 BE ‖ `refs` u64 LE.
    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        // A
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..].copy_from_slice(&self.refs.to_le_bytes());
        b
    }

    /// Decodes an entry, refusing any other length.
    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        // A
        let b: [u8; Self::LEN] = b
            .try_into()
            .map_err(|_| Error::malformed("chunk reference", "not 16 bytes"))?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        let mut refs = [0u8; 8];
        refs.copy_from_slice(&b[8..]);
        Ok(Entry {
            seq: u64::from_be_bytes(seq),
            refs: u64::from_le_bytes(refs),
        })
    }
}

impl ChunkIndex {
    /// The row of a chunk id.
    fn entry(&self, txn: &RoTxn, id: &Hash) -> Result<Option<Entry>> {
        // A
        self.refs.get(txn, &id.0)?.map(Entry::decode).transpose()
    }

    /// The numbering of the records: from 1, never handing out a number twice (a row
    /// whose record was lost must not come to name another chunk's).
    pub(crate) fn sequence(&self) -> Sequence {
        // A
        Sequence {
            db: self.records,
            meta: self.meta,
            mark: NEXT_SEQ_KEY,
            first: 1,
        }
    }

    /// The encoded record of a chunk id, if stored (a row naming a record that is not
    /// there counts as none, as a record lost with its id did before).
    fn raw<'t>(&self, txn: &'t RoTxn, id: &Hash) -> Result<Option<&'t [u8]>> {
        // A
        match self.entry(txn, id)? {
            Some(e) if e.seq != 0 => Ok(self.records.get(txn, &e.seq.to_be_bytes())?),
            _ => Ok(None),
        }
    }

    /// The record of a chunk, if stored.
    pub fn get(&self, txn: &RoTxn, id: &Hash) -> Result<Option<ChunkRecord>> {
        // A
        self.raw(txn, id)?.map(ChunkRecord::decode).transpose()
    }

    /// True when the chunk is stored.
    pub fn contains(&self, txn: &RoTxn, id: &Hash) -> Result<bool> {
        // A
        Ok(self.raw(txn, id)?.is_some())
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
        let mut entry = self.entry(txn, id)?.unwrap_or_default();
        let bytes = record.encode()?;
        if entry.seq != 0 && old.is_some() {
            self.records.put(txn, &entry.seq.to_be_bytes(), &bytes)?;
            return Ok(());
        }
        entry.seq = self.sequence().take(txn)?;
        let key = entry.seq.to_be_bytes();
        self.records
            .put_with_flags(txn, heed::PutFlags::APPEND, &key, &bytes)?;
        Ok(self.refs.put(txn, &id.0, &entry.encode())?)
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
        Ok(self.entry(txn, id)?.map_or(0, |e| e.refs))
    }

    /// Adds `delta` (may be negative) to the reference count; the row of a chunk with no
    /// record goes at zero.
    pub fn add_refs(&self, txn: &mut RwTxn, id: &Hash, delta: i64) -> Result<u64> {
        // PA
        let mut entry = self.entry(txn, id)?.unwrap_or_default();
        let now = entry.refs as i64 + delta;
        if now < 0 {
            return Err(Error::Corrupt(format!(
                "reference count of chunk {} would go negative",
                id.short()
            )));
        }
        entry.refs = now as u64;
        if entry == Entry::default() {
            self.refs.delete(txn, &id.0)?;
        } else {
            self.refs.put(txn, &id.0, &entry.encode())?;
        }
        Ok(entry.refs)
    }

    /// Deletes a chunk record and its count. Returns the records this one held (its pack,
    /// a delta's base) that it was the last reference of: they are then free to go.
    pub fn delete(&self, txn: &mut RwTxn, id: &Hash) -> Result<Vec<Hash>> {
        // PA
        let Some(entry) = self.entry(txn, id)? else {
            return Ok(Vec::new());
        };
        let key = entry.seq.to_be_bytes();
        let old = self.raw(txn, id)?.and_then(|b| ChunkRecord::decode(b).ok());
        if entry.seq != 0 {
            self.records.delete(txn, &key)?;
        }
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
        self.walk(txn, after.as_ref().map(|a| &a.0[..]), None, |id, record| {
            out.push((id, record.and_then(ChunkRecord::decode)));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Calls `f` with every stored chunk's id and encoded record, in id order, after
    /// `after` or (else) starting with `prefix`, while it returns true.
    pub(crate) fn walk<'t>(
        &self,
        txn: &'t RoTxn,
        after: Option<&[u8]>,
        prefix: Option<&[u8]>,
        mut f: impl FnMut(Hash, Result<&'t [u8]>) -> Result<bool>,
    ) -> Result<()> {
        // A
        let iter: crate::store::KvIter<'t> = match prefix {
            Some(p) if !p.is_empty() => Box::new(self.refs.prefix_iter(txn, p)?),
            _ => crate::store::iter_after(&self.refs, txn, after)?,
        };
        for item in iter {
            let (k, v) = item?;
            let id = Hash(
                k.try_into()
                    .map_err(|_| Error::malformed("chunk", "key is not 32 bytes"))?,
            );
            let record = match Entry::decode(v) {
                Ok(Entry { seq: 0, .. }) => continue,
                Ok(e) => match self.records.get(txn, &e.seq.to_be_bytes())? {
                    Some(r) => Ok(r),
                    None => continue,
                },
                Err(e) => Err(e),
            };
            if !f(id, record)? {
                break;
            }
        }
        Ok(())
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
