//! LocalSealedSliceStore: the sealed slices this node holds, verified on every read.
//!
//! The slices of one chunk are kept together in one *bundle* under a sequence number that
//! only grows, so new bundles are appended at the right edge of LMDB's B-tree: a commit
//! writes each page once instead of rewriting leaves all over a tree keyed by random hashes
//! (which cost 4x the data in page writes). `slice_locs` maps a chunk id to its bundle.

use crate::error::Result;
use crate::hash::Hash;
pub use crate::store::bundle::Bundle;
use crate::store::sequence::Sequence;
use crate::store::{Db, RoTxn, RwTxn};

/// The `slices` (sequence -> bundle) and `slice_locs` (chunk id -> sequence) databases.
pub struct LocalSealedSliceStore {
    pub(crate) bundles: Db,
    pub(crate) locs: Db,
    /// The store's `meta` database, for the next bundle sequence number.
    pub(crate) meta: Db,
    /// The part of LMDB's map this process keeps mapped: bundles are most of what it reads.
    pub(crate) mapped: std::sync::Arc<crate::store::mapped_pages::MappedPages>,
}

/// `meta` key of the next bundle sequence number (`u64` little-endian).
const NEXT_SEQ_KEY: &[u8] = b"next_bundle_seq";

/// What a read of one slice found.
pub enum SliceRead<'t> {
    /// Present and its bytes hash to its address.
    Ok(&'t [u8]),
    /// Absent.
    Missing,
    /// Present but damaged (hash mismatch).
    Corrupt,
}

/// Bundles from this size on are written in place ([`LocalSealedSliceStore::append`]): far
/// larger than a page, so LMDB keeps them on pages of their own either way.
const IN_PLACE_BYTES: usize = 64 << 10;

impl LocalSealedSliceStore {
    /// Stores the slices of a new chunk as one bundle appended after every other.
    pub fn put_chunk(&self, txn: &mut RwTxn, chunk: &Hash, slices: &[&[u8]]) -> Result<()> {
        // PA
        let seq = self.append(txn, chunk, slices)?;
        Ok(self.locs.put(txn, &chunk.0, &seq.to_be_bytes())?)
    }

    /// Appends the slices of a new chunk as a bundle that nothing locates yet, marked
    /// unfinished, and returns its sequence number. A put writes its slices in small
    /// transactions and their records later, one transaction per batch of versions
    /// (`src/cas/put_writer.rs`): [`Self::finish`] or [`Self::discard`] ends the mark, and
    /// gc frees bundles still marked ([`Self::discard_unfinished`]): their put died.
    pub fn append_unfinished(
        &self,
        txn: &mut RwTxn,
        chunk: &Hash,
        slices: &[&[u8]],
    ) -> Result<u64> {
        // PA
        let seq = self.append(txn, chunk, slices)?;
        self.meta.put(txn, &unfinished_key(seq), &[])?;
        Ok(seq)
    }

    /// Makes unfinished bundle `seq` the one holding `chunk`'s slices.
    pub fn finish(&self, txn: &mut RwTxn, chunk: &Hash, seq: u64) -> Result<()> {
        // PA
        self.meta.delete(txn, &unfinished_key(seq))?;
        Ok(self.locs.put(txn, &chunk.0, &seq.to_be_bytes())?)
    }

    /// Deletes unfinished bundle `seq`: its chunk was stored meanwhile (or was not needed).
    pub fn discard(&self, txn: &mut RwTxn, seq: u64) -> Result<()> {
        // PA
        self.meta.delete(txn, &unfinished_key(seq))?;
        self.bundles.delete(txn, &seq.to_be_bytes())?;
        Ok(())
    }

    /// Deletes every bundle still marked unfinished; returns how many slices they held and
    /// their encoded bytes. Only while no put runs (gc holds its lock exclusively): a
    /// running put's bundles are unfinished until its next batch of versions commits.
    pub fn discard_unfinished(&self, txn: &mut RwTxn) -> Result<(u64, u64)> {
        // PA
        let (mut n, mut bytes) = (0, 0);
        for (seq, found) in self.marked(txn)? {
            match found {
                Some((slices, len)) => {
                    (n, bytes) = (n + slices, bytes + len);
                    self.discard(txn, seq)?;
                }
                // A mark left on a bundle some chunk's record uses (damage, or a bug): the
                // bundle stays, only the mark goes.
                None => {
                    self.meta.delete(txn, &unfinished_key(seq))?;
                }
            }
        }
        Ok((n, bytes))
    }

