//! Blob records: appended to the blob log in the order this store learned them, found by
//! hash through a small index.
//!
//! A new version dirties the last pages of the log and one random page of the 8-byte hash
//! index, instead of a random page of full records: LMDB rewrites every page a transaction
//! touches, and the pages the last put rewrote stay in the file as free pages, so the
//! records' own pages would cost a store of small files their size twice over.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::Blob;
use crate::store::sequence::Sequence;
use crate::store::{Db, RoTxn, RwTxn};

use crate::store::sequence::seq_of;

/// `meta` key of the next blob log sequence number (`u64` little-endian).
const NEXT_SEQ_KEY: &[u8] = b"next_blob_seq";

/// The `blobs` database (blob hash -> sequence, u64 BE) over the `blob_log` database
/// (sequence -> the blob's hash ‖ its encoded record).
#[derive(Clone, Copy)]
pub struct BlobStore {
    /// Blob hash -> sequence number in `log`.
    pub(crate) by_hash: Db,
    /// Sequence number -> hash (32) ‖ encoded Blob. The hash names the version even when
    /// its record is damaged, so it can still be listed, removed and reported.
    pub(crate) log: Db,
    /// The store's `meta` database, which keeps sequence numbers from coming back.
    pub(crate) meta: Db,
}

impl BlobStore {
    /// The numbering of the log: from 1, never handing out a number twice.
    pub(crate) fn sequence(&self) -> Sequence {
        // A
        Sequence {
            db: self.log,
            meta: self.meta,
            mark: NEXT_SEQ_KEY,
            first: 1,
        }
    }

    /// Stores a blob at the end of the log (or finds it there) and returns its hash and
    /// sequence number.
    pub fn put(&self, txn: &mut RwTxn, blob: &Blob) -> Result<(Hash, u64)> {
        // PA
        let bytes = blob.encode()?;
        let hash = Hash::of(&bytes);
        if let Some(seq) = self.seq(txn, &hash)? {
            if self.log.get(txn, &seq.to_be_bytes())?.is_some() {
                return Ok((hash, seq));
            }
        }
        Ok((hash, self.append(txn, &hash, &bytes)?))
    }

    /// Logs the encoded blob `bytes` whose hash is `hash` under a new sequence and indexes
    /// it; returns the sequence. For a caller that found `hash` absent in this transaction.
    pub(crate) fn append(&self, txn: &mut RwTxn, hash: &Hash, bytes: &[u8]) -> Result<u64> {
        // PA
        let seq = self.sequence().take(txn)?;
        let row = [&hash.0[..], bytes].concat();
        self.log
            .put_with_flags(txn, heed::PutFlags::APPEND, &seq.to_be_bytes(), &row)?;
        self.by_hash.put(txn, &hash.0, &seq.to_be_bytes())?;
        Ok(seq)
    }

    /// The log sequence of version `hash` when it is indexed but its log row is gone (not
    /// damaged).
    pub(crate) fn record_gone(&self, txn: &RoTxn, hash: &Hash) -> Result<Option<u64>> {
        // A
        Ok(self
            .seq(txn, hash)?
            .filter(|seq| self.hash_at(txn, *seq).is_ok_and(|h| h.is_none())))
    }

    /// Reads and verifies a blob.
    pub fn get(&self, txn: &RoTxn, hash: &Hash) -> Result<Option<Blob>> {
        // A
        let Some(seq) = self.seq(txn, hash)? else {
            return Ok(None);
        };
        let Some(row) = self.log.get(txn, &seq.to_be_bytes())? else {
            return Err(Error::Corrupt(format!(
                "blob record {} is missing from the blob log (sequence {seq})",
                hash.short()
            )));
        };
        match row.split_at_checked(32) {
            Some((h, b)) if h == hash.0 && Hash::of(b) == *hash => Blob::decode(b).map(Some),
            _ => Err(Error::Corrupt(format!(
                "blob record {} does not match its hash",
                hash.short()
            ))),
        }
    }

    /// The sequence number of a stored blob.
    pub fn seq(&self, txn: &RoTxn, hash: &Hash) -> Result<Option<u64>> {
        // A
        self.by_hash
            .get(txn, &hash.0)?
            .map(|v| seq_of("blob index", v))
            .transpose()
    }

    /// The hash of the version logged at `seq` (None when no row is there).
    pub fn hash_at(&self, txn: &RoTxn, seq: u64) -> Result<Option<Hash>> {
        // A
        let Some(row) = self.log.get(txn, &seq.to_be_bytes())? else {
            return Ok(None);
        };
        row_hash(row).map(Some)
    }

    /// Hashes of the blob records whose hash starts with `prefix` (in-memory lists keep
    /// a few bytes of a hash and find the rest here).
    pub fn with_prefix(&self, txn: &RoTxn, prefix: &[u8]) -> Result<Vec<Hash>> {
        // A
        let mut out = Vec::new();
        for item in self.by_hash.prefix_iter(txn, prefix)? {
            let (k, _) = item?;
            if let Ok(k) = k.try_into() {
                out.push(Hash(k));
            }
        }
        Ok(out)
    }

