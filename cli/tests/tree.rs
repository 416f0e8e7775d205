//! put -r and get -r end to end, on the real binary: a snapshot per run with every kind of
//! entry and its metadata, restored exactly (checked with `rsync -n -aHAX --numeric-ids -c
//! --itemize-changes --delete` against a `cp -a` copy taken at backup time), --delete,
//! --dry-run, --include/--exclude, refusals, bad input (files changing, unreadable,
//! vanishing, long names, sockets) and the cost of an unchanged re-run.
//!
//! Parts that need root (owners, devices), extended attributes, ACLs, rsync, strace or
//! setpriv are skipped, each with a message saying why, where those are missing.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

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

// ---------------------------------------------------------------------------------------
// Every kind of entry, two runs, restores compared with cp -a copies

/// What the big test could include, for its messages.
struct Features {
    root: bool,
    xattrs: bool,
    acl: bool,
}

fn probe_features(dir: &Path) -> Features {
    let probe = dir.join("probe");
    std::fs::write(&probe, b"").unwrap();
    let p = s(&probe);
    let f = Features {
        root: is_root(),
        xattrs: have("setfattr") && sh_works(&format!("setfattr -n user.probe -v 1 '{p}'")),
        acl: have("setfacl") && sh_works(&format!("setfacl -m u:1234:r '{p}'")),
    };
    std::fs::remove_file(&probe).unwrap();
    if !f.root {
        eprintln!("not root: leaving out the directory owned by 1234:5678 and the char device (chown and mknod need root)");
    }
    if !f.xattrs {
        eprintln!("leaving out extended attributes: setfattr is missing or the file system refuses user.* attributes");
    }
    if !f.acl {
        eprintln!("leaving out the POSIX ACL: setfacl is missing or the file system has no ACLs");
    }
    f
}

