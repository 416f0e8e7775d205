//! gc: releases removed versions (decrementing chunk reference counts) and frees chunks no
//! version references. It holds the gc lock exclusively, so no put can deduplicate against
//! a chunk while it is being freed, and works in short transactions: a crash leaves every
//! step either done or not, never a chunk freed that a committed version still uses.

use crate::cas::{now_nanos, Cas};
use crate::error::Result;
use crate::maintenance::PAGE;
use crate::progress::Progress;
use crate::store::deletion_wal::{Deletion, WalEntry};
use crate::store::lock::GcLock;
use crate::store::removed::Removal;

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
    /// Unreferenced chunks kept because the store belongs to a cluster: another node may
    /// not have applied the removal yet and could still reference (or deduplicate against)
    /// them. Freeing waits for acknowledged tombstones, not built yet.
    pub chunks_kept_for_cluster: u64,
}

impl Cas {
    /// Reclaims the space of removed versions and unreferenced chunks.
    pub fn gc(&self, progress: &dyn Progress) -> Result<GcReport> {
        // PA
        let _lock = GcLock::acquire(self.path(), true, &|| progress.waiting("puts are running"))?;
        let mut report = GcReport::default();
        loop {
            let pending = self.lmdb.removed.pending(&self.lmdb.read()?, None, PAGE)?;
            if pending.is_empty() {
                break;
            }
            let mut txn = self.lmdb.write()?;
            for (hash, removal) in pending {
                // A damaged blob record cannot say which chunks it held: keep its chunks
                // (a leak, never a wrong free) and let verify report it.
                let blob = match self.lmdb.blobs.get(&txn, &hash) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(version = %hash.short(), error = %e, "gc skips a damaged version record");
                        // Keep it marked removed (released, no further work) so it never
                        // looks live again, and move on.
                        let kept = Removal {
                            whole_key: false,
                            released: true,
                            ..removal
                        };
                        self.lmdb.removed.put(&mut txn, &hash, &kept)?;
                        continue;
                    }
                };
                if let Some(blob) = blob {
                    if !removal.released {
                        for c in &blob.chunks {
                            self.lmdb.chunks.add_refs(&mut txn, &c.id, -1)?;
                        }
                    }
                    if removal.whole_key {
                        self.lmdb.blobs.delete(&mut txn, &hash)?;
                        self.lmdb
                            .key_to_hash
                            .delete(&mut txn, &blob.key, blob.created, &hash)?;
                        for p in &blob.parents {
                            self.lmdb.parent_child.delete(&mut txn, p, &hash)?;
                        }
                    }
                }
                if removal.whole_key {
                    self.lmdb.removed.delete(&mut txn, &hash)?;
                } else {
                    self.lmdb.removed.put(
                        &mut txn,
                        &hash,
                        &Removal {
                            released: true,
                            ..removal
                        },
                    )?;
                }
                report.versions_released += 1;
                progress.advance(1);
            }
            self.lmdb.commit(txn)?;
        }
        let cluster = self.in_cluster()?;
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
                if cluster {
                    report.chunks_kept_for_cluster += 1;
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
        let mut txn = self.lmdb.write()?;
        self.lmdb.meta.put_last_gc(&mut txn, now_nanos())?;
        self.lmdb.commit(txn)?;
        tracing::info!(?report, "gc finished");
        Ok(report)
    }
}
