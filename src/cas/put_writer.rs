//! The put pipeline's writer thread: stores sealed chunks and packs and commits each
//! version once every chunk it needs is stored.
//!
//! On a store of its own, slices and records go in separate transactions: slices are
//! appended as *unfinished* bundles and committed about every 4 MiB, so LMDB's dirty pages
//! (process memory until the commit) never hold more; the records of those chunks and the
//! versions that use them are written about once a second (or every 10,000 versions), in
//! one transaction, because every version touches a random page of the small indexes and a
//! commit rewrites each page it touched: fewer, larger index commits write far fewer bytes.
//! A put that dies in between leaves unfinished bundles, which gc frees. On a cluster node a
//! bundle that nothing locates would confuse the hand-over walk, so there both go in
//! one transaction of 4 MiB of slices (64 MiB once it holds many small versions).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::cas::put::{Body, PendingVersion, PutOutcome, Slots, ToWriter, SEEN_LIMIT};
use crate::cas::put_sealed::Sealed;
use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::route::DataRouter;
use crate::store::RwTxn;

/// Bytes of sealed slices per write transaction: bounds the memory LMDB holds in dirty
/// pages and how long other writers wait. Small, so that a big file's slices stream to disk
/// while the workers go on sealing: 4 MiB instead of 8 took 4-8 MB off `put -r
/// /usr/share`'s peak at the same time (slices are appended, so a commit rewrites few pages).
const BATCH_BYTES: usize = 4 << 20;
/// ... and once a transaction holds [`MANY_VERSIONS`], as a tree of small files does: each
/// commit rewrites every index page its versions touched (keys are hashes, so nearly one
/// page per version and index), which larger transactions share. 8 MiB to 64 MiB made
/// `put -r /usr/share` about 8% faster and cut its bytes written from 787 to 563 MB.
const BATCH_BYTES_MANY: usize = 64 << 20;
/// Versions in a transaction from which [`BATCH_BYTES_MANY`] applies.
const MANY_VERSIONS: usize = 64;
/// Versions per write transaction at most.
const BATCH_VERSIONS: usize = 10_000;
/// Chunk and member records waiting for their versions' transaction at most: bounds the
/// memory they take (about 150 bytes each).
const UNFINISHED_RECORDS: usize = 50_000;
/// Longest a transaction stays open, so versions become visible promptly.
const BATCH_AGE: Duration = Duration::from_secs(1);

impl Cas {
    /// The writer thread: stores sealed chunks and commits versions once their chunks are
    /// in the transaction, committing about every [`BATCH_BYTES`]; puts each version's
    /// outcome in its item's slot.
    pub(super) fn write_batches(
        &self,
        rx: Receiver<Result<ToWriter>>,
        slots: &Slots,
    ) -> Result<()> {
        // PA
        let mut writer = Writer::new(self, slots)?;
        let written = (|| {
            while let Some(msg) = writer.receive(&rx)? {
                writer.handle(msg)?;
            }
            writer.finish()
        })();
        if written.is_err() {
            writer.abandon();
        }
        written
    }
}

/// The writer thread's state between messages: the open write transaction and what it
/// holds, the versions waiting for chunks, and the outcomes so far.
struct Writer<'c> {
    /// The store written to.
    cas: &'c Cas,
    /// Where sealed slices go.
    router: DataRouter<'c>,
    /// Where the outcome of each version committed or failed goes, by item.
    slots: &'c Slots,
    /// Versions waiting for chunks, each with the value of `arrived.clears` at its last
    /// search of LMDB.
    waiting: Vec<(PendingVersion, u64)>,
    /// Chunks this pipeline delivered.
    arrived: Arrived,
    /// Bytes of slices each item stored, for its outcome.
    stored_by_item: HashMap<usize, u64>,
    /// Versions committed by this call, per key (by [`print`] of the key, not the key
    /// itself: a tree of 50,000 files would hold every key), with the print of the parents
    /// that version started from and the first 8 bytes of its hash (the rest is in
    /// LMDB): a later version of the same key with default parents follows it instead of
    /// forking from the head read at its start. 24 bytes a version.
    batch_heads: HashMap<u64, (u64, [u8; 8])>,
    /// Chunks stored (or found dedupable) by the open transaction: nothing condemns a
    /// chunk inside it, so its versions need not check them again.
    fresh: HashSet<Hash>,
    /// The open transaction, between messages.
    txn: Option<RwTxn<'c>>,
    /// Whether slices are committed ahead of their records (a store of its own).
    ahead: bool,
    /// Units whose slices are committed, or in the open transaction, as unfinished bundles,
    /// waiting to be recorded with the versions.
    unfinished: Vec<Unfinished>,
    /// How many of `unfinished` (from the first) were appended by a committed transaction.
    committed: usize,
    /// Records those units hold (one each, and one per member of a pack).
    unfinished_records: usize,
    /// Versions queued since records and versions were last written.
    queued: usize,
    /// When the oldest unit or version waiting for that arrived.
    since: Option<Instant>,
    /// Bytes of slices in the open transaction.
    bytes: usize,
    /// Versions committed in the open transaction.
    versions: usize,
    /// When the open transaction was opened.
    opened: Instant,
}

