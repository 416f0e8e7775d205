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
        let mut report = GcReport {
            versions_released: self.release_removed(progress)?,
            ..GcReport::default()
        };
        if self.in_cluster()? {
            report.chunks_condemned = self.condemn_unused(progress)?;
            self.mark_gc_done()?;
            tracing::info!(?report, "gc finished");
            return Ok(report);
        }
        let mut after = None;
        loop {
            let page = self.lmdb.chunks.page(&self.lmdb.read()?, after, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            let mut txn = self.lmdb.write()?;
            let now = now_nanos();
            for (id, record) in page {
                // A damaged record cannot name its slices: leave it for verify to report.
                if record.is_err() {
                    continue;
                }
                if self.lmdb.chunks.refs(&txn, &id)? != 0 {
                    continue;
                }
                let (n, bytes) = self.lmdb.slices.delete_chunk(&mut txn, &id)?;
                report.bytes_freed += bytes;
                report.slices_freed += n;
                self.lmdb.chunks.delete(&mut txn, &id)?;
                self.lmdb.deletion_wal.log_deletion(
                    &mut txn,
                    &WalEntry {
                        time: now,
                        deletion: Deletion::Chunk { id },
                    },
                )?;
                report.chunks_freed += 1;
                progress.advance(1);
            }
            self.lmdb.commit(txn)?;
        }
        // LMDB reuses a freed page only once no reader can see the transaction that freed
        // it. One more small commit makes every page freed above reusable at once, even by
        // a put whose first read starts right now (on a full disk that decides whether the
        // next put fits).
        self.mark_gc_done()?;
        tracing::info!(?report, "gc finished");
        Ok(report)
    }

    /// Records when gc last ran, in a small commit of its own.
    fn mark_gc_done(&self) -> Result<()> {
        // A
        let mut txn = self.lmdb.write()?;
        self.lmdb.meta.put_last_gc(&mut txn, now_nanos())?;
        self.lmdb.commit(txn)
    }
}