    /// How many slices the bundles marked unfinished hold, and their encoded bytes: a
    /// running put's, or a dead put's (which gc frees).
    pub fn unfinished(&self, txn: &RoTxn) -> Result<(u64, u64)> {
        // A
        Ok(self
            .marked(txn)?
            .into_iter()
            .filter_map(|(_, found)| found)
            .fold((0, 0), |(n, b), (s, l)| (n + s, b + l)))
    }

    /// Each bundle marked unfinished with its slices and bytes, or `None` when `slice_locs`
    /// names it as its chunk's (a stray mark) or it is gone.
    fn marked(&self, txn: &RoTxn) -> Result<Vec<(u64, Option<Held>)>> {
        // A
        let mut out = Vec::new();
        for seq in self.unfinished_seqs(txn)? {
            let key = seq.to_be_bytes();
            let found = match self.bundles.get(txn, &key)? {
                Some(b) => {
                    let located = match b.get(2..34) {
                        Some(id) => self.locs.get(txn, id)? == Some(&key[..]),
                        None => false,
                    };
                    (!located).then(|| bundle_size(b))
                }
                None => None,
            };
            out.push((seq, found));
        }
        Ok(out)
    }

    /// Sequence numbers of the bundles marked unfinished.
    fn unfinished_seqs(&self, txn: &RoTxn) -> Result<Vec<u64>> {
        // A
        let mut seqs = Vec::new();
        for item in self.meta.prefix_iter(txn, UNFINISHED)? {
            let (k, _) = item?;
            // A damaged row names no bundle: it must not stop gc.
            if let Ok(seq) = seq_of(&k[UNFINISHED.len()..]) {
                seqs.push(seq);
            }
        }
        Ok(seqs)
    }

    /// Appends a bundle of `slices` (index 0 first) under the next sequence number.
    fn append(&self, txn: &mut RwTxn, chunk: &Hash, slices: &[&[u8]]) -> Result<u64> {
        // PA
        let bundle = Bundle {
            chunk: *chunk,
            slices: slices
                .iter()
                .enumerate()
                .map(|(i, b)| (i as u8, *b))
                .collect(),
        };
        let seq = self.next_seq(txn)?;
        let key = seq.to_be_bytes();
        let len = bundle.encoded_len();
        if len < IN_PLACE_BYTES {
            // `MDB_APPEND` fills the leaves that hold small bundles whole.
            self.bundles
                .put_with_flags(txn, heed::PutFlags::APPEND, &key, &bundle.encode())?;
        } else {
            // Written straight into LMDB's pages: encoding it first cost a copy of every slice
            // byte and, under put -r's malloc thresholds, a fresh mapping faulted in page by
            // page. `seq` is above the last stored number (`next_seq` reads it from the tree
            // in this transaction), so it goes at the end and overwrites nothing, as
            // `MDB_APPEND` would have checked; its leaf holds only the number and the value's
            // overflow page number.
            self.bundles
                .put_reserved(txn, &key, len, |space| bundle.write_to(space))?;
        }
        Ok(seq)
    }

