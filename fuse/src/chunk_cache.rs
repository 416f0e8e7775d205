//! Reads at any offset of a version: the chunk holding the offset is found by binary search
//! over chunk lengths (no decoding from the start), decoded chunks are kept in a
//! byte-bounded LRU, and sequential reads prefetch the next chunk on a helper thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex, Weak};

use ouroboros_db::{Blob, Cas, ChunkOffsets, ChunkReader, Error, Hash, Result};

use crate::disk_cache::DiskCache;

/// Chunks decoded ahead of a sequential reader.
const READ_AHEAD: usize = 8;
/// How far from the end of the previous read a read still counts as sequential.
const NEAR: u64 = 8 << 20;
/// Where decoded chunks go to be stored in the kernel's page cache: `(inode, offset, data)`.
/// A thread of the filesystem drains it (FUSE notify_store).
pub type PushSink = SyncSender<(u64, u64, Arc<Vec<u8>>)>;
/// Reads away from where the previous one ended after which an open file counts as read
/// at random.
const SCATTERED: u32 = 8;

/// The bytes answering a read: a range of one cached chunk, or a copy when it spans several.
pub enum ReadData {
    /// `range` of a decoded chunk.
    Chunk(Arc<Vec<u8>>, std::ops::Range<usize>),
    /// Bytes gathered from several chunks (or from a file being written).
    Copied(Vec<u8>),
}

impl std::ops::Deref for ReadData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // A
        match self {
            ReadData::Chunk(data, range) => data.get(range.clone()).unwrap_or_default(),
            ReadData::Copied(v) => v,
        }
    }
}

/// A chunk to decode ahead of a reader.
struct Ahead {
    blob: Arc<OpenBlob>,
    index: usize,
}

/// A version opened for reading: its chunks and where each starts.
pub struct OpenBlob {
    /// The version's record.
    pub blob: Blob,
    /// Where each chunk starts (the library's offset index, as `VersionReader` uses it).
    offsets: ChunkOffsets,
    /// Where the last read ended: a read starting near there is sequential.
    next: AtomicU64,
    /// Opened through the kernel's page cache (else with direct I/O, where handing chunks to
    /// the page cache is useless).
    cached: bool,
    /// Chunks already handed to the kernel's page cache for this open file.
    pub(crate) pushed: Mutex<std::collections::HashSet<usize>>,
    /// How many reads started away from where the previous one ended.
    scattered: AtomicU32,
    /// Chunks before this index have been queued for decoding ahead: each is queued once,
    /// so the queue never fills with repeats while later chunks go unqueued.
    queued: AtomicUsize,
}

impl OpenBlob {
    /// Indexes a version's chunks by offset; `cached` when opened through the page cache.
    pub fn new(blob: Blob, cached: bool) -> Self {
        // A
        OpenBlob {
            offsets: ChunkOffsets::new(&blob),
            blob,
            next: AtomicU64::new(0),
            cached,
            pushed: Mutex::new(std::collections::HashSet::new()),
            scattered: AtomicU32::new(0),
            queued: AtomicUsize::new(0),
        }
    }

    /// True once enough reads of this open file went to scattered offsets.
    pub fn read_at_random(&self) -> bool {
        // A
        self.scattered.load(Ordering::Relaxed) >= SCATTERED
    }

    /// Index of the chunk holding `offset` (None at or past the end).
    fn chunk_at(&self, offset: u64) -> Option<usize> {
        // A
        self.offsets.chunk_at(offset).map(|(index, _)| index)
    }

    /// Where chunk `index` starts.
    fn start(&self, index: usize) -> u64 {
        // A
        self.offsets.start(index).unwrap_or(0)
    }
}

struct Lru {
    map: HashMap<Hash, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, Hash>,
    bytes: usize,
    tick: u64,
}

/// A chunk being decoded: later readers of it wait instead of decoding it again.
#[derive(Default)]
struct Flight {
    done: Mutex<Option<std::result::Result<Arc<Vec<u8>>, String>>>,
    ready: Condvar,
}

/// Decoded chunks shared by every open file, bounded in bytes.
pub struct ChunkCache {
    cas: Arc<Cas>,
    lru: Mutex<Lru>,
    limit: usize,
    in_flight: Mutex<HashMap<Hash, Arc<Flight>>>,
    prefetch: Mutex<Option<SyncSender<Ahead>>>,
    sink: PushSink,
    /// Chunks decoded for reads at scattered offsets, on disk (None: none could be made).
    disk: Option<DiskCache>,
}

