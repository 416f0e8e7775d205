//! Replication between cluster nodes: the versions and deletions a store learned of, read
//! from its logs after a cursor, and applied on another store. Applying is idempotent and
//! order-tolerant, so nodes can pull from every peer and relay what they learned.

use serde::{Deserialize, Serialize};

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Blob, ChunkRecord};
use crate::store::deletion_wal::{Deletion, WalEntry};
use crate::store::removed::Removal;
use crate::store::version_index::KeyState;
use crate::store::RwTxn;

/// One version as shipped between nodes: its blob record and the records of its chunks
/// (small: hashes and nonces), so that any node can rebuild it from any k slices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The blob (hash = `blob.hash()`).
    pub blob: Blob,
    /// The record of each chunk the blob names.
    pub chunks: Vec<(Hash, ChunkRecord)>,
    /// The chunks among those whose shipped record the sender marks condemned
    /// (`src/cas/condemn.rs`): the receiver marks them too.
    pub condemned: Vec<Hash>,
}

impl Cas {
    /// Versions logged after sequence `after`, at most `limit`, and the sequence to resume
    /// from. Versions gc already dropped are skipped.
    pub fn versions_since(&self, after: u64, limit: usize) -> Result<(Vec<VersionRecord>, u64)> {
        // A
        let replica = self.replica();
        let (hashes, last) = replica.version_hashes_since(after, limit)?;
        Ok((replica.versions_by_hash(&hashes)?, last))
    }

    fn import_version_in(&self, txn: &mut RwTxn, rec: &VersionRecord) -> Result<bool> {
        // PA
        let blob = &rec.blob;
        // Snapshots replicate like any version: their reserved keys are valid here.
        crate::model::snapshot::validate_stored_key(&blob.key)?;
        if blob.meta.snapshot().is_some()
            != blob
                .key
                .starts_with(crate::model::snapshot::SNAPSHOT_KEY_PREFIX)
        {
            return Err(Error::malformed(
                "version",
                "a snapshot outside the snapshot keys, or the reverse",
            ));
        }
        let hash = blob.hash()?;
        if self.lmdb.blobs.get(txn, &hash)?.is_some()
            || self.lmdb.removed.get(txn, &hash)?.is_some()
        {
            return Ok(false);
        }
        for (id, record) in &rec.chunks {
            // A delta's base travels before it (`ship_record`): one that is the delta
            // itself, a pack or absent would leave a record no node can read or free.
            if let Some(base) = record.base() {
                if !self.usable_base(txn, id, &base)? {
                    return Err(Error::Corrupt(format!(
                        "replicated version {} of {:?} names delta {} without a usable base {}",
                        hash.short(),
                        blob.key,
                        id.short(),
                        base.short()
                    )));
                }
            }
            self.adopt_record_in(txn, id, record, rec.condemned.contains(id))?;
        }
        for c in &blob.chunks {
            let pack = match self.lmdb.chunks.get(txn, &c.id)? {
                // A version never names a pack: that would count as one of its members.
                Some(r) if r.is_pack() => {
                    return Err(Error::Corrupt(format!(
                        "replicated version {} of {:?} names pack {} as a chunk",
                        hash.short(),
                        blob.key,
                        c.id.short()
                    )))
                }
                Some(r) => r.pack().map(|(p, _)| p),
                None => {
                    return Err(Error::Corrupt(format!(
                        "replicated version {} of {:?} names chunk {} without its record",
                        hash.short(),
                        blob.key,
                        c.id.short()
                    )))
                }
            };
            if let Some(p) = pack {
                if !self.lmdb.chunks.get(txn, &p)?.is_some_and(|r| r.is_pack()) {
                    return Err(Error::Corrupt(format!(
                        "replicated version {} of {:?} names chunk {} of pack {} without the pack's record",
                        hash.short(),
                        blob.key,
                        c.id.short(),
                        p.short()
                    )));
                }
            }
        }
        let (_, seq) = self.lmdb.blobs.put(txn, blob)?;
        for c in &blob.chunks {
            self.lmdb.chunks.add_refs(txn, &c.id, 1)?;
        }
        self.lmdb
            .key_to_hash
            .put(txn, &blob.key, blob.created, seq)?;
        for p in &blob.parents {
            self.lmdb.parent_child.put(txn, p, seq)?;
        }
        let mut state = self.lmdb.versions.get(txn, &blob.key)?.unwrap_or_default();
        if let Some(t) = state.deleted.filter(|t| blob.created <= *t) {
            // Written before the key was removed somewhere: the removal covers it.
            let mark = Removal {
                time: t,
                whole_key: true,
                released: false,
            };
            self.lmdb.removed.put(txn, &hash, &mark)?;
            return Ok(true);
        }
        state.heads.retain(|h| !blob.parents.contains(h));
        if !self.has_live_descendant(txn, hash)? {
            state.heads.push(hash);
        }
        if !state.heads.is_empty() {
            state.deleted = None;
        }
        self.lmdb.versions.put(txn, &blob.key, &state)?;
        Ok(true)
    }