    /// The bundle of a chunk (empty when none is held).
    pub fn bundle<'t>(&self, txn: &'t RoTxn, chunk: &Hash) -> Result<Bundle<'t>> {
        // A
        match self.locs.get(txn, &chunk.0)? {
            Some(seq) => self.bundle_at(txn, seq),
            None => Ok(Bundle::default()),
        }
    }

    /// The bundle stored under sequence `seq` (a `slice_locs` value); empty when none is.
    pub fn bundle_at<'t>(&self, txn: &'t RoTxn, seq: &[u8]) -> Result<Bundle<'t>> {
        // A
        self.bundle_read(txn, seq, None)
    }

    /// The bundle of a chunk of which the caller reads about `bytes` only (a pack member's
    /// frame): counted as that much read through the map, not as the whole bundle, which
    /// would release the map at every member read.
    pub fn bundle_part<'t>(
        &self,
        txn: &'t RoTxn,
        chunk: &Hash,
        bytes: usize,
    ) -> Result<Bundle<'t>> {
        // A
        match self.locs.get(txn, &chunk.0)? {
            Some(seq) => self.bundle_read(txn, seq, Some(bytes)),
            None => Ok(Bundle::default()),
        }
    }

    /// The bundle under `seq`, counting `read` bytes (the whole bundle when `None`) as read
    /// through the map.
    fn bundle_read<'t>(
        &self,
        txn: &'t RoTxn,
        seq: &[u8],
        read: Option<usize>,
    ) -> Result<Bundle<'t>> {
        // A
        match self.bundles.get(txn, seq)? {
            Some(b) => {
                let read = read.unwrap_or(b.len()).min(b.len());
                self.mapped
                    .note_read(read + crate::store::mapped_pages::LOOKUP);
                Bundle::decode(b)
            }
            None => Ok(Bundle::default()),
        }
    }

    /// Bundles with a sequence number above `after`, in sequence order, at most `limit`:
    /// `(sequence, chunk, slice indexes held)`. New and rewritten bundles get higher numbers,
    /// so a cursor over this walk sees every slice that arrived since it last looked.
    pub fn page_after(
        &self,
        txn: &RoTxn,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Hash, Vec<u8>)>> {
        // A
        let after = after.map(u64::to_be_bytes);
        let mut out = Vec::new();
        for item in crate::store::iter_after(&self.bundles, txn, after.as_ref().map(|a| &a[..]))? {
            let (k, v) = item?;
            let b = Bundle::decode(v)?;
            out.push((
                seq_of(k)?,
                b.chunk,
                b.slices.iter().map(|(i, _)| *i).collect(),
            ));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Drops slices of a chunk that another node now holds (the bundle goes when empty);
    /// returns how many were dropped.
    pub fn drop_slices(&self, txn: &mut RwTxn, chunk: &Hash, indexes: &[u8]) -> Result<usize> {
        // PA
        let Some(seq) = self.locs.get(txn, &chunk.0)?.map(<[u8]>::to_vec) else {
            return Ok(0);
        };
        let Some(old) = self.bundles.get(txn, &seq)? else {
            return Ok(0);
        };
        let old = Bundle::decode(old)?;
        let kept: Vec<(u8, Vec<u8>)> = old
            .slices
            .iter()
            .filter(|(i, _)| !indexes.contains(i))
            .map(|(i, b)| (*i, b.to_vec()))
            .collect();
        let dropped = old.slices.len() - kept.len();
        if dropped == 0 {
            return Ok(0);
        }
        if kept.is_empty() {
            self.bundles.delete(txn, &seq)?;
            self.locs.delete(txn, &chunk.0)?;
            return Ok(dropped);
        }
        let encoded = Bundle {
            chunk: *chunk,
            slices: kept.iter().map(|(i, b)| (*i, b.as_slice())).collect(),
        }
        .encode();
        self.bundles.put(txn, &seq, &encoded)?;
        Ok(dropped)
    }

    /// Checks a slice read from a bundle against the hash its chunk record names.
    pub fn check<'t>(bytes: Option<&'t [u8]>, hash: &Hash) -> SliceRead<'t> {
        // A
        match bytes {
            None => SliceRead::Missing,
            Some(b) if Hash::of(b) == *hash => SliceRead::Ok(b),
            Some(_) => SliceRead::Corrupt,
        }
    }

    /// Replaces one slice of a chunk (repair), keeping the others.
    pub fn put_slice(&self, txn: &mut RwTxn, chunk: &Hash, index: u8, bytes: &[u8]) -> Result<()> {
        // PA
        self.rewrite(txn, chunk, index, Some(bytes))
    }

    /// Deletes a chunk's bundle; returns how many slices it held and their encoded bytes.
    pub fn delete_chunk(&self, txn: &mut RwTxn, chunk: &Hash) -> Result<(u64, u64)> {
        // PA
        let Some(seq) = self.locs.get(txn, &chunk.0)?.map(<[u8]>::to_vec) else {
            return Ok((0, 0));
        };
        let (n, bytes) = match self.bundles.get(txn, &seq)? {
            Some(b) => bundle_size(b),
            None => (0, 0),
        };
        self.bundles.delete(txn, &seq)?;
        self.locs.delete(txn, &chunk.0)?;
        Ok((n, bytes))
    }

    /// Number of chunks with at least one slice here (cheap: a database count).
    pub fn chunks_held(&self, txn: &RoTxn) -> Result<u64> {
        // A
        Ok(self.locs.len(txn)?)
    }

    /// Number of slices and their total encoded bytes (streams over the database).
    pub fn totals(&self, txn: &RoTxn) -> Result<(u64, u64)> {
        // A
        let mut n = 0;
        let mut bytes = 0;
        for item in self.bundles.iter(txn)? {
            let (_, v) = item?;
            // Decoding touches every slice's header: about every page of the bundle.
            self.mapped.note_read(v.len());
            match Bundle::decode(v) {
                Ok(b) => {
                    n += b.slices.len() as u64;
                    bytes += b.slices.iter().map(|(_, s)| s.len() as u64).sum::<u64>();
                }
                Err(_) => bytes += v.len() as u64,
            }
        }
        Ok((n, bytes))
    }

    /// Overwrites (or with `None` drops) one slice without any check: only for tests that
    /// simulate bit rot.
    #[doc(hidden)]
    pub fn damage_for_tests(
        &self,
        txn: &mut RwTxn,
        chunk: &Hash,
        index: u8,
        bytes: Option<&[u8]>,
    ) -> Result<()> {
        // A
        self.rewrite(txn, chunk, index, bytes)
    }

    /// A sequence number for a new bundle, above every one ever used: numbers only grow,
    /// so bundles append, and a walk that remembers how far it got (a node's hand-over)
    /// sees every later bundle. After the last bundle alone, a number would come back once
    /// that bundle was deleted (all its slices handed to other nodes), below such a walk's
    /// cursor: its slices then stayed on the writer.
    fn next_seq(&self, txn: &mut RwTxn) -> Result<u64> {
        // PA
        self.sequence().take(txn)
    }

    /// The numbering of bundles: from 0, above the last bundle's and at least the recorded
    /// mark.
    fn sequence(&self) -> Sequence {
        // A
        Sequence {
            db: self.bundles,
            meta: self.meta,
            mark: NEXT_SEQ_KEY,
            first: 0,
        }
    }

    /// Writes the next bundle number again, unchanged. LMDB reuses a freed page only once
    /// no reader can see the transaction that freed it: a small commit holding only this
    /// makes the pages the commit before it freed reusable by the next writer at once.
    pub fn rewrite_next_seq(&self, txn: &mut RwTxn) -> Result<()> {
        // A
        self.sequence().rewrite(txn)
    }

    /// Rewrites a chunk's bundle in place with slice `index` replaced or dropped.
    fn rewrite(
        &self,
        txn: &mut RwTxn,
        chunk: &Hash,
        index: u8,
        bytes: Option<&[u8]>,
    ) -> Result<()> {
        // PA
        let seq = match self.locs.get(txn, &chunk.0)? {
            Some(s) => s.to_vec(),
            None => self.next_seq(txn)?.to_be_bytes().to_vec(),
        };
        let old = match self.bundles.get(txn, &seq)? {
            // A damaged bundle is dropped: repair rewrites every slice it rebuilds.
            Some(b) => Bundle::decode(b).unwrap_or_default().slices,
            None => Vec::new(),
        };
        let mut slices: Vec<(u8, Vec<u8>)> = old
            .into_iter()
            .filter(|(i, _)| *i != index)
            .map(|(i, b)| (i, b.to_vec()))
            .collect();
        if let Some(b) = bytes {
            slices.push((index, b.to_vec()));
        }
        slices.sort_by_key(|(i, _)| *i);
        let encoded = Bundle {
            chunk: *chunk,
            slices: slices.iter().map(|(i, b)| (*i, b.as_slice())).collect(),
        }
        .encode();
        self.bundles.put(txn, &seq, &encoded)?;
        Ok(self.locs.put(txn, &chunk.0, &seq)?)
    }
}

