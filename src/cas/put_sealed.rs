//! The sealing workers' and the writer's halves of storing new chunks: small chunks are
//! sealed together into a pack (`src/seal/pack.rs`), larger ones alone, and the writer
//! stores each unless the transaction already holds a sealing puts may deduplicate against.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Instant;

use crate::cas::delta::give_buffer;
use crate::cas::put::SMALL_CHUNK;
use crate::cas::put::{PendingVersion, ToWriter};
use crate::cas::Cas;
use crate::crypto::StoreKeys;
use crate::error::Result;
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::route::DataRouter;
use crate::seal::delta::{delta_frame, Compressed};
use crate::seal::seal_chunk;
use crate::seal::sealer::{seal_compressed_chunk, seal_owned_chunk};
use crate::seal::{seal_pack, SealParams, SealedChunk};
use crate::store::RwTxn;

/// Chunks to seal, with the item index each belongs to and, for a chunk that replaces one of
/// its key's previous version, that chunk (the base a delta may be made against): each
/// alone, or all in one pack (with those that have a base, whatever their size).
#[derive(Default)]
pub(super) struct Job {
    pub chunks: Vec<(usize, Hash, Vec<u8>, Option<Base>)>,
    pub pack: bool,
}

/// The chunk a delta may be made against, and how the deltas of the same file fare.
pub(super) struct Base {
    pub id: Hash,
    pub odds: Arc<DeltaOdds>,
}

/// How many of a file's large chunks were compressed against their base, and how many of
/// those deltas paid. A file whose content changed wholesale (a compressed archive put again
/// under its key) would otherwise cost a base read and a second compression per chunk:
/// twice the time of its put.
#[derive(Default)]
pub(super) struct DeltaOdds {
    tried: AtomicU32,
    paid: AtomicU32,
}

impl DeltaOdds {
    /// False once 4 or more large chunks were tried and fewer than a quarter paid.
    pub(super) fn worth_trying(&self) -> bool {
        // A
        let tried = self.tried.load(Ordering::Relaxed);
        tried < 4 || self.paid.load(Ordering::Relaxed) * 4 >= tried
    }

    fn record(&self, paid: bool) {
        // A
        self.tried.fetch_add(1, Ordering::Relaxed);
        self.paid.fetch_add(u32::from(paid), Ordering::Relaxed);
    }
}

/// A sealed chunk or pack, with the index of the item that first needed each chunk in it
/// (one for a chunk, one per member for a pack, in the order of the pack's members).
pub(crate) struct Sealed {
    pub items: Vec<usize>,
    pub unit: SealedChunk,
}

/// Seals a job on a worker thread. `base` gives the plaintext of a base chunk when a delta
/// may be made against it (`None`: the chunk is sealed whole). In a pack job, chunks with a
/// base become deltas when that pays; the others go into the pack's frames, except those of
/// [`SMALL_CHUNK`] or more, which are sealed alone (from the bytes compressed to compare).
pub(super) fn seal_job(
    keys: &StoreKeys,
    params: SealParams,
    job: Job,
    base: &dyn Fn(&Hash) -> Option<Vec<u8>>,
) -> Result<Vec<Sealed>> {
    // PA
    if !job.pack {
        return job
            .chunks
            .into_iter()
            .map(|(item, id, data, _)| {
                seal_owned_chunk(keys, params, id, data).map(|unit| Sealed::one(item, unit))
            })
            .collect();
    }
    let mut deltas = Vec::new();
    let mut delta_items = Vec::new();
    let mut alone = Vec::new();
    let mut whole = Vec::with_capacity(job.chunks.len());
    let mut items = Vec::with_capacity(job.chunks.len());
    for (item, id, data, b) in &job.chunks {
        let large = data.len() >= SMALL_CHUNK;
        let compressed = match b.as_ref().and_then(|b| base(&b.id).map(|p| (b, p))) {
            Some((b, p)) => {
                let c = delta_frame(*id, data, b.id, &p, params.zstd_level);
                give_buffer(p);
                let c = c?;
                if large {
                    b.odds.record(matches!(c, Compressed::Delta(_)));
                }
                Some(c)
            }
            None => None,
        };
        match compressed {
            Some(Compressed::Delta(d)) => {
                deltas.push(d);
                delta_items.push(*item);
            }
            Some(Compressed::Alone(bytes)) if large => {
                let size = data.len() as u32;
                alone.push(Sealed::one(
                    *item,
                    seal_compressed_chunk(keys, params, *id, size, bytes)?,
                ));
            }
            _ if large => {
                alone.push(Sealed::one(*item, seal_chunk(keys, params, *id, data)?));
            }
            _ => {
                whole.push((*id, data.as_slice()));
                items.push(*item);
            }
        }
    }
    let mut out = Vec::with_capacity(alone.len() + 1);
    if !whole.is_empty() || !deltas.is_empty() {
        let unit = seal_pack(keys, params, &whole, &deltas)?;
        items.extend(delta_items);
        out.push(Sealed { items, unit });
    }
    out.extend(alone);
    Ok(out)
}

impl Sealed {
    /// A chunk sealed alone, for item `item`.
    fn one(item: usize, unit: SealedChunk) -> Sealed {
        // A
        Sealed {
            items: vec![item],
            unit,
        }
    }
}

/// Small chunks gathered on the producer thread before they go to a sealing worker, and
/// finished versions before they go to the writer. One message per version woke the writer
/// once per file and filled its queue with versions while it committed (the sealing workers
/// then waited, having no job): 43,000 messages for `put -r /usr/share`.
#[derive(Default)]
pub(super) struct SmallBatch {
    pub(super) job: Job,
    pub(super) bytes: usize,
    pub(super) versions: Vec<PendingVersion>,
    pub(super) started: Option<Instant>,
}

