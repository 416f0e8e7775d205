//! Decoded version records of large files. A record lists every chunk (36 bytes each), so a
//! 1 TiB sparse file's is 9 MiB, and decoding it at every getattr made `stat` take a second;
//! records never change, so the large ones are kept decoded here.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use fuser::Errno;
use ouroboros_db::{Blob, Hash};

use crate::fs::{errno, OuroFs};

/// Records with fewer chunks decode in microseconds: not kept.
const LARGE: usize = 4096;
/// Chunk references kept in all (about 40 MiB).
const LIMIT: usize = 1 << 20;

/// Large records by hash, oldest dropped first.
#[derive(Default)]
pub(crate) struct BlobCache {
    map: HashMap<Hash, Arc<Blob>>,
    order: VecDeque<Hash>,
    chunks: usize,
}

impl BlobCache {
    fn get(&self, h: &Hash) -> Option<Arc<Blob>> {
        // A
        self.map.get(h).cloned()
    }

    fn insert(&mut self, h: Hash, b: Arc<Blob>) {
        // A
        if b.chunks.len() < LARGE || b.chunks.len() > LIMIT || self.map.contains_key(&h) {
            return;
        }
        self.chunks += b.chunks.len();
        self.map.insert(h, b);
        self.order.push_back(h);
        while self.chunks > LIMIT {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.map.remove(&old) {
                self.chunks -= b.chunks.len();
            }
        }
    }
}

impl OuroFs {
    /// The record of version `hash`, decoded once if large.
    pub(crate) fn blob_record(&self, hash: &Hash) -> Result<Arc<Blob>, Errno> {
        // A
        if let Some(b) = self.blobs.lock().ok().and_then(|c| c.get(hash)) {
            return Ok(b);
        }
        let b = Arc::new(self.cas.blob(hash).map_err(|e| errno(&e))?);
        if let Ok(mut c) = self.blobs.lock() {
            c.insert(*hash, Arc::clone(&b));
        }
        Ok(b)
    }

    /// The newest head of a live key with its record (what a read opens).
    pub(crate) fn head_blob(&self, key: &str) -> Result<Option<(Hash, Blob)>, Errno> {
        // A
        // The usual single head: its hash from the key's state, its record from the cache.
        let single = self.cas.single_heads([key]).map_err(|e| errno(&e))?;
        if let Some(Some(h)) = single.first() {
            return match self.blob_record(h) {
                Ok(b) => Ok(Some((*h, Blob::clone(&b)))),
                // Removed meanwhile: the key's state, read again below, says so.
                Err(e) if e == Errno::ENOENT => self.cas.newest_head_of(key).map_err(|e| errno(&e)),
                Err(e) => Err(e),
            };
        }
        self.cas.newest_head_of(key).map_err(|e| errno(&e))
    }
}
