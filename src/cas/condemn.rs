//! Freeing chunks in a cluster. One store's gc frees a chunk at count 0 under its exclusive
//! lock; a cluster has no such lock, and a put on another node may deduplicate against the
//! chunk at any time. So gc on a cluster node only *condemns* the sealing of each chunk no
//! live version here uses (`src/store/condemned.rs`): the condemnation travels as a
//! DeletionWAL entry, every node marks the sealing, no put anywhere deduplicates against a
//! marked sealing again (it seals the chunk anew), and a commit that deduplicated before
//! the mark arrived fails with [`Error::Retry`]. A node frees its slices of a condemned
//! sealing once every member has acknowledged its entry and it has pulled every member's
//! versions since: any version using the sealing was committed before its node marked it,
//! so by then it is here and holds the count above 0 (`cluster/src/deletion_wal.rs`).

use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::progress::Progress;
use crate::store::condemned::Condemnation;
use crate::store::deletion_wal::{Deletion, WalEntry};
use crate::store::removed::Removal;
use crate::store::{RoTxn, RwTxn};

/// The identity of one sealing of a chunk: BLAKE3 of its record's canonical encoding.
pub fn sealing_id(record: &ChunkRecord) -> Result<Hash> {
    // A
    Ok(Hash::of(&record.encode()?))
}

/// What one freeing pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeReport {
    /// Condemned chunks whose slices and record were freed here.
    pub chunks_freed: u64,
    /// Encoded slice bytes freed.
    pub bytes_freed: u64,
    /// Marks dropped because this node no longer holds that sealing.
    pub marks_dropped: u64,
    /// Condemned chunks still used by a live version here: kept (puts of their content
    /// seal them again, and the new sealing wins everywhere).
    pub still_used: u64,
}

impl Cas {
    /// True when this store holds chunk `id` in a sealing a put may deduplicate against:
    /// a record that is not condemned and, for a pack member, whose pack is here and not
    /// condemned either (a pack is condemned once no member names it, and a put must not
    /// bring a member back into it while the nodes free it).
    pub(crate) fn dedupable(&self, txn: &RoTxn, id: &Hash) -> Result<bool> {
        // PA
        let Some(record) = self.lmdb.chunks.get(txn, id)? else {
            return Ok(false);
        };
        // A store outside any cluster has no marks: one O(1) check instead of two lookups
        // per chunk (the writer asks for every chunk of every version it commits).
        let marks = !self.lmdb.condemned.none_possible(txn)?;
        if marks && self.is_condemned_in(txn, id, &record)? {
            return Ok(false);
        }
        let Some((pack, _)) = record.pack() else {
            return Ok(true);
        };
        Ok(match self.lmdb.chunks.get(txn, &pack)? {
            Some(p) => p.is_pack() && !(marks && self.is_condemned_in(txn, &pack, &p)?),
            None => false,
        })
    }

    /// True when `record`, a sealing of chunk `id`, is condemned here.
    pub(crate) fn is_condemned_in(
        &self,
        txn: &RoTxn,
        id: &Hash,
        record: &ChunkRecord,
    ) -> Result<bool> {
        // PA
        let marks = self.lmdb.condemned.get(txn, id)?;
        if marks.is_empty() {
            return Ok(false);
        }
        let sealing = sealing_id(record)?;
        Ok(marks.iter().any(|m| m.sealing == sealing))
    }

    /// Marks sealing `sealing` of chunk `id` condemned and logs the entry that tells the
    /// other nodes; false when it was marked already.
    pub(crate) fn condemn_in(
        &self,
        txn: &mut RwTxn,
        id: &Hash,
        sealing: Hash,
        time: i64,
    ) -> Result<bool> {
        // PA
        let mut marks = self.lmdb.condemned.get(txn, id)?;
        if marks.iter().any(|m| m.sealing == sealing) {
            return Ok(false);
        }
        let entry = WalEntry {
            time,
            deletion: Deletion::Condemned { id: *id, sealing },
        };
        let seq = self.lmdb.deletion_wal.log_deletion(txn, &entry)?;
        marks.push(Condemnation { sealing, seq, time });
        self.lmdb.condemned.put(txn, id, &marks)?;
        Ok(true)
    }

    /// True when DeletionWAL entry `seq` is a condemnation this node still marks: kept by
    /// compaction until the chunk is settled here.
    pub(crate) fn condemnation_pending(
        &self,
        txn: &RoTxn,
        seq: u64,
        entry: &WalEntry,
    ) -> Result<bool> {
        // PA
        let Deletion::Condemned { id, sealing } = &entry.deletion else {
            return Ok(false);
        };
        Ok(self
            .lmdb
            .condemned
            .get(txn, id)?
            .iter()
            .any(|m| m.sealing == *sealing && m.seq == seq))
    }