    /// Applies a `Resealed` entry: the pack's record first (a member is no use without it),
    /// then the member's under the one-sealing rule. True when the record here changed.
    fn import_resealed(
        &self,
        txn: &mut RwTxn,
        id: &Hash,
        record: &ChunkRecord,
        pack: Option<&ChunkRecord>,
    ) -> Result<bool> {
        // PA
        // Only records of chunks this node already knows: the entry settles a conflict, it
        // does not bring content (that comes with versions).
        if !self.lmdb.chunks.contains(txn, id)? {
            return Ok(false);
        }
        if let Some(base) = record.base() {
            // A delta whose base is unknown here could not be read: not adopted.
            if !self.usable_base(txn, id, &base)? {
                return Ok(false);
            }
        }
        if let Some((pack_id, _)) = record.pack() {
            match pack {
                Some(p) if p.is_pack() => {
                    self.adopt_record_in(txn, &pack_id, p, false)?;
                }
                _ if self.lmdb.chunks.contains(txn, &pack_id)? => {}
                // A member whose pack is unknown here could not be read: not adopted.
                _ => return Ok(false),
            }
        }
        Ok(matches!(
            self.adopt_record_in(txn, id, record, false)?,
            super::Adopted::Replaced
        ))
    }

    /// True when chunk `base` can serve as the base of delta `id` here: another chunk,
    /// not a pack, whose record is stored.
    fn usable_base(&self, txn: &RwTxn, id: &Hash, base: &Hash) -> Result<bool> {
        // PA
        Ok(base != id
            && self
                .lmdb
                .chunks
                .get(txn, base)?
                .is_some_and(|r| !r.is_pack()))
    }

    fn import_key_removal(&self, txn: &mut RwTxn, key: &str, time: i64) -> Result<bool> {
        // PA
        crate::model::snapshot::validate_stored_key(key)?;
        let mut state = self.lmdb.versions.get(txn, key)?.unwrap_or_default();
        let mut changed = false;
        for v in self.lmdb.key_to_hash.versions(txn, key)? {
            if v.created > time || self.lmdb.removed.get(txn, &v.hash)?.is_some() {
                continue;
            }
            let mark = Removal {
                time,
                whole_key: true,
                released: false,
            };
            self.lmdb.removed.put(txn, &v.hash, &mark)?;
            state.heads.retain(|h| *h != v.hash);
            changed = true;
        }
        if state.heads.is_empty() && state.deleted.is_none_or(|d| d < time) {
            state.deleted = Some(time);
            changed = true;
        }
        if changed {
            self.lmdb.versions.put(txn, key, &KeyState { ..state })?;
        }
        Ok(changed)
    }
}

/// What a joining node needs to become a replica of a store: its configuration and every
/// wrapped key (only holders of a recipient identity can unwrap them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSeed {
    /// The store's configuration (id, erasure code, chunking, key epoch).
    pub config: crate::store::StoreConfig,
    /// `(epoch, wrapped key)` for every recipient and epoch.
    pub keys: Vec<(u32, crate::store::key_index::WrappedKey)>,
}

