//! Load: 8 writer processes putting at once while 4 readers read, on the embedded store
//! and on a 3-node cluster. No version is lost or duplicated, heads are exactly what the
//! writes imply, every read returns a whole version, and memory stays bounded.
//!
//! `OURO_LOAD_PUTS` sets the puts per writer (CI: 40 embedded, 20 in the cluster;
//! `scripts/load` runs 1,000).

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{wait_until, Cluster};
use common::{ouro_bin, random_bytes, TestStore};

/// The two loads run one after the other: they share the machine and the memory sampler
/// attributes every `ouro` process it sees.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const WRITERS: usize = 8;
const READERS: usize = 4;
const KEYS_PER_WRITER: usize = 10;

/// The content of writer `w`'s put number `i`: a header naming it, then pseudo-random
/// bytes, so a reader can tell a whole version from a torn one.
fn content(w: usize, i: usize) -> Vec<u8> {
    let len = if i % 50 == 49 {
        1 << 20
    } else {
        100 + (i * 7919 + w * 104_729) % (64 << 10)
    };
    let mut b = format!("w{w} i{i}\n").into_bytes();
    b.extend(random_bytes(len, (w * 1_000_003 + i) as u64));
    b
}

/// Checks that `bytes` is exactly some `content(w, i)`; returns (w, i).
fn whole(bytes: &[u8]) -> (usize, usize) {
    let nl = bytes.iter().position(|&b| b == b'\n').expect("header line");
    let head = std::str::from_utf8(&bytes[..nl]).expect("utf-8 header");
    let (w, i) = head
        .strip_prefix('w')
        .and_then(|s| s.split_once(" i"))
        .expect("w.. i.. header");
    let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
    assert!(
        bytes == content(w, i),
        "a torn or mixed version of w{w} i{i}"
    );
    (w, i)
}

/// What the writers did, for the final check.
#[derive(Default)]
struct Written {
    /// Per own key, the hashes of its versions in order.
    own: BTreeMap<String, Vec<String>>,
    /// Every version of the shared key: puts and merges.
    shared: BTreeSet<String>,
    refused: u64,
}

/// Peak resident memory of `ouro` processes, sampled from /proc while the load runs.
struct MemorySampler {
    peak_cli_kb: AtomicU64,
    peak_node_kb: AtomicU64,
}