    /// Deletes a blob record; returns the sequence number it had.
    pub fn delete(&self, txn: &mut RwTxn, hash: &Hash) -> Result<Option<u64>> {
        // PA
        let Some(seq) = self.seq(txn, hash)? else {
            return Ok(None);
        };
        self.by_hash.delete(txn, &hash.0)?;
        self.log.delete(txn, &seq.to_be_bytes())?;
        Ok(Some(seq))
    }

    /// Up to `limit` blob hashes after `after`, in order (for streaming verification).
    pub fn page(&self, txn: &RoTxn, after: Option<Hash>, limit: usize) -> Result<Vec<Hash>> {
        // A
        let iter = crate::store::iter_after(&self.by_hash, txn, after.as_ref().map(|a| &a.0[..]))?;
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
        Ok(self.by_hash.len(txn)?)
    }

    /// True when there are no blobs.
    pub fn is_empty(&self, txn: &RoTxn) -> Result<bool> {
        // A
        Ok(self.len(txn)? == 0)
    }
}

/// The hash at the start of a blob log row.
pub(crate) fn row_hash(row: &[u8]) -> Result<Hash> {
    // A
    row.get(..32)
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .map(Hash)
        .ok_or_else(|| Error::malformed("blob log", "row shorter than a hash"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlobKind, VersionMeta};
    use crate::store::Lmdb;

    fn blob(key: &str, created: i64) -> Blob {
        Blob {
            key: key.into(),
            parents: vec![],
            created,
            kind: BlobKind::VersionVector,
            size: 0,
            chunks: vec![],
            meta: VersionMeta::None,
        }
    }

    #[test]
    fn records_are_logged_found_by_hash_and_sequences_never_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let mut t = lmdb.write().unwrap();
        let (a, one) = lmdb.blobs.put(&mut t, &blob("a", 1)).unwrap();
        let (b, two) = lmdb.blobs.put(&mut t, &blob("b", 2)).unwrap();
        assert_eq!((one, two), (1, 2));
        assert_eq!(lmdb.blobs.put(&mut t, &blob("a", 1)).unwrap(), (a, 1));
        assert_eq!(lmdb.blobs.get(&t, &a).unwrap().unwrap().key, "a");
        assert_eq!(lmdb.blobs.hash_at(&t, 2).unwrap(), Some(b));
        // Numbers never come back, even once the last row is gone.
        assert_eq!(lmdb.blobs.delete(&mut t, &b).unwrap(), Some(2));
        assert_eq!(lmdb.blob_log.last(&t).unwrap(), 2);
        assert_eq!(lmdb.blobs.hash_at(&t, 2).unwrap(), None);
        assert_eq!(lmdb.blobs.get(&t, &b).unwrap(), None);
        let (c, three) = lmdb.blobs.put(&mut t, &blob("c", 3)).unwrap();
        assert_eq!(three, 3);
        assert_eq!(lmdb.blobs.log.get(&t, &2u64.to_be_bytes()).unwrap(), None);
        lmdb.blobs.delete(&mut t, &a).unwrap();
        let (log, read) = lmdb.blob_log.since(&t, 0, 10).unwrap();
        assert_eq!((log, read), (vec![(3, c)], 3));
        assert_eq!(lmdb.blobs.len(&t).unwrap(), 1);
    }

    #[test]
    fn a_damaged_record_or_index_is_reported_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let mut t = lmdb.write().unwrap();
        let (a, _) = lmdb.blobs.put(&mut t, &blob("a", 1)).unwrap();
        let (b, _) = lmdb.blobs.put(&mut t, &blob("b", 2)).unwrap();
        let mut bytes = lmdb
            .blobs
            .log
            .get(&t, &1u64.to_be_bytes())
            .unwrap()
            .unwrap()
            .to_vec();
        bytes[36] ^= 1;
        lmdb.blobs
            .log
            .put(&mut t, &1u64.to_be_bytes(), &bytes)
            .unwrap();
        assert!(matches!(lmdb.blobs.get(&t, &a), Err(Error::Corrupt(_))));
        // The stored hash still names the damaged version, so it can be listed and removed.
        assert_eq!(lmdb.blobs.hash_at(&t, 1).unwrap(), Some(a));
        lmdb.blobs
            .log
            .put(&mut t, &1u64.to_be_bytes(), &[7; 5])
            .unwrap();
        assert!(matches!(
            lmdb.blobs.hash_at(&t, 1),
            Err(Error::Malformed { .. })
        ));
        lmdb.blobs.by_hash.put(&mut t, &b.0, &[1, 2]).unwrap();
        assert!(matches!(
            lmdb.blobs.get(&t, &b),
            Err(Error::Malformed { .. })
        ));
    }
}