/// Sets a file's (or directory's) mtime with `touch -h -d` (nanoseconds, dates before 1970).
fn touch_d(path: &Path, date: &str) {
    run_ok(
        "touch",
        &[
            OsStr::new("-h"),
            OsStr::new("-d"),
            OsStr::new(date),
            path.as_os_str(),
        ],
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const SPARSE_SIZE: u64 = 16 << 20;

/// The first tree: one of every kind of entry.
fn build_every_kind(src: &Path, f: &Features) {
    std::fs::create_dir(src).unwrap();
    write(src, "a.txt", b"alpha");
    write(src, "script.sh", b"#!/bin/sh\necho hi\n");
    chmod(&src.join("script.sh"), 0o755);
    write(src, "suid", b"setuid and setgid");
    chmod(&src.join("suid"), 0o6755);
    write(src, "sticky/s", b"in a sticky dir");
    chmod(&src.join("sticky"), 0o1777);
    write(src, "private/p", b"only for the owner");
    chmod(&src.join("private"), 0o700);
    std::fs::create_dir(src.join("empty")).unwrap();
    write(src, "sub/b.bin", &common::random_bytes(300_000, 7));
    write(src, "sub/deep/c.txt", b"");
    symlink("a.txt", src.join("link")).unwrap();
    symlink("does/not/exist", src.join("dangling")).unwrap();
    symlink(OsStr::from_bytes(b"target-\xff\xfe"), src.join("badlink")).unwrap();
    sh(&format!("mkfifo '{}'", s(&src.join("fifo"))));
    write(src, "h1", b"two names, one file");
    std::fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
    std::fs::write(raw(src, b"name-\xff\xff"), b"a name that is not UTF-8").unwrap();
    std::fs::create_dir(raw(src, b"dir-\xff")).unwrap();
    std::fs::write(raw(src, b"dir-\xff/inside"), b"x").unwrap();
    // Sparse: data at the start, the middle and the end, holes between.
    {
        let file = std::fs::File::create(src.join("sparse")).unwrap();
        use std::os::unix::fs::FileExt;
        file.write_all_at(b"begin", 0).unwrap();
        file.write_all_at(b"middle", SPARSE_SIZE / 2).unwrap();
        file.write_all_at(b"end", SPARSE_SIZE - 3).unwrap();
    }
    write(src, "nano", b"times with nanoseconds");
    touch_d(&src.join("nano"), "2021-03-04 05:06:07.123456789 UTC");
    write(src, "old", b"before the epoch");
    touch_d(&src.join("old"), "1969-12-31 23:59:58.5 UTC");
    write(src, "epoch", b"at the epoch");
    touch_d(&src.join("epoch"), "1970-01-01 00:00:00 UTC");
    if f.root {
        write(src, "owned/f", b"someone else's");
        sh(&format!("chown -R 1234:5678 '{}'", s(&src.join("owned"))));
        sh(&format!("mknod '{}' c 1 3", s(&src.join("null"))));
    }
    if f.xattrs {
        write(src, "xattr.txt", b"with attributes");
        let xattr = src.join("xattr.txt");
        let p = s(&xattr);
        sh(&format!(
            "setfattr -n user.color -v blue '{p}' && setfattr -n user.bin -v 0x00ff10 '{p}'"
        ));
        sh(&format!(
            "setfattr -n user.dir -v yes '{}'",
            s(&src.join("sub"))
        ));
    }
    if f.acl {
        write(src, "acl.txt", b"with an ACL");
        sh(&format!(
            "setfacl -m u:1234:rw,g:5678:r '{}'",
            s(&src.join("acl.txt"))
        ));
        sh(&format!(
            "setfacl -d -m u:1234:rx '{}'",
            s(&src.join("sticky"))
        ));
    }
    // Directory times last (creating entries moves them), with nanoseconds.
    touch_d(&src.join("sub/deep"), "2020-05-06 07:08:09.000000001 UTC");
    touch_d(&src.join("sub"), "2020-05-06 07:08:10.5 UTC");
    touch_d(&src.join("empty"), "1999-12-31 23:59:59.999999999 UTC");
}

/// The changes between the two runs: every kind of change.
fn change_every_kind(src: &Path, f: &Features) {
    // Deleted: a file, the second name of a hard link, a whole directory.
    std::fs::remove_file(src.join("epoch")).unwrap();
    std::fs::remove_file(src.join("h2")).unwrap();
    std::fs::remove_dir_all(src.join("sub/deep")).unwrap();
    // Modes and times.
    chmod(&src.join("script.sh"), 0o600);
    chmod(&src.join("sticky"), 0o1770);
    touch_d(&src.join("nano"), "2019-02-03 04:05:06.987654321 UTC");
    // Content.
    write(src, "a.txt", b"alpha, second version");
    // file -> symlink, symlink -> file, directory -> file, file -> directory.
    std::fs::remove_file(src.join("old")).unwrap();
    symlink("nano", src.join("old")).unwrap();
    std::fs::remove_file(src.join("link")).unwrap();
    write(src, "link", b"was a symlink");
    std::fs::remove_dir_all(src.join("private")).unwrap();
    write(src, "private", b"was a directory");
    std::fs::remove_file(src.join("fifo")).unwrap();
    write(src, "fifo/now-a-dir", b"was a fifo");
    // New: an empty directory, files.
    std::fs::create_dir(src.join("newempty")).unwrap();
    write(src, "sub/new.txt", b"new in run 2");
    write(src, "new2", b"also new");
    touch_d(&src.join("new2"), "2024-02-29 12:00:00.25 UTC");
    if f.xattrs {
        let xattr = src.join("xattr.txt");
        let p = s(&xattr);
        sh(&format!(
            "setfattr -x user.color '{p}' && setfattr -n user.size -v large '{p}'"
        ));
    }
    if f.root {
        sh(&format!("chown 4321:8765 '{}'", s(&src.join("owned/f"))));
    }
    touch_d(&src.join("sub"), "2022-01-01 00:00:00.75 UTC");
}

#[test]
fn every_kind_of_entry_round_trips_through_two_snapshots() {
    need_rsync!();
    let t = TestStore::init("2+1");
    let base = t.dir.path();
    let f = probe_features(base);
    let src = base.join("src");
    build_every_kind(&src, &f);

    // Run 1: the snapshot's hash on stdout, nothing else.
    let out1 = t.run(&["put", "-r", s(&src), "home"]);
    assert!(out1.status.success(), "{}", stderr(&out1));
    let run1 = stdout(&out1).trim().to_string();
    assert!(is_hash(&run1), "put -r prints the snapshot hash: {run1:?}");
    assert!(stderr(&out1).contains("snapshot"), "{}", stderr(&out1));
    let copy1 = base.join("copy1");
    cp_a(&src, &copy1);

    change_every_kind(&src, &f);
    // Run 2, with --json.
    let r2 = t.json(&["put", "-r", s(&src), "home"]);
    let run2 = r2["snapshot"]
        .as_str()
        .expect("--json has snapshot")
        .to_string();
    assert!(is_hash(&run2) && run2 != run1, "{r2}");
    assert_eq!(r2["errors"].as_array().unwrap().len(), 0, "{r2}");
    // removed: epoch, h2, sub/deep (counted where it disappears).
    assert_eq!(r2["removed"], 3, "{r2}");
    // new: sub/new.txt, new2, link (was a symlink), private (was a directory),
    // fifo/now-a-dir.
    assert_eq!(r2["new_files"], 5, "{r2}");
    let copy2 = base.join("copy2");
    cp_a(&src, &copy2);

    // Keys under the prefix still get versions.
    let log = t.json(&["log", "home/a.txt"]);
    assert_eq!(log.as_array().unwrap().len(), 2, "{log}");
    assert_eq!(t.get("home/a.txt"), b"alpha, second version");

    // The list: both runs, oldest first, with host, path and summary.
    let list = snapshots(&t, "home");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["hash"], run1.as_str());
    assert_eq!(list[1]["hash"], run2.as_str());
    assert!(list[0]["time_ns"].as_i64() <= list[1]["time_ns"].as_i64());
    assert_eq!(list[1]["parents"][0], run1.as_str(), "run 2 follows run 1");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let canon = std::fs::canonicalize(&src).unwrap();
    for snap in &list {
        assert_eq!(snap["prefix"], "home");
        assert_eq!(snap["host"], host.as_str(), "{snap}");
        assert_eq!(snap["path"], s(&canon), "{snap}");
        for k in ["files_new", "files_changed", "files_unchanged", "removed"] {
            assert!(snap["summary"][k].is_u64(), "summary.{k} in {snap}");
        }
    }
    let files1 = 15 + u64::from(f.root) + u64::from(f.xattrs) + u64::from(f.acl);
    assert_eq!(list[0]["summary"]["files_new"], files1, "{}", list[0]);
    assert_eq!(list[0]["summary"]["removed"], 0);
    assert_eq!(list[1]["summary"]["removed"], 3);
    assert_eq!(list[1]["summary"]["files_new"], 5);
    let text = stdout(&t.run(&["snapshots"]));
    assert_eq!(text.lines().count(), 2, "{text}");

    // Restores into empty directories, by every kind of reference.
    let restore = |r: &[&str], name: &str| -> PathBuf {
        let out = base.join(name);
        let mut args = vec!["get", "-r"];
        args.extend_from_slice(r);
        args.push(s(&out));
        let o = t.run(&args);
        assert!(o.status.success(), "get -r {r:?}: {}", stderr(&o));
        out
    };
    let out1 = restore(&["home@~1"], "out1");
    assert_same_tree(&copy1, &out1, "home@~1");
    let out2 = restore(&["home"], "out2");
    assert_same_tree(&copy2, &out2, "home");
    let by_hash = format!("home@{}", &run1[..12]);
    assert_same_tree(&copy1, &restore(&[&by_hash], "out3"), &by_hash);
    let at1 = rfc3339(list[0]["time_ns"].as_i64().unwrap());
    let at2 = rfc3339(list[1]["time_ns"].as_i64().unwrap());
    assert_same_tree(&copy1, &restore(&["home", "--at", &at1], "out4"), &at1);
    assert_same_tree(&copy2, &restore(&["home", "--at", &at2], "out5"), &at2);
    assert_same_tree(
        &copy1,
        &restore(&["home@~1", "--numeric-owner"], "out7"),
        "--numeric-owner",
    );
    let before = t.run(&[
        "get",
        "-r",
        "home",
        s(&base.join("out6")),
        "--at",
        "2001-01-01",
    ]);
    assert_eq!(
        before.status.code(),
        Some(3),
        "no snapshot then: {}",
        stderr(&before)
    );

    // What rsync checks, spelled out for the entries the issue names.
    for (copy, out) in [(&copy1, &out1), (&copy2, &out2)] {
        let m = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        for rel in ["sparse", "script.sh", "suid", "sticky", "empty", "nano"] {
            let (a, b) = (m(&copy.join(rel)), m(&out.join(rel)));
            assert_eq!(a.mode(), b.mode(), "{rel}: mode");
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "{rel}: mtime to the nanosecond"
            );
        }
        // Holes come back as holes.
        let sparse = m(&out.join("sparse"));
        assert_eq!(sparse.len(), SPARSE_SIZE);
        assert!(
            sparse.blocks() <= m(&copy.join("sparse")).blocks() + 16,
            "sparse file restored with {} blocks, its copy has {}",
            sparse.blocks(),
            m(&copy.join("sparse")).blocks()
        );
        assert!(sparse.blocks() * 512 < 1 << 20, "holes were filled in");
    }
    let m1 = |rel: &str| std::fs::symlink_metadata(out1.join(rel)).unwrap();
    assert_eq!(m1("suid").mode() & 0o7777, 0o6755);
    assert_eq!(m1("sticky").mode() & 0o7777, 0o1777);
    assert_eq!(m1("private").mode() & 0o7777, 0o700);
    assert_eq!(m1("h1").ino(), m1("h2").ino(), "hard links stay linked");
    assert_eq!(m1("old").mtime(), -2);
    assert_eq!(m1("old").mtime_nsec(), 500_000_000);
    assert_eq!(m1("epoch").mtime(), 0);
    assert!(m1("fifo").file_type().is_fifo());
    assert_eq!(
        std::fs::read_link(out1.join("badlink"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"target-\xff\xfe"
    );
    assert_eq!(
        std::fs::read(raw(&out1, b"name-\xff\xff")).unwrap(),
        b"a name that is not UTF-8"
    );
    if f.root {
        assert_eq!((m1("owned").uid(), m1("owned").gid()), (1234, 5678));
        assert_eq!(
            m1("null").rdev(),
            std::fs::metadata("/dev/null").unwrap().rdev()
        );
    }
    assert!(std::fs::symlink_metadata(out2.join("old"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(out2.join("private"))
        .unwrap()
        .is_file());
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

#[test]
fn runs_without_a_terminal_as_cron_does() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "f", b"data");
    let out = t
        .cmd(&["put", "-r", s(&src), "nightly"])
        .stdin(Stdio::null())
        .env_clear()
        .env("OURO_STORE", t.store())
        .env("OURO_IDENTITY", t.identity())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains('\r') && !err.contains("\u{1b}["),
        "no progress bar or colours without a terminal: {err:?}"
    );
    assert_eq!(err.lines().count(), 1, "one summary line: {err:?}");
    assert!(
        err.contains("1 files (1 new, 0 changed, 0 unchanged)"),
        "{err}"
    );
    assert!(is_hash(stdout(&out).trim()));
}

// ---------------------------------------------------------------------------------------
// An unchanged re-run

#[test]
fn an_unchanged_rerun_reads_no_file_and_adds_little() {
    let t = TestStore::init("4+2");
    let src = t.dir.path().join("src");
    for d in 0..40 {
        for f in 0..50 {
            write(
                &src,
                &format!("d{d:02}/f{f:02}.txt"),
                format!("file {f} of directory {d}\n")
                    .repeat(f + 1)
                    .as_bytes(),
            );
        }
    }
    let_times_settle();
    let first = t.json(&["put", "-r", s(&src), "home"]);
    assert_eq!(first["new_files"], 2000, "{first}");
    let before = du_sb(&t.store());

    let args = ["put", "-r", s(&src), "home", "--json"];
    let second: Value = if strace_works() {
        let trace = t.dir.path().join("trace");
        let out = Command::new("strace")
            .args(["-qq", "-f", "-e", "trace=open,openat,openat2", "-o"])
            .arg(&trace)
            .arg(common::ouro_bin())
            .args(args)
            .env("OURO_STORE", t.store())
            .env("OURO_IDENTITY", t.identity())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let canon = std::fs::canonicalize(&src).unwrap();
        let opened: Vec<String> = std::fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .filter(|l| l.contains(s(&canon)) && !l.contains("O_DIRECTORY"))
            .map(str::to_string)
            .collect();
        assert!(
            opened.is_empty(),
            "the unchanged re-run opened files:\n{}",
            opened.join("\n")
        );
        serde_json::from_slice(&out.stdout).unwrap()
    } else {
        eprintln!("strace is missing or ptrace is not allowed: checking only the summary, not that no file was opened");
        t.json(&args[..4])
    };
    assert_eq!(
        (
            second["unchanged"].as_u64(),
            second["stored"].as_u64(),
            second["new_bytes"].as_u64(),
            second["removed"].as_u64()
        ),
        (Some(2000), Some(0), Some(0), Some(0)),
        "{second}"
    );
    let list = snapshots(&t, "home");
    let summary = &list[1]["summary"];
    assert_eq!(summary["files_unchanged"], 2000, "{summary}");
    assert_eq!(summary["files_new"], 0);
    assert_eq!(summary["files_changed"], 0);
    let added = du_sb(&t.store()) - before;
    assert!(
        added < 64 << 10,
        "an unchanged re-run of 2,000 files added {added} bytes to the store"
    );
}

// ---------------------------------------------------------------------------------------
// Bad input

#[test]
fn a_file_changing_while_read_is_stored_with_a_warning_and_read_again() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    let big = src.join("big");
    write(&src, "big", &common::random_bytes(48 << 20, 3));
    write(&src, "small", b"small");
    let mut child = t
        .cmd(&["put", "-r", s(&src), "home", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until ouro has the file open (it stats every file before it reads any), then
    // append: the stat after the read then differs from the walk's, whatever was read.
    let canon = std::fs::canonicalize(&big).unwrap();
    let fds = PathBuf::from(format!("/proc/{}/fd", child.id()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut caught = false;
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let open = std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == canon));
        if open {
            let mut f = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
            f.write_all(&common::random_bytes(1 << 20, 4)).unwrap();
            caught = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(is_hash(first["snapshot"].as_str().unwrap()));
    let warned = first["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["path"] == "big" && w["reason"].as_str().unwrap().contains("changed while"));
    if caught {
        assert!(warned, "the file that grew while read is named: {first}");
    } else {
        eprintln!("ouro read the file before the test saw it open: not checking the warning");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&big)
            .unwrap()
            .write_all(b"more")
            .unwrap();
    }
    // The next run reads it again: the snapshot then has the file as it is now.
    let second = t.json(&["put", "-r", s(&src), "home"]);
    assert_eq!(second["warnings"].as_array().unwrap().len(), 0, "{second}");
    assert_eq!(second["changed"], 1, "{second}");
    let out = t.dir.path().join("out");
    t.ok(&["get", "-r", "home", s(&out), "-q"]);
    assert!(
        std::fs::read(out.join("big")).unwrap() == std::fs::read(&big).unwrap(),
        "the second snapshot holds the file's final content"
    );
}

/// `ouro ARGS` as user and group 65534 (setpriv), on the store in `home` (theirs).
fn as_nobody(home: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::ouro_bin())
        .args(args)
        .env("OURO_STORE", home.join("store"))
        .env("OURO_IDENTITY", home.join("identity.txt"))
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .current_dir(home)
        .output()
        .unwrap()
}

/// Runs ouro as an unprivileged user: itself when not root, else user 65534 through
/// setpriv (root reads every file). `None` (with a message) when neither is possible.
struct Unprivileged {
    _dir: tempfile::TempDir,
    home: PathBuf,
    setpriv: bool,
}

impl Unprivileged {
    fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let setpriv = is_root();
        if setpriv {
            if !have("setpriv") {
                eprintln!("skipping: running as root (which reads any file) and setpriv is missing to drop to an unprivileged user");
                return None;
            }
            chmod(dir.path(), 0o755);
            sh(&format!("chown 65534:65534 '{}'", s(&home)));
        }
        let u = Unprivileged {
            _dir: dir,
            home,
            setpriv,
        };
        let v = u.run(&["--version"]);
        if !v.status.success() {
            eprintln!(
                "skipping: user 65534 cannot run {} ({})",
                common::ouro_bin().display(),
                stderr(&v).trim()
            );
            return None;
        }
        Some(u)
    }

    fn run(&self, args: &[&str]) -> Output {
        if self.setpriv {
            as_nobody(&self.home, args)
        } else {
            Command::new(common::ouro_bin())
                .args(args)
                .env("OURO_STORE", self.home.join("store"))
                .env("OURO_IDENTITY", self.home.join("identity.txt"))
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        }
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "ouro {args:?}: {}", stderr(&out));
        out
    }

    /// Makes `path` (and what is below it) the unprivileged user's.
    fn own(&self, path: &Path) {
        if self.setpriv {
            sh(&format!("chown -R 65534:65534 '{}'", s(path)));
        }
    }
}

#[test]
fn unreadable_files_are_listed_and_keep_their_previous_version() {
    let Some(u) = Unprivileged::new() else { return };
    u.ok(&["init", "-q", "--ec", "2+1"]);
    let src = u.home.join("src");
    write(&src, "ok", b"fine");
    write(&src, "secret", b"version 1");
    write(&src, "new-secret", b"never readable");
    u.own(&src);
    chmod(&src.join("new-secret"), 0o000);
    let first = u.run(&["put", "-r", s(&src), "p", "--json"]);
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let j: Value = serde_json::from_slice(&first.stdout).unwrap();
    let errors: Vec<&str> = j["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["new-secret"], "{j}");

    chmod(&src.join("secret"), 0o000);
    write(&src, "ok", b"fine, again");
    let second = u.run(&["put", "-r", s(&src), "p"]);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains("secret") && err.contains("previous version is kept"),
        "{err}"
    );
    assert!(
        is_hash(stdout(&second).trim()),
        "the snapshot is made: {}",
        stdout(&second)
    );
    let list: Value = serde_json::from_slice(&u.ok(&["snapshots", "p", "--json"]).stdout).unwrap();
    assert_eq!(list[1]["summary"]["errors"], 2, "{}", list[1]);
    let listed: Vec<&str> = list[1]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"secret") && listed.contains(&"new-secret"),
        "{listed:?}"
    );

    let out = u.home.join("out");
    u.ok(&["get", "-r", "p", s(&out), "-q"]);
    assert_eq!(std::fs::read(out.join("secret")).unwrap(), b"version 1");
    assert_eq!(std::fs::read(out.join("ok")).unwrap(), b"fine, again");
    assert!(
        !out.join("new-secret").exists(),
        "never read: not in the snapshot"
    );
}

