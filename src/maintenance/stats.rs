//! stats: logical bytes, stored bytes, dedup and compression ratios.
//!
//! On a cluster, nodes holding the same keys and versions agree on `keys`,
//! `live_versions`, `logical_bytes` and `referenced_chunks`. The other counts are the
//! node's own ([`Stats::NODE_LOCAL`]): they also count records that only some nodes hold,
//! for reasons of history rather than content: the record of a version removed with `rm
//! KEY@V` stays (hollow) on nodes that had it, while a node that learns of the key later
//! never receives it; an interrupted put leaves chunk records, which reach the nodes that
//! take its slices; a condemned sealing is freed by each node in its own round.

use std::collections::HashMap;

use crate::cas::Cas;
use crate::error::Result;
use crate::hash::Hash;
use crate::maintenance::PAGE;
use crate::store::PageUse;

/// Store statistics. Ratios are `None` when the store is empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Live keys.
    pub keys: u64,
    /// Version records here: live ones and removed ones whose record stays (until gc, as
    /// history after `rm KEY@V`, or while a snapshot lists them). Node-local.
    pub versions: u64,
    /// Versions not removed: the same on every node of a cluster that holds the same data.
    pub live_versions: u64,
    /// Removed versions whose record is still here (`versions - live_versions`). Node-local.
    pub removed_versions: u64,
    /// Sum of the sizes of all versions not removed: what users put.
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct chunks stored (after dedup, before compression).
    pub unique_bytes: u64,
    /// Sealed bytes of the data slices (compressed + encrypted, parity not counted): chunks
    /// sealed alone and whole packs (with the bytes of freed members until gc repacks).
    pub stored_bytes: u64,
    /// Bytes of all slices, parity included, as stored in LMDB.
    pub stored_with_parity_bytes: u64,
    /// Size of the LMDB data file on disk (never shrinks by itself; gc'd pages are reused).
    pub file_bytes: u64,
    /// Bytes of free pages inside the data file: freed by gc and by write transactions
    /// (which copy the index pages they change), reused by later writes, returned to the
    /// filesystem by [`Cas::compact`].
    pub reusable_bytes: u64,
    /// Bytes a killed compaction left in `compact.partial` (0 when none): `gc` removes them.
    pub compaction_leftover_bytes: u64,
    /// Bytes of slices a put wrote ahead of their records that no record names yet: a
    /// running put's, or a killed put's, which `gc` frees. Part of
    /// `stored_with_parity_bytes`.
    pub unfinished_bytes: u64,
    /// Distinct chunks with a record here, referenced or not. Node-local.
    pub chunks: u64,
    /// Chunks some version here references (`chunks - unreferenced_chunks`): the same on
    /// every node of a cluster that holds the same data.
    pub referenced_chunks: u64,
    /// Slices.
    pub slices: u64,
    /// Packs: small chunks sealed together (`src/seal/pack.rs`). Node-local.
    pub packs: u64,
    /// Chunks stored as deltas against an earlier chunk (`src/seal/delta.rs`), among
    /// `chunks`. Node-local.
    pub deltas: u64,
    /// Bytes of pack payloads in frames no chunk record names: members freed, or sealed
    /// again by a put that another put beat to it. Part of `stored_bytes`; gc rewrites a
    /// pack once they are half of it (`src/maintenance/repack.rs`). Node-local.
    pub dead_pack_bytes: u64,
    /// Chunks no version references (left by an interrupted put, or freed versions on a
    /// cluster node waiting for the cluster): counted in the totals above until gc frees them.
    pub unreferenced_chunks: u64,
    /// Plaintext bytes of those chunks (part of `unique_bytes`).
    pub unreferenced_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: Option<f64>,
    /// unique / stored.
    pub compression_ratio: Option<f64>,
}

