//! The put pipeline's writer thread: stores sealed chunks and packs and commits each
//! version, in write transactions of about 8 MiB of slices (64 MiB once they hold many small
//! versions; or 10,000 versions, or a second), once every chunk the version needs is in the
//! transaction.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::cas::put::{Body, PendingVersion, PutOutcome, ToWriter, SEEN_LIMIT};
use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::route::DataRouter;
use crate::store::RwTxn;

/// Bytes of sealed slices per write transaction: bounds the memory LMDB holds in dirty
/// pages and how long other writers wait. Small, so that a big file's slices stream to disk
/// while the workers go on sealing.
const BATCH_BYTES: usize = 8 << 20;
/// ... and once a transaction holds [`MANY_VERSIONS`], as a tree of small files does: each
/// commit rewrites every index page its versions touched (keys are hashes, so nearly one
/// page per version and index), which larger transactions share. 8 MiB to 64 MiB made
/// `put -r /usr/share` about 8% faster and cut its bytes written from 787 to 563 MB.
const BATCH_BYTES_MANY: usize = 64 << 20;
/// Versions in a transaction from which [`BATCH_BYTES_MANY`] applies.
const MANY_VERSIONS: usize = 64;
/// Versions per write transaction at most.
const BATCH_VERSIONS: usize = 10_000;
/// Versions committed between two releases of LMDB's map (`store::mapped_pages`): each
/// commit maps index pages with their neighbours, about 120 MB over a transaction of small
/// files; releasing every 85 versions cost 14% more CPU in faults.
const RELEASE_VERSIONS: usize = 2048;
/// Longest a transaction stays open, so versions become visible promptly.
const BATCH_AGE: Duration = Duration::from_secs(1);

