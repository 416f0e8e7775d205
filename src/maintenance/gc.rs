//! gc: releases removed versions (decrementing chunk reference counts) and frees chunks no
//! version references. It holds the gc lock exclusively, so no put can deduplicate against
//! a chunk while it is being freed, and works in short transactions: a crash leaves every
//! step either done or not, never a chunk freed that a committed version still uses. On a
//! cluster node it condemns those chunks instead, and the nodes free them together
//! (`src/cas/condemn.rs`).

use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::maintenance::PAGE;
use crate::progress::Progress;
use crate::store::deletion_wal::{Deletion, WalEntry};
use crate::store::lock::GcLock;

/// What gc reclaimed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Removed versions whose content was released.
    pub versions_released: u64,
    /// Chunks freed.
    pub chunks_freed: u64,
    /// Slices freed.
    pub slices_freed: u64,
    /// Encoded slice bytes freed.
    pub bytes_freed: u64,
    /// Packs freed because no member named them any more.
    pub packs_freed: u64,
    /// Packs whose live members were rewritten into new packs, because most of their bytes
    /// belonged to freed chunks (`src/maintenance/repack.rs`).
    pub packs_rewritten: u64,
    /// Unreferenced chunks condemned on a cluster node instead of freed: every node frees
    /// its slices of them once all members have applied the condemnation
    /// (`src/cas/condemn.rs`).
    pub chunks_condemned: u64,
}

impl Cas {
    /// Reclaims the space of removed versions and unreferenced chunks.
    pub fn gc(&self, progress: &dyn Progress) -> Result<GcReport> {
        // PA
        let report = match self.gc_once(progress) {
            // Another program filled the disk: the reserve makes room for gc's commits.
            Err(Error::NoSpace(_)) if crate::store::reserve::release(self.path()) => {
                self.gc_once(progress)
            }
            r => r,
        }?;
        crate::store::reserve::ensure(self.path());
        Ok(report)
    }

    fn gc_once(&self, progress: &dyn Progress) -> Result<GcReport> {
        // PA
        let _lock = GcLock::acquire(self.path(), true, &|| progress.waiting("puts are running"))?;
        // No compaction runs while this store is open here: what one left is garbage.
        crate::maintenance::compact::remove_partial(
            &self.path().join(crate::maintenance::compact::PARTIAL),
        )?;
        let mut report = GcReport {
            versions_released: self.replica().release_removed(progress)?,
            ..GcReport::default()
        };
        // Slices of puts that died before recording them; no put runs while gc holds its
        // lock, so every bundle still unfinished is one.
        let mut txn = self.lmdb.write()?;
        (report.slices_freed, report.bytes_freed) =
            self.lmdb.slices.discard_unfinished(&mut txn)?;
        self.lmdb.commit(txn)?;
        if self.in_cluster()? {
            report.chunks_condemned = self.condemn_unused(progress)?;
            self.mark_gc_done()?;
            tracing::info!(?report, "gc finished");
            return Ok(report);
        }
        let mut after = None;
        // Packs (and bases) whose last member (or delta) this pass freed: freed after the
        // scan, which may have passed them already.
        let mut emptied = Vec::new();
        loop {
            let page = self.lmdb.chunks.page(&self.lmdb.read()?, after, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            let mut txn = self.lmdb.write()?;
            for (id, record) in page {
                self.lmdb.note_lookup();
                // A damaged record cannot name its slices: leave it for verify to report.
                if record.is_err() {
                    continue;
                }
                if self.lmdb.chunks.refs(&txn, &id)? != 0 {
                    continue;
                }
                let pack = record.as_ref().is_ok_and(|r| r.is_pack());
                emptied.extend(self.free_chunk_in(&mut txn, &id, pack, &mut report)?);
                progress.advance(1);
            }
            self.lmdb.commit(txn)?;
        }
        // What those freed were the last reference of: packs, and bases of deltas, which may
        // in turn hold their own pack and base.
        while !emptied.is_empty() {
            let mut next = Vec::new();
            for ids in emptied.chunks(PAGE) {
                let mut txn = self.lmdb.write()?;
                for id in ids {
                    let Some(record) = self.lmdb.chunks.get(&txn, id).ok().flatten() else {
                        continue;
                    };
                    if self.lmdb.chunks.refs(&txn, id)? == 0 {
                        next.extend(self.free_chunk_in(
                            &mut txn,
                            id,
                            record.is_pack(),
                            &mut report,
                        )?);
                    }
                }
                self.lmdb.commit(txn)?;
            }
            emptied = next;
        }
        if let Some(r) = self.repack(progress)? {
            report.packs_rewritten += r.packs_rewritten;
            report.bytes_freed += r.bytes_freed;
            report.slices_freed += r.slices_freed;
        }
        // LMDB reuses a freed page only once no reader can see the transaction that freed
        // it. One more small commit makes every page freed above reusable at once, even by
        // a put whose first read starts right now (on a full disk that decides whether the
        // next put fits).
        self.mark_gc_done()?;
        tracing::info!(?report, "gc finished");
        Ok(report)
    }

    /// Frees chunk (or pack, when `pack`) `id`: its slices, its record and count, logged in the
    /// DeletionWAL. Returns what this left without references: its pack, a delta's base.
    fn free_chunk_in(
        &self,
        txn: &mut crate::store::RwTxn,
        id: &crate::hash::Hash,
        pack: bool,
        report: &mut GcReport,
    ) -> Result<Vec<crate::hash::Hash>> {
        // PA
        let (n, bytes) = self.lmdb.slices.delete_chunk(txn, id)?;
        report.bytes_freed += bytes;
        report.slices_freed += n;
        let emptied = self.lmdb.chunks.delete(txn, id)?;
        self.lmdb.deletion_wal.log_deletion(
            txn,
            &WalEntry {
                time: now_nanos(),
                deletion: Deletion::Chunk { id: *id },
            },
        )?;
        match pack {
            true => report.packs_freed += 1,
            false => report.chunks_freed += 1,
        }
        Ok(emptied)
    }

    /// Records when gc last ran, in a small commit of its own.
    fn mark_gc_done(&self) -> Result<()> {
        // A
        let mut txn = self.lmdb.write()?;
        self.lmdb.meta.put_last_gc(&mut txn, now_nanos())?;
        self.lmdb.commit(txn)
    }
}