/// Slices a bundle holds and their encoded bytes.
type Held = (u64, u64);

/// `meta` key prefix marking an unfinished bundle (followed by its sequence number, 8 bytes
/// big-endian): appended by a put whose records are not committed yet.
const UNFINISHED: &[u8] = b"unfinished/";

/// The `meta` key marking bundle `seq` unfinished.
fn unfinished_key(seq: u64) -> Vec<u8> {
    // A
    [UNFINISHED, &seq.to_be_bytes()].concat()
}

/// Slices held by an encoded bundle and their encoded bytes (a bundle that does not decode:
/// none, and all its bytes).
fn bundle_size(b: &[u8]) -> (u64, u64) {
    // A
    Bundle::decode(b)
        .map(|b| {
            let n = b.slices.len() as u64;
            (n, b.slices.iter().map(|(_, s)| s.len() as u64).sum())
        })
        .unwrap_or((0, b.len() as u64))
}

/// The sequence number of a bundle key.
fn seq_of(key: &[u8]) -> Result<u64> {
    // A
    crate::store::sequence::seq_of("slice bundle", key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks that do not name an unlocated bundle (damage, or a bug) never cost a live
    /// bundle and never stop the cleanup; real unfinished bundles go.
    #[test]
    fn only_unlocated_marked_bundles_are_discarded() {
        use crate::store::Lmdb;
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let s = &lmdb.slices;
        let mut txn = lmdb.write().unwrap();
        s.put_chunk(&mut txn, &Hash([1; 32]), &[b"live"]).unwrap();
        let dead = s
            .append_unfinished(&mut txn, &Hash([2; 32]), &[b"dead!"])
            .unwrap();
        let kept = s
            .append_unfinished(&mut txn, &Hash([3; 32]), &[b"kept"])
            .unwrap();
        s.finish(&mut txn, &Hash([3; 32]), kept).unwrap();
        // A stray mark on the live bundle, and one whose key is too short.
        let live = s
            .bundles
            .first(&txn)
            .unwrap()
            .map(|(k, _)| seq_of(k).unwrap());
        s.meta
            .put(&mut txn, &unfinished_key(live.unwrap()), &[])
            .unwrap();
        s.meta.put(&mut txn, b"unfinished/\x01", &[]).unwrap();
        lmdb.commit(txn).unwrap();

        assert_eq!(s.unfinished(&lmdb.read().unwrap()).unwrap(), (1, 5));
        let mut txn = lmdb.write().unwrap();
        assert_eq!(s.discard_unfinished(&mut txn).unwrap(), (1, 5));
        lmdb.commit(txn).unwrap();
        let txn = lmdb.read().unwrap();
        assert_eq!(s.unfinished(&txn).unwrap(), (0, 0));
        assert!(s.bundles.get(&txn, &dead.to_be_bytes()).unwrap().is_none());
        for (id, bytes) in [([1; 32], &b"live"[..]), ([3; 32], &b"kept"[..])] {
            assert_eq!(s.bundle(&txn, &Hash(id)).unwrap().get(0), Some(bytes));
        }
    }

    /// Bundles on either side of [`IN_PLACE_BYTES`] (appended with a copy, or written in
    /// place) read back as written, in sequence order, across a commit.
    #[test]
    fn small_and_large_bundles_read_back_as_written() {
        use crate::store::Lmdb;
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let s = &lmdb.slices;
        let big: Vec<u8> = (0..IN_PLACE_BYTES as u32 + 999)
            .map(|i| (i % 251) as u8)
            .collect();
        let chunks: Vec<(Hash, Vec<&[u8]>)> = vec![
            (Hash([1; 32]), vec![b"small", b"bundle"]),
            (Hash([2; 32]), vec![&big[..], &big[1..], b"x"]),
            (Hash([3; 32]), vec![&big[..IN_PLACE_BYTES - 60]]),
            (Hash([4; 32]), vec![b"after"]),
        ];
        let mut txn = lmdb.write().unwrap();
        let seqs: Vec<u64> = chunks
            .iter()
            .map(|(id, slices)| s.append_unfinished(&mut txn, id, slices).unwrap())
            .collect();
        lmdb.commit(txn).unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let txn = lmdb.read().unwrap();
        for ((id, slices), seq) in chunks.iter().zip(seqs) {
            let b = s.bundle_at(&txn, &seq.to_be_bytes()).unwrap();
            assert_eq!(b.chunk, *id);
            let read: Vec<&[u8]> = b.slices.iter().map(|(_, x)| *x).collect();
            assert_eq!(&read, slices);
        }
    }
}