impl Cas {
    /// Creates an empty replica of another node's store in `dir` (locked: unlock it with
    /// one of the store's identities to read content).
    pub fn create_replica(dir: &std::path::Path, seed: &ReplicaSeed) -> Result<Self> {
        // PA
        if crate::store::Lmdb::exists(dir) {
            return Err(Error::AlreadyInitialised(dir.display().to_string()));
        }
        use crate::store::meta::{FORMAT_VERSION, OLDEST_FORMAT};
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&seed.config.format) {
            return Err(Error::UnsupportedFormat {
                found: seed.config.format,
                supported: FORMAT_VERSION,
            });
        }
        let lmdb = crate::store::Lmdb::open(dir, true)?;
        let mut txn = lmdb.write()?;
        // This build's format: the versions it pulls may bring deltas sealed before the
        // store became a cluster's.
        let config = crate::store::StoreConfig {
            format: FORMAT_VERSION,
            ..seed.config.clone()
        };
        lmdb.meta.put_config(&mut txn, &config)?;
        for (epoch, w) in &seed.keys {
            let r = crate::crypto::Recipient::parse(&w.recipient)?;
            lmdb.key_index.put(&mut txn, *epoch, &r.fingerprint(), w)?;
        }
        lmdb.commit(txn)?;
        Ok(Cas {
            lmdb,
            config: seed.config.clone(),
            keys: std::collections::BTreeMap::new(),
            remote: None,
        })
    }
}

