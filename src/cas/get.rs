//! The read pipeline: resolve a ref, then fetch, rebuild, decrypt and verify chunks on
//! worker threads while the caller writes them out in order. At most a small window of
//! chunks is in memory, whatever the blob's size.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Blob, ChunkRef};
use crate::progress::{NoProgress, Progress};
use crate::route::DataRouter;
use crate::seal::open_chunk;

/// Reads and verifies single chunks by id (used by `get`, the mount and verify).
pub trait ChunkReader {
    /// The plaintext of a chunk, rebuilt from any k intact slices and verified.
    fn read_chunk(&self, id: &Hash) -> Result<Vec<u8>>;
}

impl ChunkReader for Cas {
    fn read_chunk(&self, id: &Hash) -> Result<Vec<u8>> {
        // PA
        let txn = self.lmdb.read()?;
        let record = self
            .lmdb
            .chunks
            .get(&txn, id)?
            .ok_or_else(|| Error::Corrupt(format!("chunk {} is missing", id.short())))?;
        let keys = self.keys_for(record.key_epoch)?;
        let set = DataRouter::new(&self.lmdb).fetch_shards(&txn, &record, false)?;
        open_chunk(keys, id, &record, &set.shards)
    }
}

impl Cas {
    /// Writes the content of the version `reference` names to `out`; returns its blob.
    pub fn get(&self, reference: &str, out: impl Write) -> Result<Blob> {
        // A
        self.get_with_progress(reference, out, &NoProgress)
    }

    /// [`Cas::get`] with progress in bytes.
    pub fn get_with_progress(
        &self,
        reference: &str,
        out: impl Write,
        progress: &dyn Progress,
    ) -> Result<Blob> {
        // A
        let (hash, blob) = self.resolve_readable(reference)?;
        progress.set_total(blob.size);
        self.write_chunks(&blob.chunks, out, progress)
            .map_err(|e| match e {
                Error::Corrupt(why) => {
                    Error::Corrupt(format!("{}@{}: {why}", blob.key, hash.short()))
                }
                other => other,
            })?;
        Ok(blob)
    }

    /// Decodes `chunks` on worker threads and writes them in order.
    pub(crate) fn write_chunks(
        &self,
        chunks: &[ChunkRef],
        mut out: impl Write,
        progress: &dyn Progress,
    ) -> Result<()> {
        // PA
        if !self.is_unlocked() {
            return Err(Error::Locked);
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let window = workers * 2;
        let next = AtomicUsize::new(0);
        let written = AtomicUsize::new(0);
        let (tx, rx) = sync_channel::<(usize, Result<Vec<u8>>)>(window);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, written, stop) = (&next, &written, &stop);
                s.spawn(move || {
                    // A panicking worker stops the others, so nobody waits for its chunk.
                    let _guard = StopOnDrop {
                        stop,
                        only_when_panicking: true,
                    };
                    loop {
                        // Stay within `window` chunks of the writer so memory stays bounded.
                        while next.load(Ordering::Acquire)
                            >= written.load(Ordering::Acquire) + window
                        {
                            if stop.load(Ordering::Acquire) {
                                return;
                            }
                            std::thread::park_timeout(std::time::Duration::from_micros(200));
                        }
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::AcqRel);
                        let Some(c) = chunks.get(i) else { return };
                        if tx.send((i, self.read_chunk(&c.id))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            // Owned here so that returning early drops it and wakes workers blocked on send.
            let rx = rx;
            // Whatever happens below (an error, a panic in the caller's writer), the
            // workers are told to stop when this guard goes.
            let _guard = StopOnDrop {
                stop: &stop,
                only_when_panicking: false,
            };
            let mut pending = BTreeMap::new();
            let mut want = 0;
            for (i, data) in rx.iter() {
                pending.insert(i, data);
                while let Some(data) = pending.remove(&want) {
                    let data = data?;
                    if data.len() != chunks[want].size as usize {
                        return Err(Error::Corrupt("chunk size differs from the blob".into()));
                    }
                    out.write_all(&data)
                        .map_err(|e| Error::io("writing output", e))?;
                    progress.advance(data.len() as u64);
                    want += 1;
                    written.store(want, Ordering::Release);
                }
            }
            if want != chunks.len() {
                return Err(Error::Corrupt("not every chunk was read".into()));
            }
            out.flush().map_err(|e| Error::io("writing output", e))
        })
    }
}

/// Sets a stop flag when dropped (always, or only while unwinding from a panic).
struct StopOnDrop<'a> {
    stop: &'a AtomicBool,
    only_when_panicking: bool,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        // A
        if !self.only_when_panicking || std::thread::panicking() {
            self.stop.store(true, Ordering::Release);
        }
    }
}