/// Chunks this pipeline delivered: a waiting version checks its needs here, so versions
/// waiting for a batch do not search LMDB again at every message (a tree of small files
/// keeps hundreds waiting: searching and re-queueing them took a quarter of the writer's
/// time in `put -r /usr/share`).
#[derive(Default)]
struct Arrived {
    /// The chunks (by [`Hash::print`]), at most [`SEEN_LIMIT`].
    ids: HashSet<u128>,
    /// Times `ids` was forgotten: a need that arrived before may have been, so each waiting
    /// version searches LMDB once more after it.
    clears: u64,
}

/// A sealed chunk or pack whose slices were appended as unfinished bundle `seq`: what
/// recording it needs (its slices are on their way to disk, not in memory).
struct Unfinished {
    seq: u64,
    /// Encoded slice bytes.
    total: u64,
    items: Vec<usize>,
    id: Hash,
    record: ChunkRecord,
    members: Vec<(Hash, ChunkRecord)>,
}

impl Arrived {
    /// Notes chunk `id`, first forgetting every other once there are [`SEEN_LIMIT`], so the
    /// set stays bounded however much is put.
    fn insert(&mut self, id: Hash) {
        // PA
        if self.ids.len() >= SEEN_LIMIT {
            self.ids.clear();
            self.clears += 1;
        }
        self.ids.insert(id.print());
    }

    /// Notes chunk or pack `id` and the members of a pack.
    fn unit(&mut self, id: &Hash, members: &[(Hash, ChunkRecord)]) {
        // A
        for (member, _) in members {
            self.insert(*member);
        }
        self.insert(*id);
    }
}

impl<'c> Writer<'c> {
    /// A writer for `cas` with no transaction open and nothing waiting.
    fn new(cas: &'c Cas, slots: &'c Slots) -> Result<Self> {
        // PA
        Ok(Writer {
            cas,
            router: DataRouter::new(&cas.lmdb),
            slots,
            waiting: Vec::new(),
            arrived: Arrived::default(),
            stored_by_item: HashMap::new(),
            batch_heads: HashMap::new(),
            fresh: HashSet::new(),
            txn: None,
            ahead: !cas.in_cluster()?,
            unfinished: Vec::new(),
            committed: 0,
            unfinished_records: 0,
            queued: 0,
            since: None,
            bytes: 0,
            versions: 0,
            opened: Instant::now(),
        })
    }

