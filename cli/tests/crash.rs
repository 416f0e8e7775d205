//! Crash consistency: `ouro` is killed with SIGKILL at random instants during put, put -r,
//! merge, rm, gc, gc --compact and verify --repair. After every kill `ouro verify` passes, every version
//! committed before the kill reads back byte-exact, and the version being written is
//! wholly there or absent.
//!
//! `OURO_CRASH_ITERATIONS` sets the number of kills (20 by default, as CI runs it;
//! `scripts/crash` runs 200) and `OURO_CRASH_SEED` replays a run (the seed is printed).

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{random_bytes, TestStore};
use ouroboros_db::{Cas, Error, Hash, Identity};

/// Small xorshift generator: the whole run follows from one printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a version holds: a base pattern with an optional patched region, so that later
/// versions of a key share most of their chunks with earlier ones (refcounts matter).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Spec {
    seed: u64,
    len: usize,
    patch: Option<(u64, usize)>,
}

impl Spec {
    fn bytes(&self) -> Vec<u8> {
        let mut b = random_bytes(self.len, self.seed);
        if let Some((seed, at)) = self.patch {
            let p = random_bytes(64 << 10, seed);
            let at = at.min(self.len);
            let end = (at + p.len()).min(self.len);
            b[at..end].copy_from_slice(&p[..end - at]);
        }
        b
    }

    fn edited(&self, rng: &mut Rng) -> Spec {
        Spec {
            patch: Some((rng.next(), rng.below(self.len as u64) as usize)),
            ..*self
        }
    }
}

/// The versions the harness knows to be committed, key by key.
#[derive(Default)]
struct Model {
    live: BTreeMap<String, Vec<(Hash, Spec)>>,
    /// Versions removed one by one (`rm KEY@VERSION`): they must never read back.
    removed: HashSet<Hash>,
    /// Versions of deleted keys: a key put again after `rm` starts a new history.
    gone: HashSet<Hash>,
    next_key: u64,
}