    fn release_in(&self, txn: &mut RwTxn, hash: Hash) -> Result<()> {
        // PA
        // Read again in this transaction: the page was read before it, and another release
        // (gc, or a node's freeing round) may have done this one meanwhile. Releasing twice
        // would take a live version's references.
        let Some(removal) = self.lmdb.removed.get(txn, &hash)? else {
            return Ok(());
        };
        if removal.released && !removal.whole_key {
            return Ok(());
        }
        // A damaged blob record cannot say which chunks it held: keep its chunks (a leak,
        // never a wrong free) and let verify report it.
        let blob = match self.lmdb.blobs.get(txn, &hash) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(version = %hash.short(), error = %e, "gc skips a damaged version record");
                // Kept marked removed (released, no further work) so it never looks live.
                let kept = Removal {
                    whole_key: false,
                    released: true,
                    ..removal
                };
                return self.lmdb.removed.put(txn, &hash, &kept);
            }
        };
        if let Some(blob) = blob {
            if !removal.released {
                for c in &blob.chunks {
                    self.lmdb.chunks.add_refs(txn, &c.id, -1)?;
                }
            }
            if removal.whole_key {
                if let Some(seq) = self.lmdb.blobs.delete(txn, &hash)? {
                    self.lmdb
                        .key_to_hash
                        .delete(txn, &blob.key, blob.created, seq)?;
                    for p in &blob.parents {
                        self.lmdb.parent_child.delete(txn, p, seq)?;
                    }
                }
            }
        }
        if removal.whole_key {
            self.lmdb.removed.delete(txn, &hash)
        } else {
            let released = Removal {
                released: true,
                ..removal
            };
            self.lmdb.removed.put(txn, &hash, &released)
        }
    }

    /// gc's second step on a cluster node: condemns the sealing of every chunk no live
    /// version here uses. Returns how many it newly condemned.
    pub(crate) fn condemn_unused(&self, progress: &dyn Progress) -> Result<u64> {
        // PA
        let mut condemned = 0;
        let mut after = None;
        loop {
            let page =
                self.lmdb
                    .chunks
                    .page(&self.lmdb.read()?, after, crate::maintenance::PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(condemned);
            };
            after = Some(*last);
            let mut txn = self.lmdb.write()?;
            let now = now_nanos();
            for (id, record) in page {
                // A damaged record cannot name its slices: leave it for verify to report.
                let Ok(record) = record else { continue };
                // Re-read in the write transaction: a put may have taken it meanwhile.
                if self.lmdb.chunks.refs(&txn, &id)? != 0
                    || self.lmdb.chunks.get(&txn, &id)?.as_ref() != Some(&record)
                {
                    continue;
                }
                if self.condemn_in(&mut txn, &id, sealing_id(&record)?, now)? {
                    condemned += 1;
                    progress.advance(1);
                }
            }
            self.lmdb.commit(txn)?;
        }
    }

    /// True when some of `chunks` is held only in a condemned sealing: a new version must
    /// not reference it as it stands (merge and rename then copy the content instead).
    pub(crate) fn uses_condemned(
        &self,
        txn: &RoTxn,
        chunks: &[crate::model::ChunkRef],
    ) -> Result<bool> {
        // PA
        for c in chunks {
            if !self.dedupable(txn, &c.id)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores the content of version `from` (of key `from_key`) as a new version of `key`
    /// with these parents, through the put pipeline: chunks held in a condemned sealing are
    /// sealed again, the others shared. A read that fails stores nothing.
    pub(crate) fn put_copy(
        &self,
        from_key: &str,
        from: Hash,
        key: &str,
        parents: Vec<Hash>,
    ) -> Result<Hash> {
        // PA
        let meta = self.blob(&from)?.meta;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reading = s.spawn(|| {
                let mut w = ChannelWriter(tx);
                let r = self.get(&format!("{from_key}@{from}"), &mut w);
                // Set before the channel closes: the reader checks it at the end.
                done.store(r.is_ok(), std::sync::atomic::Ordering::SeqCst);
                drop(w);
                r
            });
            let opts = crate::cas::PutOptions {
                parents: Some(parents),
                meta,
                ..Default::default()
            };
            let input = CompleteOnly {
                rx,
                buf: Vec::new(),
                pos: 0,
                done: &done,
            };
            let put = self.put(key, input, &opts);
            let got = reading
                .join()
                .map_err(|_| Error::Internal("the reading thread failed".into()))?;
            got?;
            Ok(put?.hash)
        })
    }

    /// The error of a commit that deduplicated against a sealing condemned meanwhile.
    pub(crate) fn condemned_error(id: &Hash) -> Error {
        // A
        Error::Retry(format!(
            "chunk {} was condemned by gc on a cluster node while this put used it; nothing of this version was stored",
            id.short()
        ))
    }
}

/// The writing end of a copy: each write goes whole to the reader.
struct ChannelWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A
        Ok(())
    }
}

/// The reading end of a copy. Its end is an error unless the writer finished
/// successfully: a copy whose source failed half-way must not commit a truncated version.
struct CompleteOnly<'a> {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    done: &'a std::sync::atomic::AtomicBool,
}