impl MemorySampler {
    fn sample(&self) {
        let bin = ouro_bin();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let p = e.path();
            let Ok(exe) = std::fs::read_link(p.join("exe")) else {
                continue;
            };
            if exe != bin {
                continue;
            }
            let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
            let node = String::from_utf8_lossy(&cmdline).contains("node\0run");
            let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                .unwrap_or(0u64);
            let peak = if node {
                &self.peak_node_kb
            } else {
                &self.peak_cli_kb
            };
            peak.fetch_max(rss, Ordering::Relaxed);
        }
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn put(cmd: &dyn Fn() -> Command, key: &str, data: &[u8]) -> std::process::Output {
    let mut c = cmd();
    c.args(["put", key, "-"]);
    // A put that fails early stops reading: its exit status and message tell why.
    common::run_with_input(c, data)
}

/// Writer `w`: `puts` puts, nine in ten to its own keys, one in ten to the shared key
/// (merging when it finds several heads there).
fn writer(cmd: &dyn Fn() -> Command, w: usize, puts: usize, written: &Mutex<Written>) {
    for i in 0..puts {
        let data = content(w, i);
        if i % 10 == 9 {
            let o = put(cmd, "shared", &data);
            match o.status.code() {
                Some(0) => {
                    written.lock().unwrap().shared.insert(stdout(&o));
                }
                Some(5) => {
                    written.lock().unwrap().refused += 1;
                    let heads = cmd().args(["heads", "shared", "--json"]).output().unwrap();
                    let heads: serde_json::Value = serde_json::from_slice(&heads.stdout).unwrap();
                    let pick = heads[0]["hash"].as_str().unwrap().to_string();
                    let m = cmd()
                        .args(["merge", "shared", "--pick", &pick])
                        .output()
                        .unwrap();
                    match m.status.code() {
                        Some(0) => {
                            written.lock().unwrap().shared.insert(stdout(&m));
                        }
                        // Another writer merged first.
                        Some(2) | Some(5) => {}
                        c => panic!("merge: {c:?} {}", String::from_utf8_lossy(&m.stderr)),
                    }
                }
                c => panic!("put shared: {c:?} {}", String::from_utf8_lossy(&o.stderr)),
            }
        } else {
            let key = format!("w{w}/k{}", i % KEYS_PER_WRITER);
            let o = put(cmd, &key, &data);
            assert!(
                o.status.success(),
                "put {key}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            written
                .lock()
                .unwrap()
                .own
                .entry(key)
                .or_default()
                .push(stdout(&o));
        }
    }
}

/// Reader: random own keys and the shared key until told to stop; every read is whole.
fn reader(cmd: &dyn Fn() -> Command, r: usize, stop: &AtomicBool) -> u64 {
    let mut reads = 0u64;
    let mut x = r as u64 * 0x9E37_79B9 + 1;
    while !stop.load(Ordering::Relaxed) {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let w = (x >> 33) as usize % WRITERS;
        let k = (x >> 40) as usize % KEYS_PER_WRITER;
        let key = format!("w{w}/k{k}");
        let o = cmd().args(["get", &key]).output().unwrap();
        match o.status.code() {
            Some(0) => {
                let (ww, i) = whole(&o.stdout);
                assert_eq!(
                    (ww, i % KEYS_PER_WRITER),
                    (w, k),
                    "{key} holds another key's data"
                );
                reads += 1;
            }
            Some(3) => {} // not written yet
            c => panic!("get {key}: {c:?} {}", String::from_utf8_lossy(&o.stderr)),
        }
        if x.is_multiple_of(8) {
            let o = cmd().args(["log", "shared", "--json"]).output().unwrap();
            assert!(matches!(o.status.code(), Some(0) | Some(3)), "log shared");
        }
    }
    reads
}

/// Runs the load, then checks every store in `check_on` converges to exactly what was
/// written. `cmd(i)` is a command on store `i`; writer `w` writes through store `w % n`.
fn run_load(n: usize, cmd: &(dyn Fn(usize) -> Command + Sync), puts: usize) -> (f64, u64, u64) {
    let written = Mutex::new(Written::default());
    let stop = AtomicBool::new(false);
    let sampler = Arc::new(MemorySampler {
        peak_cli_kb: AtomicU64::new(0),
        peak_node_kb: AtomicU64::new(0),
    });
    let started = Instant::now();
    let reads = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let written = &written;
                s.spawn(move || writer(&|| cmd(w % n), w, puts, written))
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let stop = &stop;
                s.spawn(move || reader(&|| cmd(r % n), r, stop))
            })
            .collect();
        let sampling = {
            let stop = &stop;
            let sampler = Arc::clone(&sampler);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sampler.sample();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        // Readers stop when the writers are done, also when one failed.
        let results: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for r in results {
            if let Err(e) = r {
                std::panic::resume_unwind(e);
            }
        }
        sampling.join().unwrap();
        readers.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
    });
    let secs = started.elapsed().as_secs_f64();
    let written = written.into_inner().unwrap();
    for i in 0..n {
        // In a cluster, versions written through other nodes arrive within seconds.
        wait_until(
            &format!("store {i} holds exactly what was written"),
            120,
            || converged(&|| cmd(i), &written),
        );
        let o = cmd(i).arg("verify").output().unwrap();
        assert!(
            o.status.success(),
            "verify on store {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let peak_cli = sampler.peak_cli_kb.load(Ordering::Relaxed);
    let peak_node = sampler.peak_node_kb.load(Ordering::Relaxed);
    eprintln!(
        "load: {n} store(s), {WRITERS} writers x {puts} puts + {READERS} readers: {secs:.1} s, \
         {:.0} puts/s, {reads} whole reads, {} shared versions ({} puts found several heads), \
         peak RSS: cli {} MiB, node {} MiB",
        (WRITERS * puts) as f64 / secs,
        written.shared.len(),
        written.refused,
        peak_cli / 1024,
        peak_node / 1024
    );
    assert!(peak_cli < 512 * 1024, "a command used {peak_cli} KiB");
    assert!(peak_node < 1024 * 1024, "a node used {peak_node} KiB");
    (secs, peak_cli, peak_node)
}

/// True when the store holds exactly the written versions, with the implied heads.
fn converged(cmd: &dyn Fn() -> Command, written: &Written) -> bool {
    let json = |args: &[&str]| -> serde_json::Value {
        let o = cmd().args(args).arg("--json").output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    };
    for (key, hashes) in &written.own {
        let log = json(&["log", key, "-n", "100000"]);
        let Some(log) = log.as_array() else {
            return false;
        };
        // Newest first, one parent each: exactly the writes, in order, none twice.
        let got: Vec<&str> = log
            .iter()
            .rev()
            .map(|v| v["hash"].as_str().unwrap())
            .collect();
        if got != hashes.iter().map(String::as_str).collect::<Vec<_>>() {
            return false;
        }
        let heads = json(&["heads", key]);
        if heads.as_array().map(|h| h.len()) != Some(1)
            || heads[0]["hash"].as_str() != hashes.last().map(String::as_str)
        {
            return false;
        }
    }
    if written.shared.is_empty() {
        return true;
    }
    let log = json(&["log", "shared", "-n", "100000"]);
    let Some(log) = log.as_array() else {
        return false;
    };
    let versions: BTreeSet<String> = log
        .iter()
        .map(|v| v["hash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions.len(), log.len(), "a version listed twice");
    if versions != written.shared {
        return false;
    }
    let mut has_child: HashMap<String, bool> = HashMap::new();
    for v in log {
        for p in v["parents"].as_array().unwrap() {
            has_child.insert(p.as_str().unwrap().to_string(), true);
        }
    }
    let expected: BTreeSet<&String> = versions
        .iter()
        .filter(|h| !has_child.contains_key(*h))
        .collect();
    let heads = json(&["heads", "shared"]);
    let got: BTreeSet<String> = heads
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v["hash"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    got.iter().collect::<BTreeSet<_>>() == expected
}

fn puts(default: usize) -> usize {
    std::env::var("OURO_LOAD_PUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn eight_writers_and_four_readers_on_the_embedded_store() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = TestStore::init("4+2");
    run_load(1, &|_| t.cmd(&[]), puts(40));
}

#[test]
fn eight_writers_and_four_readers_on_a_three_node_cluster() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::new(3, "2+1", &[]);
    let stores: Vec<PathBuf> = c.nodes.iter().map(|n| n.store.clone()).collect();
    run_load(3, &|i| c.ouro(&stores[i]), puts(20));
}
