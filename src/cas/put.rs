//! The write pipeline: chunk -> (dedup) -> seal on worker threads -> store -> commit.
//!
//! One pipeline serves a single put and a put of a whole tree: the writer thread
//! (`put_writer.rs`) holds a write transaction for about 4 MiB of slices (64 MiB once it
//! holds many small versions; or 10,000 versions, or a second) and commits a version into it
//! only once every chunk the version needs is in it. Each version is atomic:
//! a crash leaves a version wholly there or absent, plus at most some unreferenced chunks
//! that gc frees.

use crate::store::cluster_state::CLUSTER_INFO_KEY;
use std::collections::HashSet;
use std::io::Read;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cas::put_sealed::{seal_job, Base, DeltaOdds, Job, Sealed, SmallBatch};
use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::chunk::MAX_FRAME;
use crate::model::{validate_key, Blob, BlobKind, ChunkRef, VersionMeta};
use crate::progress::{NoProgress, Progress};
use crate::store::lock::GcLock;
use crate::store::version_index::KeyState;
use crate::store::RwTxn;
use crate::threads::spawn_scoped;

/// Sealed messages queued for the writer: enough for the workers to keep sealing while the
/// writer waits for a commit's fsync (about 16 MiB at most).
const OUT_QUEUE: usize = 12;
/// Chunks smaller than this are sealed into packs (`src/seal/pack.rs`), and travel to the
/// sealing workers in batches: a tree of small files would otherwise cost more in thread
/// hand-offs than in sealing, and three whole copies per file in the store. (Larger chunks
/// with a base travel with them: as deltas they are small too.)
pub(super) const SMALL_CHUNK: usize = 64 << 10;
/// A batch of small chunks (one pack) is handed over at this many plaintext bytes...
const JOB_BYTES: usize = 1 << 20;
/// ... or this many chunks ...
const JOB_CHUNKS: usize = 1024;
/// Finished versions are handed to the writer in batches of this many.
const VERSION_BATCH: usize = 64;
/// ... or when it is this old at an item boundary (a slow input must not hold earlier files).
const JOB_AGE: Duration = Duration::from_millis(50);
/// Chunk ids remembered for in-batch dedup before the set is cleared (memory bound).
pub(super) const SEEN_LIMIT: usize = 200_000;

/// Options of a put.
#[derive(Default)]
pub struct PutOptions<'p> {
    /// Explicit parents (a branch); `None` = the key's current head.
    pub parents: Option<Vec<Hash>>,
    /// Creation time to record (ns); `None` = now.
    pub created: Option<i64>,
    /// Progress in input bytes.
    pub progress: Option<&'p dyn Progress>,
    /// File metadata recorded with the version (mode, owner, mtime; a symlink's target is
    /// its content).
    pub meta: VersionMeta,
}

impl PutOptions<'_> {
    /// Records `t` as the version's creation time instead of now (an error for a time
    /// before 1677 or after 2262, which the format cannot hold).
    pub fn created_at(mut self, t: std::time::SystemTime) -> Result<Self> {
        // A
        self.created = Some(crate::model::nanos::from_system_time(t)?);
        Ok(self)
    }
}

/// One version to store with [`Cas::put_many`].
pub struct PutItem<'r> {
    /// The key.
    pub key: String,
    /// Its content.
    pub reader: Box<dyn Read + Send + 'r>,
    /// Content length when known: inputs that fit in one chunk buffer are chunked in memory.
    pub size_hint: Option<u64>,
    /// Explicit parents; `None` = the key's current head.
    pub parents: Option<Vec<Hash>>,
    /// Creation time (ns); `None` = now.
    pub created: Option<i64>,
    /// With default parents: when the content equals the single head's and the metadata
    /// differs at most in its mtime, store no new version and report the head (`put -r`
    /// re-reading a touched but unchanged file; the snapshot's tree entry keeps the new time).
    pub skip_if_unchanged: bool,
    /// File metadata or snapshot description recorded with the version.
    pub meta: VersionMeta,
}

/// What a put did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The new version.
    pub hash: Hash,
    /// Its size.
    pub size: u64,
    /// Chunks in the version.
    pub chunks: usize,
    /// Chunks that were new to the store (the rest were deduplicated).
    pub new_chunks: usize,
    /// Sealed bytes written for the new chunks (data + parity slices).
    pub stored_bytes: u64,
}

