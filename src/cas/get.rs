//! The read pipeline: resolve a ref, then fetch, rebuild, decrypt and verify chunks on
//! worker threads while the caller writes them out in order. At most a small window of
//! chunks is in memory, whatever the blob's size.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::sync_channel;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::cas::get_member::Fast;
use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Blob, ChunkRecord, ChunkRef, ToRef};
use crate::progress::{NoProgress, Progress};
use crate::route::remote::Wanted;
use crate::route::DataRouter;
use crate::seal::pack::open_member_into;
use crate::seal::{erasure, open_chunk_into};

/// Reads and verifies single chunks by id (used by `get`, the mount and verify).
pub trait ChunkReader {
    /// The plaintext of a chunk, rebuilt from any k intact slices and verified.
    fn read_chunk(&self, id: &Hash) -> Result<Vec<u8>>;
}

impl ChunkReader for Cas {
    fn read_chunk(&self, id: &Hash) -> Result<Vec<u8>> {
        // PA
        let mut got = None;
        self.read_chunks(std::slice::from_ref(id), None, &|_| true, &mut |_, r| {
            got = Some(r);
            true
        })?;
        got.unwrap_or_else(|| Err(Error::Corrupt(format!("chunk {} was not read", id.short()))))
    }
}

/// One chunk's read: done (the plaintext or why not), or short of intact slices.
enum Attempt {
    Done(Result<Vec<u8>>),
    Short(Error),
}

/// Pauses before asking the cluster again for chunks still short of slices. While a
/// cluster rebalances (a node just died or joined), a slice can be between two nodes: the
/// reader asked the new holder before it arrived and the old one after it let go, or it
/// arrived on this node after this read looked here. Each retry looks here and asks again;
/// slices that are really lost cost under 4 s more before the error.
const RETRY_PAUSES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(250),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_millis(1000),
    std::time::Duration::from_millis(2000),
];

