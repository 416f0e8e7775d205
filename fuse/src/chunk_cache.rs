//! Reads at any offset of a version: the chunk holding the offset is found by binary search
//! over chunk lengths (no decoding from the start), decoded chunks are kept in a
//! byte-bounded LRU, and sequential reads prefetch the next chunk on a helper thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ouroboros_db::{Blob, Cas, ChunkReader, Hash, Result};

/// A version opened for reading: its chunks and where each starts.
pub struct OpenBlob {
    /// The version's record.
    pub blob: Blob,
    /// Start offset of each chunk, plus the total size at the end.
    starts: Vec<u64>,
}

impl OpenBlob {
    /// Indexes a version's chunks by offset.
    pub fn new(blob: Blob) -> Self {
        // A
        let mut starts = Vec::with_capacity(blob.chunks.len() + 1);
        let mut at = 0u64;
        for c in &blob.chunks {
            starts.push(at);
            at += u64::from(c.size);
        }
        starts.push(at);
        OpenBlob { blob, starts }
    }

    /// Index of the chunk holding `offset` (None at or past the end).
    fn chunk_at(&self, offset: u64) -> Option<usize> {
        // A
        if offset >= *self.starts.last()? {
            return None;
        }
        Some(self.starts.partition_point(|s| *s <= offset) - 1)
    }
}

struct Lru {
    map: HashMap<Hash, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, Hash>,
    bytes: usize,
    tick: u64,
}

/// Decoded chunks shared by every open file, bounded in bytes.
pub struct ChunkCache {
    cas: Arc<Cas>,
    lru: Mutex<Lru>,
    limit: usize,
    prefetching: Mutex<HashSet<Hash>>,
}

impl ChunkCache {
    /// A cache holding at most `limit` bytes of plaintext.
    pub fn new(cas: Arc<Cas>, limit: usize) -> Arc<Self> {
        // A
        Arc::new(ChunkCache {
            cas,
            lru: Mutex::new(Lru {
                map: HashMap::new(),
                order: BTreeMap::new(),
                bytes: 0,
                tick: 0,
            }),
            limit,
            prefetching: Mutex::new(HashSet::new()),
        })
    }

    /// The plaintext of a chunk, from the cache or decoded (and then cached).
    pub fn chunk(&self, id: &Hash) -> Result<Arc<Vec<u8>>> {
        // A
        if let Some(hit) = self.lookup(id) {
            return Ok(hit);
        }
        let data = Arc::new(self.cas.read_chunk(id)?);
        self.insert(*id, Arc::clone(&data));
        Ok(data)
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

    /// Up to `size` bytes of `blob` from `offset` (fewer at the end). When the read reaches
    /// into the second half of a chunk, the next one is decoded in the background.
    pub fn read(self: &Arc<Self>, blob: &OpenBlob, offset: u64, size: usize) -> Result<Vec<u8>> {
        // A
        let mut out = Vec::with_capacity(size);
        let mut at = offset;
        let mut last = None;
        while out.len() < size {
            let Some(i) = blob.chunk_at(at) else { break };
            let data = self.chunk(&blob.blob.chunks[i].id)?;
            let within = (at - blob.starts[i]) as usize;
            let take = (size - out.len()).min(data.len() - within);
            out.extend_from_slice(&data[within..within + take]);
            at += take as u64;
            last = Some((i, within + take, data.len()));
        }
        if let Some((i, end, len)) = last {
            if end * 2 >= len {
                if let Some(next) = blob.blob.chunks.get(i + 1) {
                    self.prefetch(next.id);
                }
            }
        }
        Ok(out)
    }

    /// Decodes a chunk on a helper thread unless it is cached or already being decoded.
    fn prefetch(self: &Arc<Self>, id: Hash) {
        // A
        if self
            .lru
            .lock()
            .map(|l| l.map.contains_key(&id))
            .unwrap_or(true)
        {
            return;
        }
        let fresh = self.prefetching.lock().map(|mut p| p.insert(id));
        if !fresh.unwrap_or(false) {
            return;
        }
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            // A failed prefetch is not an error: the read that needs the chunk retries it.
            let _ = me.chunk(&id);
            if let Ok(mut p) = me.prefetching.lock() {
                p.remove(&id);
            }
        });
    }
}