impl Stats {
    /// The fields (by their JSON names) that count what this node holds, and so may differ
    /// between the nodes of a cluster with the same keys, versions and content.
    pub const NODE_LOCAL: [&'static str; 18] = [
        "versions",
        "removed_versions",
        "unique_bytes",
        "stored_bytes",
        "stored_with_parity_bytes",
        "file_bytes",
        "reusable_bytes",
        "compaction_leftover_bytes",
        "unfinished_bytes",
        "chunks",
        "slices",
        "packs",
        "deltas",
        "dead_pack_bytes",
        "unreferenced_chunks",
        "unreferenced_bytes",
        "dedup_ratio",
        "compression_ratio",
    ];
}

impl Cas {
    /// How the database file's pages are used: cheap (no scan), unlike [`Cas::stats`].
    pub fn page_use(&self) -> Result<PageUse> {
        // A
        self.lmdb.page_use()
    }

    /// Computes statistics by streaming over the store.
    pub fn stats(&self) -> Result<Stats> {
        // A
        let mut s = Stats::default();
        // The sealed length of every frame some member names, by (pack, frame offset): a
        // frame holds about 25 small files, so this is small beside the members.
        let mut frames: HashMap<(Hash, u32), u32> = HashMap::new();
        let mut payloads = 0u64;
        let mut after = None;
        loop {
            let txn = self.lmdb.read()?;
            let page = self.lmdb.chunks.page(&txn, after, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (id, r) in page {
                self.lmdb.note_lookup();
                let Ok(r) = r else { continue };
                s.slices += r.slices.len() as u64;
                if r.is_pack() {
                    s.packs += 1;
                    s.stored_bytes += r.sealed_len as u64;
                    payloads += r.sealed_len as u64;
                    continue;
                }
                if let Some((pack, offset)) = r.pack() {
                    frames.insert((pack, offset), r.sealed_len);
                }
                s.deltas += u64::from(r.base().is_some());
                s.chunks += 1;
                s.unique_bytes += r.size as u64;
                if r.pack().is_none() {
                    s.stored_bytes += r.sealed_len as u64;
                }
                if self.lmdb.chunks.refs(&txn, &id)? == 0 {
                    s.unreferenced_chunks += 1;
                    s.unreferenced_bytes += r.size as u64;
                }
            }
        }
        let mut after = None;
        loop {
            let txn = self.lmdb.read()?;
            let page = self.lmdb.blobs.page(&txn, after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            for h in page {
                self.lmdb.note_lookup();
                s.versions += 1;
                if self.lmdb.removed.get(&txn, &h)?.is_some() {
                    s.removed_versions += 1;
                    continue;
                }
                s.live_versions += 1;
                if let Some(b) = self.lmdb.blobs.get(&txn, &h)? {
                    s.logical_bytes += b.size;
                }
            }
        }
        let txn = self.lmdb.read()?;
        let mut after: Option<String> = None;
        loop {
            let page = self.lmdb.versions.list(&txn, "", after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            s.keys += page.len() as u64;
        }
        s.referenced_chunks = s.chunks - s.unreferenced_chunks;
        let live: u64 = frames.values().map(|&len| u64::from(len)).sum();
        s.dead_pack_bytes = payloads.saturating_sub(live);
        s.stored_with_parity_bytes = self.lmdb.slices.totals(&txn)?.1;
        s.unfinished_bytes = self.lmdb.slices.unfinished(&txn)?.1;
        s.file_bytes = self.lmdb.disk_size()?;
        s.reusable_bytes = self.lmdb.page_use()?.reusable_bytes;
        s.compaction_leftover_bytes = crate::maintenance::compact::leftover_bytes(self.path());
        if s.unique_bytes > 0 {
            s.dedup_ratio = Some(s.logical_bytes as f64 / s.unique_bytes as f64);
        }
        if s.stored_bytes > 0 {
            s.compression_ratio = Some(s.unique_bytes as f64 / s.stored_bytes as f64);
        }
        Ok(s)
    }
}
