//! put -r under bad input, on the real binary: runs without a terminal, the cost of an
//! unchanged re-run, files changing while read, unreadable files and directories (as an
//! unprivileged user), vanishing files, long names, sockets and names that are not UTF-8.

use super::*;

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
