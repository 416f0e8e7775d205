//! Several `ouro` processes on one store: concurrent writers, and writers killed with
//! SIGKILL in the middle of a put.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{random_bytes, run_with_input, TestStore};

#[test]
fn concurrent_writer_processes() {
    let t = TestStore::init("2+1");
    let writers = 4;
    let puts = 6;
    let children: Vec<_> = (0..writers)
        .map(|w| {
            let script = (0..puts)
                .map(|i| format!("h=$(printf 'w{w} p{i}' | {0} put shared) && echo \"shared $h\" && printf 'own {w} {i}' | {0} put own/{w} >/dev/null", common::ouro_bin().display()))
                .collect::<Vec<_>>()
                .join(" && ");
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("OURO_STORE", t.store())
                .env("OURO_IDENTITY", t.identity())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut conflicts = 0;
    // Every version of `shared` a writer was told it committed.
    let mut committed = std::collections::HashSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let hash = line.strip_prefix("shared ").unwrap().trim();
            assert!(committed.insert(hash.to_string()), "{hash} committed twice");
        }
        // A writer may find several heads left by racing writers: that is the documented
        // outcome (exit 5), never corruption.
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(5), "{err}");
            conflicts += 1;
        }
    }
    for w in 0..writers {
        if conflicts == 0 {
            assert_eq!(
                t.get(&format!("own/{w}")),
                format!("own {w} {}", puts - 1).as_bytes()
            );
        }
    }
    let log = t.json(&["log", "shared"]);
    let versions = log.as_array().unwrap();
    let heads = t.json(&["heads", "shared"]);
    assert!(!heads.as_array().unwrap().is_empty());
    let mut seen = std::collections::HashSet::new();
    for v in versions {
        assert!(
            seen.insert(v["hash"].as_str().unwrap().to_string()),
            "no duplicated version"
        );
    }
    // A writer whose first put met several heads (exit 5) committed nothing: the log holds
    // exactly what the writers were told they committed.
    let logged: std::collections::HashSet<String> = versions
        .iter()
        .map(|v| v["hash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, committed);
    assert!(!committed.is_empty());
    t.ok(&["verify"]);
}

/// Starts `ouro put big -` and feeds it `data`, killing it with SIGKILL after `after`.
fn killed_put(t: &TestStore, data: &[u8], after: Duration) {
    let (mut child, mut stdin) = t.spawn_put("big");
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || {
        // Feed half at once so chunks are sealed and batches committed, then the rest slowly.
        let half = data.len() / 2;
        let _ = stdin.write_all(&data[..half]);
        for part in data[half..].chunks(1 << 20) {
            if stdin.write_all(part).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    std::thread::sleep(after);
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    feeder.join().unwrap();
}

#[test]
fn sigkill_mid_put_leaves_a_consistent_store() {
    let t = TestStore::init("4+2");
    let v1 = random_bytes(5 << 20, 1);
    let h1 = t.put("big", &v1);
    t.put("other", b"untouched");
    let next = random_bytes(24 << 20, 2);
    let mut kills = 0;
    for (i, ms) in [150u64, 300, 450, 600, 900].iter().enumerate() {
        killed_put(&t, &next, Duration::from_millis(*ms));
        kills += 1;
        let verify = t.run(&["verify"]);
        assert!(
            verify.status.success(),
            "kill {i}: verify failed: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        assert_eq!(
            t.get(&format!("big@{}", &h1[..12])),
            v1,
            "earlier version intact after kill {i}"
        );
        assert_eq!(t.get("other"), b"untouched");
        // The key shows either the old head or the whole new version, never a partial one.
        let head = t.get("big");
        assert!(
            head == v1 || head == next,
            "kill {i}: head is neither version ({} bytes)",
            head.len()
        );
    }
    assert_eq!(kills, 5);
    // stats counts the chunks the killed puts left behind, as verify does, and says so.
    let unreferenced = t.json(&["verify"])["unreferenced_chunks"].clone();
    let stats = t.json(&["stats"]);
    assert_eq!(stats["unreferenced_chunks"], unreferenced);
    let human = String::from_utf8(t.ok(&["stats"])).unwrap();
    assert_eq!(
        human.contains("run `ouro gc`"),
        unreferenced.as_u64().unwrap() > 0,
        "{human}"
    );
    // Orphaned chunks of the killed puts are reclaimed by gc, and the store still verifies.
    t.ok(&["gc"]);
    assert_eq!(t.json(&["stats"])["unreferenced_chunks"], 0);
    assert!(!String::from_utf8(t.ok(&["stats"]))
        .unwrap()
        .contains("unreferenced"));
    t.ok(&["verify"]);
    assert_eq!(t.get(&format!("big@{}", &h1[..12])), v1);
    assert!(std::fs::read_dir(t.store()).unwrap().all(|e| {
        let n = e.unwrap().file_name();
        n == "data.mdb" || n == "lock.mdb" || n == "gc.lock" || n == "open.lock" || n == "reserve"
    }));
}

fn sigint(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

#[test]
fn ctrl_c_leaves_no_partial_output_and_a_consistent_store() {
    let t = TestStore::init("4+2");
    let data = random_bytes(48 << 20, 11);
    let h = t.put("big", &data);
    let out = t.dir.path().join("restored.bin");
    let mut interrupted = 0;
    for delay in [30u64, 80, 150] {
        let child = t
            .cmd(&["get", "big", "-o", out.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        sigint(child.id());
        let o = child.wait_with_output().unwrap();
        if o.status.code() == Some(130) {
            interrupted += 1;
            // Interrupted before the rename: no file; after it: the whole file. Never a part.
            if out.exists() {
                assert_eq!(
                    std::fs::read(&out).unwrap(),
                    data,
                    "never a partial output file"
                );
                std::fs::remove_file(&out).unwrap();
            }
            assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"));
        } else {
            assert!(o.status.success());
            assert_eq!(std::fs::read(&out).unwrap(), data);
            std::fs::remove_file(&out).unwrap();
        }
        let leftovers: Vec<_> = std::fs::read_dir(t.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".ouro-get-"))
            .collect();
        assert!(leftovers.is_empty(), "temp files removed");
    }
    assert!(interrupted > 0, "at least one get was interrupted mid-way");
    // Ctrl-C during a put: the version is absent and the store verifies.
    let mut child = t
        .cmd(&["put", "big", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(&data[..16 << 20]);
    sigint(child.id());
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    t.ok(&["verify"]);
    assert_eq!(t.json(&["heads", "big"])[0]["hash"], h.as_str());
}

/// A small tmpfs mounted for the test; unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on `dir`; None when this
    /// process may not mount (not root with CAP_SYS_ADMIN).
    fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
            .map(|_| SmallDisk(dir.to_path_buf()))
    }
}

/// A get whose output's disk fills up names the output, not the store, and leaves no
/// partial file there.
#[test]
fn a_full_output_disk_is_named_as_such() {
    let t = TestStore::init("2+1");
    let data = random_bytes(3 << 20, 7);
    t.put("big", &data);
    let mnt = t.dir.path().join("small");
    let Some(_disk) = SmallDisk::mount(&mnt, "1m") else {
        eprintln!("skipping: cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let dest = mnt.join("out");
    let out = t.run(&["get", "big", "-o", dest.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains(dest.to_str().unwrap()), "{err}");
    assert!(!err.contains("store"), "the store is not full: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "no partial file"
    );
    // The same through stdout redirected to a file there.
    let file = std::fs::File::create(mnt.join("redirected")).unwrap();
    let out = t.cmd(&["get", "big"]).stdout(file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(
        err.contains("writing to stdout") && !err.contains("store"),
        "{err}"
    );
    t.ok(&["verify"]);
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A store opened on a full disk before LMDB's lock file exists (a copied or restored
/// store, or one after `gc --compact`): LMDB sizes `lock.mdb` sparse and writes it through a
/// map, which killed the process with SIGBUS; now exit 9 with one line, and it opens once
/// there is room.
#[test]
fn a_store_without_its_lock_file_on_a_full_disk_is_no_signal() {
    let t = TestStore::init("2+1");
    t.put("k", b"kept");
    let mnt = t.dir.path().join("small");
    let Some(_disk) = SmallDisk::mount(&mnt, "1m") else {
        eprintln!("skipping: cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let store = mnt.join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::copy(t.store().join("data.mdb"), store.join("data.mdb")).unwrap();
    let mut fill = std::fs::File::create(mnt.join("fill")).unwrap();
    while fill.write_all(&[0; 4096]).is_ok() {}
    drop(fill);
    let out = t.cmd(&["ls"]).env("OURO_STORE", &store).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_file(mnt.join("fill")).unwrap();
    let out = t
        .cmd(&["get", "k"])
        .env("OURO_STORE", &store)
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"kept", "{out:?}");
}

#[test]
fn full_disk_gives_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipping: cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    }
    let _disk = SmallDisk(mnt.clone());
    let t = TestStore::empty();
    let run = |args: &[&str], input: &[u8]| {
        let mut c = t.cmd(args);
        c.env("OURO_STORE", mnt.join("store"));
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let o = child.wait_with_output().unwrap();
        w.join().unwrap();
        o
    };
    assert!(run(&["init", "--ec", "2+1", "-q"], b"").status.success());
    let small = random_bytes(2 << 20, 1);
    assert!(run(&["put", "small", "-"], &small).status.success());
    // Put until the disk is full: every put either commits whole or fails with "no space".
    let mut filled = Vec::new();
    let last = loop {
        let data = random_bytes(1 << 20, 100 + filled.len() as u64);
        let o = run(&["put", &format!("fill/{}", filled.len()), "-"], &data);
        if !o.status.success() {
            break o;
        }
        filled.push(data);
        assert!(filled.len() < 64, "a 12 MiB disk never filled");
    };
    assert_eq!(
        last.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert!(!filled.is_empty(), "some puts fit before the disk filled");
    let full = run(&["put", "huge", "-"], &random_bytes(24 << 20, 2));
    assert_eq!(
        full.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(err.contains("no space"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(run(&["verify"], b"").status.success());
    assert_eq!(run(&["get", "small"], b"").stdout, small);
    assert_eq!(run(&["get", "huge"], b"").status.code(), Some(3));
    for (i, data) in filled.iter().enumerate() {
        assert!(
            &run(&["get", &format!("fill/{i}")], b"").stdout == data,
            "fill/{i} reads back"
        );
    }
    for i in 0..filled.len() {
        assert!(run(&["rm", &format!("fill/{i}")], b"").status.success());
    }
    // Space comes back after rm + gc.
    assert!(run(&["rm", "small"], b"").status.success());
    let gc = run(&["gc"], b"");
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    // Nothing of the failed put stays: its slices committed ahead of their records either.
    let stats: serde_json::Value =
        serde_json::from_slice(&run(&["stats", "--json"], b"").stdout).unwrap();
    assert_eq!(stats["stored_with_parity_bytes"], 0, "{stats}");
    let again = random_bytes(2 << 20, 3);
    let put = run(&["put", "again", "-"], &again);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert_eq!(run(&["get", "again"], b"").stdout, again);
}

/// A put that fills the disk after committing some of its slices (ahead of their records)
/// takes them back itself: nothing is left for gc.
#[test]
fn a_put_failing_on_a_full_disk_takes_back_the_slices_it_committed() {
    let t = TestStore::empty();
    let mnt = t.dir.path().join("disk");
    let Some(_disk) = SmallDisk::mount(&mnt, "20m") else {
        eprintln!("skipping: cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let store = mnt.join("store");
    let cmd = |args: &[&str]| {
        let mut c = t.cmd(args);
        c.env("OURO_STORE", &store);
        c
    };
    assert!(cmd(&["init", "--ec", "2+1", "-q"])
        .status()
        .unwrap()
        .success());
    // 24 MiB with 2+1 parity is 36 MiB of slices: the first 8 MiB commit, then the disk fills.
    let out = run_with_input(cmd(&["put", "huge", "-"]), &random_bytes(24 << 20, 4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{err}");
    let stats = cmd(&["stats", "--json"]).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["stored_with_parity_bytes"], 0, "{stats}");
    assert_eq!(stats["unfinished_bytes"], 0, "nothing left for gc: {stats}");
    // What it took back is room for the next put at once, without a gc first (LMDB
    // reuses a freed page only after one more commit).
    let small = random_bytes(1 << 20, 5);
    let out = run_with_input(cmd(&["put", "small", "-", "-q"]), &small);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cmd(&["get", "small"]).output().unwrap().stdout, small);
    assert!(cmd(&["verify", "-q"]).status().unwrap().success());
}

#[test]
fn a_stale_handle_refuses_to_write_after_another_process_rotated_keys() {
    use ouroboros_db::{Cas, Error, Identity, PutOptions};
    let t = TestStore::init("2+1");
    let friend = TestStore::init("2+1");
    let text = std::fs::read_to_string(friend.identity()).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    t.ok(&["recipient", "add", &recipient]);
    let mut stale = Cas::open(&t.store()).unwrap();
    stale
        .unlock(&Identity::load(&t.identity()).unwrap())
        .unwrap();
    t.ok(&["recipient", "rm", &recipient]);
    let e = stale
        .put("k", &b"x"[..], &PutOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::Identity(_)), "{e}");
    drop(stale);
    assert!(t.run_stdin(&["put", "k"], b"fresh handle").status.success());
}

#[test]
fn a_stalled_put_does_not_block_other_writers() {
    let t = TestStore::init("2+1");
    // A put whose input stalls after its first new chunk reached the writer: the writer
    // must not keep LMDB's write lock while it waits for more.
    let data = random_bytes(4 << 20, 21);
    let mut slow = t
        .cmd(&["put", "slow", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = slow.stdin.take().unwrap();
    stdin.write_all(&data).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut other = t
        .cmd(&["put", "other", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let finished = loop {
        if other.try_wait().unwrap().is_some() {
            break true;
        }
        if std::time::Instant::now() > deadline {
            let _ = other.kill();
            let _ = other.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert!(
        finished,
        "another writer was blocked by a put waiting for its input"
    );
    assert!(slow.wait().unwrap().success());
    assert_eq!(t.get("slow"), data);
}

#[test]
fn sigkill_during_gc_leaves_a_consistent_store() {
    let t = TestStore::init("2+1");
    let keep = random_bytes(2 << 20, 31);
    t.put("keep", &keep);
    for round in 0..3u64 {
        for i in 0..20u64 {
            t.put(
                &format!("drop/{i}"),
                &random_bytes(200_000, 100 * round + i),
            );
        }
        for i in 0..20u64 {
            t.ok(&["rm", &format!("drop/{i}"), "-q"]);
        }
        let mut gc = t
            .cmd(&["gc", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + 25 * round));
        let _ = gc.kill();
        let _ = gc.wait();
        t.ok(&["verify"]);
        assert_eq!(t.get("keep"), keep);
    }
    t.ok(&["gc"]);
    t.ok(&["verify"]);
    assert_eq!(t.json(&["stats"])["keys"], 1);
}

/// When another program filled the disk, `rm` and `gc` still work (the store keeps a reserve
/// it gives back for them) and gc takes the reserve again once there is room.
#[test]
fn rm_and_gc_work_on_a_disk_another_program_filled() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    let Some(_disk) = SmallDisk::mount(&mnt, "12m") else {
        eprintln!("skipping: cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let t = TestStore::empty();
    let run = |args: &[&str]| {
        let mut c = t.cmd(args);
        c.env("OURO_STORE", mnt.join("store"));
        c.stdin(Stdio::piped());
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = random_bytes(3 << 20, 5);
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let o = child.wait_with_output().unwrap();
        w.join().unwrap();
        o
    };
    assert!(run(&["init", "--ec", "2+1", "-q"]).status.success());
    assert!(mnt.join("store/reserve").exists());
    assert!(run(&["put", "a", "-"]).status.success());
    // Another program takes every free block.
    let mut filler = std::fs::File::create(mnt.join("filler")).unwrap();
    let block = vec![7u8; 64 << 10];
    while filler.write_all(&block).is_ok() {}
    drop(filler);
    let rm = run(&["rm", "a"]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let gc = run(&["gc"]);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert_eq!(run(&["get", "a"]).status.code(), Some(4));
    std::fs::remove_file(mnt.join("filler")).unwrap();
    assert!(run(&["gc"]).status.success());
    assert!(
        mnt.join("store/reserve").exists(),
        "gc takes the reserve again"
    );
}