/// An unreadable directory keeps its previous contents, as an unreadable file keeps its
/// previous version: recorded empty, the restore (and a `get -r --delete`) would lose what
/// it held.
#[test]
fn an_unreadable_directory_keeps_its_previous_contents() {
    let Some(u) = Unprivileged::new() else { return };
    u.ok(&["init", "-q", "--ec", "2+1"]);
    let src = u.home.join("src");
    write(&src, "sub/b", b"inside");
    write(&src, "a", b"a");
    u.own(&src);
    u.ok(&["put", "-r", s(&src), "p", "-q"]);
    chmod(&src.join("sub"), 0o000);
    let second = u.run(&["put", "-r", s(&src), "p", "--json"]);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let j: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(j["removed"], 0, "sub/b is not gone, only unreadable: {j}");
    let errors = j["errors"].as_array().unwrap();
    assert!(
        errors.len() == 1
            && errors[0]["path"] == "sub"
            && errors[0]["error"]
                .as_str()
                .unwrap()
                .contains("previous contents are kept"),
        "{j}"
    );
    let out = u.home.join("out");
    u.ok(&["get", "-r", "p", s(&out), "-q"]);
    chmod(&out.join("sub"), 0o755);
    assert_eq!(std::fs::read(out.join("sub/b")).unwrap(), b"inside");
    assert_eq!(std::fs::read(out.join("a")).unwrap(), b"a");

    // Readable again: walked as usual, nothing was lost on the way.
    chmod(&src.join("sub"), 0o755);
    let third: Value =
        serde_json::from_slice(&u.ok(&["put", "-r", s(&src), "p", "--json"]).stdout).unwrap();
    assert_eq!(
        (
            third["removed"].as_u64(),
            third["errors"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0)),
        "{third}"
    );

    // A directory unreadable from its first run has no previous contents: recorded
    // empty, with the error.
    write(&src, "new/c", b"c");
    u.own(&src);
    chmod(&src.join("new"), 0o000);
    let fourth = u.run(&["put", "-r", s(&src), "p", "--json"]);
    assert_eq!(fourth.status.code(), Some(1), "{}", stderr(&fourth));
    let j: Value = serde_json::from_slice(&fourth.stdout).unwrap();
    assert_eq!(j["errors"][0]["path"], "new", "{j}");
    chmod(&src.join("new"), 0o755);
    let out = u.home.join("out2");
    u.ok(&["get", "-r", "p", s(&out), "-q"]);
    chmod(&out.join("new"), 0o755);
    assert!(out.join("new").is_dir() && !out.join("new/c").exists());
    assert_eq!(std::fs::read(out.join("sub/b")).unwrap(), b"inside");
}