impl Cas {
    /// The writer thread: stores sealed chunks and commits versions once their chunks are
    /// in the transaction, committing about every [`BATCH_BYTES`].
    pub(super) fn write_batches(
        &self,
        rx: Receiver<Result<ToWriter>>,
    ) -> Result<Vec<(usize, Result<PutOutcome>)>> {
        // PA
        let router = DataRouter::new(&self.lmdb);
        let mut done = Vec::new();
        // Versions waiting for chunks, each with the value of `clears` at its last search of
        // LMDB.
        let mut waiting: Vec<(PendingVersion, u64)> = Vec::new();
        // Chunks this pipeline delivered: a waiting version checks its needs here, so versions
        // waiting for a batch do not search LMDB again at every message (a tree of small files
        // keeps hundreds waiting: searching and re-queueing them took a quarter of the
        // writer's time in `put -r /usr/share`).
        let mut arrived: HashSet<Hash> = HashSet::new();
        // Times `arrived` was forgotten: a need that arrived before may have been, so each
        // waiting version searches LMDB once more after it.
        let mut clears = 0u64;
        let mut stored_by_item: HashMap<usize, u64> = HashMap::new();
        // Versions committed by this call, per key: a later version of the same key with
        // default parents follows them instead of forking from the head read at its start.
        let mut batch_heads: HashMap<String, (Vec<Hash>, Hash)> = HashMap::new();
        // Chunks stored (or found dedupable) by the open transaction: nothing condemns a
        // chunk inside it, so its versions need not check them again.
        let mut fresh: HashSet<Hash> = HashSet::new();
        let mut txn: Option<RwTxn> = None;
        let (mut bytes, mut versions, mut opened) = (0usize, 0usize, Instant::now());
        loop {
            // With a transaction open, wait no longer than its age limit: a stalled input
            // (a pipe, a file being read that is all deduplicated) must not hold LMDB's
            // single writer lock or keep committed versions invisible.
            let msg = match txn.as_ref() {
                Some(_) => match rx.recv_timeout(BATCH_AGE.saturating_sub(opened.elapsed())) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Some(t) = txn.take() {
                            self.lmdb.commit(t)?;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            if txn.is_none() {
                fresh.clear();
                let t = self.lmdb.write()?;
                self.check_epoch(&t)?;
                txn = Some(t);
                (bytes, versions, opened) = (0, 0, Instant::now());
            }
            let Some(t) = txn.as_mut() else { continue };
            let msg = msg?;
            // Only arriving chunks make waiting versions ready; new versions are checked alone.
            let from = match msg {
                ToWriter::Sealed(_) => 0,
                ToWriter::Versions(_) => waiting.len(),
            };
            match msg {
                ToWriter::Sealed(sealed) => {
                    for unit in sealed {
                        for id in unit.unit.members.iter().map(|(id, _)| id) {
                            if arrived.len() >= SEEN_LIMIT {
                                arrived.clear();
                                clears += 1;
                            }
                            arrived.insert(*id);
                        }
                        if arrived.len() >= SEEN_LIMIT {
                            arrived.clear();
                            clears += 1;
                        }
                        arrived.insert(unit.unit.id);
                        let n = self.store_sealed(t, &router, &unit)?;
                        fresh.insert(unit.unit.id);
                        fresh.extend(unit.unit.members.iter().map(|(id, _)| *id));
                        bytes += n.iter().sum::<u64>() as usize;
                        for (item, b) in unit.items.iter().zip(n) {
                            *stored_by_item.entry(*item).or_default() += b;
                        }
                    }
                }
                // Never searched: `u64::MAX` differs from any count of clears.
                ToWriter::Versions(vs) => waiting.extend(vs.into_iter().map(|v| (v, u64::MAX))),
            }
            let checking: Vec<(PendingVersion, u64)> = waiting.drain(from..).collect();
            for (v, searched) in checking {
                // A need neither arrived nor in LMDB at the last search is still on its way
                // through this pipeline (each need was sent to the workers by this call), so
                // it will show in `arrived` unless that is cleared.
                let search = searched != clears;
                let mut ready = true;
                for id in &v.needs {
                    let there = arrived.contains(id) || (search && self.dedupable(t, id)?);
                    if !there {
                        ready = false;
                        break;
                    }
                }
                if !ready {
                    waiting.push((v, clears));
                    continue;
                }
                // Chain only onto the head this version also started from (read before the earlier
                // one committed) and only while that earlier version is live: a fresher head read
                // from another process's commit wins.
                let parents = match batch_heads.get(&v.key) {
                    Some((started_from, prev))
                        if v.default_parents
                            && *started_from == v.parents
                            && self.lmdb.removed.get(t, prev)?.is_none() =>
                    {
                        vec![*prev]
                    }
                    _ => v.parents.clone(),
                };
                let hash = match self.commit_version_fresh_in(
                    t,
                    &v.key,
                    parents,
                    Body {
                        chunks: &v.chunks,
                        size: v.size,
                        created: v.created,
                        meta: v.meta.clone(),
                    },
                    &fresh,
                ) {
                    Ok(h) => h,
                    // This version deduplicated against a sealing gc condemned since: it
                    // fails alone, before writing anything.
                    Err(e @ Error::Retry(_)) => {
                        done.push((v.item, Err(e)));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                batch_heads.insert(v.key.clone(), (v.parents, hash));
                tracing::info!(key = %v.key, version = %hash.short(), size = v.size, new_chunks = v.new_chunks, "stored");
                versions += 1;
                if versions % RELEASE_VERSIONS == 0 {
                    self.lmdb.slices.mapped.release();
                }
                done.push((
                    v.item,
                    Ok(PutOutcome {
                        hash,
                        size: v.size,
                        chunks: v.chunks.len(),
                        new_chunks: v.new_chunks,
                        stored_bytes: stored_by_item.remove(&v.item).unwrap_or(0),
                    }),
                ));
            }
            let limit = if versions >= MANY_VERSIONS {
                BATCH_BYTES_MANY
            } else {
                BATCH_BYTES
            };
            if bytes >= limit || versions >= BATCH_VERSIONS || opened.elapsed() >= BATCH_AGE {
                if let Some(t) = txn.take() {
                    self.lmdb.commit(t)?;
                    tracing::debug!(bytes, versions, "committed a write transaction");
                }
            }
        }
        if let Some(t) = txn {
            self.lmdb.commit(t)?;
        }
        if !waiting.is_empty() {
            return Err(Error::Corrupt(format!(
                "{} version(s) lost chunks before committing",
                waiting.len()
            )));
        }
        Ok(done)
    }
}
