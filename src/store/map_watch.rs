//! A thread that bounds the store pages a process keeps mapped, whatever it is doing.
//!
//! [`MappedPages`] releases LMDB's map where a command notes its reads, but a scan that
//! notes nothing maps sixteen times what it reads (the kernel's fault-around maps the 15
//! cached neighbours of every page it faults in, and an index's pages lie between other
//! databases' pages): `stats` of a store of 200,000 files mapped 150 MB while it counted
//! the keys, `ls -l` 120 MB, `verify` 150 MB. This thread looks at the process's mapped
//! file pages every [`ACTIVE_EVERY`] while the store is in use and releases the map once
//! they grew by [`LOOKUPS_BUDGET`] (or a quarter of the process's own memory, if more),
//! so no path of any command can forget to. The commands' own notes keep their tighter
//! budgets; this is the bound for everything else. Idle, it sleeps until the next
//! transaction starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::mapped_pages::{MappedPages, LOOKUPS_BUDGET};

/// Time between two looks while the store is in use (a read of `/proc/self/statm`, a few
/// microseconds). A scan maps its pages' neighbours at several GB/s (on Linux 6.18 a page
/// faulted in maps 128 KiB around it): looking every 10 ms, `ls -l` of 200,000 keys still
/// mapped 110 MB; every millisecond, 60 MB with the budget.
const ACTIVE_EVERY: Duration = Duration::from_millis(1);
/// Looks in a row without any change in the mapped pages after which the watch sleeps until
/// the next transaction (a second: a mount or node waiting for work wakes nobody).
const QUIET_LOOKS: u32 = 1000;

/// What the watch and the store's handle share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// The watch sleeps until woken: [`MapWatch::poke`] must wake it.
    sleeping: AtomicBool,
}

#[derive(Default)]
struct State {
    stop: bool,
    woken: bool,
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
                watch(&theirs, &mapped);
                drop(env);
            })
            .ok()?;
        Some(MapWatch {
            shared,
            thread: Some(thread),
        })
    }

    /// Wakes a sleeping watch: a transaction is starting. Costs one atomic load otherwise.
    pub(crate) fn poke(&self) {
        // A
        if self.shared.sleeping.load(Ordering::Relaxed) {
            if let Ok(mut state) = self.shared.state.lock() {
                state.woken = true;
            }
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for MapWatch {
    fn drop(&mut self) {
        // PA
        if let Ok(mut state) = self.shared.state.lock() {
            state.stop = true;
        }
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watch's loop: look every [`ACTIVE_EVERY`], sleep after [`QUIET_LOOKS`] quiet looks.
fn watch(shared: &Shared, mapped: &MappedPages) {
    // PA
    let mut quiet = 0u32;
    let mut last = None;
    loop {
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        if quiet >= QUIET_LOOKS {
            shared.sleeping.store(true, Ordering::Relaxed);
            while !state.stop && !state.woken {
                state = match shared.wake.wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            shared.sleeping.store(false, Ordering::Relaxed);
            state.woken = false;
            quiet = 0;
        } else if !state.stop {
            state = match shared.wake.wait_timeout(state, ACTIVE_EVERY) {
                Ok((s, _)) => s,
                Err(_) => return,
            };
        }
        if state.stop {
            return;
        }
        drop(state);
        let now = mapped.check(LOOKUPS_BUDGET);
        if now.is_none() {
            // Nothing to measure (no /proc): the commands' own notes are all there is.
            return;
        }
        if now == last {
            quiet += 1;
        } else {
            (quiet, last) = (0, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_watch_lets_go_of_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mapped = Arc::new(MappedPages::new(dir.path()));
        let held = Arc::new(());
        let watch = MapWatch::start(Arc::clone(&mapped), Arc::clone(&held)).unwrap();
        watch.poke();
        assert_eq!(Arc::strong_count(&held), 2);
        drop(watch);
        assert_eq!(Arc::strong_count(&held), 1);
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
    fn a_sleeping_watch_wakes_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mapped = Arc::new(MappedPages::new(dir.path()));
        let watch = MapWatch::start(mapped, ()).unwrap();
        // Wait for it to fall asleep (nothing changes in this test's mapped pages... or
        // give up waiting: a busy machine's other threads may keep it awake).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !watch.shared.sleeping.load(Ordering::Relaxed) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        watch.poke();
        drop(watch);
    }
}