impl SmallBatch {
    pub(super) fn add(&mut self, item: usize, id: Hash, data: Vec<u8>, base: Option<Base>) {
        // A
        self.started.get_or_insert_with(Instant::now);
        self.bytes += data.len();
        self.job.pack = true;
        self.job.chunks.push((item, id, data, base));
    }

    pub(super) fn add_version(&mut self, v: PendingVersion) {
        // A
        self.started.get_or_insert_with(Instant::now);
        self.versions.push(v);
    }

    /// Hands the chunks to the workers, then the versions to the writer (nothing when
    /// empty).
    pub(super) fn flush(
        &mut self,
        jobs: &SyncSender<Job>,
        writer: &SyncSender<Result<ToWriter>>,
    ) -> std::result::Result<(), ()> {
        // A
        self.started = None;
        self.bytes = 0;
        if !self.job.chunks.is_empty() {
            jobs.send(std::mem::take(&mut self.job)).map_err(|_| ())?;
        }
        self.flush_versions(writer)
    }

    /// Hands the finished versions to the writer (nothing when none).
    pub(super) fn flush_versions(
        &mut self,
        writer: &SyncSender<Result<ToWriter>>,
    ) -> std::result::Result<(), ()> {
        // A
        if !self.versions.is_empty() {
            let versions = std::mem::take(&mut self.versions);
            writer
                .send(Ok(ToWriter::Versions(versions)))
                .map_err(|_| ())?;
        }
        Ok(())
    }
}

impl Cas {
    /// Stores a sealed chunk or pack in the writer's transaction and returns the slice bytes
    /// written on behalf of each of its items.
    pub(crate) fn store_sealed(
        &self,
        txn: &mut RwTxn,
        router: &DataRouter,
        sealed: &Sealed,
    ) -> Result<Vec<u64>> {
        // PA
        let unit = &sealed.unit;
        let total: u64 = unit.slices.iter().map(|(_, b)| b.len() as u64).sum();
        let (written, keep) = self.admit(txn, &unit.id, &unit.record, &unit.members, total)?;
        if keep {
            router.store_chunk(txn, unit)?;
        }
        Ok(written)
    }

    /// Records the members of a sealed pack that are new here and decides whether the
    /// chunk or pack `id` is to be stored (its own record and slices are the caller's to
    /// write); returns that and the slice bytes (of `total`) stored on behalf of each item.
    /// A chunk stored meanwhile (another process, the same content twice in a batch) is
    /// kept: its record references its slices, and new ones would leak. A condemned
    /// sealing is replaced: this one is live and wins on every node (`src/cas/sealing.rs`),
    /// and versions using the chunk read it. A pack is stored only when some member of it
    /// is; members already here leave dead bytes in it, which gc's repacking reclaims (a
    /// frame whose members all died).
    pub(crate) fn admit(
        &self,
        txn: &mut RwTxn,
        id: &Hash,
        record: &ChunkRecord,
        members: &[(Hash, ChunkRecord)],
        total: u64,
    ) -> Result<(Vec<u64>, bool)> {
        // PA
        if members.is_empty() {
            let keep = self.take_place(txn, id)?;
            return Ok((vec![if keep { total } else { 0 }], keep));
        }
        let payload = u64::from(record.sealed_len).max(1);
        let mut written = vec![0; members.len()];
        let mut any = false;
        for (n, (id, record)) in members.iter().enumerate() {
            if !self.take_place(txn, id)? {
                continue;
            }
            self.lmdb.chunks.put(txn, id, record)?;
            written[n] = share(record, total, payload);
            any = true;
        }
        Ok((written, any))
    }

    /// False when chunk `id` is already held in a sealing puts may deduplicate against;
    /// else true, after dropping the slices of a condemned sealing it replaces.
    fn take_place(&self, txn: &mut RwTxn, id: &Hash) -> Result<bool> {
        // PA
        // A random page of `chunks` each: a second's members mapped 60 MB between releases.
        self.lmdb.note_lookup();
        if self.lmdb.chunks.contains(txn, id)? {
            if self.dedupable(txn, id)? {
                return Ok(false);
            }
            self.lmdb.slices.delete_chunk(txn, id)?;
        }
        Ok(true)
    }
}

/// The slice bytes of a pack written on behalf of one member: its share of its frame (by
/// plaintext size), of the pack's payload, of the pack's slices.
fn share(member: &ChunkRecord, total: u64, payload: u64) -> u64 {
    // A
    let frame_size = match member.kind {
        crate::model::ChunkKind::Member { frame_size, .. } => u128::from(frame_size.max(1)),
        crate::model::ChunkKind::Delta { .. } => u128::from(member.size.max(1)),
        _ => 1,
    };
    let bytes = u128::from(member.sealed_len) * u128::from(member.size) / frame_size;
    u64::try_from(bytes * u128::from(total) / u128::from(payload.max(1))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_whose_deltas_do_not_pay_stops_trying_them() {
        let odds = DeltaOdds::default();
        for _ in 0..4 {
            assert!(odds.worth_trying());
            odds.record(false);
        }
        assert!(!odds.worth_trying(), "four large chunks, none paid");
        let mostly = DeltaOdds::default();
        for paid in [true, false, false, false, true, false, false, false] {
            mostly.record(paid);
        }
        assert!(mostly.worth_trying(), "a quarter paid");
        mostly.record(false);
        assert!(!mostly.worth_trying());
    }
}
