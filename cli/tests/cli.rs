//! End-to-end tests of the `ouro` binary: verbs, JSON, exit codes, binary pipes, bad input.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use common::{random_bytes, TestStore};

#[test]
fn binary_data_round_trips_through_pipes() {
    let t = TestStore::init("4+2");
    let data: Vec<u8> = (0..=255u8)
        .cycle()
        .take(3 << 20)
        .chain(random_bytes(1 << 20, 5))
        .collect();
    let h = t.put("bin/data", &data);
    assert_eq!(h.len(), 64);
    assert_eq!(t.get("bin/data"), data);
    let out = t.dir.path().join("restored");
    t.ok(&["get", "bin/data", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let empty = t.put("empty", b"");
    assert_eq!(t.get("empty"), b"");
    assert_eq!(t.json(&["log", "empty"])[0]["hash"], empty.as_str());
}

#[test]
fn get_o_writes_into_fifos_and_through_symlinks_without_replacing_them() {
    use std::os::unix::fs::FileTypeExt;
    let t = TestStore::init("2+1");
    let data = random_bytes(300_000, 9);
    t.put("k", &data);
    // A fifo stands in for /dev/null or /dev/stdout: it must still be a fifo afterwards.
    let fifo = t.dir.path().join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    t.ok(&["get", "k", "-o", fifo.to_str().unwrap()]);
    // Checked before joining: a replaced fifo would leave the reader blocked for good.
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(reader.join().unwrap(), data);
    // Through a symlink the target gets the content and the link stays a link.
    let target = t.dir.path().join("target");
    std::fs::write(&target, b"old").unwrap();
    let link = t.dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    t.ok(&["get", "k", "-o", link.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), data);
    // A directory is refused as a usage error.
    let out = t.run(&["get", "k", "-o", t.dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
}

#[test]
fn json_schemas() {
    let t = TestStore::init("2+1");
    let put = t.run_stdin(&["put", "k", "--json"], b"abc");
    let v: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    let hash = v["hash"].as_str().unwrap().to_string();
    t.put("k", b"abcd");
    let log = t.json(&["log", "k"]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2);
    for field in ["hash", "parents", "created", "size"] {
        assert!(log[0].get(field).is_some(), "log entries have {field}");
    }
    assert_eq!(log[0]["parents"][0], hash.as_str());
    assert_eq!(log[0]["size"], 4);
    let heads = t.json(&["heads", "k"]);
    assert_eq!(heads.as_array().unwrap().len(), 1);
    let ls = t.json(&["ls"]);
    assert_eq!(ls[0]["key"], "k");
    let stats = t.json(&["stats"]);
    assert!(stats["logical_bytes"].as_u64().unwrap() >= 7);
    assert!(stats["stored_bytes"].as_u64().is_some());
}

#[test]
fn rm_gc_and_verify() {
    let t = TestStore::init("2+1");
    t.put("a", &random_bytes(2 << 20, 1));
    t.put("b", b"keep");
    t.ok(&["rm", "a"]);
    let out = t.run(&["get", "a"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted"));
    let gc = t.json(&["gc"]);
    assert!(gc["bytes_freed"].as_u64().unwrap() > 1 << 20);
    let v = t.json(&["verify"]);
    assert_eq!(v["ok"], true);
    assert_eq!(t.get("b"), b"keep");
}

/// Bad inputs: each gets one line on stderr naming the problem, its exit code, and leaves
/// the store unchanged.
#[test]
fn bad_inputs_table() {
    let t = TestStore::init("2+1");
    std::fs::write(t.dir.path().join("doc.txt"), b"a file, not a directory").unwrap();
    let h = t.put("doc", b"v1");
    t.put("doc", b"v2");
    let h1 = &h[..8];
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["get".into(), "nope".into()], 3, "no key"),
        (
            vec!["get".into(), "/abs".into()],
            2,
            "must not start with '/'",
        ),
        (vec!["get".into(), "a//b".into()], 2, "empty segment"),
        (vec!["get".into(), "a/../b".into()], 2, "'..'"),
        (vec!["get".into(), ".ouro/x".into()], 2, "reserved"),
        (vec!["get".into(), "doc@abc".into()], 2, "too short"),
        (vec!["get".into(), "doc@ffffffff".into()], 3, "no version"),
        (
            vec!["get".into(), "doc@~9".into()],
            3,
            "versions in its history",
        ),
        (vec!["get".into(), "doc@~x".into()], 2, "whole number"),
        (vec!["get".into(), "doc@2026-13-99".into()], 2, "RFC 3339"),
        (
            vec!["get".into(), "doc@1999-01-01".into()],
            3,
            "no version at",
        ),
        (
            vec![
                "get".into(),
                format!("doc@{h1}"),
                "-o".into(),
                "/nonexistent-dir/x".into(),
            ],
            1,
            "/nonexistent-dir",
        ),
        (
            vec!["put".into(), "k".into(), "/no/such/file".into()],
            1,
            "/no/such/file",
        ),
        (
            vec!["put".into(), "bad//key".into(), "-".into()],
            2,
            "empty segment",
        ),
        (
            vec!["put".into(), "doc".into(), "--parent".into(), "zzzz".into()],
            2,
            "not a version hash",
        ),
        (
            vec![
                "put".into(),
                "doc".into(),
                "--parent".into(),
                "ffffffff".into(),
            ],
            3,
            "ffffffff",
        ),
        (vec!["log".into(), "nope".into()], 3, "no key"),
        (vec!["heads".into(), "nope".into()], 3, "no key"),
        (vec!["rm".into(), "nope".into()], 3, "no key"),
        (
            vec!["merge".into(), "doc".into(), "--pick".into(), h1.into()],
            2,
            "nothing to merge",
        ),
        (vec!["init".into()], 8, "already exists"),
        (vec!["bogus".into()], 2, "unrecognized subcommand"),
        (vec!["get".into()], 2, "required"),
        (vec!["put".into(), ".".into()], 2, "'.'"),
        (
            vec!["put".into(), "-r".into(), "/no/such/dir".into(), "p".into()],
            1,
            "/no/such/dir",
        ),
        (
            vec!["put".into(), "-r".into(), "doc.txt".into(), "p".into()],
            2,
            "not a directory",
        ),
        (vec!["put".into(), "-r".into(), ".".into()], 2, "PREFIX"),
        (
            vec![
                "put".into(),
                "-r".into(),
                ".".into(),
                "p".into(),
                "--exclude".into(),
                "a[".into(),
            ],
            2,
            "--exclude",
        ),
        (
            vec!["put".into(), "-r".into(), ".".into(), "/abs".into()],
            2,
            "must not start with '/'",
        ),
        (
            vec!["put".into(), "k".into(), "--exclude".into(), "x".into()],
            2,
            "--recursive",
        ),
        (vec!["get".into(), "-r".into(), "doc".into()], 2, "DIR"),
        (
            vec![
                "get".into(),
                "-r".into(),
                "doc".into(),
                "out".into(),
                "--at".into(),
                "yesterday".into(),
            ],
            2,
            "RFC 3339",
        ),
        (
            vec!["recipient".into(), "add".into(), "age1bogus".into()],
            2,
            "recipient",
        ),
        (
            vec!["recipient".into(), "rm".into(), "age1bogus".into()],
            2,
            "recipient",
        ),
        (vec!["init".into(), "--ec".into(), "0+2".into()], 2, "K+M"),
        (
            vec!["init".into(), "--zstd-level".into(), "99".into()],
            2,
            "99",
        ),
        (
            vec!["init".into(), "--chunk-size".into(), "huge".into()],
            2,
            "chunk size",
        ),
        (
            vec!["init".into(), "--chunk-size".into(), "100".into()],
            2,
            "not valid",
        ),
        (
            vec!["log".into(), "doc".into(), "-n".into(), "many".into()],
            2,
            "many",
        ),
        (vec!["merge".into(), "doc".into()], 2, "--pick"),
    ];
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let before = t.json(&["stats"]);
    for (args, code, needle) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = t.run_stdin(&a, b"input");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "ouro {a:?}: {err}");
        assert!(
            err.contains(needle),
            "ouro {a:?}: stderr {err:?} lacks {needle:?}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
    let after = t.json(&["stats"]);
    assert_eq!(before["logical_bytes"], after["logical_bytes"]);
    assert_eq!(before["versions"], after["versions"]);
    assert_eq!(t.get("doc"), b"v2");
}

#[test]
fn store_and_identity_errors() {
    let t = TestStore::empty();
    let out = t.run(&["ls"]);
    assert_eq!(out.status.code(), Some(8));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ouro init"));
    let t = TestStore::init("2+1");
    std::fs::rename(t.identity(), t.dir.path().join("moved")).unwrap();
    let out = t.run_stdin(&["put", "k"], b"x");
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no identity file"));
    std::fs::rename(t.dir.path().join("moved"), t.identity()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.identity(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = t.run(&["get", "k"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    let other = TestStore::init("2+1");
    std::fs::set_permissions(t.identity(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = t
        .cmd(&["put", "k", "-"])
        .env("OURO_IDENTITY", other.identity())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a recipient"));
}

#[test]
fn every_verb_and_option() {
    let t = TestStore::init("3+2");
    let v1 = t.put("k", b"one");
    let v2 = t.put("k", b"two");
    assert_eq!(t.get("k@~1"), b"one");
    assert_eq!(t.get(&format!("k@{}", &v2[..6])), b"two");
    let oneline = String::from_utf8(t.ok(&["log", "k", "--oneline", "-n", "1"])).unwrap();
    assert_eq!(oneline.lines().count(), 1);
    assert!(oneline.starts_with(&v2[..8]));
    let full = String::from_utf8(t.ok(&["log", "k", "--graph"])).unwrap();
    assert!(full.contains(&v1) && full.contains("* "), "{full}");
    // A branch from v1, then a merge with new content from a file.
    t.run_stdin(&["put", "k", "--parent", &v1[..8]], b"three");
    assert_eq!(t.json(&["heads", "k"]).as_array().unwrap().len(), 2);
    std::fs::write(t.dir.path().join("merged"), b"merged").unwrap();
    let m = t.json(&["merge", "k", "--file", "merged"]);
    assert_eq!(t.get("k"), b"merged");
    assert_eq!(
        t.json(&["log", "k", "-n", "1"])[0]["parents"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(t.json(&["heads", "k"])[0]["hash"], m["hash"]);
    let long = String::from_utf8(t.ok(&["ls", "-l"])).unwrap();
    assert!(long.contains("k") && long.contains("B "), "{long}");
    // rm of one version, verify --repair, stats, gc.
    t.ok(&["rm", &format!("k@{}", &v2[..8])]);
    assert_eq!(t.json(&["verify", "--repair"])["ok"], true);
    assert!(t.json(&["gc"])["versions_released"].as_u64().unwrap() >= 1);
    assert_eq!(t.json(&["stats"])["ec"], "3+2");
    // Recipients: add a second identity, read with it, remove it again.
    let other = TestStore::init("2+1");
    let theirs = String::from_utf8(std::fs::read(other.identity()).unwrap()).unwrap();
    let recipient = theirs
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    t.ok(&["recipient", "add", &recipient]);
    assert_eq!(t.json(&["recipient", "ls"]).as_array().unwrap().len(), 2);
    let read = t
        .cmd(&["get", "k"])
        .env("OURO_IDENTITY", other.identity())
        .output()
        .unwrap();
    assert_eq!(read.stdout, b"merged");
    t.ok(&["recipient", "rm", &recipient]);
    assert_eq!(t.json(&["recipient", "ls"]).as_array().unwrap().len(), 1);
    let denied = t
        .cmd(&["get", "k"])
        .env("OURO_IDENTITY", other.identity())
        .output()
        .unwrap();
    assert_eq!(denied.status.code(), Some(7));
    // -v logs through tracing on stderr; -q silences informational output.
    let verbose = t.run_stdin(&["put", "k", "-v"], b"four");
    assert!(
        String::from_utf8_lossy(&verbose.stderr).contains("stored"),
        "{}",
        String::from_utf8_lossy(&verbose.stderr)
    );
    let quiet = t.run(&["rm", "k", "-q"]);
    assert!(quiet.status.success() && quiet.stderr.is_empty());
}

#[test]
fn a_closed_pipe_stops_get_quietly() {
    let t = TestStore::init("2+1");
    t.put("big", &random_bytes(24 << 20, 4));
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' get big | head -c 100 | wc -c",
            common::ouro_bin().display()
        ))
        .env("OURO_STORE", t.store())
        .env("OURO_IDENTITY", t.identity())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.trim_start().starts_with("100"), "{stdout}");
    assert!(
        out.stderr.is_empty(),
        "no error message for a closed pipe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` with stdout a socket whose other end is already closed (so every write fails
/// with EPIPE, deterministically: no race with a reader that has yet to exit) and `input`
/// on stdin.
fn run_with_closed_stdout(cmd: std::process::Command, input: &[u8]) -> std::process::Output {
    let (out, reader) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let stdout = std::process::Stdio::from(std::os::fd::OwnedFd::from(out));
    common::run_with_input_to(cmd, input, stdout)
}

/// Every verb whose reader of stdout went away stops quietly: 141 for those that only read,
/// and for those that changed the store the exit code of the change (0), never a panic.
#[test]
fn every_verb_stops_quietly_when_stdout_is_closed() {
    let t = TestStore::init("2+1");
    let v1 = t.put("k", b"one");
    t.put("k", b"two");
    t.run_stdin(&["put", "k", "--parent", &v1[..8]], b"branch");
    t.put("other", b"x");
    let tree = t.dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a"), b"a").unwrap();
    t.ok(&["put", "-r", "tree", "p"]);
    std::fs::write(tree.join("b"), b"b").unwrap();
    t.ok(&["put", "-r", "tree", "p"]);
    let restore = t.dir.path().join("restore");
    let restore = restore.to_str().unwrap();
    let reading: &[&[&str]] = &[
        &["ls"],
        &["ls", "-l"],
        &["log", "k"],
        &["log", "k", "--oneline"],
        &["log", "k", "--graph"],
        &["heads", "k"],
        &["stats"],
        &["verify"],
        &["recipient", "ls"],
        &["snapshots"],
        &["diff", "p"],
        &["get", "other"],
        &["get", "-r", "p", restore, "--dry-run"],
        &["forget", "p", "--keep-last", "1", "--dry-run"],
    ];
    for args in reading {
        for json in [false, true] {
            let mut a = args.to_vec();
            if json {
                a.push("--json");
            }
            let out = run_with_closed_stdout(t.cmd(&a), b"");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(141), "ouro {a:?}: {err}");
            assert!(
                !err.contains("panicked") && !err.contains("ouro: error"),
                "ouro {a:?}: {err}"
            );
        }
    }
    let other = TestStore::init("2+1");
    let theirs = std::fs::read_to_string(other.identity()).unwrap();
    let recipient = theirs
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let new_store = t.dir.path().join("new-store");
    let changing: &[&[&str]] = &[
        &["put", "k2", "-"],
        &["put", "k3", "-", "--json"],
        &["put", "-r", "tree", "p"],
        &["put", "-r", "tree", "p", "--json"],
        &["merge", "k", "--file", "-"],
        &["rm", "other", "--json"],
        &["recipient", "add", &recipient],
        &["recipient", "rm", &recipient, "--json"],
        &["forget", "p", "--keep-last", "1"],
        &["verify", "--repair"],
        &["gc"],
        &["gc", "--json"],
        &["init", "--store", new_store.to_str().unwrap()],
    ];
    for a in changing {
        let out = run_with_closed_stdout(t.cmd(a), b"content");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "ouro {a:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("ouro: error"),
            "ouro {a:?}: {err}"
        );
    }
    // The changes were made although nobody read their output.
    assert_eq!(t.get("k2"), b"content");
    assert_eq!(t.get("k"), b"content");
    assert_eq!(t.run(&["get", "other"]).status.code(), Some(4));
    assert_eq!(t.json(&["snapshots", "p"]).as_array().unwrap().len(), 1);
    assert!(new_store.join("data.mdb").is_file());
}

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
