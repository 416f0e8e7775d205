//! Storing a sparse file (the mount's writes, `put` of a file with holes): only its data
//! is read and sealed; every aligned block inside a hole refers to one chunk of zeros.

use crate::cas::put::Body;
use crate::cas::{now_nanos, Cas};
use crate::cas::{PutOptions, PutOutcome};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::validate_key;
use crate::store::lock::GcLock;

/// Holes smaller than this in all are read as data: the sparse path seals on one thread,
/// the put pipeline on every core.
const SPARSE_MIN_HOLES: u64 = 64 << 20;
/// Sealed bytes the sparse path holds before writing them in a transaction of their own.
const SPARSE_BATCH: usize = 8 << 20;

impl Cas {
    /// Stores `file` as a new version of `key` as [`Cas::put`] does, reading it with `pread`
    /// (its position is left alone), but only its data where it is sparse: every aligned
    /// block of `chunking.max` bytes inside a hole becomes a reference to one chunk of zeros,
    /// so a 1 TiB file holding one byte is stored in about a second instead of hashing 1 TiB
    /// of zeros. Files with under 64 MiB of such blocks go through [`Cas::put`].
    pub fn put_file(
        &self,
        key: &str,
        file: &std::fs::File,
        opts: &PutOptions,
    ) -> Result<PutOutcome> {
        // PA
        let size = file
            .metadata()
            .map_err(|e| Error::io("reading the size of a file to store", e))?
            .len();
        let block = u64::from(self.config.chunking.max);
        let holes = hole_blocks(file, size, block);
        if holes.iter().map(|(_, n)| n * block).sum::<u64>() < SPARSE_MIN_HOLES {
            return self.put(key, Region::new(file, 0, size), opts);
        }
        validate_key(key)?;
        if let Some(p) = &opts.parents {
            self.check_parents(key, p)?;
        }
        let _lock = GcLock::acquire(self.path(), false, &|| {})?;
        let mut s = SparsePut::new(self, file)?;
        let mut pos = 0;
        for (first, n) in holes {
            s.data(pos, first * block)?;
            s.zeros(n)?;
            pos = (first + n) * block;
        }
        s.data(pos, size)?;
        s.commit(key, opts)
    }
}

/// The blocks of `file` (`block` bytes each, aligned) that lie wholly in holes, as runs of
/// `(first block, count)`; none where the filesystem cannot tell (no SEEK_HOLE). The last,
/// partial block is never one.
fn hole_blocks(file: &std::fs::File, size: u64, block: u64) -> Vec<(u64, u64)> {
    // A
    use rustix::fs::{seek, SeekFrom};
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < size {
        let Ok(hole) = seek(file, SeekFrom::Hole(pos)) else {
            break;
        };
        if hole >= size {
            break;
        }
        let data = match seek(file, SeekFrom::Data(hole)) {
            Ok(d) => d.min(size),
            // No data after the hole: it runs to the end.
            Err(rustix::io::Errno::NXIO) => size,
            Err(_) => break,
        };
        let first = hole.div_ceil(block);
        let end = (data / block).min(size / block);
        if end > first {
            out.push((first, end - first));
        }
        pos = data.max(hole + 1);
    }
    out
}

/// Bytes `pos..end` of a file, read with `pread`.
struct Region<'f> {
    file: &'f std::fs::File,
    pos: u64,
    end: u64,
}

impl<'f> Region<'f> {
    fn new(file: &'f std::fs::File, pos: u64, end: u64) -> Self {
        // A
        Region { file, pos, end }
    }
}

impl std::io::Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A
        use std::os::unix::fs::FileExt;
        let want = (self.end.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A sparse file being stored: its chunk list so far and the new chunks sealed but not yet
/// written.
struct SparsePut<'c> {
    cas: &'c Cas,
    file: &'c std::fs::File,
    keys: &'c crate::crypto::StoreKeys,
    chunks: Vec<crate::model::ChunkRef>,
    sealed: Vec<crate::seal::SealedChunk>,
    /// Chunks sealed by this put (written or not): sealed once.
    seen: std::collections::HashSet<Hash>,
    /// The id of a block of zeros, once known.
    zero: Option<Hash>,
    pending_bytes: usize,
    new_chunks: usize,
    stored_bytes: u64,
}

impl<'c> SparsePut<'c> {
    fn new(cas: &'c Cas, file: &'c std::fs::File) -> Result<Self> {
        // A
        Ok(SparsePut {
            cas,
            file,
            keys: cas.current_keys()?,
            chunks: Vec::new(),
            sealed: Vec::new(),
            seen: Default::default(),
            zero: None,
            pending_bytes: 0,
            new_chunks: 0,
            stored_bytes: 0,
        })
    }

