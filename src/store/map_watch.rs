//! A thread that bounds the store pages a process keeps mapped, whatever it is doing.
//!
//! [`MappedPages`] releases LMDB's map where a command notes its reads, but a scan that
//! notes nothing maps sixteen times what it reads (the kernel's fault-around maps the 15
//! cached neighbours of every page it faults in, and an index's pages lie between other
//! databases' pages): `stats` of a store of 200,000 files mapped 150 MB while it counted
//! the keys, `ls -l` 120 MB, `verify` 150 MB. This thread looks at the process's mapped
//! file pages while the store is in use, every [`FAST`] while they grow and less often
//! while they do not, and releases the map once they grew by [`LOOKUPS_BUDGET`], so no path
//! of any command can forget to. The commands' own notes keep their tighter budgets; this
//! is the bound for everything else. After [`QUIET`] without a change it sleeps until the
//! next transaction starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::mapped_pages::{MappedPages, LOOKUPS_BUDGET};

/// Time between two looks while the mapped pages grow (a look reads `/proc/self/statm`, a
/// few microseconds). A scan maps its pages' neighbours at several GB/s (on Linux 6.18 a
/// page faulted in maps 128 KiB around it): looking every 10 ms, `ls -l` of 200,000 keys
/// still mapped 110 MB; every millisecond, 60 MB with the budget.
const FAST: Duration = Duration::from_millis(1);
/// Longest time between two looks while the store is in use: the time doubles from
/// [`FAST`] up to this while the pages grow by less than [`SLOW_GROWTH`] a look, so a node
/// that reads its store at every heartbeat looks about 20 times a second, not 1,000.
const SLOW: Duration = Duration::from_millis(64);
/// Growth between two looks at which the watch looks every [`FAST`] again.
const SLOW_GROWTH: u64 = 1 << 20;
/// Time without any change in the mapped pages, and without a transaction starting in the
/// last look, after which the watch sleeps until the next transaction.
const QUIET: Duration = Duration::from_secs(1);

/// What the watch and the store's handle share.
#[derive(Default)]
struct Shared {
    /// Set to stop the watch.
    stop: Mutex<bool>,
    wake: Condvar,
    /// The watch is (about to be) asleep: [`MapWatch::poke`] must wake it.
    sleeping: AtomicBool,
    /// A transaction started since the watch last looked.
    poked: AtomicBool,
}

