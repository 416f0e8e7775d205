//! Compaction (`gc --compact`) end to end: the file shrinks and every version stays; the
//! store must be open nowhere else; what a killed compaction leaves is cleaned up; and root
//! compacting a user's store leaves it that user's. Kills mid-compaction are in the crash
//! harness (`crash.rs`).

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use common::{random_bytes, TestStore};

/// `gc --compact` returns the data file's free pages to the filesystem, keeps every
/// version, and refuses (exit 10, one line, the store untouched) while another process has
/// the store open.
#[test]
fn gc_compact_shrinks_the_file_and_needs_the_store_alone() {
    let t = TestStore::init("2+1");
    let kept: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("small/{i}"), random_bytes(3000 + i, i as u64)))
        .chain([("big".to_string(), random_bytes(3 << 20, 99))])
        .collect();
    for (k, v) in &kept {
        t.put(k, v);
    }
    for i in 0..6 {
        t.put(&format!("gone/{i}"), &random_bytes(2 << 20, 100 + i));
    }
    for i in 0..6 {
        t.ok(&["rm", &format!("gone/{i}")]);
    }
    let data = t.store().join("data.mdb");
    let first = std::fs::metadata(&data).unwrap().len();
    // Another process with the store open: a get blocked writing into a pipe no one reads
    // (a put waiting for input would also hold the gc lock, which gc waits for).
    let mut holder = t
        .cmd(&["get", "big"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = t.store().join("open.lock");
    let held = || {
        std::fs::File::open(&lock).is_ok_and(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
        })
    };
    let waited = std::time::Instant::now();
    while !held() {
        assert!(
            waited.elapsed().as_secs() < 30,
            "the put never opened the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let busy = t.run(&["gc", "--compact"]);
    assert_eq!(busy.status.code(), Some(10), "{busy:?}");
    let err = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("another process has the store open"), "{err}");
    // gc itself ran (and may have grown the file a little); nothing was compacted.
    let before = std::fs::metadata(&data).unwrap().len();
    assert!(before >= first, "{first} -> {before}");
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut holder.stdout.take().unwrap(), &mut out).unwrap();
    assert!(holder.wait().unwrap().success());
    assert!(out == kept.last().unwrap().1, "the get read through");
    t.put("late", b"late");
    let stats = t.json(&["stats"]);
    assert!(
        stats["reusable_bytes"].as_u64().unwrap() > 4 << 20,
        "{stats}"
    );
    let gc = t.json(&["gc", "--compact"]);
    let after = gc["compacted"]["file_bytes_after"].as_u64().unwrap();
    assert_eq!(gc["compacted"]["file_bytes_before"].as_u64(), Some(before));
    assert_eq!(std::fs::metadata(&data).unwrap().len(), after);
    assert!(after < before / 2, "{before} -> {after}");
    assert!(!t.store().join("compact.partial").exists());
    assert!(t.json(&["stats"])["reusable_bytes"].as_u64().unwrap() < 64 << 10);
    assert_eq!(t.json(&["verify"])["ok"], true);
    for (k, v) in &kept {
        assert!(&t.get(k) == v, "{k} reads back after compaction");
    }
    // The lock files are the owner's alone (another user's exclusive flock would block).
    for f in ["open.lock", "gc.lock"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(t.store().join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // What a killed compaction left is removed by gc (which runs only while none does).
    std::fs::create_dir(t.store().join("compact.partial")).unwrap();
    std::fs::write(t.store().join("compact.partial/data.mdb"), b"half").unwrap();
    assert_eq!(t.json(&["stats"])["compaction_leftover_bytes"], 4);
    assert!(String::from_utf8(t.ok(&["stats"]))
        .unwrap()
        .contains("compact.partial"));
    t.ok(&["gc"]);
    assert_eq!(t.json(&["stats"])["compaction_leftover_bytes"], 0);
    assert!(!t.store().join("compact.partial").exists());
    // ... also when it is a file, or a link (whose target stays).
    std::fs::write(t.store().join("compact.partial"), b"junk").unwrap();
    t.ok(&["gc", "--compact", "-q"]);
    let elsewhere = t.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("keep"), b"keep").unwrap();
    std::os::unix::fs::symlink(&elsewhere, t.store().join("compact.partial")).unwrap();
    t.ok(&["gc", "-q"]);
    assert!(!t.store().join("compact.partial").exists());
    assert_eq!(std::fs::read(elsewhere.join("keep")).unwrap(), b"keep");
    // The compacted store takes new versions; with little free it is not copied again, with
    // more it is.
    t.put("late", b"later");
    assert_eq!(t.get("late@~1"), b"late");
    let little = t.json(&["gc", "--compact"]);
    assert!(little["compacted"].is_null(), "{little}");
    let said = String::from_utf8(t.ok(&["gc", "--compact"])).unwrap();
    assert!(said.contains("not compacted"), "{said}");
    assert!(
        t.json(&["gc", "--compact=0"])["compacted"].is_object(),
        "0%: always"
    );
    assert_eq!(t.run(&["gc", "--compact=101"]).status.code(), Some(2));
    t.put("gone/again", &random_bytes(4 << 20, 77));
    t.ok(&["rm", "gone/again"]);
    // A data file that is a link elsewhere is not compacted (the link would become a file).
    let moved = t.dir.path().join("data.mdb");
    std::fs::rename(&data, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &data).unwrap();
    let linked = t.run(&["gc", "--compact"]);
    assert_eq!(linked.status.code(), Some(2), "{linked:?}");
    assert!(String::from_utf8_lossy(&linked.stderr).contains("symbolic link"));
    std::fs::remove_file(&data).unwrap();
    std::fs::rename(&moved, &data).unwrap();
    assert!(t.json(&["gc", "--compact"])["compacted"].is_object());
    assert_eq!(t.get("late"), b"later");
}

/// Root compacting (or first opening) another user's store leaves every file of it that
/// user's: the owner goes on reading, writing and compacting it.
#[test]
fn root_compacting_a_users_store_leaves_it_theirs() {
    use std::os::unix::fs::MetadataExt;
    if !common::host::is_root() || !common::host::have("setpriv") {
        eprintln!("skipped: needs root and setpriv, to act as user nobody");
        return;
    }
    let t = TestStore::empty();
    let nobody = 65534;
    let home = t.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(t.store()).unwrap();
    for d in [&home, &t.store()] {
        std::os::unix::fs::chown(d, Some(nobody), Some(nobody)).unwrap();
    }
    std::fs::set_permissions(
        t.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let as_nobody = |args: &[&str], input: &[u8]| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::ouro_bin())
            .args(args)
            .env("OURO_STORE", t.store())
            .env("OURO_IDENTITY", home.join("id.txt"))
            .env_remove("RUST_LOG");
        let out = common::run_with_input(c, input);
        assert!(out.status.success(), "{args:?}: {out:?}");
        out.stdout
    };
    as_nobody(&["init", "-q"], b"");
    as_nobody(&["put", "a", "-"], b"theirs");
    as_nobody(&["put", "gone", "-"], &random_bytes(1 << 20, 5));
    as_nobody(&["rm", "gone"], b"");
    // Lock files root creates in their store are theirs too.
    for f in ["open.lock", "gc.lock"] {
        std::fs::remove_file(t.store().join(f)).unwrap();
    }
    let root = |args: &[&str]| {
        t.cmd(args)
            .env("OURO_IDENTITY", "/nonexistent")
            .output()
            .unwrap()
    };
    let gc = root(&["gc", "--compact", "--json"]);
    assert!(gc.status.success(), "{gc:?}");
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert!(gc["compacted"].is_object(), "{gc}");
    assert!(root(&["stats"]).status.success());
    for f in ["data.mdb", "lock.mdb", "open.lock", "gc.lock"] {
        let m = std::fs::metadata(t.store().join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (nobody, nobody), "{f}");
    }
    assert_eq!(as_nobody(&["get", "a"], b""), b"theirs");
    as_nobody(&["put", "b", "-"], b"more");
    as_nobody(&["gc", "--compact", "-q"], b"");
    assert_eq!(as_nobody(&["get", "b"], b""), b"more");
}