    /// The next message, or None once every sender is gone.
    fn receive(&mut self, rx: &Receiver<Result<ToWriter>>) -> Result<Option<Result<ToWriter>>> {
        // PA
        loop {
            // With a transaction open or anything waiting to be recorded, wait no longer
            // than their age limit: a stalled input (a pipe, a file being read that is all
            // deduplicated) must not hold LMDB's single writer lock or keep committed
            // versions invisible.
            let open = self.txn.as_ref().map(|_| self.opened + BATCH_AGE);
            let Some(due) = open
                .into_iter()
                .chain(self.since.map(|s| s + BATCH_AGE))
                .min()
            else {
                return Ok(rx.recv().ok());
            };
            match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(m) => return Ok(Some(m)),
                Err(RecvTimeoutError::Timeout) => {
                    let t = match self.txn.take() {
                        Some(t) => t,
                        None => self.open()?,
                    };
                    match self.ahead {
                        true => self.record_and_commit(t)?,
                        false => self.cas.lmdb.commit(t)?,
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    /// Handles one message in the open transaction (opened for it if none is): stores its
    /// sealed units or queues its versions, commits the versions now ready, and commits the
    /// transaction once it is full or old.
    fn handle(&mut self, msg: Result<ToWriter>) -> Result<()> {
        // PA
        let mut t = match self.txn.take() {
            Some(t) => t,
            None => self.open()?,
        };
        let msg = msg?;
        // Only arriving chunks make waiting versions ready; new versions are checked alone.
        let from = match msg {
            ToWriter::Sealed(_) => 0,
            ToWriter::Versions(_) => self.waiting.len(),
        };
        match msg {
            ToWriter::Sealed(sealed) if self.ahead => self.append(&mut t, sealed)?,
            ToWriter::Sealed(sealed) => self.store(&mut t, sealed)?,
            ToWriter::Versions(vs) => {
                if self.ahead {
                    self.queued += vs.len();
                    self.since.get_or_insert_with(Instant::now);
                }
                // Never searched: `u64::MAX` differs from any count of clears.
                self.waiting.extend(vs.into_iter().map(|v| (v, u64::MAX)));
            }
        }
        if !self.ahead {
            self.commit_ready(&mut t, from)?;
        }
        self.maybe_commit(t)
    }

    /// Opens a write transaction, refused when the store's keys were rotated since it was
    /// opened; the chunks the last one stored are no longer fresh.
    fn open(&mut self) -> Result<RwTxn<'c>> {
        // PA
        self.fresh.clear();
        let t = self.cas.lmdb.write()?;
        self.cas.check_epoch(&t)?;
        (self.bytes, self.versions, self.opened) = (0, 0, Instant::now());
        Ok(t)
    }

    /// Stores sealed chunks and packs, noting them (and the members of packs) as arrived and
    /// fresh, and the bytes each item stored.
    fn store(&mut self, t: &mut RwTxn, sealed: Vec<Sealed>) -> Result<()> {
        // PA
        for unit in sealed {
            self.arrived.unit(&unit.unit.id, &unit.unit.members);
            let n = self.cas.store_sealed(t, &self.router, &unit)?;
            self.bytes += n.iter().sum::<u64>() as usize;
            let u = &unit.unit;
            note_stored(
                &mut self.fresh,
                &mut self.stored_by_item,
                &u.id,
                &u.members,
                &unit.items,
                n,
            );
        }
        Ok(())
    }

    /// Appends the slices of sealed chunks and packs as unfinished bundles, noting them
    /// (and the members of packs) as arrived; their records wait for
    /// [`Self::record_unfinished`].
    fn append(&mut self, t: &mut RwTxn, sealed: Vec<Sealed>) -> Result<()> {
        // PA
        for Sealed { items, unit } in sealed {
            self.arrived.unit(&unit.id, &unit.members);
            let slices: Vec<&[u8]> = unit.slices.iter().map(|(_, b)| b.as_slice()).collect();
            let seq = self
                .cas
                .lmdb
                .slices
                .append_unfinished(t, &unit.id, &slices)?;
            let total: u64 = slices.iter().map(|b| b.len() as u64).sum();
            self.bytes += total as usize;
            self.unfinished_records += 1 + unit.members.len();
            self.since.get_or_insert_with(Instant::now);
            self.unfinished.push(Unfinished {
                seq,
                total,
                items,
                id: unit.id,
                record: unit.record,
                members: unit.members,
            });
        }
        Ok(())
    }

    /// Records the unfinished units and commits them with the versions now ready, in one
    /// transaction. (Until store format 9 they went in two, so that LMDB held the dirty
    /// pages of half the random-keyed trees at a time; with records appended under
    /// sequence numbers those trees are small, and one transaction took `put -r
    /// /usr/share`'s peak nowhere measurable while its store lost 4 MB and the releases'
    /// 0.6 MB of index pages rewritten twice.)
    fn record_and_commit(&mut self, mut t: RwTxn<'c>) -> Result<()> {
        // PA
        self.record_unfinished(&mut t)?;
        if !self.waiting.is_empty() {
            self.commit_ready(&mut t, 0)?;
        }
        self.cas.lmdb.commit(t)?;
        // Only now: until this commit, abandoning the put must still find their bundles.
        self.unfinished.clear();
        self.committed = 0;
        Ok(())
    }

    /// Records the unfinished units (each kept, or discarded when its chunk was stored
    /// meanwhile) in the open transaction; [`Self::record_and_commit`] then commits the
    /// versions they make ready in it.
    fn record_unfinished(&mut self, t: &mut RwTxn) -> Result<()> {
        // PA
        for u in &self.unfinished {
            let (written, keep) = self.cas.admit(t, &u.id, &u.record, &u.members, u.total)?;
            if keep {
                self.cas.lmdb.slices.finish(t, &u.id, u.seq)?;
                self.cas.lmdb.chunks.put(t, &u.id, &u.record)?;
            } else {
                self.cas.lmdb.slices.discard(t, u.seq)?;
            }
            note_stored(
                &mut self.fresh,
                &mut self.stored_by_item,
                &u.id,
                &u.members,
                &u.items,
                written,
            );
        }
        (self.unfinished_records, self.queued, self.since) = (0, 0, None);
        Ok(())
    }

    /// Commits each version of `waiting[from..]` whose chunks are all here; the others wait
    /// on.
    fn commit_ready(&mut self, t: &mut RwTxn, from: usize) -> Result<()> {
        // PA
        // In place: a second list of the versions checked would double the memory of a
        // second's worth of small files waiting for their records.
        let mut waiting = std::mem::take(&mut self.waiting);
        let mut result = Ok(());
        let mut n = 0;
        waiting.retain_mut(|(v, searched)| {
            n += 1;
            if n <= from || result.is_err() {
                return true;
            }
            let committed = match self.ready(t, v, *searched) {
                Ok(true) => self.commit_version(t, v).map(|()| true),
                Ok(false) => Ok(false),
                Err(e) => Err(e),
            };
            match committed {
                Ok(done) => {
                    *searched = self.arrived.clears;
                    !done
                }
                Err(e) => {
                    result = Err(e);
                    true
                }
            }
        });
        self.waiting = waiting;
        result
    }

    /// True when every chunk `v` needs arrived or, when `arrived` was cleared since its last
    /// search (`searched`), is in LMDB.
    fn ready(&self, t: &RwTxn, v: &PendingVersion, searched: u64) -> Result<bool> {
        // PA
        // A need neither arrived nor in LMDB at the last search is still on its way
        // through this pipeline (each need was sent to the workers by this call), so
        // it will show in `arrived` unless that is cleared.
        let search = searched != self.arrived.clears;
        for id in &v.needs {
            let there =
                self.arrived.ids.contains(&id.print()) || (search && self.cas.dedupable(t, id)?);
            if !there {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Commits version `v` in the transaction and records its outcome. A version that
    /// deduplicated against a condemned chunk fails alone; any other error ends the put.
    fn commit_version(&mut self, t: &mut RwTxn, v: &PendingVersion) -> Result<()> {
        // PA
        // Chain only onto the head this version also started from (read before the earlier
        // one committed) and only while that earlier version is live: a fresher head read
        // from another process's commit wins.
        let key = print(std::iter::once(v.key.as_bytes()));
        let started = print(v.parents.iter().map(|h| &h.0[..]));
        let prev = match self.batch_heads.get(&key) {
            Some((started_from, prev)) if v.default_parents && *started_from == started => {
                self.earlier_version(t, &v.key, prev)?
            }
            _ => None,
        };
        let parents = prev.map_or_else(|| v.parents.clone(), |p| vec![p]);
        let hash = match self.cas.commit_version_fresh_in(
            t,
            &v.key,
            parents,
            Body {
                chunks: &v.chunks,
                size: v.size,
                created: v.created,
                meta: v.meta.clone(),
            },
            &self.fresh,
        ) {
            Ok(h) => h,
            // This version deduplicated against a sealing gc condemned since: it
            // fails alone, before writing anything.
            Err(e @ Error::Retry(_)) => {
                return self.slots.set(v.item, Err(e));
            }
            Err(e) => return Err(e),
        };
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.0[..8]);
        self.batch_heads.insert(key, (started, first));
        tracing::info!(key = %v.key, version = %hash.short(), size = v.size, new_chunks = v.new_chunks, "stored");
        self.versions += 1;
        // Its commit looked up a few pages of the map.
        self.cas.lmdb.slices.mapped.note_lookup();
        let outcome = PutOutcome {
            hash,
            size: v.size,
            chunks: v.chunks.len(),
            new_chunks: v.new_chunks,
            stored_bytes: self.stored_by_item.remove(&v.item).unwrap_or(0),
        };
        self.slots.set(v.item, Ok(outcome))
    }

    /// The live version of `key` this call committed whose hash starts with `first`, if any.
    fn earlier_version(&self, t: &RwTxn, key: &str, first: &[u8; 8]) -> Result<Option<Hash>> {
        // PA
        for h in self.cas.lmdb.blobs.with_prefix(t, first)? {
            let ours = self
                .cas
                .lmdb
                .blobs
                .get(t, &h)?
                .is_some_and(|b| b.key == key);
            if ours && self.cas.lmdb.removed.get(t, &h)?.is_none() {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// Commits the transaction once it holds enough bytes or versions or has been open long
    /// enough; otherwise keeps it for the next message.
    fn maybe_commit(&mut self, t: RwTxn<'c>) -> Result<()> {
        // PA
        if self.ahead {
            let old = |at: Instant| at.elapsed() >= BATCH_AGE;
            if self.since.is_some_and(old)
                || self.queued >= BATCH_VERSIONS
                || self.unfinished_records >= UNFINISHED_RECORDS
            {
                return self.record_and_commit(t);
            }
            if self.bytes >= BATCH_BYTES || old(self.opened) {
                self.cas.lmdb.commit(t)?;
                self.committed = self.unfinished.len();
                return Ok(());
            }
            self.txn = Some(t);
            return Ok(());
        }
        let limit = if self.versions >= MANY_VERSIONS {
            BATCH_BYTES_MANY
        } else {
            BATCH_BYTES
        };
        let (bytes, versions) = (self.bytes, self.versions);
        if bytes >= limit || versions >= BATCH_VERSIONS || self.opened.elapsed() >= BATCH_AGE {
            self.cas.lmdb.commit(t)?;
            tracing::debug!(bytes, versions, "committed a write transaction");
        } else {
            self.txn = Some(t);
        }
        Ok(())
    }

    /// Once every sender is gone: commits the open transaction. A version still waiting
    /// then never got a chunk it needs.
    fn finish(&mut self) -> Result<()> {
        // PA
        if self.txn.is_some() || self.since.is_some() {
            let t = match self.txn.take() {
                Some(t) => t,
                None => self.open()?,
            };
            self.record_and_commit(t)?;
        }
        if !self.waiting.is_empty() {
            return Err(Error::Corrupt(format!(
                "{} version(s) lost chunks before committing",
                self.waiting.len()
            )));
        }
        Ok(())
    }

    /// After an error: drops the open transaction, and the unfinished bundles committed
    /// before it as far as the store lets (else the next gc frees them). Only committed
    /// ones: the sequence numbers of an aborted transaction's bundles may be another
    /// writer's by now.
    fn abandon(&mut self) {
        // PA
        drop(self.txn.take());
        let done = &self.unfinished[..self.committed.min(self.unfinished.len())];
        if done.is_empty() {
            return;
        }
        let lmdb = &self.cas.lmdb;
        let cleared = lmdb.write().and_then(|mut t| {
            for u in done {
                lmdb.slices.discard(&mut t, u.seq)?;
            }
            lmdb.commit(t)?;
            // On a full disk the next put fits only in the pages just freed, which LMDB
            // hands out only after one more commit.
            let mut t = lmdb.write()?;
            lmdb.slices.rewrite_next_seq(&mut t)?;
            lmdb.commit(t)
        });
        if let Err(e) = cleared {
            tracing::debug!(%e, "unfinished bundles left for gc");
        }
    }
}

/// Notes a stored (or deduplicated) chunk or pack `id` and its members as fresh in the open
/// transaction, and the slice bytes `written` on behalf of each of its `items`.
fn note_stored(
    fresh: &mut HashSet<Hash>,
    by_item: &mut HashMap<usize, u64>,
    id: &Hash,
    members: &[(Hash, ChunkRecord)],
    items: &[usize],
    written: Vec<u64>,
) {
    // A
    fresh.insert(*id);
    fresh.extend(members.iter().map(|(m, _)| *m));
    for (item, b) in items.iter().zip(written) {
        *by_item.entry(*item).or_default() += b;
    }
}

/// A 64-bit fingerprint of a key, or of a list of parents. Two keys sharing one cost
/// nothing (the version it leads to must have the same key); two parent lists of one key
/// sharing one would take a 64-bit collision within a single put.
fn print<'a>(parts: impl Iterator<Item = &'a [u8]>) -> u64 {
    // A
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        // Lengths first, so that no two lists of parts hash the same bytes.
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut print = [0u8; 8];
    print.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(print)
}