#[test]
fn vanishing_files_long_names_and_sockets_are_not_fatal() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "ok", b"fine");
    // A path too long for a key (400 bytes): 200 + 250 bytes of names.
    let long_dir = "d".repeat(200);
    let long_file = "f".repeat(250);
    let long_rel = format!("{long_dir}/{long_file}");
    write(&src, &long_rel, b"a long name");
    // A name whose escaped key segment is too long (\xff is four characters of key).
    std::fs::write(raw(&src, &[0xff; 120]), b"long after escaping").unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();

    // Sockets: a note with -v, silence without.
    let quiet = t.run(&["put", "-r", s(&src), "home"]);
    assert!(!stderr(&quiet).contains("sock"), "{}", stderr(&quiet));
    // Paths too long for a key: stored under a hashed key, with a warning naming the path
    // and that key, whose latest version is the file.
    let err = stderr(&quiet);
    for (name, data) in [
        (long_file.as_str(), &b"a long name"[..]),
        ("\u{fffd}\u{fffd}\u{fffd}", b"long after escaping"),
    ] {
        let line = err
            .lines()
            .find(|l| l.starts_with("ouro: warning: ") && l.contains(name))
            .unwrap_or_else(|| panic!("no warning names {name}: {err}"));
        let key = line.rsplit(' ').next().unwrap();
        assert!(
            line.contains("too long for a key") && key.starts_with("home/.ouro-long/"),
            "{line}"
        );
        let got = t.dir.path().join("got");
        t.ok(&["get", key, "-o", s(&got)]);
        assert_eq!(std::fs::read(&got).unwrap(), data, "{key}");
    }
    let verbose = t.run(&["put", "-r", s(&src), "home", "-v"]);
    assert!(
        stderr(&verbose).contains("sock: socket, not kept"),
        "{}",
        stderr(&verbose)
    );
    for o in [&quiet, &verbose] {
        assert!(
            matches!(o.status.code(), Some(0 | 1)) && is_hash(stdout(o).trim()),
            "not fatal: {:?} {}",
            o.status.code(),
            stderr(o)
        );
    }
    let j = t.run(&["put", "-r", s(&src), "home", "--json"]);
    let j: Value = serde_json::from_slice(&j.stdout).unwrap();
    assert!(
        j["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["path"] == "sock"),
        "{j}"
    );
    // Long names: the rest is stored, and the long ones are restored exactly.
    let out = t.dir.path().join("out");
    let restored = t.run(&["get", "-r", "home", s(&out), "-q"]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert_eq!(std::fs::read(out.join("ok")).unwrap(), b"fine");
    assert_eq!(std::fs::read(out.join(&long_rel)).unwrap(), b"a long name");
    assert_eq!(
        std::fs::read(raw(&out, &[0xff; 120])).unwrap(),
        b"long after escaping"
    );
}

#[test]
fn files_vanishing_during_the_walk_are_not_fatal() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "a", b"a");
    write(
        &src,
        "stat-gone",
        b"vanishes between the listing and its stat",
    );
    write(
        &src,
        "read-gone",
        b"vanishes between the walk and its reading",
    );
    let canon = std::fs::canonicalize(&src).unwrap();
    if strace_works() {
        // Deterministic: strace makes one path's stat (or open) fail with ENOENT, exactly
        // as if the file had been deleted at that moment. The reading opens a file by its
        // name in its directory's descriptor, which strace matches by the name alone.
        let vanish = |file: &str, syscalls: &[&str]| -> Value {
            let mut c = Command::new("strace");
            c.args(["-qq", "-f", "-o", "/dev/null", "-P"])
                .arg(canon.join(file))
                .arg("-P")
                .arg(file)
                .arg("-e")
                .arg(format!("trace={}", syscalls.join(",")));
            for sc in syscalls {
                c.arg("-e").arg(format!("inject={sc}:error=ENOENT"));
            }
            let out = c
                .arg(common::ouro_bin())
                .args(["put", "-r", s(&src), "home", "--json"])
                .env("OURO_STORE", t.store())
                .env("OURO_IDENTITY", t.identity())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
            let j: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(j["errors"].as_array().unwrap().len(), 0, "{j}");
            assert!(
                j["warnings"].as_array().unwrap().iter().any(
                    |w| w["path"] == file && w["reason"].as_str().unwrap().contains("vanished")
                ),
                "{file} is noted as vanished: {j}"
            );
            j
        };
        let j = vanish("stat-gone", &["statx", "newfstatat"]);
        assert_eq!(j["files"], 2, "{j}");
        let j = vanish("read-gone", &["openat", "openat2"]);
        assert_eq!(j["files"], 2, "{j}");
        // A directory gone between its parent's listing and its own has no entry, as a
        // file: recorded empty, a restore with --delete would empty it where it moved to.
        write(&src, "dir-gone/x", b"in a directory moved away mid-walk");
        let j = vanish("dir-gone", &["openat", "openat2"]);
        assert_eq!(j["files"], 3, "{j}");
        let out = t.dir.path().join("dir-gone-out");
        t.ok(&["get", "-r", "home", s(&out), "-q"]);
        assert!(out.join("a").exists());
        assert!(
            !out.join("dir-gone").exists(),
            "recorded as an empty directory"
        );
        std::fs::remove_dir_all(src.join("dir-gone")).unwrap();
    } else {
        eprintln!("strace is missing or ptrace is not allowed: only the racing deleter below runs");
    }

    // Racing: a thread deletes files and directories while put -r walks and reads them.
    // Which ones it catches varies; that the run completes with exit 0 and no errors
    // does not.
    for d in 0..30 {
        for f in 0..30 {
            write(&src, &format!("race/d{d}/f{f}"), &[b'x'; 3000]);
        }
    }
    let mut child = t
        .cmd(&["put", "-r", s(&src), "race", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let race = src.join("race");
    'delete: for d in (0..30).rev() {
        for f in 0..30 {
            if child.try_wait().unwrap().is_some() {
                break 'delete;
            }
            let _ = std::fs::remove_file(race.join(format!("d{d}/f{f}")));
        }
        if d % 3 == 0 {
            let _ = std::fs::remove_dir_all(race.join(format!("d{d}")));
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["errors"].as_array().unwrap().len(), 0, "{j}");
    for w in j["warnings"].as_array().unwrap() {
        let reason = w["reason"].as_str().unwrap();
        assert!(
            reason.contains("vanished") || reason.contains("changed while"),
            "{w}"
        );
    }
    let out = t.dir.path().join("out");
    t.ok(&["get", "-r", "race", s(&out), "-q"]);
}

/// The directory `put -r` stores may have any name, UTF-8 or not (its first argument is a
/// path there, and a key only for a plain put, which refuses a key that is not UTF-8 with
/// one line and exit code 2).
#[test]
fn put_r_takes_a_directory_whose_name_is_not_utf8() {
    let t = TestStore::init("2+1");
    let dir = raw(t.dir.path(), b"caf\xe9");
    write(&dir, "f", b"content");
    let put = t
        .cmd(&["put", "-r"])
        .arg(&dir)
        .args(["p", "-q"])
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", stderr(&put));
    let out = t.dir.path().join("out");
    t.ok(&["get", "-r", "p", s(&out), "-q"]);
    assert_eq!(std::fs::read(out.join("f")).unwrap(), b"content");
    let bad = t
        .cmd(&["put"])
        .arg(OsStr::from_bytes(b"k\xff"))
        .arg(dir.join("f"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let err = stderr(&bad);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("must be UTF-8"), "{err}");
}
