//! The mount with real metadata and real programs: snapshots showing every entry as it was
//! recorded, key metadata and symlinks across a remount, rsync, git and a Python venv in the
//! mount, version ordering, and a snapshot directory of 100k entries.

use super::*;

/// `stat` of a path without following a last symlink.
fn lstat(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Sets the times of `p` (not following symlinks) to `secs` + `nanos`.
fn set_times(p: &Path, secs: i64, nanos: i64) {
    let t = format!("{secs}.{nanos:09}");
    let ok = Command::new("touch")
        .args(["-h", "-d", &format!("@{t}")])
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {}", p.display());
}

/// A tree with one of everything a snapshot records. Returns the names of the parts that
/// need root (owners, a device) when they were made.
fn make_rich_tree(src: &Path) -> bool {
    use std::os::unix::fs::{symlink, PermissionsExt};
    std::fs::create_dir_all(src.join("sub/empty")).unwrap();
    std::fs::write(src.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        src.join("script.sh"),
        std::fs::Permissions::from_mode(0o4750),
    )
    .unwrap();
    std::fs::write(src.join("sub/data.bin"), random_bytes(300_000, 5)).unwrap();
    std::fs::hard_link(src.join("sub/data.bin"), src.join("sub/data-link.bin")).unwrap();
    symlink("../script.sh", src.join("sub/up")).unwrap();
    // A raw, non-UTF-8 target and name.
    use std::os::unix::ffi::OsStrExt;
    symlink(
        std::ffi::OsStr::from_bytes(b"t\xffrget"),
        src.join(std::ffi::OsStr::from_bytes(b"raw\xfename")),
    )
    .unwrap();
    assert!(Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .unwrap()
        .success());
    std::fs::set_permissions(
        src.join("sub/empty"),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    set_times(&src.join("sub/empty"), 981_173_106, 123_456_789);
    set_times(&src.join("script.sh"), 1_000_000_000, 5);
    let xattr = format!(
        "import os; os.setxattr({:?}, 'user.note', b'hello')",
        src.join("script.sh").to_str().unwrap()
    );
    let _ = Command::new("python3").args(["-c", &xattr]).status();
    if !is_root() {
        return false;
    }
    let chown = |args: &[&str], p: &Path| {
        assert!(Command::new("chown")
            .args(args)
            .arg(p)
            .status()
            .unwrap()
            .success())
    };
    chown(&["1234:5678"], &src.join("sub"));
    chown(&["-h", "42:43"], &src.join("sub/up"));
    Command::new("mknod")
        .arg(src.join("null-dev"))
        .args(["c", "1", "3"])
        .status()
        .unwrap()
        .success()
}

#[test]
fn snapshots_show_every_entry_with_its_recorded_metadata() {
    require_fuse!();
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    let device = make_rich_tree(&src);
    t.ok(&["put", "-r", src.to_str().unwrap(), "tree", "-q"]);
    std::fs::write(src.join("script.sh"), b"changed\n").unwrap();
    t.ok(&["put", "-r", src.to_str().unwrap(), "tree", "-q"]);
    t.ok(&[
        "put",
        "-r",
        src.join("sub").to_str().unwrap(),
        "home/ann",
        "-q",
    ]);
    // What the source looked like when it was backed up (ctime and atime included).
    let want = |rel: &str| lstat(&src.join(rel));
    let m = Mounted::new(t, &[]);
    let snaps = m.path(".ouro/snapshots/tree");
    let mut names: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "two snapshots and latest: {names:?}");
    assert_eq!(names[2], "latest");
    for n in &names[..2] {
        // `<time without colons>_<short hash>`.
        let (time, short) = n.split_once('_').unwrap();
        assert!(
            !time.contains(':') && time.ends_with('Z') && short.len() == 8,
            "{n}"
        );
    }
    assert_eq!(
        std::fs::read_link(snaps.join("latest")).unwrap(),
        Path::new(&names[1])
    );
    let old = snaps.join(&names[0]);
    let new = snaps.join("latest");
    assert_eq!(
        std::fs::read(old.join("script.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(std::fs::read(new.join("script.sh")).unwrap(), b"changed\n");
    assert_eq!(
        std::fs::read(new.join("sub/data.bin")).unwrap(),
        std::fs::read(src.join("sub/data.bin")).unwrap()
    );
    // Modes, owners and all three times, as recorded.
    for rel in [
        "script.sh",
        "sub",
        "sub/empty",
        "sub/up",
        "sub/data.bin",
        "pipe",
    ] {
        let (got, want) = (lstat(&new.join(rel)), want(rel));
        assert_eq!(got.mode(), want.mode(), "{rel}: mode");
        assert_eq!(
            (got.uid(), got.gid()),
            (want.uid(), want.gid()),
            "{rel}: owner"
        );
        assert_eq!(
            (got.mtime(), got.mtime_nsec()),
            (want.mtime(), want.mtime_nsec()),
            "{rel}: mtime"
        );
        assert_eq!(
            (got.ctime(), got.ctime_nsec()),
            (want.ctime(), want.ctime_nsec()),
            "{rel}: ctime"
        );
        if !got.is_dir() {
            assert_eq!(got.len(), want.len(), "{rel}: size");
        }
    }
    assert_eq!(lstat(&new.join("sub/empty")).mtime_nsec(), 123_456_789);
    // atime as recorded (the backup's own read changed the source's since).
    assert_eq!(lstat(&old.join("script.sh")).atime(), 1_000_000_000);
    assert_eq!(std::fs::read_dir(new.join("sub/empty")).unwrap().count(), 0);
    assert!(lstat(&new.join("pipe")).file_type().is_fifo());
    assert_eq!(
        std::fs::read_link(new.join("sub/up")).unwrap(),
        Path::new("../script.sh")
    );
    let raw = new.join(std::ffi::OsStr::from_bytes(b"raw\xfename"));
    assert_eq!(
        std::fs::read_link(&raw).unwrap().as_os_str().as_bytes(),
        b"t\xffrget"
    );
    // One inode for both names of a hard link, distinct ones otherwise.
    let (a, b) = (
        lstat(&new.join("sub/data.bin")),
        lstat(&new.join("sub/data-link.bin")),
    );
    assert_eq!(a.ino(), b.ino());
    assert_ne!(a.ino(), lstat(&new.join("script.sh")).ino());
    assert_ne!(
        lstat(&old.join("script.sh")).ino(),
        lstat(&new.join("script.sh")).ino()
    );
    if device {
        let d = lstat(&new.join("null-dev"));
        assert!(d.file_type().is_char_device());
        assert_eq!(d.rdev(), want("null-dev").rdev());
    }
    // Extended attributes, where the source's file system keeps user ones.
    let getxattr = |p: &Path| {
        let py = format!(
            "import os; print(os.getxattr({:?}, 'user.note').decode())",
            p.to_str().unwrap()
        );
        let out = Command::new("python3").args(["-c", &py]).output().unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if getxattr(&src.join("script.sh")).is_some() {
        assert_eq!(getxattr(&new.join("script.sh")).as_deref(), Some("hello"));
        let names = m.sh_ok(
            "python3 -c \"import os; print(os.listxattr('.ouro/snapshots/tree/latest/script.sh'))\"",
        );
        assert!(names.contains("user.note"), "{names}");
    }
    // A prefix with a slash is a nested directory; everything is read-only.
    assert_eq!(
        std::fs::read(m.path(".ouro/snapshots/home/ann/latest/data.bin")).unwrap(),
        std::fs::read(src.join("sub/data.bin")).unwrap()
    );
    let err = m.sh("echo x > .ouro/snapshots/tree/latest/new");
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("Read-only"),
        "{err:?}"
    );
    assert!(!m
        .sh("chmod 777 .ouro/snapshots/tree/latest/script.sh")
        .status
        .success());
}

#[test]
fn key_metadata_and_symlinks_are_kept_across_a_remount() {
    require_fuse!();
    use std::os::unix::fs::MetadataExt;
    let t = TestStore::init("2+1");
    t.put("plain", b"from ouro put\n");
    let m = Mounted::new(t, &[]);
    m.sh_ok("echo hello > f && chmod 741 f && touch -d '2001-02-03 04:05:06.123456789Z' f");
    m.sh_ok("ln -s f link && ln -s '/abs/target path' dangling");
    m.sh_ok("mkdir -p d/empty && chmod 700 d && touch -d '1999-12-31 23:59:59Z' d/empty");
    m.sh_ok("umask 077 && echo new > d/private");
    let root = is_root();
    if root {
        m.sh_ok("chown 1234:5678 f && chown -h 42:43 link && chgrp 99 d");
    }
    let check = |m: &Mounted| {
        let f = lstat(&m.path("f"));
        assert_eq!(f.mode(), 0o100_741, "mode");
        assert_eq!(
            (f.mtime(), f.mtime_nsec()),
            (981_173_106, 123_456_789),
            "mtime"
        );
        let link = lstat(&m.path("link"));
        assert!(link.file_type().is_symlink());
        assert_eq!(std::fs::read_link(m.path("link")).unwrap(), Path::new("f"));
        assert_eq!(
            std::fs::read_link(m.path("dangling")).unwrap(),
            Path::new("/abs/target path")
        );
        assert_eq!(std::fs::read(m.path("link")).unwrap(), b"hello\n");
        assert_eq!(lstat(&m.path("d")).mode(), 0o040_700);
        assert_eq!(lstat(&m.path("d/empty")).mtime(), 946_684_799);
        assert_eq!(std::fs::read_dir(m.path("d/empty")).unwrap().count(), 0);
        assert_eq!(lstat(&m.path("d/private")).mode(), 0o100_600);
        // Keys stored without metadata show the defaults, as before.
        assert_eq!(lstat(&m.path("plain")).mode(), 0o100_644);
        if root {
            assert_eq!((f.uid(), f.gid()), (1234, 5678));
            assert_eq!((link.uid(), link.gid()), (42, 43));
            assert_eq!(lstat(&m.path("d")).gid(), 99);
        }
        // The marker keeping d's metadata is not shown.
        assert_eq!(m.sh_ok("ls -A d"), "empty\nprivate\n");
    };
    check(&m);
    m.remount();
    check(&m);
    // A write keeps the mode and owner, and moves mtime to the time of the write.
    m.sh_ok("echo more >> f");
    let f = lstat(&m.path("f"));
    assert_eq!(f.mode(), 0o100_741);
    assert!(
        f.mtime() > 1_700_000_000,
        "mtime of the write: {}",
        f.mtime()
    );
    if root {
        assert_eq!((f.uid(), f.gid()), (1234, 5678));
    }
    // chmod shares the content: a new version, no new chunks.
    let log = String::from_utf8(m.t.ok(&["log", "f", "--oneline"])).unwrap();
    assert!(log.lines().count() >= 4, "{log}");
    // Empty directories come and go; a directory holding keys cannot be removed.
    assert!(!m.sh("rmdir d").status.success());
    m.sh_ok("rmdir d/empty && mv d/private d/moved && test ! -e d/private");
    m.remount();
    assert!(!m.path("d/empty").exists());
    assert_eq!(m.sh_ok("cat d/moved"), "new\n");
    assert_eq!(lstat(&m.path("d/moved")).mode(), 0o100_600);
}

#[test]
fn rsync_into_the_mount_copies_nothing_the_second_time() {
    require_fuse!();
    if !tool("rsync") {
        eprintln!("SKIPPED: rsync is not installed");
        return;
    }
    use std::os::unix::fs::{symlink, PermissionsExt};
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("a/one.txt"), b"one\n").unwrap();
    std::fs::write(src.join("a/b/big.bin"), random_bytes(2 << 20, 9)).unwrap();
    std::fs::write(src.join("a/b/c/run.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::write(src.join("zero"), b"").unwrap();
    std::fs::set_permissions(
        src.join("a/b/c/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("a/one.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(src.join("a/b"), std::fs::Permissions::from_mode(0o750)).unwrap();
    symlink("b/c/run.sh", src.join("a/run")).unwrap();
    symlink("/nowhere", src.join("dangling")).unwrap();
    set_times(&src.join("a/one.txt"), 1_234_567_890, 987_654_321);
    if is_root() {
        for (who, p) in [("1000:1000", "a/b"), ("-h", "dangling"), ("7:8", "zero")] {
            let mut c = Command::new("chown");
            if who == "-h" {
                c.args(["-h", "3:4"]);
            } else {
                c.arg(who);
            }
            assert!(c.arg(src.join(p)).status().unwrap().success());
        }
    }
    let m = Mounted::new(t, &[]);
    let rsync = |m: &Mounted| {
        m.sh_ok(&format!(
            "rsync -a --itemize-changes {}/ dest/",
            src.to_str().unwrap()
        ))
    };
    let first = rsync(&m);
    assert!(first.contains("a/b/big.bin"), "{first}");
    assert_eq!(rsync(&m), "", "second run, same mount");
    m.remount();
    assert_eq!(rsync(&m), "", "third run, after a remount");
    m.sh_ok(&format!(
        "diff -r --no-dereference {}/ dest/",
        src.to_str().unwrap()
    ));
}

#[test]
fn git_init_in_the_mount_keeps_file_modes_and_symlinks() {
    require_fuse!();
    if !tool("git") {
        eprintln!("SKIPPED: git is not installed");
        return;
    }
    let t = TestStore::init("2+1");
    let m = Mounted::new(t, &[]);
    let git = "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main";
    m.sh_ok(&format!("mkdir repo && cd repo && {git} init -q ."));
    // git probes chmod on a file (core.filemode) and ln -s (core.symlinks).
    assert_eq!(
        m.sh_ok("cd repo && git config core.filemode").trim(),
        "true"
    );
    assert_eq!(m.sh("cd repo && git config core.symlinks").stdout, b"");
    m.sh_ok(&format!(
        "cd repo && printf 'echo hi\\n' > run.sh && chmod +x run.sh && ln -s run.sh link \
         && {git} add . && {git} commit -qm first"
    ));
    assert_eq!(m.sh_ok("cd repo && git status --porcelain"), "");
    m.remount();
    assert_eq!(m.sh_ok("cd repo && git status --porcelain"), "");
    assert_eq!(
        m.sh_ok("cd repo && git config core.filemode").trim(),
        "true"
    );
    let files = m.sh_ok("cd repo && git ls-files -s");
    assert!(
        files.contains("100755") && files.contains("120000"),
        "{files}"
    );
    m.sh_ok("cd repo && git fsck --no-progress");
}

#[test]
fn python_venv_works_in_the_mount() {
    require_fuse!();
    let probe = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("SKIPPED: python3 with venv and ensurepip is not installed (python3-venv)");
        return;
    }
    let t = TestStore::init("2+1");
    let m = Mounted::new(t, &[]);
    m.sh_ok("python3 -m venv venv");
    let prefix = m.dir.join("venv").canonicalize().unwrap();
    let run = |m: &Mounted| {
        assert!(lstat(&m.path("venv/bin/python")).file_type().is_symlink());
        let out = m.sh_ok("venv/bin/python -c 'import sys; print(sys.prefix)'");
        assert_eq!(Path::new(out.trim()), prefix);
        m.sh_ok("venv/bin/python -m pip --version");
    };
    run(&m);
    m.remount();
    run(&m);
}

#[test]
fn versions_made_within_one_second_list_in_creation_order() {
    require_fuse!();
    let t = TestStore::init("2+1");
    let m = Mounted::new(t, &[]);
    // Retried with a new key until three versions fall within one second.
    for round in 0..5 {
        let key = format!("k{round}");
        m.sh_ok(&format!("echo 1 > {key}; echo 2 > {key}; echo 3 > {key}"));
        let log = m.t.json(&["log", &key]);
        let log = log.as_array().unwrap();
        let mut created: Vec<(i64, String)> = log
            .iter()
            .map(|v| {
                (
                    v["created_ns"].as_i64().unwrap(),
                    v["hash"].as_str().unwrap()[..8].to_string(),
                )
            })
            .collect();
        created.sort();
        let mut names: Vec<String> = std::fs::read_dir(m.path(&format!(".ouro/versions/{key}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let in_order: Vec<&str> = names.iter().map(|n| &n[n.len() - 8..]).collect();
        let by_time: Vec<&str> = created.iter().map(|(_, h)| h.as_str()).collect();
        assert_eq!(in_order, by_time, "{names:?}");
        // Old lookups by `<time>_<short>` still find each version's content.
        assert_eq!(
            m.sh_ok(&format!("cat .ouro/versions/{key}/{}/{key}", names[2])),
            "3\n"
        );
        let same_second = created[0].0 / 1_000_000_000 == created[2].0 / 1_000_000_000;
        if same_second {
            return;
        }
    }
    eprintln!("note: no round made three versions within one second; order checked anyway");
}

#[test]
fn a_snapshot_directory_of_100k_entries_lists_quickly() {
    require_fuse!();
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("wide");
    std::fs::create_dir_all(&src).unwrap();
    // Symlinks: the snapshot records them without storing 100,000 keys.
    for i in 0..100_000 {
        std::os::unix::fs::symlink(format!("t{i}"), src.join(format!("e{i:06}"))).unwrap();
    }
    t.ok(&["put", "-r", src.to_str().unwrap(), "wide", "-q"]);
    let m = Mounted::new(t, &[]);
    let dir = m.path(".ouro/snapshots/wide/latest");
    let start = Instant::now();
    let n = std::fs::read_dir(&dir).unwrap().count();
    let took = start.elapsed();
    assert_eq!(n, 100_000);
    eprintln!("listing 100,000 entries took {took:?}");
    // The limit is for an optimised build; a debug build decodes the record slower.
    let limit = if cfg!(debug_assertions) { 5 } else { 1 };
    assert!(took < Duration::from_secs(limit), "{took:?}");
    assert_eq!(
        std::fs::read_link(dir.join("e054321")).unwrap(),
        Path::new("t54321")
    );
}
