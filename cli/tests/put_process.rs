//! A put as a process: how it starts (one malloc arena, restarting itself), what it leaves
//! when killed after committing slices ahead of their records or at any of its commits, and
//! what waits for it.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{random_bytes, TestStore};

/// The `MALLOC_*` variables in process `pid`'s environment now.
fn malloc_env(pid: u32) -> Vec<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    env.split(|b| *b == 0)
        .filter(|v| v.starts_with(b"MALLOC_"))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The `MALLOC_*` variables of process `pid`, once it has an arena setting (put restarts
/// itself with them: glibc reads them only at start).
fn malloc_vars(pid: u32) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let vars = malloc_env(pid);
        if vars.iter().any(|v| v.starts_with("MALLOC_ARENA_MAX=")) {
            return vars;
        }
        assert!(Instant::now() < deadline, "no arena setting");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until /proc/locks has a line naming process `pid` that holds `needle`: `FLOCK`
/// once it holds or waits for a file lock, `->` once it waits for one.
fn wait_for_lock_line(pid: u32, needle: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let me = format!(" {pid} ");
    while !std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(needle) && l.contains(&me))
    {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// put runs with one malloc arena, `put -r` also with fixed mmap and trim thresholds
/// (glibc reads them only at start, so put restarts itself with them), unless the user
/// chose an arena setting; get keeps glibc's default.
#[test]
fn put_runs_with_one_malloc_arena_unless_told_otherwise() {
    let t = TestStore::init("2+1");
    for (given, expected) in [
        (None, &["MALLOC_ARENA_MAX=1"][..]),
        (Some("3"), &["MALLOC_ARENA_MAX=3"][..]),
    ] {
        let mut cmd = t.cmd(&["put", "k", "-", "-q"]);
        cmd.env_remove("MALLOC_ARENA_MAX");
        if let Some(v) = given {
            cmd.env("MALLOC_ARENA_MAX", v);
        }
        let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
        assert_eq!(malloc_vars(child.id()), expected);
        child.stdin.take().unwrap().write_all(b"content").unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(t.ok(&["get", "k"]), b"content");
    }
    // put -r, held at its start by a gc's lock on the store, so that its environment can
    // be read.
    let tree = t.dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), b"file").unwrap();
    let gc = std::fs::File::open(t.store().join("gc.lock")).unwrap();
    let put_r = |var: Option<(&str, &str)>| {
        let mut cmd = t.cmd(&["put", "-r", tree.to_str().unwrap(), "p", "-q"]);
        cmd.env_remove("MALLOC_ARENA_MAX");
        if let Some((var, value)) = var {
            cmd.env(var, value);
        }
        cmd.spawn().unwrap()
    };
    gc.lock().unwrap();
    let mut child = put_r(None);
    assert_eq!(
        malloc_vars(child.id()),
        [
            "MALLOC_ARENA_MAX=1",
            "MALLOC_MMAP_THRESHOLD_=4259840",
            "MALLOC_TRIM_THRESHOLD_=8388608"
        ]
    );
    gc.unlock().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(t.ok(&["get", "p/f"]), b"file");
    // No restart once restarted (glibc strips MALLOC_* from a setuid or capability-holding
    // program at every start: judged by those alone it would restart forever), nor when the
    // user tuned malloc in any way: seen once put -r waits for the gc's lock, past the point
    // where it would have restarted.
    for (var, value) in [
        ("OURO_MALLOC_RESTARTED", "1"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2"),
    ] {
        gc.lock().unwrap();
        let mut child = put_r(Some((var, value)));
        wait_for_lock_line(child.id(), "->", "put -r never waited for the lock");
        let tuned = malloc_env(child.id());
        let own = format!("{var}={value}");
        let expected: Vec<String> = own
            .starts_with("MALLOC_")
            .then_some(own.clone())
            .into_iter()
            .collect();
        assert_eq!(tuned, expected, "with {own}");
        gc.unlock().unwrap();
        assert!(child.wait().unwrap().success());
    }
    // get is not restarted: once it writes, its environment is still the one it was given.
    let data = random_bytes(4 << 20, 3);
    t.put("big", &data);
    let mut get = t.cmd(&["get", "big"]);
    get.env_remove("MALLOC_ARENA_MAX").stdout(Stdio::piped());
    let mut child = get.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert!(
        !malloc_env(child.id())
            .iter()
            .any(|v| v.starts_with("MALLOC_ARENA_MAX=")),
        "get runs with glibc's default arenas"
    );
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut out, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(first[..] == data[..1] && rest[..] == data[1..]);
}

/// Run through the dynamic loader, /proc/self/exe is the loader: put must not restart that
/// (it would load "put" as the program), and runs untuned instead.
#[test]
fn put_run_through_the_dynamic_loader_works() {
    let loader = std::path::Path::new("/lib64/ld-linux-x86-64.so.2");
    if !loader.exists() {
        eprintln!("skipping: no dynamic loader at {}", loader.display());
        return;
    }
    let t = TestStore::init("2+1");
    let mut cmd = std::process::Command::new(loader);
    cmd.arg(common::ouro_bin())
        .args(["put", "k", "-", "-q"])
        .env("OURO_STORE", t.store())
        .env("OURO_IDENTITY", t.identity())
        .env_remove("MALLOC_ARENA_MAX");
    let out = common::run_with_input(cmd, b"through the loader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.ok(&["get", "k"]), b"through the loader");
}

/// A put killed once its first slices are committed (as unfinished bundles, before their
/// records) leaves them to the next gc: afterwards the store holds nothing and verifies.
#[test]
fn a_put_killed_after_committing_slices_leaves_them_to_gc() {
    let t = TestStore::init("4+2");
    let (mut child, mut input) = t.spawn_put("big");
    // 24 MiB and the input kept open: the put commits slices and waits for more.
    input.write_all(&random_bytes(24 << 20, 11)).unwrap();
    let stored = |t: &TestStore| {
        t.json(&["stats"])["stored_with_parity_bytes"]
            .as_u64()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(&t) == 0 {
        assert!(Instant::now() < deadline, "the put committed no slices");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(input);
    assert!(stored(&t) > 0);
    let gc = t.json(&["gc"]);
    assert!(gc["bytes_freed"].as_u64().unwrap() > 0, "{gc}");
    let stats = t.json(&["stats"]);
    assert_eq!(stats["stored_with_parity_bytes"], 0, "{stats}");
    assert_eq!(stats["chunks"], 0, "{stats}");
    assert_eq!(stats["versions"], 0, "{stats}");
    t.ok(&["verify", "-q"]);
}

/// `cluster init` waits for running puts (a cluster's puts never leave unfinished bundles
/// and its hand-over walk must not meet one); interrupted while it waits, it can be run
/// again; it frees what a killed put left.
#[test]
fn cluster_init_waits_for_puts_and_frees_what_a_killed_one_left() {
    let t = TestStore::init("2+1");
    // A killed put's unfinished slices.
    let (mut dead, mut input) = t.spawn_put("dead");
    input.write_all(&random_bytes(12 << 20, 5)).unwrap();
    let unfinished = |t: &TestStore| t.json(&["stats"])["unfinished_bytes"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.json(&["stats"])["stored_with_parity_bytes"].as_u64() == Some(0) {
        assert!(Instant::now() < deadline, "the put committed no slices");
        std::thread::sleep(Duration::from_millis(5));
    }
    dead.kill().unwrap();
    dead.wait().unwrap();
    drop(input);
    // A running put holds cluster init back; interrupted while it waits, init leaves the
    // store as it was, and a second one goes through once the put is done.
    let (mut running, mut input) = t.spawn_put("running");
    input.write_all(b"some").unwrap();
    // The put holds the gc lock (shared) once it reads its input.
    wait_for_lock_line(running.id(), "FLOCK", "the put never took its lock");
    let mut init = t
        .cmd(&["cluster", "init", "-q"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(init.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(
        line.starts_with("ouro: warning: waiting for running puts"),
        "{line}"
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&init),
        rustix::process::Signal::INT,
    )
    .unwrap();
    assert_eq!(init.wait().unwrap().code(), Some(130));
    assert_eq!(
        t.run(&["cluster", "status"]).status.code(),
        Some(8),
        "not a cluster yet"
    );
    drop(input);
    assert!(running.wait().unwrap().success());
    t.ok(&["cluster", "init", "-q"]);
    assert_eq!(unfinished(&t), 0);
    t.ok(&["verify", "-q"]);
    assert_eq!(t.ok(&["get", "running"]), b"some");
}

/// `put -r` killed at each of its disk syncs in turn (strace's fault injection sends SIGKILL
/// at a thread's Nth `fdatasync`, one per LMDB commit, and counts per thread: so each commit
/// of the put's writer is cut short once, slices ahead of their records, the recording of
/// the units, and the commit of their versions after it): every time the store verifies,
/// each snapshot it lists restores exactly, and gc frees all the put left.
#[test]
fn put_r_killed_at_each_of_its_syncs_leaves_only_what_gc_frees() {
    if !common::host::have("strace") {
        eprintln!("skipping: strace is not installed (scripts/test installs it)");
        return;
    }
    let traced = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status();
    if !traced.is_ok_and(|s| s.success()) {
        eprintln!("skipping: strace cannot trace here (ptrace not permitted)");
        return;
    }
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    let write_tree = |round: u64| {
        for d in 0..4u64 {
            let dir = src.join(format!("d{d}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..60u64 {
                let n = 200 + ((d * 60 + f) * 37 % 3000) as usize;
                std::fs::write(
                    dir.join(format!("f{f}")),
                    random_bytes(n, round * 1000 + d * 60 + f),
                )
                .unwrap();
            }
        }
        // Over 4 MiB of slices: the writer commits slices ahead of their records too.
        std::fs::write(src.join("big"), random_bytes(12 << 20, round)).unwrap();
    };
    let copy_of_src = |name: &str| {
        let to = t.dir.path().join(name);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&to)
            .status()
            .unwrap()
            .success());
        to
    };
    write_tree(1);
    let v1 = copy_of_src("v1");
    t.ok(&["put", "-r", "-q", src.to_str().unwrap(), "p"]);
    let restores = |at: &str, like: &std::path::Path| {
        let out = t.dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        t.ok(&["get", "-r", at, out.to_str().unwrap(), "-q"]);
        assert_eq!(common::rsync_diff(like, &out), Vec::<String>::new(), "{at}");
    };
    // Every cut is checked in every attempt; a cut between a commit of slices and the one
    // that records them with their versions is asked of the attempts together (which
    // commit a kill meets depends on where the writer's one-second rounds fall).
    let mut gap_seen = false;
    let mut cuts = Vec::new();
    let mut before = v1;
    for attempt in 1..=3u64 {
        if attempt > 1 {
            before = copy_of_src(&format!("v{attempt}"));
        }
        write_tree(attempt + 1);
        let base = t.json(&["snapshots", "p"]).as_array().unwrap().len();
        for n in 1.. {
            assert!(n < 400, "the put never completed");
            let inject = format!("inject=fdatasync:signal=KILL:when={n}");
            let mut put = Command::new("strace");
            put.args(["-f", "-o", "/dev/null", "-e", &inject])
                .arg(common::ouro_bin())
                .args(["put", "-r", "-q", src.to_str().unwrap(), "p"])
                .env("OURO_STORE", t.store())
                .env("OURO_IDENTITY", t.identity())
                // No restart through exec: the put runs as the process strace started.
                .env("MALLOC_ARENA_MAX", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let completed = put.status().unwrap().success();
            t.ok(&["verify", "-q"]);
            let snapshots = t.json(&["snapshots", "p"]).as_array().unwrap().len();
            let made = snapshots - base;
            match made {
                0 => restores("p", &before),
                1 => {
                    restores("p", &src);
                    restores("p@~1", &before);
                }
                other => panic!("{other} new snapshots after the put cut at sync {n}"),
            }
            let stats = t.json(&["stats"]);
            // Slices committed, their records and versions not.
            gap_seen |= stats["unfinished_bytes"].as_u64().unwrap() > 0 && made == 0;
            cuts.push(format!(
                "attempt {attempt} sync {n}: completed {completed}, {made} new snapshot(s), {} unreferenced chunk(s), {} unfinished byte(s)",
                stats["unreferenced_chunks"], stats["unfinished_bytes"]
            ));
            t.ok(&["gc", "-q"]);
            let stats = t.json(&["stats"]);
            assert_eq!(stats["unreferenced_chunks"], 0, "sync {n}: {stats}");
            assert_eq!(stats["unfinished_bytes"], 0, "sync {n}: {stats}");
            assert_eq!(t.json(&["gc"])["bytes_freed"], 0, "sync {n}");
            // Done once the snapshot is there (a kill after its commit counts as done).
            if completed || made == 1 {
                break;
            }
        }
        if gap_seen {
            break;
        }
    }
    assert!(
        gap_seen,
        "no cut fell between committing slices and recording them:\n{}",
        cuts.join("\n")
    );
}

/// Every regular file under `root` with its content, by relative path.
fn contents(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// put -r under a low limit on open descriptors: the walk keeps directories open for the
/// reading only within what the limit leaves (half of it beyond a reserve; none at 20),
/// and opens the other files by path. A large first file keeps the reading behind while
/// the walk lists hundreds of directories, so both ways are taken; every file is stored
/// and restored, with no error.
#[test]
fn put_r_under_a_low_descriptor_limit_stores_every_file() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("aaa-big"), random_bytes(24 << 20, 7)).unwrap();
    for d in 0..300 {
        let dir = src.join(format!("d{d:03}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("f"), format!("file {d}")).unwrap();
        std::fs::write(dir.join("sub/g"), format!("nested {d}")).unwrap();
    }
    for limit in [48, 20] {
        let prefix = format!("low{limit}");
        let out = Command::new("sh")
            .args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\"")])
            .arg(common::ouro_bin())
            .args(["put", "-r", src.to_str().unwrap(), &prefix, "--json"])
            .env("OURO_STORE", t.store())
            .env("OURO_IDENTITY", t.identity())
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "limit {limit}: {}{report}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains("\"errors\": []"), "limit {limit}: {report}");
        let back = t.dir.path().join(format!("back{limit}"));
        t.ok(&["get", "-r", &prefix, back.to_str().unwrap(), "-q"]);
        assert_eq!(contents(&back), contents(&src), "limit {limit}");
    }
}