impl Cas {
    /// Reads several chunks: each from the slices held here when k of them are intact,
    /// the others with one request for all their missing slices to the other nodes (one
    /// round trip instead of one per chunk). Every slice, local or fetched, is checked
    /// against the chunk record. On a cluster, chunks still short of slices are tried again
    /// after a pause ([`RETRY_PAUSES`]). Each chunk goes to `deliver` (its position in
    /// `ids`, the plaintext or why not) as soon as it is opened, so a reader holds one
    /// plaintext at a time rather than a run's; false from `deliver` stops the read, and is
    /// returned. The error is the store failing. Plaintext goes into buffers from `pool`
    /// when one is given, and each chunk waits for `turn` (its position) before it is
    /// opened; false from `turn` stops the read too.
    pub(crate) fn read_chunks(
        &self,
        ids: &[Hash],
        pool: Option<&Pool>,
        turn: &dyn Fn(usize) -> bool,
        deliver: &mut dyn FnMut(usize, Result<Vec<u8>>) -> bool,
    ) -> Result<bool> {
        // PA
        let mut short: Vec<(usize, Error)> = Vec::new();
        let mut each = |p: usize, a: Attempt, short: &mut Vec<(usize, Error)>| match a {
            Attempt::Done(r) => deliver(p, r),
            Attempt::Short(e) => {
                short.push((p, e));
                true
            }
        };
        if !self.read_once(ids, pool, turn, &mut |p, a| each(p, a, &mut short))? {
            return Ok(false);
        }
        if self.remote.is_some() {
            for pause in RETRY_PAUSES {
                // Asking a node that is not running again brings nothing.
                if short
                    .iter()
                    .all(|(_, e)| matches!(e, Error::Unreachable(_)))
                {
                    break;
                }
                std::thread::sleep(pause);
                let positions: Vec<usize> = short.drain(..).map(|(p, _)| p).collect();
                let again: Vec<Hash> = positions.iter().map(|p| ids[*p]).collect();
                let turn_again = |n: usize| turn(positions[n]);
                if !self.read_once(&again, pool, &turn_again, &mut |n, a| {
                    each(positions[n], a, &mut short)
                })? {
                    return Ok(false);
                }
            }
        }
        for (p, e) in short {
            if !deliver(p, Err(e)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One pass of [`Cas::read_chunks`], in a read transaction of its own (so that a retry
    /// sees slices committed since): each chunk goes to `each` once opened or found short.
    fn read_once(
        &self,
        ids: &[Hash],
        pool: Option<&Pool>,
        turn: &dyn Fn(usize) -> bool,
        each: &mut dyn FnMut(usize, Attempt) -> bool,
    ) -> Result<bool> {
        // PA
        let txn = self.lmdb.read()?;
        let router = DataRouter::new(&self.lmdb);
        // Opens the chunk at `pos` once its turn comes; `None` once the read is to stop.
        // `record` is the record whose slices `shards` are: the chunk's, or its pack's.
        let open = |pos: usize,
                    record: &ChunkRecord,
                    member: Option<&ChunkRecord>,
                    shards: &[Option<&[u8]>]| {
            let have = shards.iter().filter(|s| s.is_some()).count();
            if have < record.k as usize {
                let short = erasure::too_few(have, shards.len(), record.k as usize);
                return Some(Attempt::Short(short));
            }
            if !turn(pos) {
                return None;
            }
            let mut plain = pool.map(Pool::take).unwrap_or_default();
            let id = &ids[pos];
            let opened = self
                .keys_for(member.unwrap_or(record).key_epoch)
                .and_then(|k| match member {
                    None => open_chunk_into(k, id, record, shards, &mut plain),
                    Some(m) => open_member_into(k, id, m, record, shards, &mut plain),
                })
                .map(|()| plain);
            Some(Attempt::Done(opened))
        };
        // Chunks that need slices from elsewhere: (position, record whose slices they are,
        // member record, shards held here).
        let mut short = Vec::new();
        let mut asks = Vec::new();
        for (pos, id) in ids.iter().enumerate() {
            let (holder, record, member) = match self.slices_holder(&txn, id)? {
                Ok(found) => found,
                Err(missing) => {
                    if !each(pos, Attempt::Done(Err(missing))) {
                        return Ok(false);
                    }
                    continue;
                }
            };
            // A delta: its base first (itself perhaps a delta), from this snapshot.
            if member.as_ref().is_some_and(|m| m.base().is_some()) {
                if !turn(pos) {
                    return Ok(false);
                }
                let mut plain = pool.map(Pool::take).unwrap_or_default();
                let held = (holder, record, member);
                let opened = self
                    .open_held(&txn, id, &held, 0, &mut plain)
                    .map(|_| plain);
                if !each(pos, Attempt::Done(opened)) {
                    return Ok(false);
                }
                continue;
            }
            if let Some(m) = &member {
                match self.open_member_fast(&txn, id, m, &holder, &record, pos, pool, turn) {
                    Fast::Stop => return Ok(false),
                    Fast::Opened(plain) => {
                        if !each(pos, Attempt::Done(Ok(plain))) {
                            return Ok(false);
                        }
                        continue;
                    }
                    Fast::Checked => {}
                }
            }
            let set = router.fetch_shards(&txn, &holder, &record, false)?;
            let ask =
                Wanted::missing(holder, &record, &set.shards).filter(|_| self.remote.is_some());
            let Some(ask) = ask else {
                if !open(pos, &record, member.as_ref(), &set.shards).is_some_and(|a| each(pos, a)) {
                    return Ok(false);
                }
                continue;
            };
            asks.push(ask);
            short.push((pos, record, member, set.shards));
        }
        let Some(remote) = self.remote.as_ref().filter(|_| !asks.is_empty()) else {
            return Ok(true);
        };
        // Not enough here: the other nodes hold the rest.
        match remote.fetch_many(&asks) {
            Ok(fetched) => {
                for (n, (pos, record, member, mut shards)) in short.into_iter().enumerate() {
                    DataRouter::add_fetched(&record, &mut shards, fetched.slices(n));
                    if !open(pos, &record, member.as_ref(), &shards).is_some_and(|a| each(pos, a)) {
                        return Ok(false);
                    }
                }
                remote.give_back(fetched.into_buffer());
            }
            Err(e) => {
                for (pos, _, _, _) in short {
                    // Slices out of reach are no damage: say which it is.
                    let e = match &e {
                        Error::Unreachable(why) => {
                            Error::Unreachable(format!("chunk {}: {why}", ids[pos].short()))
                        }
                        other => Error::Corrupt(format!("chunk {}: {other}", ids[pos].short())),
                    };
                    if !each(pos, Attempt::Short(e)) {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }
}

impl Cas {
    /// Writes the content of the version `reference` names to `out`; returns its blob.
    pub fn get(&self, reference: &(impl ToRef + ?Sized), out: impl Write) -> Result<Blob> {
        // A
        self.get_with_progress(reference, out, &NoProgress)
    }

    /// [`Cas::get`] with progress in bytes.
    pub fn get_with_progress(
        &self,
        reference: &(impl ToRef + ?Sized),
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
        // Slices held by other nodes take a network round trip: each worker asks for a run
        // of chunks at once (one round trip and one set of wake-ups for all), and at least
        // 4 runs are in flight to hide the latency; decoding needs only the cores there are.
        let (workers, group) = match self.remote {
            Some(_) => (cores.max(4), REMOTE_GROUP),
            None => (cores, 1),
        };
        // On a cluster, 32 chunks in flight (4 runs of 8).
        let window = (workers * 2).max(group * 4);
        let gate = Window::new(window);
        // Fewer are decoded ahead of the writer: a run and as many more as there are
        // cores, so two runs decode at once and the plaintexts waiting to be written stay
        // few (each one decoded ahead is a buffer more to fault in).
        let ahead = (group + cores).min(window);
        // Plaintext buffers go round from the writer back to the workers: fresh ones would
        // be faulted in page by page for every chunk.
        let pool = Pool::new(ahead + workers * 2);
        let (tx, rx) = sync_channel::<(usize, Result<Vec<u8>>)>(workers * 2);
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..workers {
                let tx = tx.clone();
                let gate = &gate;
                let pool = &pool;
                s.spawn(move || {
                    // A panicking worker stops the others, so nobody waits for its chunk.
                    let _guard = StopOnDrop {
                        gate,
                        only_when_panicking: true,
                    };
                    while let Some(run) = gate.claim(group, chunks.len()) {
                        if run.is_empty() {
                            return;
                        }
                        let ids: Vec<Hash> = chunks[run.clone()].iter().map(|c| c.id).collect();
                        let mut sent = vec![false; ids.len()];
                        let mut send = |n: usize, r| {
                            sent[n] = true;
                            tx.send((run.start + n, r)).is_ok()
                        };
                        let turn = |n: usize| gate.turn(run.start + n, ahead);
                        match self.read_chunks(&ids, Some(pool), &turn, &mut send) {
                            Ok(true) => {}
                            Ok(false) => return,
                            Err(e) => {
                                // The writer stops at the first chunk it lacks: the error
                                // goes there.
                                let first = sent.iter().position(|s| !s).unwrap_or(0);
                                let _ = tx.send((run.start + first, Err(e)));
                                return;
                            }
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
                    pool.give(data);
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

/// Chunks a reader of a cluster store asks the other nodes for at once.
const REMOTE_GROUP: usize = 8;

/// Plaintext buffers handed from the writer back to the read workers; holds at most
/// `keep`, so memory stays within what the read window had in flight.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl Pool {
    fn new(keep: usize) -> Self {
        // A
        Pool {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer that held an earlier chunk, or a new one.
    pub(super) fn take(&self) -> Vec<u8> {
        // A
        self.free
            .lock()
            .map(|mut f| f.pop().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Gives a written chunk's buffer back.
    pub(super) fn give(&self, buf: Vec<u8>) {
        // A
        if let Ok(mut f) = self.free.lock() {
            if f.len() < self.keep {
                f.push(buf);
            }
        }
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

    /// The next run of at most `n` chunk indexes to read (below `total`; empty once all
    /// are claimed), or `None` once stopped.
    fn claim(&self, n: usize, total: usize) -> Option<std::ops::Range<usize>> {
        // A
        let mut st = self.wait_while(|st| st.next < total && st.next >= st.written + self.window);
        if st.stop {
            return None;
        }
        let start = st.next;
        let end = (start + n.max(1))
            .min(total)
            .min(st.written + self.window)
            .max(start);
        st.next = end;
        Some(start..end)
    }

    /// Waits until chunk `index` is fewer than `ahead` past the writer; false once stopped.
    fn turn(&self, index: usize, ahead: usize) -> bool {
        // A
        !self.wait_while(|st| index >= st.written + ahead).stop
    }

    /// The state once `waiting` is false or the read stopped; sleeps (no polling) until the
    /// writer moves or stops the read.
    fn wait_while(
        &self,
        mut waiting: impl FnMut(&WindowState) -> bool,
    ) -> MutexGuard<'_, WindowState> {
        // A
        self.moved
            .wait_while(self.lock(), |st| !st.stop && waiting(st))
            .unwrap_or_else(|p| p.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_claimed_within_the_window_and_end_at_the_total() {
        let w = Window::new(12);
        assert_eq!(w.claim(8, 20), Some(0..8));
        // Only 4 more fit in the window until the writer moves.
        assert_eq!(w.claim(8, 20), Some(8..12));
        w.advance(8);
        assert_eq!(w.claim(8, 20), Some(12..20));
        // Everything claimed: an empty run, so the worker ends.
        assert_eq!(w.claim(8, 20), Some(20..20));
        w.stop();
        assert_eq!(w.claim(8, 20), None);
    }

    #[test]
    fn a_chunk_waits_its_turn_until_the_writer_comes_near_or_stops() {
        let w = std::sync::Arc::new(Window::new(32));
        assert!(w.turn(9, 10), "within `ahead` of the writer: at once");
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = std::sync::Arc::clone(&w);
        let t = std::thread::spawn(move || tx.send(waiting.turn(12, 10)).unwrap());
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        w.advance(3);
        assert!(rx.recv().unwrap(), "its turn came once the writer moved");
        t.join().unwrap();
        w.stop();
        assert!(!w.turn(100, 10), "a stopped read does not wait");
    }
}