impl ChunkCache {
    /// A cache holding at most `limit` bytes of plaintext in memory (and, for reads at
    /// scattered offsets, more in `disk`); decoded chunks of open files are also handed to
    /// `sink`, once per open file.
    pub fn new(cas: Arc<Cas>, limit: usize, sink: PushSink, disk: Option<DiskCache>) -> Arc<Self> {
        // A
        let cache = Arc::new(ChunkCache {
            cas,
            lru: Mutex::new(Lru {
                map: HashMap::new(),
                order: BTreeMap::new(),
                bytes: 0,
                tick: 0,
            }),
            limit,
            in_flight: Mutex::new(HashMap::new()),
            prefetch: Mutex::new(None),
            sink,
            disk,
        });
        let (tx, rx) = sync_channel::<Ahead>(4 * READ_AHEAD);
        let rx = Arc::new(Mutex::new(rx));
        // One per core, as `get` decodes: a third thread on 2 cores measured 5-10% slower.
        let prefetchers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        for _ in 0..prefetchers {
            let me: Weak<ChunkCache> = Arc::downgrade(&cache);
            let rx = Arc::clone(&rx);
            std::thread::spawn(move || loop {
                let Ok(job) = rx
                    .lock()
                    .map_err(|_| ())
                    .and_then(|r| r.recv().map_err(|_| ()))
                else {
                    return;
                };
                let Some(cache) = me.upgrade() else { return };
                // A failed prefetch is not an error: the read that needs the chunk retries.
                let _ = cache.chunk(&job.blob.blob.chunks[job.index].id);
            });
        }
        if let Ok(mut p) = cache.prefetch.lock() {
            *p = Some(tx);
        }
        cache
    }