impl Model {
    /// Changes whenever a version is added or a key or version removed.
    fn footprint(&self) -> (usize, usize, usize) {
        let live = self.live.values().map(Vec::len).sum();
        (live, self.removed.len(), self.gone.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Put,
    PutTree,
    Merge,
    Rm,
    RmVersion,
    Gc,
    Compact,
    Repair,
}

const OPS: [Op; 8] = [
    Op::Put,
    Op::PutTree,
    Op::Merge,
    Op::Rm,
    Op::RmVersion,
    Op::Gc,
    Op::Compact,
    Op::Repair,
];

struct Harness {
    t: TestStore,
    rng: Rng,
    model: Model,
    tree: BTreeMap<String, Spec>,
    identity: Identity,
    /// The operation under way, and how long each kind took when it finished first (ms):
    /// kill delays are drawn below that, so most kills land mid-way.
    op: Op,
    took: BTreeMap<Op, u64>,
}

impl Harness {
    fn open(&self) -> Cas {
        let mut cas = Cas::open(&self.t.store()).unwrap();
        cas.unlock(&self.identity).unwrap();
        cas
    }

    /// Runs `args` and kills it with SIGKILL after a random delay below the time this kind
    /// of operation last took. Returns whether the kill landed while it was still running.
    fn killed(&mut self, args: &[&str], input: Option<Vec<u8>>) -> bool {
        let mut cmd = self.t.cmd(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().unwrap();
        let feeder = input.map(|data| {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            })
        });
        let took = self.took.get(&self.op).copied().unwrap_or(40);
        let delay = Duration::from_millis(self.rng.below(took + took / 5 + 1));
        let started = Instant::now();
        let mid_way = kill_after(&mut child, delay);
        if mid_way {
            // Grow the estimate so that some kills also land late in the operation.
            self.took.insert(self.op, took + took / 4 + 1);
        } else {
            let ms = started.elapsed().as_millis() as u64;
            self.took.insert(self.op, (took + ms).div_ceil(2).max(ms));
        }
        if let Some(f) = feeder {
            f.join().unwrap();
        }
        mid_way
    }

    fn fresh_key(&mut self) -> String {
        self.model.next_key += 1;
        format!("k/{}", self.model.next_key)
    }

    /// A put of a new key or a new version of a live single-head key.
    fn put(&mut self) -> bool {
        let existing: Vec<String> = self
            .model
            .live
            .keys()
            .filter(|k| k.starts_with("k/"))
            .cloned()
            .collect();
        let (key, spec) = if !existing.is_empty() && self.rng.below(2) == 0 {
            let key = existing[self.rng.below(existing.len() as u64) as usize].clone();
            let last = self.model.live[&key].last().unwrap().1;
            (key, last.edited(&mut self.rng))
        } else {
            let len = match self.rng.below(4) {
                0 => self.rng.below(64 << 10) as usize + 1,
                1 | 2 => self.rng.below(2 << 20) as usize + 1,
                _ => self.rng.below(8 << 20) as usize + 1,
            };
            let seed = self.rng.next();
            (
                self.fresh_key(),
                Spec {
                    seed,
                    len,
                    patch: None,
                },
            )
        };
        let mid = self.killed(&["put", &key, "-"], Some(spec.bytes()));
        self.settle_put(&key, &spec);
        mid
    }

    /// After a killed put of `spec` under `key`: no new version, or one that is whole.
    fn settle_put(&mut self, key: &str, spec: &Spec) {
        let cas = self.open();
        let new = self.new_versions(&cas, key);
        assert!(new.len() <= 1, "{key}: {} new versions", new.len());
        if let Some(h) = new.first() {
            let got = read(&cas, &format!("{key}@{}", h.to_hex()));
            assert!(got == spec.bytes(), "{key}: the new version is not whole");
            let heads = cas.heads(key).unwrap();
            assert_eq!(heads.len(), 1, "{key}: one head after a put");
            assert_eq!(heads[0].hash, *h, "{key}: the new version is the head");
            self.model
                .live
                .entry(key.to_string())
                .or_default()
                .push((*h, *spec));
        }
    }

    /// Versions of `key` in the store that the model has never seen.
    fn new_versions(&self, cas: &Cas, key: &str) -> Vec<Hash> {
        let known: HashSet<Hash> = self
            .model
            .live
            .get(key)
            .map(|v| v.iter().map(|(h, _)| *h).collect())
            .unwrap_or_default();
        cas.versions_of(key)
            .unwrap()
            .into_iter()
            .map(|(h, _)| h)
            .filter(|h| {
                !known.contains(h)
                    && !self.model.removed.contains(h)
                    && !self.model.gone.contains(h)
            })
            .collect()
    }

    /// `put -r` of a small tree where some files changed since the last run.
    fn put_tree(&mut self) -> bool {
        let dir = self.t.dir.path().join("tree");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let files = 12;
        for i in 0..files {
            let name = if i % 3 == 0 {
                format!("sub/f{i}")
            } else {
                format!("f{i}")
            };
            let changed = match self.tree.get(&name) {
                None => true,
                Some(_) => self.rng.below(3) == 0,
            };
            if changed {
                let spec = match self.tree.get(&name) {
                    Some(s) => s.edited(&mut self.rng),
                    // Every other file small: small files are sealed together in packs.
                    None => Spec {
                        seed: self.rng.next(),
                        len: self.rng.below(if i % 2 == 0 { 1 << 20 } else { 48 << 10 }) as usize
                            + 1,
                        patch: None,
                    },
                };
                std::fs::write(dir.join(&name), spec.bytes()).unwrap();
                self.tree.insert(name, spec);
            }
        }
        let mid = self.killed(&["put", "-r", dir.to_str().unwrap(), "tree"], None);
        let specs: Vec<(String, Spec)> = self
            .tree
            .iter()
            .map(|(n, s)| (format!("tree/{n}"), *s))
            .collect();
        let cas = self.open();
        for (key, spec) in specs {
            let new = self.new_versions(&cas, &key);
            assert!(new.len() <= 1, "{key}: {} new versions", new.len());
            if let Some(h) = new.first() {
                let got = read(&cas, &format!("{key}@{}", h.to_hex()));
                assert!(got == spec.bytes(), "{key}: the new version is not whole");
                self.model.live.entry(key).or_default().push((*h, spec));
            }
        }
        mid
    }

    /// Gives key `m` two heads (unkilled), then kills `merge m --pick` one of them.
    fn merge(&mut self) -> bool {
        let key = "m";
        let cas = self.open();
        let heads = cas.heads(key).map(|h| h.len()).unwrap_or(0);
        drop(cas);
        if heads < 2 {
            let base = Spec {
                seed: self.rng.next(),
                len: self.rng.below(256 << 10) as usize + 1,
                patch: None,
            };
            let parent = self.t.put(key, &base.bytes());
            self.learn(key, &parent, base);
            for _ in 0..2 {
                let s = base.edited(&mut self.rng);
                let out = self
                    .t
                    .run_stdin(&["put", key, "-", "--parent", &parent], &s.bytes());
                assert!(out.status.success(), "branching put");
                let h = String::from_utf8(out.stdout).unwrap().trim().to_string();
                self.learn(key, &h, s);
            }
        }
        let cas = self.open();
        let before: Vec<Hash> = cas.heads(key).unwrap().iter().map(|v| v.hash).collect();
        assert!(before.len() >= 2, "{key} has several heads to merge");
        drop(cas);
        let pick = before[self.rng.below(before.len() as u64) as usize];
        let spec = self.model.live[key]
            .iter()
            .find(|(h, _)| *h == pick)
            .unwrap()
            .1;
        let mid = self.killed(&["merge", key, "--pick", &pick.to_hex()], None);
        let cas = self.open();
        let new = self.new_versions(&cas, key);
        let heads: Vec<Hash> = cas.heads(key).unwrap().iter().map(|v| v.hash).collect();
        match new.as_slice() {
            [] => assert_eq!(sorted(heads), sorted(before), "heads unchanged"),
            [h] => {
                assert_eq!(heads, vec![*h], "the merge is the one head");
                assert!(read(&cas, &format!("{key}@{}", h.to_hex())) == spec.bytes());
                self.model.live.get_mut(key).unwrap().push((*h, spec));
            }
            _ => panic!("{key}: {} merge versions", new.len()),
        }
        mid
    }

    fn learn(&mut self, key: &str, hash: &str, spec: Spec) {
        let h = Hash::from_hex(hash).unwrap();
        self.model
            .live
            .entry(key.to_string())
            .or_default()
            .push((h, spec));
    }

    /// `rm KEY` of a random live key: afterwards it is wholly deleted or wholly there.
    fn rm(&mut self) -> bool {
        let keys: Vec<String> = self.model.live.keys().cloned().collect();
        if keys.is_empty() {
            return self.put();
        }
        let key = keys[self.rng.below(keys.len() as u64) as usize].clone();
        let mid = self.killed(&["rm", &key], None);
        let cas = self.open();
        let deleted = match cas.heads(&key) {
            Ok(heads) => heads.is_empty(),
            Err(Error::KeyDeleted { .. }) | Err(Error::NotFound(_)) => true,
            Err(e) => panic!("{key} after a killed rm: {e}"),
        };
        if deleted {
            for (h, _) in self.model.live.remove(&key).unwrap() {
                self.model.gone.insert(h);
                assert!(
                    cas.get(&format!("{key}@{}", h.to_hex()), &mut Vec::new())
                        .is_err(),
                    "{key}: a version of a deleted key still reads"
                );
            }
            if key.starts_with("tree/") {
                // The next `put -r` stores the file again as a new key.
                self.tree.remove(key.trim_start_matches("tree/"));
            }
        }
        mid
    }

    /// `rm KEY@VERSION` of an older version of a key with several versions.
    fn rm_version(&mut self) -> bool {
        let candidates: Vec<(String, Hash)> = self
            .model
            .live
            .iter()
            .filter(|(k, v)| k.starts_with("k/") && v.len() >= 2)
            .map(|(k, v)| (k.clone(), v[0].0))
            .collect();
        if candidates.is_empty() {
            return self.put();
        }
        let (key, h) = candidates[self.rng.below(candidates.len() as u64) as usize].clone();
        let r = format!("{key}@{}", h.to_hex());
        let mid = self.killed(&["rm", &r], None);
        let cas = self.open();
        if cas.get(&r, &mut Vec::new()).is_err() {
            let v = self.model.live.get_mut(&key).unwrap();
            v.retain(|(x, _)| *x != h);
            self.model.removed.insert(h);
        }
        mid
    }

    /// Damages up to m slices of a few chunks, then kills `verify --repair`.
    fn repair(&mut self) -> bool {
        let cas = self.open();
        let chunks: Vec<Hash> = {
            let txn = cas.replica().lmdb().read().unwrap();
            cas.replica()
                .lmdb()
                .chunks
                .page(&txn, None, 100_000)
                .unwrap()
                .into_iter()
                // Pack members have no slices of their own: their pack's are damaged.
                .filter(|(_, r)| r.as_ref().is_ok_and(|r| !r.slices.is_empty()))
                .map(|(id, _)| id)
                .collect()
        };
        if chunks.is_empty() {
            drop(cas);
            return self.put();
        }
        {
            let mut txn = cas.replica().lmdb().write().unwrap();
            let mut picked = HashSet::new();
            for _ in 0..3 {
                let id = chunks[self.rng.below(chunks.len() as u64) as usize];
                if !picked.insert(id) {
                    continue; // never more than m damaged slices in one chunk
                }
                // m = 2 for this store: one slice flipped or truncated, one missing.
                let a = self.rng.below(6) as u8;
                let b = (a + 1 + self.rng.below(5) as u8) % 6;
                let rot: &[u8] = if self.rng.below(2) == 0 { b"rot" } else { &[] };
                let slices = cas.replica().lmdb();
                slices
                    .slices
                    .damage_for_tests(&mut txn, &id, a, Some(rot))
                    .unwrap();
                slices
                    .slices
                    .damage_for_tests(&mut txn, &id, b, None)
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        drop(cas);
        let mid = self.killed(&["verify", "--repair"], None);
        // Whatever the kill left, reads are right (checked by the caller) and a finished
        // repair heals it.
        let v = self.t.run(&["verify"]);
        if !v.status.success() {
            assert_eq!(v.status.code(), Some(6), "damage, not an error");
            self.t.ok(&["verify", "--repair"]);
        }
        mid
    }

    /// The invariant after every kill.
    fn check(&self, round: usize, op: Op) {
        let v = self.t.run(&["verify"]);
        assert!(
            v.status.success(),
            "round {round} ({op:?}): verify failed: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        let cas = self.open();
        for (key, versions) in &self.model.live {
            for (h, spec) in versions {
                let r = format!("{key}@{}", h.to_hex());
                assert!(
                    read(&cas, &r) == spec.bytes(),
                    "round {round} ({op:?}): {r} does not read back byte-exact"
                );
            }
        }
        for h in &self.model.removed {
            let info = cas.version(h);
            assert!(
                info.map(|i| i.removed).unwrap_or(true),
                "round {round}: a removed version came back"
            );
        }
    }
}

fn read(cas: &Cas, r: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = cas.get(r, &mut out) {
        panic!("{r}: {e}");
    }
    out
}

fn sorted(mut v: Vec<Hash>) -> Vec<Hash> {
    v.sort();
    v
}

/// Sleeps `delay`, then SIGKILLs `child`; true when it was still running.
fn kill_after(child: &mut Child, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn sigkill_at_random_instants_loses_nothing_committed() {
    let iterations = env_u64("OURO_CRASH_ITERATIONS").unwrap_or(20) as usize;
    let seed = env_u64("OURO_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("crash harness: {iterations} kills, OURO_CRASH_SEED={seed}");
    let t = TestStore::init("4+2");
    let identity = Identity::load(Path::new(&t.identity())).unwrap();
    let mut h = Harness {
        t,
        rng: Rng(seed),
        model: Model::default(),
        tree: BTreeMap::new(),
        identity,
        op: Op::Put,
        took: BTreeMap::new(),
    };
    let started = Instant::now();
    // Per operation: runs, kills that landed mid-way, and runs that changed what is
    // committed (a version added or a key or version removed) despite the kill.
    let mut tally: BTreeMap<Op, (u32, u32, u32)> = BTreeMap::new();
    for round in 0..iterations {
        // Every operation in turn for the first rounds, then at random.
        let op = if let Some(op) = OPS.get(round) {
            *op
        } else {
            OPS[h.rng.below(OPS.len() as u64) as usize]
        };
        h.op = op;
        let before = h.model.footprint();
        let mid = match op {
            Op::Put => h.put(),
            Op::PutTree => h.put_tree(),
            Op::Merge => h.merge(),
            Op::Rm => h.rm(),
            Op::RmVersion => h.rm_version(),
            Op::Gc => h.killed(&["gc"], None),
            Op::Compact => h.killed(&["gc", "--compact=0"], None),
            Op::Repair => h.repair(),
        };
        let e = tally.entry(op).or_default();
        e.0 += 1;
        e.1 += mid as u32;
        e.2 += (h.model.footprint() != before) as u32;
        h.check(round, op);
        // Keep the store small enough that every check reads all of it quickly.
        let versions: usize = h.model.live.values().map(Vec::len).sum();
        if versions > 60 {
            let old: Vec<String> = h.model.live.keys().take(10).cloned().collect();
            for k in old {
                h.t.ok(&["rm", &k, "-q"]);
                for (v, _) in h.model.live.remove(&k).unwrap() {
                    h.model.gone.insert(v);
                }
                h.tree.remove(k.trim_start_matches("tree/"));
            }
        }
    }
    h.t.ok(&["gc"]);
    h.check(iterations, Op::Gc);
    let mid: u32 = tally.values().map(|v| v.1).sum();
    eprintln!(
        "crash harness: {iterations} kills ({mid} while running) in {:.1} s; \
         op: (runs, killed mid-way, committed anyway): {:?}",
        started.elapsed().as_secs_f64(),
        tally
    );
    assert!(mid > 0, "no kill landed while a command was running");
}