impl std::io::Read for CompleteOnly<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // A
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => (self.buf, self.pos) = (b, 0),
                Err(_) if self.done.load(std::sync::atomic::Ordering::SeqCst) => return Ok(0),
                Err(_) => {
                    return Err(std::io::Error::other(
                        "the version being copied could not be read",
                    ))
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The cluster's side of this part of the store (see [`crate::cas::Replica`]).
impl crate::cas::Replica<'_> {
    /// Number of condemned sealings marked here and not yet freed (for `cluster status`).
    pub fn condemned_count(&self) -> Result<u64> {
        // A
        self.lmdb.condemned.pending(&self.lmdb.read()?)
    }

    /// Releases the chunk references of removed versions (gc's first step): counts then say
    /// how many live versions use each chunk. Returns how many versions it released.
    pub fn release_removed(&self, progress: &dyn Progress) -> Result<u64> {
        // PA
        // A version a live snapshot lists stays readable even when its key was removed
        // (`rm`, a file deleted in the mount): restoring that snapshot needs it. It is
        // released by the first gc after `forget` dropped the last snapshot listing it.
        let protected = self.snapshot_guard()?;
        let mut released = 0;
        let mut after = None;
        loop {
            let pending =
                self.lmdb
                    .removed
                    .pending(&self.lmdb.read()?, after, crate::maintenance::PAGE)?;
            let Some(&(last, _)) = pending.last() else {
                return Ok(released);
            };
            after = Some(last);
            let mut txn = self.lmdb.write()?;
            for (hash, _) in pending {
                let key = self
                    .lmdb
                    .blobs
                    .get(&txn, &hash)
                    .ok()
                    .flatten()
                    .map(|b| b.key);
                if protected.keeps(&hash, key.as_deref()) {
                    continue;
                }
                self.release_in(&mut txn, hash)?;
                released += 1;
                progress.advance(1);
            }
            self.lmdb.commit(txn)?;
        }
    }

    /// Frees the condemned sealings whose entry in this node's DeletionWAL is at most
    /// `through`: the caller has checked that every member acknowledged them and that it
    /// pulled every member's versions afterwards. A sealing still used by a live version
    /// here is kept. A mark stays, as `freed` (sequence 0), for `remember` (the tombstone
    /// horizon) after its sealing is gone here: a late copy of the record (a hand-off or
    /// repair under way, a member back from far away) then arrives condemned, never as a
    /// sealing puts could deduplicate against. Takes the gc
    /// lock, so no put here is between deduplicating and committing; `None` when a put
    /// holds it (try again later).
    pub fn free_condemned(
        &self,
        through: u64,
        remember: std::time::Duration,
    ) -> Result<Option<FreeReport>> {
        // PA
        let Some(_lock) = crate::store::lock::GcLock::try_exclusive(self.path())? else {
            return Ok(None);
        };
        let mut report = FreeReport::default();
        let mut after = None;
        loop {
            let page = self.lmdb.condemned.page(&self.lmdb.read()?, after, 256)?;
            let Some((last, _)) = page.last() else {
                return Ok(Some(report));
            };
            after = Some(*last);
            let mut txn = self.lmdb.write()?;
            let floor = self.lmdb.deletion_wal.floor(&txn)?;
            let now = now_nanos();
            let forget = i64::try_from(remember.as_nanos()).unwrap_or(i64::MAX);
            for (id, _) in page {
                // Re-read inside the write transaction: a put may have changed them.
                let marks = self.lmdb.condemned.get(&txn, &id)?;
                let record = self.lmdb.chunks.get(&txn, &id)?;
                let current = record.as_ref().map(sealing_id).transpose()?;
                let mut kept = Vec::new();
                for m in marks {
                    if m.seq > through {
                        kept.push(m);
                        continue;
                    }
                    if current == Some(m.sealing) {
                        if self.lmdb.chunks.refs(&txn, &id)? > 0 {
                            report.still_used += 1;
                            kept.push(m);
                            continue;
                        }
                        let (_, bytes) = self.lmdb.slices.delete_chunk(&mut txn, &id)?;
                        self.lmdb.chunks.delete(&mut txn, &id)?;
                        report.chunks_freed += 1;
                        report.bytes_freed += bytes;
                    } else if m.seq == 0 {
                        // Freed here before: remembered until the horizon.
                        if now.saturating_sub(m.time) <= forget {
                            kept.push(m);
                        }
                        continue;
                    } else {
                        report.marks_dropped += 1;
                    }
                    kept.push(Condemnation {
                        sealing: m.sealing,
                        seq: 0,
                        time: now,
                    });
                    // Compaction kept the entry while the mark stood; it goes with it.
                    if m.seq <= floor {
                        self.lmdb.deletion_wal.delete(&mut txn, m.seq)?;
                    }
                }
                self.lmdb.condemned.put(&mut txn, &id, &kept)?;
            }
            self.lmdb.commit(txn)?;
        }
    }
}
