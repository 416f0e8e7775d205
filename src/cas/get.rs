//! The read pipeline: resolve a ref, then fetch, rebuild, decrypt and verify chunks on
//! worker threads while the caller writes them out in order. At most a small window of
//! chunks is in memory, whatever the blob's size.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::sync_channel;
use std::sync::{Condvar, Mutex, MutexGuard};

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
        let set = DataRouter::new(&self.lmdb).fetch_shards(&txn, id, &record, false)?;
        let have = set.shards.iter().filter(|s| s.is_some()).count();
        let Some(remote) = self.remote.as_ref().filter(|_| have < record.k as usize) else {
            return open_chunk(keys, id, &record, &set.shards);
        };
        // Not enough here: the other nodes hold the rest. Every slice they send is checked
        // against the record, as local ones are.
        let wanted: Vec<u8> = (0..record.slices.len() as u8)
            .filter(|i| set.shards[*i as usize].is_none())
            .collect();
        let fetched = remote.fetch(id, &wanted, record.k as usize - have)?;
        let mut shards = set.shards;
        DataRouter::add_fetched(&record, &mut shards, &fetched);
        open_chunk(keys, id, &record, &shards)
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
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        // Slices held by other nodes take a network round trip each: more chunks in flight
        // hide that latency, while decoding still needs only the cores there are.
        let workers = match self.remote {
            Some(_) => cores.max(16),
            None => cores,
        };
        let gate = Window::new(workers * 2);
        let (tx, rx) = sync_channel::<(usize, Result<Vec<u8>>)>(workers * 2);
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..workers {
                let tx = tx.clone();
                let gate = &gate;
                s.spawn(move || {
                    // A panicking worker stops the others, so nobody waits for its chunk.
                    let _guard = StopOnDrop {
                        gate,
                        only_when_panicking: true,
                    };
                    while let Some(i) = gate.claim() {
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
                gate: &gate,
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
                    gate.advance(want);
                }
            }
            if want != chunks.len() {
                return Err(Error::Corrupt("not every chunk was read".into()));
            }
            out.flush().map_err(|e| Error::io("writing output", e))
        })
    }
}

/// Hands out chunk indexes to the read workers, at most `window` ahead of the writer, so
/// memory stays bounded; workers sleep (no polling) until the writer moves or stops them.
struct Window {
    state: Mutex<WindowState>,
    moved: Condvar,
    window: usize,
}

struct WindowState {
    next: usize,
    written: usize,
    stop: bool,
}

impl Window {
    fn new(window: usize) -> Self {
        // A
        Window {
            state: Mutex::new(WindowState {
                next: 0,
                written: 0,
                stop: false,
            }),
            moved: Condvar::new(),
            window,
        }
    }

    fn lock(&self) -> MutexGuard<'_, WindowState> {
        // A
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next chunk index to read, or `None` once stopped.
    fn claim(&self) -> Option<usize> {
        // A
        let mut st = self.lock();
        while !st.stop && st.next >= st.written + self.window {
            st = self.moved.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.stop {
            return None;
        }
        st.next += 1;
        Some(st.next - 1)
    }

    /// The writer has written `written` chunks.
    fn advance(&self, written: usize) {
        // A
        self.lock().written = written;
        self.moved.notify_all();
    }

    fn stop(&self) {
        // A
        self.lock().stop = true;
        self.moved.notify_all();
    }
}

/// Stops the window when dropped (always, or only while unwinding from a panic).
struct StopOnDrop<'a> {
    gate: &'a Window,
    only_when_panicking: bool,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        // A
        if !self.only_when_panicking || std::thread::panicking() {
            self.gate.stop();
        }
    }
}