    /// Chunks bytes `start..end` of the file as `put` does.
    fn data(&mut self, start: u64, end: u64) -> Result<()> {
        // A
        if end <= start {
            return Ok(());
        }
        let (chunking, seed) = (self.cas.config.chunking, self.keys.cdc_seed);
        let reader = Box::new(Region::new(self.file, start, end));
        crate::chunk::for_each_chunk(reader, Some(end - start), chunking, seed, |data| {
            let id = self.keys.chunk_id(&data);
            self.need(id, &data)?;
            self.chunks.push(crate::model::ChunkRef {
                id,
                size: data.len() as u32,
            });
            Ok(())
        })
    }

    /// `n` blocks of zeros: one chunk, referenced `n` times.
    fn zeros(&mut self, n: u64) -> Result<()> {
        // A
        let size = self.cas.config.chunking.max;
        let id = match self.zero {
            Some(id) => id,
            None => {
                let zero = vec![0u8; size as usize];
                let id = self.keys.chunk_id(&zero);
                self.need(id, &zero)?;
                *self.zero.insert(id)
            }
        };
        let r = crate::model::ChunkRef { id, size };
        self.chunks.extend(std::iter::repeat_n(
            r,
            usize::try_from(n).unwrap_or(usize::MAX),
        ));
        Ok(())
    }

    /// Seals chunk `id` unless the store or this put has it already; writes what is sealed
    /// every [`SPARSE_BATCH`] bytes.
    fn need(&mut self, id: Hash, data: &[u8]) -> Result<()> {
        // A
        if self.seen.contains(&id) || self.cas.dedupable(&self.cas.lmdb.read()?, &id)? {
            return Ok(());
        }
        let sealed = crate::seal::seal_chunk(self.keys, self.cas.seal_params(), id, data)?;
        self.seen.insert(id);
        self.new_chunks += 1;
        self.pending_bytes += sealed.slices.iter().map(|(_, b)| b.len()).sum::<usize>();
        self.sealed.push(sealed);
        if self.pending_bytes >= SPARSE_BATCH {
            let mut txn = self.cas.lmdb.write()?;
            self.write_sealed(&mut txn)?;
            self.cas.lmdb.commit(txn)?;
        }
        Ok(())
    }

    /// Writes the sealed chunks into `txn`, as the put pipeline's writer does.
    fn write_sealed(&mut self, txn: &mut crate::store::RwTxn) -> Result<()> {
        // PA
        let router = crate::route::DataRouter::new(&self.cas.lmdb);
        for unit in self.sealed.drain(..) {
            let sealed = crate::cas::put_sealed::Sealed {
                items: vec![0],
                unit,
            };
            self.stored_bytes += self
                .cas
                .store_sealed(txn, &router, &sealed)?
                .iter()
                .sum::<u64>();
        }
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes the last chunks and commits the version in one transaction.
    fn commit(mut self, key: &str, opts: &PutOptions) -> Result<PutOutcome> {
        // PA
        let mut txn = self.cas.lmdb.write()?;
        self.cas.check_epoch(&txn)?;
        self.write_sealed(&mut txn)?;
        let parents = match &opts.parents {
            Some(p) => p.clone(),
            None => self.cas.live_parents_in(&txn, key)?,
        };
        let size = self.chunks.iter().map(|c| u64::from(c.size)).sum();
        let body = Body {
            chunks: &self.chunks,
            size,
            created: opts.created.unwrap_or_else(now_nanos),
            meta: opts.meta.clone(),
        };
        let hash = self.cas.commit_version_in(&mut txn, key, parents, body)?;
        self.cas.lmdb.commit(txn)?;
        Ok(PutOutcome {
            hash,
            size,
            chunks: self.chunks.len(),
            new_chunks: self.new_chunks,
            stored_bytes: self.stored_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cas::test_store::{get, store};

    #[test]
    fn a_sparse_file_stores_its_holes_as_one_chunk_of_zeros() {
        use std::os::unix::fs::FileExt;
        let (d, cas) = store();
        let f = tempfile::tempfile_in(d.path()).unwrap();
        let size = 200u64 << 20;
        f.set_len(size).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", 100 << 20).unwrap();
        f.write_all_at(b"tail", size - 4).unwrap();
        let out = cas.put_file("sparse", &f, &PutOptions::default()).unwrap();
        assert_eq!(out.size, size);
        assert!(out.stored_bytes < 1 << 20, "{out:?}");
        let back = get(&cas, "sparse");
        let mut want = vec![0u8; size as usize];
        want[..4].copy_from_slice(b"head");
        want[100 << 20..(100 << 20) + 6].copy_from_slice(b"middle");
        want[size as usize - 4..].copy_from_slice(b"tail");
        assert!(back == want);
        // A file without holes goes through `put`, with the same chunks.
        let g = tempfile::tempfile_in(d.path()).unwrap();
        g.write_all_at(&want[..8 << 20], 0).unwrap();
        let a = cas.put_file("dense", &g, &PutOptions::default()).unwrap();
        let b = cas
            .put("dense2", &want[..8 << 20], &PutOptions::default())
            .unwrap();
        assert_eq!(
            cas.blob(&a.hash).unwrap().chunks,
            cas.blob(&b.hash).unwrap().chunks
        );
    }
}