/// The cluster's side of this part of the store (see [`crate::cas::Replica`]).
impl crate::cas::Replica<'_> {
    /// Hashes of the versions logged after sequence `after`, at most `limit`, and the
    /// sequence to resume from: what a peer compares with what it has before asking for
    /// whole records, so versions it already learned elsewhere cost 32 bytes, not a record.
    pub fn version_hashes_since(&self, after: u64, limit: usize) -> Result<(Vec<Hash>, u64)> {
        // A
        let txn = self.lmdb.read()?;
        let (log, last) = self.lmdb.blob_log.since(&txn, after, limit)?;
        Ok((log.into_iter().map(|(_, h)| h).collect(), last))
    }

    /// The records of these versions, in order; versions not here, removed or dropped by gc
    /// are left out, and so are damaged ones (verify reports them here): one must not stop
    /// a peer from pulling the rest.
    pub fn versions_by_hash(&self, hashes: &[Hash]) -> Result<Vec<VersionRecord>> {
        // A
        let txn = self.lmdb.read()?;
        let mut out = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let blob = match self.lmdb.blobs.get(&txn, hash) {
                Ok(Some(blob)) => blob,
                Ok(None) => continue,
                Err(e @ (Error::Corrupt(_) | Error::Malformed { .. })) => {
                    tracing::warn!(version = %hash.short(), error = %e, "a damaged version is not shipped");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A removed version is not shipped: once the tombstone that removed it is
            // compacted, a node learning of the version would bring it back.
            if self.lmdb.removed.get(&txn, hash)?.is_some() {
                continue;
            }
            let mut chunks: Vec<(Hash, ChunkRecord)> = Vec::with_capacity(blob.chunks.len());
            let mut condemned = Vec::new();
            for c in &blob.chunks {
                if chunks.iter().any(|(id, _)| *id == c.id) {
                    continue;
                }
                self.ship_record(&txn, &c.id, &mut chunks, &mut condemned, 0)?;
            }
            out.push(VersionRecord {
                blob,
                chunks,
                condemned,
            });
        }
        Ok(out)
    }

    /// Adds chunk `id`'s record to `chunks` (once), after what it holds: a member's pack
    /// travels with it, before it (every node needs the pack's record to read the member and
    /// to take its share of the pack's slices, and a member adopted by the one-sealing rule
    /// is logged with it), and so does a delta's base, with its own pack and base, as deep
    /// as the chain goes (a store's deltas were sealed before it became a cluster's).
    fn ship_record(
        &self,
        txn: &crate::store::RoTxn,
        id: &Hash,
        chunks: &mut Vec<(Hash, ChunkRecord)>,
        condemned: &mut Vec<Hash>,
        depth: u8,
    ) -> Result<()> {
        // A
        if chunks.iter().any(|(c, _)| c == id) {
            return Ok(());
        }
        // A chain longer than any put makes (a damaged record): shipping the delta without
        // its base would leave the receiver a chunk it cannot read.
        if depth > crate::model::chunk::MAX_DELTA_DEPTH + 1 {
            return Err(Error::Corrupt(format!(
                "chunk {}: a chain of deltas longer than {}",
                id.short(),
                crate::model::chunk::MAX_DELTA_DEPTH
            )));
        }
        let Some(r) = self.lmdb.chunks.get(txn, id)? else {
            return Ok(());
        };
        for held in r.holds() {
            self.ship_record(txn, &held, chunks, condemned, depth + 1)?;
        }
        if self.is_condemned_in(txn, id, &r)? {
            condemned.push(*id);
        }
        chunks.push((*id, r));
        Ok(())
    }

    /// The versions among `hashes` this store has never seen (neither stored nor removed).
    pub fn unknown_versions(&self, hashes: &[Hash]) -> Result<Vec<Hash>> {
        // A
        let txn = self.lmdb.read()?;
        let mut out = Vec::new();
        for h in hashes {
            // A damaged copy is held (verify reports it): importing it again would fail the
            // same way.
            let held = match self.lmdb.blobs.get(&txn, h) {
                Ok(b) => b.is_some(),
                Err(Error::Corrupt(_) | Error::Malformed { .. }) => true,
                Err(e) => return Err(e),
            };
            if !held && self.lmdb.removed.get(&txn, h)?.is_none() {
                out.push(*h);
            }
        }
        Ok(out)
    }

    /// Deletions logged after sequence `after`, at most `limit`, and the sequence to resume
    /// from.
    pub fn deletions_since(&self, after: u64, limit: usize) -> Result<(Vec<WalEntry>, u64)> {
        // A
        let txn = self.lmdb.read()?;
        let entries = self.lmdb.deletion_wal.since(&txn, after, limit)?;
        let mut last = entries.last().map_or(after, |(s, _)| *s);
        // The page ended at a condemnation kept below the floor (or at nothing): the next
        // cursor is the floor, since everything between was compacted.
        if entries.len() < limit {
            last = last.max(self.lmdb.deletion_wal.floor(&txn)?);
        }
        Ok((entries.into_iter().map(|(_, e)| e).collect(), last))
    }

    /// The log id and the last sequence numbers of the blob log and the DeletionWAL (its
    /// floor when higher): the cursors a peer that pulled everything from here holds.
    pub fn log_ends(&self) -> Result<(Hash, u64, u64)> {
        // A
        // Heartbeats ask this every second per peer: one read transaction, except the
        // first time, when the log id is created.
        let txn = self.lmdb.read()?;
        let log = match self.lmdb.meta.log_id(&txn)? {
            Some(id) => id,
            None => self.log_id()?,
        };
        Ok((
            log,
            self.lmdb.blob_log.last(&txn)?,
            self.lmdb.deletion_wal.last_seq(&txn)?,
        ))
    }

    /// True when DeletionWAL entry `seq` is held (a condemnation compaction kept below the
    /// floor is a valid place for a peer's cursor).
    pub fn holds_deletion(&self, seq: u64) -> Result<bool> {
        // A
        let txn = self.lmdb.read()?;
        Ok(self
            .lmdb
            .deletion_wal
            .since(&txn, seq.saturating_sub(1), 1)?
            .first()
            .is_some_and(|(s, _)| *s == seq))
    }

    /// DeletionWAL entries held and the compaction floor (the last sequence dropped because
    /// every member had it).
    pub fn tombstones(&self) -> Result<(u64, u64)> {
        // A
        let txn = self.lmdb.read()?;
        Ok((
            self.lmdb.deletion_wal.len(&txn)?,
            self.lmdb.deletion_wal.floor(&txn)?,
        ))
    }

    /// Drops DeletionWAL entries up to sequence `through`, which every member has applied;
    /// returns how many it went over. Key tombstones and removal marks stay in the indexes,
    /// so versions that arrive late still arrive removed; condemnations still pending here
    /// stay in the log, for nodes that join later.
    pub fn compact_deletions(&self, through: u64) -> Result<u64> {
        // PA
        let mut dropped = 0;
        loop {
            let mut txn = self.lmdb.write()?;
            let keep = |t: &crate::store::RoTxn, seq: u64, e: &WalEntry| {
                self.condemnation_pending(t, seq, e)
            };
            let n = self
                .lmdb
                .deletion_wal
                .compact(&mut txn, through, 1024, &keep)?;
            self.lmdb.commit(txn)?;
            dropped += n as u64;
            if n < 1024 {
                return Ok(dropped);
            }
        }
    }

    /// Applies versions learned from a peer, in one transaction; returns how many were new.
    /// A version becomes a head unless something already here descends from it, so
    /// concurrent writes on two nodes end as two heads; one created before a key's
    /// tombstone arrives already removed.
    pub fn import_versions(&self, records: &[VersionRecord]) -> Result<usize> {
        // PA
        let mut txn = self.lmdb.write()?;
        let mut new = 0;
        for rec in records {
            if self.import_version_in(&mut txn, rec)? {
                new += 1;
            }
        }
        self.lmdb.commit(txn)?;
        Ok(new)
    }

    /// Applies deletions learned from a peer; those that changed something here are logged
    /// again (so they travel on), the others are ignored. Returns how many applied.
    /// `rm KEY` removes the versions created up to its time: a version written elsewhere
    /// after it survives, as a put after an rm does on one node.
    pub fn import_deletions(&self, entries: &[WalEntry]) -> Result<usize> {
        // PA
        let mut txn = self.lmdb.write()?;
        let mut applied = 0;
        for e in entries {
            let changed = match &e.deletion {
                Deletion::Key { key } => self.import_key_removal(&mut txn, key, e.time)?,
                Deletion::Version { key, hash } => {
                    let live = self.lmdb.removed.get(&txn, hash)?.is_none();
                    match self.lmdb.blobs.get(&txn, hash)? {
                        Some(blob) if live && blob.key == *key => {
                            let mut state = self.lmdb.versions.get(&txn, key)?.unwrap_or_default();
                            self.remove_version_in(
                                &mut txn, key, *hash, &blob, &mut state, e.time,
                            )?;
                            true
                        }
                        // Not here yet: remember the removal, so the version arrives removed
                        // (it took no references, so there is nothing for gc to release).
                        None if live => {
                            let mark = Removal {
                                time: e.time,
                                whole_key: false,
                                released: true,
                            };
                            self.lmdb.removed.put(&mut txn, hash, &mark)?;
                            true
                        }
                        _ => false,
                    }
                }
                // An embedded store's own gc record: nothing for other nodes.
                Deletion::Chunk { .. } => false,
                // Marked here and logged again under this node's own sequence (which the
                // members' acknowledgements of this node's log then cover).
                Deletion::Condemned { id, sealing } => {
                    if self.condemn_in(&mut txn, id, *sealing, e.time)? {
                        applied += 1;
                    }
                    continue;
                }
                // Adopted by the one-sealing rule; a replacement here logs its own entry
                // (src/cas/sealing.rs), so it travels on.
                Deletion::Resealed { id, record, pack } => {
                    if self.import_resealed(&mut txn, id, record, pack.as_ref())? {
                        applied += 1;
                    }
                    continue;
                }
            };
            if changed {
                self.lmdb.deletion_wal.log_deletion(&mut txn, e)?;
                applied += 1;
            }
        }
        self.lmdb.commit(txn)?;
        Ok(applied)
    }

    /// The seed another node needs to create a replica of this store.
    pub fn replica_seed(&self) -> Result<ReplicaSeed> {
        // PA
        let txn = self.lmdb.read()?;
        let config = self.lmdb.meta.config(&txn)?;
        let mut keys = Vec::new();
        for epoch in 0..=config.current_epoch {
            for w in self.lmdb.key_index.recipients(&txn, epoch)? {
                keys.push((epoch, w));
            }
        }
        Ok(ReplicaSeed { config, keys })
    }
}
