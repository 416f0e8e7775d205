//! The write pipeline: chunk -> (dedup) -> seal on worker threads -> store in short write
//! transactions -> commit the blob, its refcounts and the new heads in one final
//! transaction. A crash before that last commit leaves only unreferenced chunks, which gc
//! frees; the version is wholly there or wholly absent.

use std::collections::HashSet;
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::cas::{now_nanos, Cas};
use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{validate_key, Blob, BlobKind, ChunkRef};
use crate::progress::{NoProgress, Progress};
use crate::route::DataRouter;
use crate::seal::{seal_chunk, SealedChunk};
use crate::store::lock::GcLock;
use crate::store::version_index::KeyState;

/// Bytes of sealed slices written per write transaction: bounds the memory LMDB holds in
/// dirty pages and how long other writers wait.
const BATCH_BYTES: usize = 8 << 20;

/// Options of a put.
#[derive(Default)]
pub struct PutOptions<'p> {
    /// Explicit parents (a branch); `None` = the key's current head.
    pub parents: Option<Vec<Hash>>,
    /// Creation time to record (ns); `None` = now.
    pub created: Option<i64>,
    /// Progress in input bytes.
    pub progress: Option<&'p dyn Progress>,
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

/// Result of streaming content into the store, before the blob is committed.
pub(crate) struct Content {
    pub chunks: Vec<ChunkRef>,
    pub size: u64,
    pub new_chunks: usize,
    pub stored_bytes: u64,
}