/// The running watch of one environment's map; stopping it (drop) joins the thread.
pub(crate) struct MapWatch {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl MapWatch {
    /// Starts watching `mapped`. The thread holds `env` (a handle of the environment whose
    /// map `mapped` releases), so the map outlives every release it makes even when the
    /// store's own handle is dropped first. `None` when no thread can be started: the
    /// releases the commands note still bound the map.
    pub(crate) fn start<E: Send + 'static>(mapped: Arc<MappedPages>, env: E) -> Option<Self> {
        // PA
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ouro-map-watch".into())
            .spawn(move || {
                if mapped.can_release() {
                    watch(&theirs, &mapped);
                }
                drop(env);
            })
            .ok()?;
        Some(MapWatch {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the watch that a transaction is starting, waking it if it sleeps.
    pub(crate) fn poke(&self) {
        // A
        // With the watch's store to `sleeping` before its load of `poked` (both SeqCst),
        // either it sees this poke and stays awake, or this sees it asleep and wakes it: the
        // lock is held from its store until it waits, so the notification cannot come early.
        self.shared.poked.store(true, Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::SeqCst) {
            drop(self.shared.stop.lock());
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for MapWatch {
    fn drop(&mut self) {
        // PA
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watch's loop: look, release past the budget, wait ([`FAST`] to [`SLOW`]), and sleep
/// after [`QUIET`] until poked.
fn watch(shared: &Shared, mapped: &MappedPages) {
    // PA
    let mut every = FAST;
    let mut quiet = Duration::ZERO;
    let mut last: Option<u64> = None;
    loop {
        let Ok(mut stop) = shared.stop.lock() else {
            return;
        };
        if quiet >= QUIET {
            shared.sleeping.store(true, Ordering::SeqCst);
            while !*stop && !shared.poked.swap(false, Ordering::SeqCst) {
                stop = match shared.wake.wait(stop) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            shared.sleeping.store(false, Ordering::SeqCst);
            (quiet, every) = (Duration::ZERO, FAST);
        } else if !*stop {
            stop = match shared.wake.wait_timeout(stop, every) {
                Ok((s, _)) => s,
                Err(_) => return,
            };
        }
        if *stop {
            return;
        }
        drop(stop);
        let poked = shared.poked.swap(false, Ordering::SeqCst);
        let Some(now) = mapped.check(LOOKUPS_BUDGET) else {
            // Nothing to measure (no /proc): the commands' own notes are all there is.
            return;
        };
        let grown = last.map_or(0, |l| now.saturating_sub(l));
        quiet = if last == Some(now) && !poked {
            quiet + every
        } else {
            Duration::ZERO
        };
        every = if grown >= SLOW_GROWTH {
            FAST
        } else {
            (every * 2).min(SLOW)
        };
        last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_store_lets_its_watch_go_and_closes() {
        use crate::store::Lmdb;
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        assert!(lmdb.watch.is_some());
        drop(lmdb.read().unwrap());
        drop(lmdb);
        // The environment is closed (the watch let go of it): the same process opens it again.
        let again = Lmdb::open(dir.path(), false).unwrap();
        drop(again.read().unwrap());
        again.close(Duration::from_secs(5)).unwrap();
        Lmdb::open(dir.path(), false).unwrap();
    }

    #[test]
    fn a_watch_with_nothing_to_release_ends_and_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        // No data.mdb here: nothing can be released, so the thread ends at once.
        let mapped = Arc::new(MappedPages::new(dir.path()));
        let held = Arc::new(());
        let watch = MapWatch::start(mapped, Arc::clone(&held)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&held) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the watch kept running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(watch);
    }

    /// Resident bytes of the mappings of `file` (by path) in this process, from smaps.
    fn mapped_of(file: &std::path::Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let name = file.to_str().unwrap();
        let mut inside = false;
        let mut total = 0;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.split_once('-').is_some_and(|(a, b)| {
                u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok()
            }) {
                inside = line.split_whitespace().nth(5) == Some(name);
            } else if inside && first == "Rss:" {
                let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                total += kb * 1024;
            }
        }
        total
    }

    #[test]
    fn a_scan_that_notes_nothing_is_released_by_the_watch() {
        use crate::hash::Hash;
        use crate::store::Lmdb;
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        if lmdb.watch.is_none() || MappedPages::new(dir.path()).check(u64::MAX).is_none() {
            eprintln!("skipped: this system has no /proc/self/statm to watch");
            return;
        }
        // 96 MiB of slices, three times the watch's budget.
        let slice = vec![7u8; 1 << 20];
        for n in 0..32u8 {
            let mut txn = lmdb.write().unwrap();
            let refs = [slice.as_slice(), slice.as_slice(), slice.as_slice()];
            lmdb.slices
                .put_chunk(&mut txn, &Hash([n; 32]), &refs)
                .unwrap();
            lmdb.commit(txn).unwrap();
        }
        let data = dir.path().join("data.mdb").canonicalize().unwrap();
        // Touch every page through the map, noting nothing, and keep the transaction open.
        let txn = lmdb.read().unwrap();
        let mut sum = 0u64;
        for item in lmdb.slices.bundles.iter(&txn).unwrap() {
            let (_, v) = item.unwrap();
            sum += v.iter().step_by(4096).map(|b| u64::from(*b)).sum::<u64>();
        }
        assert!(sum > 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mapped = mapped_of(&data);
            if mapped <= LOOKUPS_BUDGET + (16 << 20) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the store's map still holds {mapped} bytes"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(txn);
    }

    #[test]
    fn a_sleeping_watch_wakes_for_a_transaction_and_stops() {
        use crate::store::Lmdb;
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let shared = Arc::clone(&lmdb.watch.as_ref().unwrap().shared);
        // Asleep after a quiet second (or still awake if the other tests' pages keep
        // changing: then there is nothing to wake, and the rest still holds).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !shared.sleeping.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !shared.sleeping.load(Ordering::SeqCst) {
            eprintln!("the watch never fell asleep (other tests' pages kept changing): only its stop is checked");
        }
        drop(lmdb.read().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while shared.sleeping.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the watch slept through a read"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(lmdb);
    }
}
