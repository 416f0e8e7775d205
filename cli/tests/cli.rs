//! End-to-end tests of the `ouro` binary: verbs, JSON, exit codes, binary pipes, bad input.

// The helpers are shared with the library's integration tests.

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

// Parts kept in files of their own, declared last so that they see the macros above.
#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "cli/refusals.rs"]
mod refusals;