/// A version waiting for its chunks, then committed by the writer.
pub(super) struct PendingVersion {
    pub(super) item: usize,
    pub(super) key: String,
    pub(super) parents: Vec<Hash>,
    pub(super) chunks: Vec<ChunkRef>,
    pub(super) size: u64,
    pub(super) created: i64,
    pub(super) meta: VersionMeta,
    /// Chunks that were not in the store when chunked: they must be before committing.
    pub(super) needs: Vec<Hash>,
    /// Parents were the key's head when chunking started (not given by the caller).
    pub(super) default_parents: bool,
    pub(super) new_chunks: usize,
}

/// What a new version holds besides its key and parents.
pub(crate) struct Body<'a> {
    pub chunks: &'a [ChunkRef],
    pub size: u64,
    pub created: i64,
    pub meta: VersionMeta,
}

/// One slot per item of a put, in item order: filled by the producer for items that fail or
/// are unchanged, by the writer for the versions it commits; empty until then.
pub(super) struct Slots(Mutex<Vec<Option<Result<PutOutcome>>>>);

impl Slots {
    /// Adds the next item's empty slot.
    fn push(&self) -> Result<()> {
        // A
        self.lock()?.push(None);
        Ok(())
    }

    /// Fills item `item`'s slot.
    pub(super) fn set(&self, item: usize, outcome: Result<PutOutcome>) -> Result<()> {
        // A
        if let Some(slot) = self.lock()?.get_mut(item) {
            *slot = Some(outcome);
        }
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Option<Result<PutOutcome>>>>> {
        // A
        self.0.lock().map_err(|_| outcomes_lost())
    }

    /// The outcomes; an empty slot is a version that was not committed.
    fn into_outcomes(self) -> Result<Vec<Result<PutOutcome>>> {
        // A
        let slots = self.0.into_inner().map_err(|_| outcomes_lost())?;
        Ok(slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(Error::Internal("version was not committed".into()))))
            .collect())
    }
}

/// A thread holding the outcomes panicked.
fn outcomes_lost() -> Error {
    // A
    Error::Internal("the put's outcomes were lost".into())
}

/// Messages to the writer thread.
pub(super) enum ToWriter {
    /// Sealed chunks and packs.
    Sealed(Vec<Sealed>),
    Versions(Vec<PendingVersion>),
}

