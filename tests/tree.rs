//! put -r and get -r end to end: cache, excludes, symlinks, restore at a time, no terminal.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::TestStore;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn tree_round_trip_with_cache_excludes_and_time_travel() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "a.txt", b"alpha");
    write(&src, "sub/b.bin", &common::random_bytes(300_000, 7));
    write(&src, "sub/deep/c.txt", b"");
    write(&src, "skip.tmp", b"temporary");
    write(&src, "cache/x", b"cached");
    symlink("a.txt", src.join("link")).unwrap();
    let s = src.to_str().unwrap();
    let backup = || {
        t.json(&[
            "put",
            "-r",
            s,
            "backup",
            "--exclude",
            "*.tmp",
            "--exclude",
            "cache/**",
        ])
    };
    let first = backup();
    assert_eq!(first["files"], 3);
    assert_eq!(first["stored"], 3);
    assert_eq!(
        first["skipped"].as_array().unwrap().len(),
        1,
        "the symlink is reported"
    );
    assert!(first["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("symbolic link"));
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

    // Unchanged tree: nothing read or stored.
    let again = backup();
    assert_eq!(
        (again["stored"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(3))
    );
    let before_change = t.json(&["log", "backup/a.txt"])[0]["created"]
        .as_str()
        .unwrap()
        .to_string();

    // A touched file (new mtime, same content) is read again but gets no new version.
    let f = std::fs::File::options()
        .write(true)
        .open(src.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let touched = backup();
    assert_eq!(touched["stored"], 0, "{touched}");
    assert_eq!(
        t.json(&["log", "backup/a.txt"]).as_array().unwrap().len(),
        1
    );

    // A changed file is stored again; a key changed behind the cache's back too.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&src, "a.txt", b"alpha v2");
    t.put("backup/sub/deep/c.txt", b"edited in the store");
    let third = backup();
    assert_eq!(third["stored"], 2, "{third}");

    let out = t.dir.path().join("out");
    t.ok(&["get", "-r", "backup", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"alpha v2");
    assert_eq!(
        std::fs::read(out.join("sub/b.bin")).unwrap(),
        common::random_bytes(300_000, 7)
    );
    assert_eq!(std::fs::read(out.join("sub/deep/c.txt")).unwrap(), b"");
    assert!(!out.join("skip.tmp").exists() && !out.join("link").exists());

    let old = t.dir.path().join("old");
    t.ok(&[
        "get",
        "-r",
        "backup",
        old.to_str().unwrap(),
        "--at",
        &before_change,
    ]);
    assert_eq!(std::fs::read(old.join("a.txt")).unwrap(), b"alpha");
    let empty = t.dir.path().join("empty");
    let r = t.json(&[
        "get",
        "-r",
        "backup",
        empty.to_str().unwrap(),
        "--at",
        "2001-01-01",
    ]);
    assert_eq!(r["restored"], 0);
}

#[test]
fn runs_without_a_terminal_as_cron_does() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "f", b"data");
    let out = t
        .cmd(&["put", "-r", src.to_str().unwrap(), "nightly"])
        .stdin(std::process::Stdio::null())
        .env_clear()
        .env("OURO_STORE", t.store())
        .env("OURO_IDENTITY", t.identity())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains('\r') && !err.contains("\u{1b}["),
        "no progress bar or colours without a terminal: {err:?}"
    );
    assert!(err.contains("1 files: 1 stored"), "{err}");
}

#[test]
fn unreadable_file_is_reported_and_the_rest_stored() {
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    write(&src, "ok", b"fine");
    write(&src, "secret", b"no access");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(src.join("secret")).is_ok() {
        eprintln!("skipping the unreadable-file check: running as root, which reads any file");
        return;
    }
    let out = t.run(&["put", "-r", src.to_str().unwrap(), "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret"));
    assert_eq!(t.get("p/ok"), b"fine");
}