    /// The plaintext of a chunk, from the cache or decoded (and then cached).
    pub fn chunk(&self, id: &Hash) -> Result<Arc<Vec<u8>>> {
        // A
        if let Some(hit) = self.lookup(id) {
            return Ok(hit);
        }
        let (flight, leader) = {
            let mut f = self
                .in_flight
                .lock()
                .map_err(|_| Error::Corrupt("chunk cache lock poisoned".into()))?;
            match f.get(id) {
                Some(fl) => (Arc::clone(fl), false),
                None => {
                    let fl = Arc::new(Flight::default());
                    f.insert(*id, Arc::clone(&fl));
                    (fl, true)
                }
            }
        };
        let poisoned = || Error::Corrupt("chunk cache lock poisoned".into());
        if !leader {
            let mut done = flight.done.lock().map_err(|_| poisoned())?;
            while done.is_none() {
                done = flight.ready.wait(done).map_err(|_| poisoned())?;
            }
            return match done.as_ref() {
                Some(Ok(d)) => Ok(Arc::clone(d)),
                Some(Err(e)) => Err(Error::Corrupt(e.clone())),
                None => Err(poisoned()),
            };
        }
        let result = self.cas.read_chunk(id).map(Arc::new);
        tracing::trace!(chunk = %id.short(), "decoded");
        if let Ok(d) = &result {
            self.insert(*id, Arc::clone(d));
        }
        if let Ok(mut done) = flight.done.lock() {
            *done = Some(result.as_ref().map(Arc::clone).map_err(|e| e.to_string()));
        }
        flight.ready.notify_all();
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(id);
        }
        result
    }

    fn lookup(&self, id: &Hash) -> Option<Arc<Vec<u8>>> {
        // A
        let mut lru = self.lru.lock().ok()?;
        lru.tick += 1;
        let tick = lru.tick;
        let (data, old) = lru.map.get_mut(id).map(|(d, t)| {
            let old = *t;
            *t = tick;
            (Arc::clone(d), old)
        })?;
        lru.order.remove(&old);
        lru.order.insert(tick, *id);
        Some(data)
    }

    fn insert(&self, id: Hash, data: Arc<Vec<u8>>) {
        // A
        let Ok(mut lru) = self.lru.lock() else { return };
        if lru.map.contains_key(&id) || data.len() > self.limit {
            return;
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.bytes += data.len();
        lru.map.insert(id, (data, tick));
        lru.order.insert(tick, id);
        while lru.bytes > self.limit {
            let Some((_, victim)) = lru.order.pop_first() else {
                break;
            };
            if let Some((d, _)) = lru.map.remove(&victim) {
                lru.bytes -= d.len();
            }
        }
    }

    /// Up to `size` bytes of `blob` (open as inode `ino`) from `offset`, fewer at the end.
    /// A read near where the previous one ended has the next chunks decoded ahead of it (the
    /// next reads then find them cached); when the file is open through the page cache, the
    /// chunks of any other read are handed whole to it, so later reads anywhere in them do not
    /// come here. (Handing sequential chunks over too measured slower: the kernel asks for
    /// those pages anyway.)
    pub fn read(
        self: &Arc<Self>,
        ino: u64,
        blob: &Arc<OpenBlob>,
        offset: u64,
        size: usize,
    ) -> Result<ReadData> {
        // A
        let mut out = Vec::new();
        let mut at = offset;
        // The kernel's read-ahead requests arrive on several threads, a little out of order:
        // a read close after the previous one counts as sequential.
        // Once a file is read at random, only a read right where the previous one ended
        // counts: a random read that lands near the last one must not start decoding ahead.
        let prev = blob.next.load(Ordering::Relaxed);
        let near = if blob.read_at_random() { 0 } else { NEAR };
        let sequential = offset.abs_diff(prev) <= near;
        if !sequential {
            blob.scattered.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(first), true) = (blob.chunk_at(offset), sequential) {
            // Queued before this read decodes anything, so the helpers work alongside it.
            self.read_ahead(blob, first);
        }
        let mut single = None;
        while ((at - offset) as usize) < size {
            let Some(i) = blob.chunk_at(at) else { break };
            let id = blob.blob.chunks[i].id;
            let within = (at - blob.start(i)) as usize;
            let disk = self.disk.as_ref();
            // A file open through the page cache gets whole chunks, handed to the kernel
            // below, so that later reads in them do not come here.
            let push_whole = blob.cached && !sequential;
            let data = if let Some(data) = self.lookup(&id) {
                data
            } else if let Some(whole) = disk
                .filter(|_| push_whole)
                .and_then(|d| d.read(&id, 0, usize::MAX))
            {
                Arc::new(whole)
            } else if let Some(part) = disk
                .filter(|_| !push_whole)
                .and_then(|d| d.read(&id, within, size - (at - offset) as usize))
            {
                // A chunk that a read at a scattered offset decoded before: a pread, not a
                // decode.
                let len = part.len();
                Self::gather(
                    &mut single,
                    &mut out,
                    at == offset,
                    size,
                    Arc::new(part),
                    0..len,
                );
                at += len as u64;
                continue;
            } else {
                self.decode_for(&id, sequential)?
            };
            let take = (size - (at - offset) as usize).min(data.len().saturating_sub(within));
            if take == 0 {
                break;
            }
            if !sequential && blob.cached {
                self.push(ino, blob, i, Arc::clone(&data));
            }
            Self::gather(
                &mut single,
                &mut out,
                at == offset,
                size,
                data,
                within..within + take,
            );
            at += take as u64;
        }
        blob.next.store(at, Ordering::Relaxed);
        Ok(match single {
            Some((data, range)) => ReadData::Chunk(data, range),
            None => ReadData::Copied(out),
        })
    }

    /// Decodes a chunk a read needs; one decoded for a read at a scattered offset is kept on
    /// disk too (streams are not: that would write the whole file out).
    fn decode_for(&self, id: &Hash, sequential: bool) -> Result<Arc<Vec<u8>>> {
        // A
        let data = self.chunk(id)?;
        if let (Some(disk), false) = (&self.disk, sequential) {
            disk.insert(*id, &data);
        }
        Ok(data)
    }

    /// Adds `range` of `data` to a read's answer. Most reads lie within one chunk: they are
    /// answered from it (`single`), not from a copy; a read spanning chunks gathers in `out`.
    fn gather(
        single: &mut Option<(Arc<Vec<u8>>, std::ops::Range<usize>)>,
        out: &mut Vec<u8>,
        first: bool,
        size: usize,
        data: Arc<Vec<u8>>,
        range: std::ops::Range<usize>,
    ) {
        // A
        match single.take() {
            None if first => *single = Some((data, range)),
            None => out.extend_from_slice(data.get(range).unwrap_or_default()),
            Some((head, head_range)) => {
                out.reserve(size);
                out.extend_from_slice(head.get(head_range).unwrap_or_default());
                out.extend_from_slice(data.get(range).unwrap_or_default());
            }
        }
    }

    /// Queues the chunks after `current` for decoding, up to [`READ_AHEAD`] of them, each
    /// once per open file (unless the reader went back).
    fn read_ahead(&self, blob: &Arc<OpenBlob>, current: usize) {
        // A
        let end = blob.blob.chunks.len().min(current + 1 + READ_AHEAD);
        let queued = blob.queued.load(Ordering::Relaxed);
        let from = if queued > end || queued <= current {
            current + 1
        } else {
            queued
        };
        for index in from..end {
            if !self.prefetch(blob, index) {
                break;
            }
            blob.queued.store(index + 1, Ordering::Relaxed);
        }
    }

    /// Hands a decoded chunk to the page cache of `ino`, once per open file; when the sink is
    /// full it is skipped (the kernel then asks for the pages itself).
    fn push(&self, ino: u64, blob: &OpenBlob, index: usize, data: Arc<Vec<u8>>) {
        // A
        let Ok(mut pushed) = blob.pushed.lock() else {
            return;
        };
        if pushed.insert(index) && self.sink.try_send((ino, blob.start(index), data)).is_err() {
            pushed.remove(&index);
        }
    }

    /// Queues a chunk for the prefetch threads unless it is cached or being decoded; false
    /// when the queue is full (a later read queues it again, or the reader decodes it).
    fn prefetch(&self, blob: &Arc<OpenBlob>, index: usize) -> bool {
        // A
        let id = blob.blob.chunks[index].id;
        let known = self
            .lru
            .lock()
            .map(|l| l.map.contains_key(&id))
            .unwrap_or(true)
            || self
                .in_flight
                .lock()
                .map(|f| f.contains_key(&id))
                .unwrap_or(true);
        if known {
            return true;
        }
        let Ok(p) = self.prefetch.lock() else {
            return false;
        };
        p.as_ref().is_some_and(|tx| {
            tx.try_send(Ahead {
                blob: Arc::clone(blob),
                index,
            })
            .is_ok()
        })
    }
}