impl Cas {
    /// Stores the content of `reader` as a new version of `key` and returns its hash.
    /// The parent is the key's current head unless `opts.parents` says otherwise; with
    /// several heads and no explicit parents it fails with [`Error::MultipleHeads`]. With
    /// one parent, each new chunk is stored as a delta against the parent's chunk at the
    /// same place when that takes under half the space (not on a cluster node), so a file
    /// edited between puts costs about its edits.
    pub fn put(
        &self,
        key: &str,
        reader: impl Read + Send,
        opts: &PutOptions,
    ) -> Result<PutOutcome> {
        // PA
        let item = PutItem {
            key: key.to_string(),
            reader: Box::new(reader),
            size_hint: None,
            parents: opts.parents.clone(),
            created: opts.created,
            skip_if_unchanged: false,
            meta: opts.meta.clone(),
        };
        let progress = opts.progress.unwrap_or(&NoProgress);
        self.put_many(std::iter::once(item), progress)?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("put produced no result".into())))
    }

    /// Stores many versions through one pipeline, sharing write transactions, so a tree of
    /// small files costs few disk syncs. Each version is atomic on its own. A problem with
    /// one item (invalid key, unreadable input, several heads) is returned in its slot and
    /// the others go on; a problem with the store aborts the whole call.
    pub fn put_many<'r>(
        &self,
        items: impl Iterator<Item = PutItem<'r>>,
        progress: &dyn Progress,
    ) -> Result<Vec<Result<PutOutcome>>> {
        // PA
        let keys = self.current_keys()?;
        let params = self.seal_params();
        let _lock = GcLock::acquire(self.path(), false, &|| progress.waiting("a gc is running"))?;
        // Not on a cluster node: there every node seals on its own, and the one-sealing rule
        // and the hand-over would have to carry bases along.
        let deltas = !self.in_cluster()?;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let (job_tx, job_rx) = sync_channel::<Job>(workers);
        let (out_tx, out_rx) = sync_channel::<Result<ToWriter>>(OUT_QUEUE);
        // Workers own the job receiver: when they all stop (the writer failed), it is dropped
        // and the producer's next send fails instead of blocking forever.
        let job_rx = Arc::new(Mutex::new(job_rx));
        let slots = Slots(Mutex::new(Vec::new()));
        std::thread::scope(|s| {
            for _ in 0..workers {
                let out_tx = out_tx.clone();
                let job_rx = Arc::clone(&job_rx);
                spawn_scoped(s, "ouro-seal", move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let base = |id: &Hash| self.delta_base(id);
                    let sealed = seal_job(keys, params, job, &base).map(ToWriter::Sealed);
                    if out_tx.send(sealed).is_err() {
                        return;
                    }
                })?;
            }
            drop(job_rx);
            let writer = spawn_scoped(s, "ouro-write", || self.write_batches(out_rx, &slots))?;
            let produced = self.produce(items, keys, deltas, &job_tx, &out_tx, progress, &slots);
            drop(job_tx);
            drop(out_tx);
            // Join the writer before reporting anything, so no transaction is left open.
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("writer thread failed".into())));
            // The writer's error is the cause; the producer only saw the channel close.
            written?;
            produced
        })?;
        slots.into_outcomes()
    }

    /// Chunks every item on the calling thread and hands new chunks to the sealing
    /// workers and finished versions to the writer. Adds one slot per item to `slots`, and
    /// fills those of items that fail or are unchanged.
    #[allow(clippy::too_many_arguments)]
    fn produce<'r>(
        &self,
        items: impl Iterator<Item = PutItem<'r>>,
        keys: &crate::crypto::StoreKeys,
        deltas: bool,
        jobs: &SyncSender<Job>,
        writer: &SyncSender<Result<ToWriter>>,
        progress: &dyn Progress,
        slots: &Slots,
    ) -> Result<()> {
        // PA
        // Prints, not hashes: half the memory of a set that may reach SEEN_LIMIT.
        let mut seen: HashSet<u128> = HashSet::new();
        let mut batch = SmallBatch::default();
        let stopped = || Error::Internal("the store writer stopped".into());
        for (i, item) in items.enumerate() {
            if batch.started.is_some_and(|t| t.elapsed() >= JOB_AGE) {
                batch.flush(jobs, writer).map_err(|_| stopped())?;
            }
            slots.push()?;
            let key = item.key.clone();
            let explicit_parents = item.parents.is_some();
            let prepared = validate_item_key(&key, &item.meta).and_then(|_| match &item.parents {
                Some(p) => self.check_parents(&key, p).map(|_| p.clone()),
                None => self.default_parents(&key),
            });
            let parents = match prepared {
                Ok(p) => p,
                Err(e) => {
                    slots.set(i, Err(e))?;
                    continue;
                }
            };
            if seen.len() > SEEN_LIMIT {
                seen.clear();
            }
            // The single parent: unchanged content is no new version, and a chunk that
            // changed is compressed against the parent's chunk at the same place.
            let head = match parents.as_slice() {
                [p] if deltas || item.skip_if_unchanged => {
                    self.lmdb.blobs.get(&self.lmdb.read()?, p)?
                }
                _ => None,
            };
            let bases = head
                .as_ref()
                .filter(|_| deltas)
                .map(|h| h.chunks.as_slice());
            let odds = Arc::new(DeltaOdds::default());
            let mut chunks = Vec::new();
            let mut needs = Vec::new();
            let mut size = 0u64;
            let mut new_chunks = 0;
            let created = item.created;
            let skip_if_unchanged = item.skip_if_unchanged;
            let chunked = crate::chunk::for_each_chunk(
                item.reader,
                item.size_hint,
                self.config.chunking,
                keys.cdc_seed,
                |data| {
                    let id = keys.chunk_id(&data);
                    chunks.push(ChunkRef {
                        id,
                        size: data.len() as u32,
                    });
                    size += data.len() as u64;
                    progress.advance(data.len() as u64);
                    if seen.contains(&id.print()) {
                        needs.push(id);
                    // A short read transaction per chunk, not one per input: holding a snapshot for
                    // a whole large file would keep LMDB from reusing the pages the writer frees.
                    } else if !self.dedupable(&self.lmdb.read()?, &id)? {
                        seen.insert(id.print());
                        needs.push(id);
                        new_chunks += 1;
                        // What a delta may be made against: the parent's chunk here.
                        let large = data.len() >= SMALL_CHUNK;
                        let base = bases
                            .and_then(|b| b.get(chunks.len() - 1))
                            .filter(|b| b.size <= MAX_FRAME && data.len() <= MAX_FRAME as usize)
                            .filter(|_| !large || odds.worth_trying())
                            .map(|b| Base {
                                id: b.id,
                                odds: Arc::clone(&odds),
                            });
                        if !large || base.is_some() {
                            batch.add(i, id, data, base);
                            if batch.bytes >= JOB_BYTES || batch.job.chunks.len() >= JOB_CHUNKS {
                                batch.flush(jobs, writer).map_err(|_| stopped())?;
                            }
                        } else {
                            let job = Job {
                                chunks: vec![(i, id, data, None)],
                                pack: false,
                            };
                            jobs.send(job).map_err(|_| stopped())?;
                        }
                    }
                    Ok(())
                },
            );
            match chunked {
                Ok(()) => {}
                // Input errors belong to this item; the chunks it sent are orphans gc frees.
                Err(e @ Error::Input(_)) => {
                    slots.set(i, Err(e))?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if let Some(head) = head.filter(|_| skip_if_unchanged && !explicit_parents) {
                if head.chunks == chunks && head.meta.same_but_mtime(&item.meta) {
                    let outcome = PutOutcome {
                        hash: parents[0],
                        size,
                        chunks: chunks.len(),
                        new_chunks: 0,
                        stored_bytes: 0,
                    };
                    slots.set(i, Ok(outcome))?;
                    continue;
                }
            }
            let version = PendingVersion {
                item: i,
                key,
                parents,
                chunks,
                size,
                created: created.unwrap_or_else(now_nanos),
                meta: item.meta,
                needs,
                new_chunks,
                default_parents: !explicit_parents,
            };
            batch.add_version(version);
            // Versions go on while their pack fills: the writer holds them until it arrives.
            if batch.versions.len() >= VERSION_BATCH {
                batch.flush_versions(writer).map_err(|_| stopped())?;
            }
        }
        batch.flush(jobs, writer).map_err(|_| stopped())?;
        Ok(())
    }

    /// The parents of a plain put: the single head, none for a new or deleted key.
    fn default_parents(&self, key: &str) -> Result<Vec<Hash>> {
        // A
        let txn = self.lmdb.read()?;
        match self.lmdb.versions.get(&txn, key)? {
            None => Ok(Vec::new()),
            Some(s) if s.heads.len() <= 1 => Ok(s.heads),
            Some(s) => Err(Error::MultipleHeads {
                key: key.to_string(),
                heads: s.heads,
            }),
        }
    }

    /// Explicit parents must be versions of the same key.
    pub(crate) fn check_parents(&self, key: &str, parents: &[Hash]) -> Result<()> {
        // A
        let txn = self.lmdb.read()?;
        for p in parents {
            match self.lmdb.blobs.get(&txn, p)? {
                Some(b) if b.key == key => {}
                Some(b) => {
                    return Err(Error::InvalidArgument(format!(
                        "parent {} is a version of {:?}, not of {key:?}",
                        p.short(),
                        b.key
                    )))
                }
                None => return Err(Error::NotFound(format!("parent version {p} of {key:?}"))),
            }
        }
        Ok(())
    }

    /// Writes a version into `txn`: blob record, chunk references, version indexes and
    /// heads (`heads - parents + new`). Every chunk must already be in the transaction.
    pub(crate) fn commit_version_in(
        &self,
        txn: &mut RwTxn,
        key: &str,
        parents: Vec<Hash>,
        body: Body,
    ) -> Result<Hash> {
        // PA
        self.commit_version_fresh_in(txn, key, parents, body, &HashSet::new())
    }

    /// [`Cas::commit_version_in`] where the chunks in `fresh` were stored by `txn` itself:
    /// they cannot have been condemned or freed since, so they skip the check that costs
    /// the put pipeline's writer two or three index lookups per version.
    pub(crate) fn commit_version_fresh_in(
        &self,
        txn: &mut RwTxn,
        key: &str,
        parents: Vec<Hash>,
        body: Body,
        fresh: &HashSet<Hash>,
    ) -> Result<Hash> {
        // PA
        let Body {
            chunks,
            size,
            created,
            meta,
        } = body;
        // The key's number comes with its state: the history row and the state below need
        // it, and looking it up for each was two more searches per version.
        let (id, state) = match self.lmdb.versions.get_numbered(txn, key)? {
            Some((id, state)) => (Some(id), state),
            None => (None, KeyState::default()),
        };
        // In a cluster, a version committed after the key's removal counts as newer than it,
        // even when its time was taken before (a long put, the same version put again) or by
        // a clock behind the removing node's: every node that imports it must keep it live,
        // as this one does, or their counts differ and gc could free chunks it uses.
        let created = match state.deleted {
            Some(t) if created <= t && self.lmdb.cluster.get(txn, CLUSTER_INFO_KEY)?.is_some() => {
                t.saturating_add(1)
            }
            _ => created,
        };
        let blob = Blob {
            key: key.to_string(),
            kind: BlobKind::for_parents(parents.len()),
            parents,
            created,
            size,
            chunks: chunks.to_vec(),
            meta,
        };
        for c in chunks.iter().filter(|c| !fresh.contains(&c.id)) {
            if !self.dedupable(txn, &c.id)? {
                if self.lmdb.chunks.contains(txn, &c.id)? {
                    return Err(Self::condemned_error(&c.id));
                }
                return Err(Error::Corrupt(format!(
                    "chunk {} vanished before the version was committed",
                    c.id.short()
                )));
            }
        }
        let bytes = blob.encode()?;
        let hash = Hash::of(&bytes);
        // A logged version whose record is gone or damaged fails here, as it would be read;
        // one that is not logged costs `get` a single search.
        if self.lmdb.blobs.get(txn, &hash)?.is_some() {
            return self.commit_again(txn, key, hash, &blob, state);
        }
        let seq = self.lmdb.blobs.append(txn, &hash, &bytes)?;
        for c in chunks {
            self.lmdb.chunks.add_refs(txn, &c.id, 1)?;
        }
        let id = match id {
            Some(id) => id,
            None => self.lmdb.versions.sequence().take(txn)?,
        };
        self.lmdb.key_to_hash.put_numbered(txn, id, created, seq)?;
        for p in &blob.parents {
            self.lmdb.parent_child.put(txn, p, seq)?;
        }
        let state = with_head(state, &blob.parents, hash);
        self.lmdb
            .versions
            .put_numbered(txn, key, id, &state, Some((hash, seq)))?;
        Ok(hash)
    }

    /// [`Cas::commit_version_fresh_in`] of a version already logged: the very same version
    /// again (same key, parents, time, content). Brings it back if it was removed,
    /// re-taking the references gc may have released.
    fn commit_again(
        &self,
        txn: &mut RwTxn,
        key: &str,
        hash: Hash,
        blob: &Blob,
        state: KeyState,
    ) -> Result<Hash> {
        // PA
        let Some(r) = self.lmdb.removed.get(txn, &hash)? else {
            // Already there and live: an idempotent re-put changes nothing.
            return Ok(hash);
        };
        if r.released {
            for c in &blob.chunks {
                self.lmdb.chunks.add_refs(txn, &c.id, 1)?;
            }
        }
        self.lmdb.removed.delete(txn, &hash)?;
        // Restored inside its history: it is a head only if nothing live descends from it.
        if self.has_live_descendant(txn, hash)? {
            return Ok(hash);
        }
        let state = with_head(state, &blob.parents, hash);
        self.lmdb.versions.put(txn, key, &state).map(|()| hash)
    }
}

/// The live state of a key after committing `hash` onto `parents`: the parents are heads no
/// longer, and `hash` is one.
fn with_head(state: KeyState, parents: &[Hash], hash: Hash) -> KeyState {
    // A
    let mut heads = state.heads;
    heads.retain(|h| !parents.contains(h));
    heads.push(hash);
    KeyState {
        heads,
        deleted: None,
    }
}

/// Keys of plain and file versions follow the key rules; a snapshot's key is the reserved
/// snapshot key of a valid prefix, and nothing else may be written there.
fn validate_item_key(key: &str, meta: &VersionMeta) -> Result<()> {
    // A
    match meta {
        VersionMeta::Snapshot(_) => match crate::model::snapshot::prefix_of_snapshot_key(key) {
            Some(_) => Ok(()),
            None => Err(Error::InvalidKey {
                key: key.to_string(),
                rule: "a snapshot is stored under .ouro/snapshots/PREFIX",
            }),
        },
        _ => validate_key(key),
    }
}
