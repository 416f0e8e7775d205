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
use crate::store::{Db, RoTxn, RwTxn};

/// The `blobs` database (blob hash -> sequence, u64 BE) over the `blob_log` database
/// (sequence -> encoded Blob).
#[derive(Clone, Copy)]
pub struct BlobStore {
    /// Blob hash -> sequence number in `log`.
    pub(crate) by_hash: Db,
    /// Sequence number -> encoded Blob; an empty value marks a deleted last record, so that
    /// sequence numbers never come back.
    pub(crate) log: Db,
}

/// Parses an 8-byte big-endian sequence number.
pub(crate) fn seq_of(what: &'static str, bytes: &[u8]) -> Result<u64> {
    // A
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::malformed(what, "sequence is not 8 bytes"))
}

impl BlobStore {
    /// Stores a blob at the end of the log (or finds it there) and returns its hash and
    /// sequence number.
    pub fn put(&self, txn: &mut RwTxn, blob: &Blob) -> Result<(Hash, u64)> {
        // PA
        let bytes = blob.encode()?;
        let hash = Hash::of(&bytes);
        if let Some(seq) = self.seq(txn, &hash)? {
            return Ok((hash, seq));
        }
        let (next, tombstone) = match self.log.last(txn)? {
            Some((k, v)) => (seq_of("blob log", k)? + 1, v.is_empty()),
            None => (1, false),
        };
        self.log
            .put_with_flags(txn, heed::PutFlags::APPEND, &next.to_be_bytes(), &bytes)?;
        if tombstone {
            // It only held the last sequence number, which this record now does.
            self.log.delete(txn, &(next - 1).to_be_bytes())?;
        }
        self.by_hash.put(txn, &hash.0, &next.to_be_bytes())?;
        Ok((hash, next))
    }

    /// Reads and verifies a blob.
    pub fn get(&self, txn: &RoTxn, hash: &Hash) -> Result<Option<Blob>> {
        // A
        let Some(seq) = self.seq(txn, hash)? else {
            return Ok(None);
        };
        match self.log.get(txn, &seq.to_be_bytes())? {
            Some(b) if !b.is_empty() && Hash::of(b) == *hash => Blob::decode(b).map(Some),
            Some(b) if !b.is_empty() => Err(Error::Corrupt(format!(
                "blob record {} does not match its hash",
                hash.short()
            ))),
            _ => Err(Error::Corrupt(format!(
                "blob record {} is missing from the blob log (sequence {seq})",
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

    /// The hash of the blob logged at `seq` (None when there is none). The hash index must
    /// name the same sequence: a damaged record hashes to a version nobody stored.
    pub fn hash_at(&self, txn: &RoTxn, seq: u64) -> Result<Option<Hash>> {
        // A
        let Some(bytes) = self
            .log
            .get(txn, &seq.to_be_bytes())?
            .filter(|b| !b.is_empty())
        else {
            return Ok(None);
        };
        let hash = Hash::of(bytes);
        match self.seq(txn, &hash)? {
            Some(s) if s == seq => Ok(Some(hash)),
            _ => Err(Error::Corrupt(format!(
                "the blob record at sequence {seq} does not match the blob index"
            ))),
        }
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
        let last = match self.log.last(txn)? {
            Some((k, _)) => seq_of("blob log", k)?,
            None => 0,
        };
        if last == seq {
            self.log.put(txn, &seq.to_be_bytes(), &[])?;
        } else {
            self.log.delete(txn, &seq.to_be_bytes())?;
        }
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
        // The last one deleted leaves its number taken; a middle one leaves nothing.
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
        bytes[3] ^= 1;
        lmdb.blobs
            .log
            .put(&mut t, &1u64.to_be_bytes(), &bytes)
            .unwrap();
        assert!(matches!(lmdb.blobs.get(&t, &a), Err(Error::Corrupt(_))));
        assert!(matches!(lmdb.blobs.hash_at(&t, 1), Err(Error::Corrupt(_))));
        lmdb.blobs.by_hash.put(&mut t, &b.0, &[1, 2]).unwrap();
        assert!(matches!(
            lmdb.blobs.get(&t, &b),
            Err(Error::Malformed { .. })
        ));
    }
}