impl Cas {
    /// Stores the content of `reader` as a new version of `key` and returns its hash.
    /// The parent is the key's current head unless `opts.parents` says otherwise; with
    /// several heads and no explicit parents it fails with [`Error::MultipleHeads`].
    pub fn put(
        &self,
        key: &str,
        reader: impl Read + Send,
        opts: &PutOptions,
    ) -> Result<PutOutcome> {
        // PA
        validate_key(key)?;
        self.current_keys()?;
        let progress = opts.progress.unwrap_or(&NoProgress);
        let _lock = GcLock::acquire(self.path(), false, &|| progress.waiting("a gc is running"))?;
        let parents = match &opts.parents {
            Some(p) => {
                self.check_parents(key, p)?;
                p.clone()
            }
            None => self.default_parents(key)?,
        };
        let content = self.write_content(reader, progress)?;
        let created = opts.created.unwrap_or_else(now_nanos);
        let hash = self.commit_version(key, parents, &content.chunks, content.size, created)?;
        Ok(PutOutcome {
            hash,
            size: content.size,
            chunks: content.chunks.len(),
            new_chunks: content.new_chunks,
            stored_bytes: content.stored_bytes,
        })
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

    /// Chunks, seals and stores `reader`'s content; the caller holds the gc lock shared.
    pub(crate) fn write_content(
        &self,
        reader: impl Read + Send,
        progress: &dyn Progress,
    ) -> Result<Content> {
        // PA
        let keys = self.current_keys()?;
        let params = self.seal_params();
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let (job_tx, job_rx) = sync_channel::<(Hash, Vec<u8>)>(workers);
        let (done_tx, done_rx) = sync_channel::<Result<SealedChunk>>(workers);
        // Workers own the receiver: when they all stop (the writer failed), it is dropped and
        // the chunker's next send fails instead of blocking forever.
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        std::thread::scope(|s| {
            for _ in 0..workers {
                let done_tx = done_tx.clone();
                let job_rx = std::sync::Arc::clone(&job_rx);
                s.spawn(move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((id, data)) = job else { return };
                    if done_tx.send(seal_chunk(keys, params, id, &data)).is_err() {
                        return;
                    }
                });
            }
            drop(done_tx);
            drop(job_rx);
            let writer = s.spawn(|| self.store_sealed(done_rx));
            let chunked = self.chunk_and_dedup(reader, keys, job_tx, progress);
            // The writer ends once every worker is done; join it before reporting errors so
            // nothing is left half-written in an open transaction.
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(Error::Corrupt("writer thread failed".into())));
            let (chunks, size, new_chunks) = chunked?;
            let stored_bytes = written?;
            Ok(Content {
                chunks,
                size,
                new_chunks,
                stored_bytes,
            })
        })
    }

    /// Runs the chunker, sending chunks that are new to the store to the sealing workers.
    fn chunk_and_dedup(
        &self,
        reader: impl Read,
        keys: &crate::crypto::StoreKeys,
        jobs: SyncSender<(Hash, Vec<u8>)>,
        progress: &dyn Progress,
    ) -> Result<(Vec<ChunkRef>, u64, usize)> {
        // PA
        let mut chunks = Vec::new();
        let mut seen = HashSet::new();
        let mut size = 0u64;
        let mut new_chunks = 0;
        for data in Chunker::new(reader, self.config.chunking, keys.cdc_seed)? {
            let data = data?;
            let id = keys.chunk_id(&data);
            let len = data.len();
            chunks.push(ChunkRef {
                id,
                size: len as u32,
            });
            size += len as u64;
            if seen.insert(id) && !self.lmdb.chunks.contains(&self.lmdb.read()?, &id)? {
                new_chunks += 1;
                if jobs.send((id, data)).is_err() {
                    // The writer stopped: its error is reported by the caller.
                    break;
                }
            }
            progress.advance(len as u64);
        }
        Ok((chunks, size, new_chunks))
    }

    /// Writes sealed chunks in transactions of about [`BATCH_BYTES`].
    fn store_sealed(&self, sealed: Receiver<Result<SealedChunk>>) -> Result<u64> {
        // PA
        let router = DataRouter::new(&self.lmdb);
        let mut total = 0u64;
        let mut txn = None;
        let mut in_txn = 0usize;
        for chunk in sealed {
            let chunk = chunk?;
            let t = match txn.as_mut() {
                Some(t) => t,
                None => txn.insert(self.lmdb.write()?),
            };
            router.store_chunk(t, &chunk)?;
            let bytes: usize = chunk.slices.iter().map(|(_, b)| b.len()).sum();
            total += bytes as u64;
            in_txn += bytes;
            if in_txn >= BATCH_BYTES {
                if let Some(t) = txn.take() {
                    t.commit()?;
                }
                in_txn = 0;
            }
        }
        if let Some(t) = txn {
            t.commit()?;
        }
        Ok(total)
    }

    /// Commits a version: blob record, chunk references, version indexes and heads, in one
    /// transaction. Every chunk must already be stored.
    pub(crate) fn commit_version(
        &self,
        key: &str,
        parents: Vec<Hash>,
        chunks: &[ChunkRef],
        size: u64,
        created: i64,
    ) -> Result<Hash> {
        // PA
        let blob = Blob {
            key: key.to_string(),
            kind: BlobKind::for_parents(parents.len()),
            parents,
            created,
            size,
            chunks: chunks.to_vec(),
        };
        let mut txn = self.lmdb.write()?;
        for c in chunks {
            if !self.lmdb.chunks.contains(&txn, &c.id)? {
                return Err(Error::Corrupt(format!(
                    "chunk {} vanished before the version was committed",
                    c.id.short()
                )));
            }
        }
        let hash = blob.hash();
        if self.lmdb.blobs.get(&txn, &hash)?.is_some() {
            return Ok(hash);
        }
        self.lmdb.blobs.put(&mut txn, &blob)?;
        for c in chunks {
            self.lmdb.chunks.add_refs(&mut txn, &c.id, 1)?;
        }
        self.lmdb.key_to_hash.put(&mut txn, key, created, &hash)?;
        for p in &blob.parents {
            self.lmdb.parent_child.put(&mut txn, p, &hash)?;
        }
        let mut state = self.lmdb.versions.get(&txn, key)?.unwrap_or_default();
        state.heads.retain(|h| !blob.parents.contains(h));
        state.heads.push(hash);
        self.lmdb.versions.put(
            &mut txn,
            key,
            &KeyState {
                heads: state.heads,
                deleted: None,
            },
        )?;
        txn.commit()?;
        Ok(hash)
    }
}
