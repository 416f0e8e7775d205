//! What the binary refuses, and how it says so: writing into the store, identity files that
//! are not small private files, exit codes and messages, keys that would mislead, a damaged
//! store config, init over other files, and a read-only store.

use super::*;

#[test]
fn get_refuses_to_write_into_the_store() {
    let t = TestStore::init("2+1");
    t.put("k", b"content");
    let data = t.store().join("data.mdb");
    let before = std::fs::read(&data).unwrap();
    let link = t.dir.path().join("link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    for dest in [
        data.to_str().unwrap(),
        "store/lock.mdb",
        "store/new-file",
        "./store/../store/data.mdb",
        link.to_str().unwrap(),
    ] {
        let out = t.run(&["get", "k", "-o", dest]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "-o {dest}: {err}");
        assert!(err.contains("inside the store"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(std::fs::read(&data).unwrap(), before);
    assert!(!t.store().join("new-file").exists());
    assert_eq!(t.get("k"), b"content");
    t.ok(&["verify"]);
    // Beside the store is fine.
    t.ok(&["get", "k", "-o", "beside"]);
    assert_eq!(
        std::fs::read(t.dir.path().join("beside")).unwrap(),
        b"content"
    );
}

/// Waits for `child` at most `secs` seconds; kills it and fails when it hangs.
fn wait_at_most(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("ouro hung for {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn identity_files_that_are_not_small_private_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestStore::init("2+1");
    t.put("k", b"x");
    let fifo = t.dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let dir = t.dir.path().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let cases = [
        (dir.clone(), "is a directory"),
        ("/dev/zero".into(), "is a character device"),
        (fifo, "is a FIFO"),
    ];
    for (path, needle) in cases {
        for verb in [&["get", "k"][..], &["verify"], &["put", "k2", "-"]] {
            let child = t
                .cmd(verb)
                .env("OURO_IDENTITY", &path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let out = wait_at_most(child, 20);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(7), "{path:?} {verb:?}: {err}");
            assert!(err.contains(needle), "{path:?}: {err}");
            assert!(
                !err.contains("chmod"),
                "no chmod advice for {path:?}: {err}"
            );
        }
    }
    // 0602: others may only write, yet the file is refused, and said as it is.
    std::fs::set_permissions(t.identity(), std::fs::Permissions::from_mode(0o602)).unwrap();
    let out = t.run(&["get", "k"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains("accessible by group or others (mode 602") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(t.identity(), std::fs::Permissions::from_mode(0o600)).unwrap();
    // Too large to be a key file: refused without reading it all.
    let big = t.dir.path().join("big-identity");
    std::fs::write(&big, vec![b'#'; 65 * 1024]).unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = t
        .cmd(&["get", "k"])
        .env("OURO_IDENTITY", &big)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too large"));
}

/// Exit codes and messages of issue 19, item 14.
#[test]
fn exit_codes_and_messages_say_what_happened() {
    let t = TestStore::init("2+1");
    t.put("gone", b"x");
    t.ok(&["rm", "gone"]);
    // heads of a deleted key: 4, as get and log.
    for verb in ["heads", "log", "get"] {
        let out = t.run(&[verb, "gone"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{verb}: {err}");
        assert!(err.contains("deleted"), "{verb}: {err}");
    }
    assert_eq!(t.run(&["heads", "gone", "--json"]).status.code(), Some(4));
    // cluster status outside any cluster: 8.
    let out = t.run(&["cluster", "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("not part of a cluster"), "{err}");
    // In a cluster but with no node running: a plain error (1) that says to start one.
    let member = TestStore::init("2+1");
    member.ok(&["cluster", "init", "-q"]);
    let out = member.run(&["cluster", "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no node is running"), "{err}");
    // verify with an identity that is not a recipient: 7, not "ok".
    let other = TestStore::init("2+1");
    let out = t
        .cmd(&["verify"])
        .env("OURO_IDENTITY", other.identity())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("not a recipient"), "{err}");
    assert!(out.stdout.is_empty());
    // Without any identity verify still checks hashes and says so.
    let out = t
        .cmd(&["verify"])
        .env_remove("OURO_IDENTITY")
        .env("XDG_CONFIG_HOME", t.dir.path().join("no-config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no identity"));
    // --parent that is no hash: a usage error (2), not "no key" (3).
    t.put("k", b"v1");
    for bad in ["zz", "zzzz", "12"] {
        let out = t.run_stdin(&["put", "k", "--parent", bad], b"v2");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--parent {bad}: {err}");
        assert!(err.contains("not a version hash"), "{err}");
    }
    // Valid dates outside what 64-bit nanoseconds hold are "out of range", not "not a date".
    for far in ["k@2300-01-01", "k@1600-06-01", "k@9999-12-31T00:00:00Z"] {
        let out = t.run(&["get", far]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{far}: {err}");
        assert!(
            err.contains("out of range") && !err.contains("not an RFC"),
            "{err}"
        );
    }
    // A 10,000-character key is echoed clipped, once per mention at most.
    let long = "a".repeat(10_000);
    for args in [
        vec!["get", long.as_str()],
        vec!["put", long.as_str(), "-"],
        vec!["log", long.as_str()],
        vec!["heads", long.as_str()],
        vec!["rm", long.as_str()],
    ] {
        let out = t.run_stdin(&args, b"x");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", args[0]);
        assert!(
            err.len() < 600,
            "{}: {} bytes of message",
            args[0],
            err.len()
        );
        assert!(err.contains("(10000 bytes)"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn keys_that_would_be_unreachable_or_misleading_are_refused() {
    let t = TestStore::init("2+1");
    for key in ["x@~1", "mail@beef", "x@2026-01-01", "x@", "x@abc"] {
        let out = t.run_stdin(&["put", key, "-"], b"data");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains("would not name this key"), "{key}: {err}");
    }
    let tree = t.dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let out = t.run(&["put", "-r", "tree", "p@~1"]);
    assert_eq!(out.status.code(), Some(2));
    // `@` that is no selector stays allowed, and reads back.
    t.put("icon@2x.png", b"png");
    assert_eq!(t.get("icon@2x.png"), b"png");
    for key in [
        "evil\u{202E}gpj.exe",
        "a\u{2066}b",
        "zero\u{200B}width",
        "joiner\u{200D}",
        "\u{FEFF}bom",
        "word\u{2060}joiner",
    ] {
        let out = t.run_stdin(&["put", key, "-"], b"data");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key:?}: {err}");
        assert!(
            err.contains("bidirectional") || err.contains("zero-width"),
            "{err}"
        );
    }
    // NFC and NFD spellings are two keys, as documented.
    t.put("caf\u{e9}", b"nfc");
    t.put("cafe\u{301}", b"nfd");
    assert_eq!(t.get("caf\u{e9}"), b"nfc");
    assert_eq!(t.get("cafe\u{301}"), b"nfd");
    assert_eq!(t.json(&["ls", "caf"]).as_array().unwrap().len(), 2);
}

#[test]
fn a_damaged_store_config_is_refused_on_open() {
    for (k, m) in [(0u8, 2u8), (2, 127)] {
        let t = TestStore::init("2+1");
        t.put("k", b"x");
        {
            let cas = ouroboros_db::Cas::open(&t.store()).unwrap();
            let mut c = cas.config().clone();
            c.k = k;
            c.m = m;
            let lmdb = cas.replica().lmdb();
            let mut txn = lmdb.write().unwrap();
            lmdb.meta.put_config(&mut txn, &c).unwrap();
            lmdb.commit(txn).unwrap();
        }
        for verb in [&["ls"][..], &["get", "k"], &["stats"], &["verify"]] {
            let out = t.run(verb);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(6), "{k}+{m} {verb:?}: {err}");
            assert!(err.contains(&format!("erasure code {k}+{m}")), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}

#[test]
fn init_refuses_a_directory_holding_other_files() {
    let t = TestStore::empty();
    let dir = t.store();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("thesis.tex"), b"precious").unwrap();
    let out = t.run(&["init", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert!(!dir.join("data.mdb").exists());
    assert!(!t.identity().exists(), "nothing created");
    // An empty directory is fine; a second init says the store exists (8).
    std::fs::remove_file(dir.join("thesis.tex")).unwrap();
    t.ok(&["init", "-q"]);
    assert_eq!(t.run(&["init", "-q"]).status.code(), Some(8));
}

/// A store whose files this user cannot write: reading commands work (MDB_RDONLY), writing
/// ones say why, and no message repeats itself. As root, runs `ouro` as nobody (setpriv).
#[test]
fn a_read_only_store_can_still_be_read() {
    use std::os::unix::fs::PermissionsExt;
    let root = running_as_root();
    if root
        && std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("skipping: root without setpriv cannot drop write access");
        return;
    }
    let t = TestStore::init("2+1");
    t.put("k", b"content");
    let run = |args: &[&str]| {
        let mut c = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(common::ouro_bin());
            c
        } else {
            std::process::Command::new(common::ouro_bin())
        };
        c.args(args)
            .env("OURO_STORE", t.store())
            .env("OURO_IDENTITY", t.identity())
            .output()
            .unwrap()
    };
    let mode = |p: std::path::PathBuf, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    // Reachable and readable by the other user; data.mdb read-only for everyone.
    mode(t.dir.path().to_path_buf(), 0o755);
    mode(t.store(), 0o755);
    mode(t.store().join("data.mdb"), 0o444);
    mode(t.store().join("lock.mdb"), 0o666);
    if root {
        // The identity must stay private to whoever reads it.
        std::os::unix::fs::chown(t.identity(), Some(65534), Some(65534)).unwrap();
    }
    let ls = run(&["ls"]);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(ls.stdout, b"k\n");
    let get = run(&["get", "k"]);
    assert_eq!(
        get.stdout,
        b"content",
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    let rm = run(&["rm", "k"]);
    let err = String::from_utf8_lossy(&rm.stderr);
    assert_eq!(rm.status.code(), Some(1), "{err}");
    assert!(err.contains("read-only"), "{err}");
    // lock.mdb not writable either: LMDB cannot register a reader; one clear line.
    mode(t.store().join("lock.mdb"), 0o444);
    let ls = run(&["ls"]);
    let err = String::from_utf8_lossy(&ls.stderr);
    assert_eq!(ls.status.code(), Some(1), "{err}");
    assert!(err.contains("lock.mdb"), "{err}");
    let store = format!("opening store {}", t.store().display());
    assert_eq!(err.matches(&store).count(), 1, "said once: {err}");
    mode(t.store().join("lock.mdb"), 0o600);
    mode(t.store().join("data.mdb"), 0o600);
    if root {
        std::os::unix::fs::chown(t.identity(), Some(0), Some(0)).unwrap();
    }
    assert_eq!(t.get("k"), b"content");
}

/// True when the tests run as root (who may write any file whatever its mode).
fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
