//! put -r and get -r end to end, on the real binary: a snapshot per run with every kind of
//! entry and its metadata, restored exactly (checked with `rsync -n -aHAX --numeric-ids -c
//! --itemize-changes --delete` against a `cp -a` copy taken at backup time), --delete,
//! --dry-run, --include/--exclude, refusals, bad input (files changing, unreadable,
//! vanishing, long names, sockets) and the cost of an unchanged re-run.
//!
//! Parts that need root (owners, devices), extended attributes, ACLs, rsync, strace or
//! setpriv are skipped, each with a message saying why, where those are missing.

// The helpers are shared with the library's integration tests.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::host::{have, is_root};
use common::{rsync_diff, TestStore};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Helpers

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// A path below `root` from raw bytes (names that are not UTF-8).
fn raw(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs a program, asserting success; returns its output.
fn run_ok(prog: &str, args: &[&OsStr]) -> Output {
    let out = Command::new(prog).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `sh -c script`, asserting success.
fn sh(script: &str) {
    run_ok("sh", &[OsStr::new("-c"), OsStr::new(script)]);
}

/// True when `sh -c script` succeeds (quietly).
fn sh_works(script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cp -a FROM TO`: the reference copy a restore is compared with.
fn cp_a(from: &Path, to: &Path) {
    run_ok("cp", &[OsStr::new("-a"), from.as_os_str(), to.as_os_str()]);
}

fn assert_same_tree(copy: &Path, out: &Path, what: &str) {
    let diff = rsync_diff(copy, out);
    assert!(
        diff.is_empty(),
        "{what}: {} differs from its cp -a copy {}:\n{}",
        out.display(),
        copy.display(),
        diff.join("\n")
    );
}

/// Skips a test (returns from it) when rsync is missing: every comparison needs it.
macro_rules! need_rsync {
    () => {
        if !have("rsync") {
            eprintln!("skipping: rsync is not installed (apt-get install rsync); restores are compared with it");
            return;
        }
    };
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Nanoseconds since the epoch as RFC 3339 UTC with nanoseconds (for `--at`).
fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Waits until everything written so far is older than put -r's "racily clean" window
/// (a file whose times are within 2 s of the parent snapshot's start is read again), so
/// that a following run may skip unchanged files. Not a wait for something to happen.
fn let_times_settle() {
    std::thread::sleep(Duration::from_millis(2_200));
}

/// `du -sb DIR` in bytes.
fn du_sb(dir: &Path) -> u64 {
    let out = run_ok("du", &[OsStr::new("-sb"), dir.as_os_str()]);
    stdout(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn snapshots(t: &TestStore, prefix: &str) -> Vec<Value> {
    t.json(&["snapshots", prefix]).as_array().unwrap().clone()
}

/// strace works here (installed, and ptrace allowed).
fn strace_works() -> bool {
    have("strace") && sh_works("strace -qq -f -o /dev/null true")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------
// --delete, --dry-run, --include/--exclude, refusals

/// Two runs over a small tree with type changes both ways; returns (store, copy1, copy2).
fn two_runs(t: &TestStore) -> (PathBuf, PathBuf) {
    let base = t.dir.path();
    let src = base.join("src");
    write(&src, "a.txt", b"one");
    write(&src, "keep/k.txt", b"kept");
    write(&src, "keep/deeper/k2.txt", b"kept too");
    write(&src, "d/in-d", b"d is a directory in run 1");
    write(&src, "f", b"f is a file in run 1");
    symlink("a.txt", src.join("l")).unwrap();
    write(&src, "x", b"x is a file in run 1");
    write(&src, "sub/s.txt", b"s");
    write(&src, "sub/junk.tmp", b"tmp");
    t.ok(&["put", "-r", s(&src), "home", "-q"]);
    let copy1 = base.join("copy1");
    cp_a(&src, &copy1);

    write(&src, "a.txt", b"one, then two");
    std::fs::remove_dir_all(src.join("d")).unwrap();
    write(&src, "d", b"d is a file in run 2");
    std::fs::remove_file(src.join("f")).unwrap();
    symlink("a.txt", src.join("f")).unwrap();
    std::fs::remove_file(src.join("l")).unwrap();
    write(&src, "l", b"l is a file in run 2");
    std::fs::remove_file(src.join("x")).unwrap();
    write(&src, "x/in-x", b"x is a directory in run 2");
    write(&src, "new/n.txt", b"new");
    std::fs::remove_file(src.join("sub/s.txt")).unwrap();
    chmod(&src.join("keep/k.txt"), 0o640);
    t.ok(&["put", "-r", s(&src), "home", "-q"]);
    let copy2 = base.join("copy2");
    cp_a(&src, &copy2);
    (copy1, copy2)
}

#[test]
fn delete_makes_a_directory_identical_and_dry_run_changes_nothing() {
    need_rsync!();
    let t = TestStore::init("2+1");
    let (copy1, copy2) = two_runs(&t);
    let out = t.dir.path().join("out");
    t.ok(&["get", "-r", "home", s(&out), "-q"]);
    assert_same_tree(&copy2, &out, "run 2");

    // Dry run of going back to run 1: lists the changes, touches nothing.
    let frozen = t.dir.path().join("frozen");
    cp_a(&out, &frozen);
    let dry = t.run(&["get", "-r", "home@~1", s(&out), "--delete", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let listed = stdout(&dry);
    for line in [
        "replace  a.txt",
        "replace  d",
        "replace  f",
        "replace  l",
        "replace  x",
        "create   sub/s.txt",
        "metadata keep/k.txt",
        "delete   new",
    ] {
        assert!(
            listed.lines().any(|l| l == line),
            "{line:?} not in:\n{listed}"
        );
    }
    assert_same_tree(&frozen, &out, "after --dry-run");
    let dry_json = t.json(&["get", "-r", "home@~1", s(&out), "--delete", "--dry-run"]);
    assert_eq!(dry_json["dry_run"], true);
    assert_eq!(dry_json["bytes"], 0);
    assert!(
        dry_json["changes"].as_array().unwrap().len() >= 8,
        "{dry_json}"
    );
    assert_same_tree(&frozen, &out, "after --dry-run --json");

    // Without --delete, what run 1 lacks stays.
    let kept = t.dir.path().join("kept");
    cp_a(&out, &kept);
    t.ok(&["get", "-r", "home@~1", s(&kept), "-q"]);
    assert!(kept.join("new/n.txt").exists(), "only --delete removes");

    // --delete: run 1 over run 2's restore is run 1 exactly, and back again.
    t.ok(&["get", "-r", "home@~1", s(&out), "--delete", "-q"]);
    assert_same_tree(&copy1, &out, "run 1 over run 2 with --delete");
    let again = t.json(&["get", "-r", "home@~1", s(&out), "--delete", "--dry-run"]);
    assert_eq!(again["changes"].as_array().unwrap().len(), 0, "{again}");
    let back = t.run(&["get", "-r", "home", s(&out), "--delete"]);
    assert!(back.status.success(), "run 2 over run 1: {}", stderr(&back));
    assert_same_tree(&copy2, &out, "run 2 over run 1 with --delete");
}

#[test]
fn a_tree_of_more_files_than_one_write_batch_restores_exactly() {
    // The restore writes files in batches of 4,096: hard links whose first name is in one
    // batch and later name in another, and --delete over a directory holding extra files,
    // must come out as they were.
    need_rsync!();
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    for i in 0..4_200 {
        write(&src, &format!("a/{i:05}"), format!("file {i}").as_bytes());
    }
    std::fs::hard_link(src.join("a/00001"), src.join("z-early")).unwrap();
    std::fs::hard_link(src.join("a/04150"), src.join("z-late")).unwrap();
    let copy = t.dir.path().join("copy");
    cp_a(&src, &copy);
    t.ok(&["put", "-r", s(&src), "big", "-q"]);
    let out = t.dir.path().join("out");
    write(&out, "a/extra", b"not in the snapshot");
    write(&out, "a/00007", b"other content");
    t.ok(&["get", "-r", "big", s(&out), "--delete", "-q"]);
    assert_same_tree(&copy, &out, "restore of 4,202 names");
    let ino = |p: &str| std::fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("z-early"), ino("a/00001"));
    assert_eq!(ino("z-late"), ino("a/04150"));
}

#[test]
fn include_and_exclude_restore_part_of_a_snapshot() {
    need_rsync!();
    let t = TestStore::init("2+1");
    let (copy1, _) = two_runs(&t);
    // A path pattern: that subtree only (with the directories leading to it).
    let part = t.dir.path().join("part");
    t.ok(&[
        "get",
        "-r",
        "home@~1",
        s(&part),
        "--include",
        "keep/**",
        "-q",
    ]);
    let mut found: Vec<String> = walk_rel(&part);
    found.sort();
    assert_eq!(
        found,
        ["keep", "keep/deeper", "keep/deeper/k2.txt", "keep/k.txt"]
    );
    let want = t.dir.path().join("want");
    cp_a(&copy1.join("keep"), &want);
    assert_same_tree(&want, &part.join("keep"), "--include keep/**");

    // A name pattern at any depth, minus an exclude.
    let txt = t.dir.path().join("txt");
    t.ok(&[
        "get",
        "-r",
        "home@~1",
        s(&txt),
        "--include",
        "*.txt",
        "--exclude",
        "k2.txt",
        "-q",
    ]);
    let files: Vec<String> = walk_rel(&txt)
        .into_iter()
        .filter(|r| !txt.join(r).is_dir())
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(files, ["a.txt", "keep/k.txt", "sub/s.txt"]);

    // Exclude alone: everything but the match.
    let most = t.dir.path().join("most");
    t.ok(&[
        "get",
        "-r",
        "home@~1",
        s(&most),
        "--exclude",
        "*.tmp",
        "--exclude",
        "keep",
        "-q",
    ]);
    assert!(!most.join("sub/junk.tmp").exists() && !most.join("keep").exists());
    assert!(most.join("sub/s.txt").exists() && most.join("d/in-d").exists());
}

/// Relative paths of everything below `root`.
fn walk_rel(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn restoring_into_the_store_is_refused() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "a", b"a");
    t.ok(&["put", "-r", s(&src), "home", "-q"]);
    let listing = |p: &Path| {
        let mut v = walk_rel(p);
        v.sort();
        v
    };
    let before = listing(&t.store());
    for target in [t.store(), t.store().join("inside")] {
        let out = t.run(&["get", "-r", "home", s(&target)]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            target.display(),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("inside the store"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(
        listing(&t.store()),
        before,
        "nothing written into the store"
    );
    // Backing up the store (or a directory in it) is refused too.
    let out = t.run(&["put", "-r", s(&t.store()), "st"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------
// Keys, excludes, the unchanged-file check, cron

#[test]
fn keys_under_the_prefix_get_versions_and_excludes_are_left_out() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "a.txt", b"alpha");
    write(&src, "sub/b.bin", &common::random_bytes(300_000, 7));
    write(&src, "sub/deep/c.txt", b"");
    write(&src, "skip.tmp", b"temporary");
    write(&src, "cache/x", b"cached");
    symlink("a.txt", src.join("link")).unwrap();
    let backup = || {
        t.json(&[
            "put",
            "-r",
            s(&src),
            "backup",
            "--exclude",
            "*.tmp",
            "--exclude",
            "cache",
        ])
    };
    let first = backup();
    assert_eq!(first["files"], 3, "{first}");
    assert_eq!(first["stored"], 3);
    assert_eq!(
        first["skipped"].as_array().unwrap().len(),
        0,
        "a symlink is kept"
    );
    let keys: Vec<String> = t
        .json(&["ls", "backup"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        ["backup/a.txt", "backup/sub/b.bin", "backup/sub/deep/c.txt"]
    );
    assert_eq!(t.get("backup/sub/b.bin"), common::random_bytes(300_000, 7));

    // A file whose ctime moved but whose content and metadata did not is read again (its
    // times are not trusted) and gets no new version.
    let_times_settle();
    let a = src.join("a.txt");
    let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
    std::fs::write(&a, b"alpha").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let same = backup();
    assert_eq!(
        (same["stored"].as_u64(), same["unchanged"].as_u64()),
        (Some(0), Some(3)),
        "{same}"
    );
    assert_eq!(
        t.json(&["log", "backup/a.txt"]).as_array().unwrap().len(),
        1
    );

    // A changed file gets a new version; the older snapshot still has the old content.
    write(&src, "a.txt", b"alpha v2");
    let third = backup();
    assert_eq!(third["changed"], 1, "{third}");
    assert_eq!(
        t.json(&["log", "backup/a.txt"]).as_array().unwrap().len(),
        2
    );
    let out = t.dir.path().join("out");
    t.ok(&["get", "-r", "backup", s(&out), "-q"]);
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"alpha v2");
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("a.txt")
    );
    assert!(!out.join("skip.tmp").exists() && !out.join("cache").exists());
    let old = t.dir.path().join("old");
    t.ok(&["get", "-r", "backup@~2", s(&old), "-q"]);
    assert_eq!(std::fs::read(old.join("a.txt")).unwrap(), b"alpha");
}

// Parts kept in files of their own, declared last so that they see the macros above.
#[path = "tree/bad_input.rs"]
mod bad_input;
#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "tree/every_kind.rs"]
mod every_kind;
