//! Decoded chunks of files read at random, kept in an unlinked file on disk: a 4 KiB read
//! anywhere in a chunk decoded before costs one `pread` (served by the kernel's page cache,
//! which the kernel may reclaim, unlike the process's own memory) instead of decoding the
//! whole chunk again. Sequential reads never come here, so streaming a file writes nothing.
//!
//! The file is a ring: chunks are appended at a write position that wraps to the start when
//! the next chunk does not fit, dropping the entries it overwrites (oldest first).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::RwLock;

use ouroboros_db::Hash;

/// Most bytes the ring ever holds.
pub const DEFAULT_LIMIT: u64 = 1 << 30;

struct Ring {
    file: File,
    /// Chunk id → (offset in the file, length).
    entries: HashMap<Hash, (u64, usize)>,
    /// Offset → chunk id, to find the entries a write overwrites.
    by_offset: BTreeMap<u64, Hash>,
    /// Where the next chunk goes.
    head: u64,
}

/// A bounded on-disk cache of decoded chunks, shared by every open file of a mount.
pub struct DiskCache {
    ring: RwLock<Ring>,
    limit: u64,
}

impl DiskCache {
    /// An empty cache in an unlinked file in `dir`, holding at most `limit` bytes, or a
    /// quarter of the space free in `dir` when that is less; None when no file can be made
    /// there (reads then decode every time, as before).
    pub fn new(dir: &Path, limit: u64) -> Option<Self> {
        // A
        let free = free_bytes(dir).unwrap_or(limit);
        let limit = limit.min(free / 4);
        if limit < 16 << 20 {
            return None;
        }
        let file = tempfile::tempfile_in(dir).ok()?;
        Some(DiskCache {
            ring: RwLock::new(Ring {
                file,
                entries: HashMap::new(),
                by_offset: BTreeMap::new(),
                head: 0,
            }),
            limit,
        })
    }

    /// Bytes `within..within + len` of chunk `id`, when it is cached (None on a miss or a
    /// failed read: the caller decodes the chunk).
    pub fn read(&self, id: &Hash, within: usize, len: usize) -> Option<Vec<u8>> {
        // A
        let ring = self.ring.read().ok()?;
        let &(at, size) = ring.entries.get(id)?;
        let len = len.min(size.checked_sub(within)?);
        if len == 0 {
            return None;
        }
        let mut buf = vec![0u8; len];
        // Under the read lock: no write can overwrite these bytes meanwhile.
        ring.file.read_exact_at(&mut buf, at + within as u64).ok()?;
        Some(buf)
    }

    /// Keeps the decoded chunk `id`; a failed write (a full disk) only leaves it out.
    pub fn insert(&self, id: Hash, data: &[u8]) {
        // A
        let len = data.len() as u64;
        if len == 0 || len > self.limit {
            return;
        }
        let Ok(mut ring) = self.ring.write() else {
            return;
        };
        if ring.entries.contains_key(&id) {
            return;
        }
        if ring.head + len > self.limit {
            ring.head = 0;
        }
        let (start, end) = (ring.head, ring.head + len);
        // Every entry that starts before `end` and ends after `start` is overwritten.
        let doomed: Vec<(u64, Hash)> = ring
            .by_offset
            .range(..end)
            .rev()
            .take_while(|(o, h)| {
                ring.entries
                    .get(*h)
                    .is_some_and(|&(_, l)| **o + l as u64 > start)
            })
            .map(|(o, h)| (*o, *h))
            .collect();
        for (o, h) in doomed {
            ring.by_offset.remove(&o);
            ring.entries.remove(&h);
        }
        if ring.file.write_all_at(data, start).is_err() {
            return;
        }
        ring.entries.insert(id, (start, data.len()));
        ring.by_offset.insert(start, id);
        ring.head = end;
    }
}

/// Bytes free for unprivileged users on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    // A
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache(limit: u64) -> (tempfile::TempDir, DiskCache) {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::new(dir.path(), limit).unwrap();
        (dir, c)
    }

    /// `n` bytes that differ from chunk to chunk and within a chunk.
    fn pattern(i: usize, n: usize) -> Vec<u8> {
        let block: Vec<u8> = (0..251u8).map(|j| j.wrapping_mul(31) ^ i as u8).collect();
        let mut v = Vec::with_capacity(n + 251);
        while v.len() < n {
            v.extend_from_slice(&block);
        }
        v.truncate(n);
        v
    }

    fn id(data: &[u8]) -> Hash {
        Hash(*blake3::hash(data).as_bytes())
    }

    #[test]
    fn a_cached_chunk_reads_back_any_range_and_a_miss_is_none() {
        let (_d, c) = cache(32 << 20);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let h = id(&data);
        assert!(c.read(&h, 0, 10).is_none());
        c.insert(h, &data);
        assert!(c.read(&h, 0, 1).is_some());
        assert_eq!(c.read(&h, 4096, 4096).unwrap(), &data[4096..8192]);
        // A read past the chunk's end is cut at the end.
        assert_eq!(c.read(&h, 99_000, 4096).unwrap(), &data[99_000..]);
        assert!(c.read(&h, 200_000, 1).is_none());
    }

    #[test]
    fn wrapping_drops_the_chunks_it_overwrites_and_keeps_the_rest() {
        let (_d, c) = cache(16 << 20);
        let chunks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1 << 20]).collect();
        for ch in &chunks {
            c.insert(id(ch), ch);
        }
        // 16 fit; chunks 16..20 went to the start, over chunks 0..4.
        for (i, ch) in chunks.iter().enumerate() {
            let got = c.read(&id(ch), 0, ch.len());
            if (4..20).contains(&i) {
                assert_eq!(got.as_deref(), Some(&ch[..]), "chunk {i}");
            } else {
                assert!(got.is_none(), "chunk {i} should be overwritten");
            }
        }
    }

    #[test]
    fn too_little_free_space_or_limit_gives_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DiskCache::new(dir.path(), 1 << 20).is_none());
        assert!(DiskCache::new(&dir.path().join("missing"), 1 << 30).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever was inserted and overwritten, a read returns the right bytes or nothing.
        #[test]
        fn reads_never_return_wrong_bytes(
            sizes in proptest::collection::vec(1usize..5_000_000, 1..24),
            probes in proptest::collection::vec((0usize..30, 0usize..6_000_000, 1usize..200_000), 1..40),
        ) {
            let (_d, c) = cache(16 << 20);
            let chunks: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| pattern(i, n))
                .collect();
            for ch in &chunks {
                c.insert(id(ch), ch);
            }
            for (which, at, len) in probes {
                let ch = &chunks[which % chunks.len()];
                if let Some(got) = c.read(&id(ch), at, len) {
                    prop_assert!(at < ch.len());
                    prop_assert_eq!(&got[..], &ch[at..ch.len().min(at + len)]);
                }
            }
            // The newest chunk always fits and is always there.
            let last = chunks.last().unwrap();
            prop_assert!(c.read(&id(last), 0, 1).is_some());
        }
    }
}
