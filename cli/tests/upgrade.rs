//! A store written by an older build (format 8, `tests/fixtures/format8`, made by its
//! `make.sh` with a51a79f's ouro; format 9, `tests/fixtures/format9`, with 62ed375's) is
//! upgraded to this build's format when a command opens
//! it: every version reads back, snapshots restore, verify is clean, and new writes and gc
//! work on it. The upgrade needs the store to itself.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::TestStore;

/// What `make.sh`'s `gen N S` prints.
fn gen(n: u64, s: u64) -> String {
    (0..n)
        .map(|i| format!("{:07}\n", (i * 2_654_435_761 + s) % 1_000_003))
        .collect()
}

/// `gen N S` with the lines starting with `from` starting with `to` instead (make.sh's sed).
fn edited(n: u64, s: u64, from: &str, to: &str) -> Vec<u8> {
    gen(n, s)
        .lines()
        .map(|l| match l.strip_prefix(from) {
            Some(rest) => format!("{to}{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect::<String>()
        .into_bytes()
}

/// A copy of the format `n` store (8 or 9), with its identity.
fn old_store(n: u32) -> TestStore {
    let t = TestStore::empty();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/format{n}"));
    std::fs::create_dir_all(t.store()).unwrap();
    std::fs::copy(fixture.join("data.mdb"), t.store().join("data.mdb")).unwrap();
    std::fs::copy(fixture.join("identity.txt"), t.identity()).unwrap();
    // git keeps only the executable bit: a clean clone has these files 644,
    // and ouro refuses an identity others can read.
    for f in [t.store().join("data.mdb"), t.identity()] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    t
}

fn format(t: &TestStore) -> u32 {
    let cas = ouroboros_db::Cas::open(&t.store()).unwrap();
    cas.config().format
}

#[test]
fn a_format_8_store_is_upgraded_and_keeps_every_version() {
    upgraded_and_every_version_kept(8);
}

#[test]
fn a_format_9_store_is_upgraded_and_keeps_every_version() {
    upgraded_and_every_version_kept(9);
}

fn upgraded_and_every_version_kept(n: u32) {
    let t = old_store(n);
    // The first command upgrades it; every version and the history read back.
    let log = String::from_utf8(t.ok(&["log", "a"])).unwrap();
    let hashes: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("version "))
        .collect();
    assert_eq!(hashes.len(), 3, "{log}");
    assert_eq!(format(&t), 10);
    let want = [
        edited(30_000, 1, "0002", "yyyy"),
        edited(30_000, 1, "0001", "xxxx"),
        gen(30_000, 1).into_bytes(),
    ];
    for (h, w) in hashes.iter().zip(&want) {
        assert!(t.get(&format!("a@{h}")) == *w, "a@{h}");
    }
    assert_eq!(t.get("b"), b"last\n");
    assert!(!t.run(&["get", "c"]).status.success(), "c was removed");
    let heads = String::from_utf8(t.ok(&["heads", "a"])).unwrap();
    assert!(heads.contains(&hashes[0][..8]), "{heads}");
    // Both snapshots restore: the first with its symbolic link, the second without.
    let snaps = String::from_utf8(t.ok(&["snapshots"])).unwrap();
    let ids: Vec<&str> = snaps.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(ids.len(), 2, "{snaps}");
    for (i, id) in ids.iter().enumerate() {
        let dest = t.dir.path().join(format!("r{i}"));
        t.ok(&["get", "-r", &format!("t@{id}"), dest.to_str().unwrap()]);
        assert_eq!(std::fs::read(dest.join("one.txt")).unwrap(), b"one\n");
        let two = std::fs::read(dest.join("sub/two.txt")).unwrap();
        assert_eq!(two, gen(5000, 7 + i as u64).into_bytes());
        assert_eq!(dest.join("link").is_symlink(), i == 0);
    }
    let verify = String::from_utf8(t.ok(&["verify"])).unwrap();
    assert!(verify.contains("10 versions"), "{verify}");
    // It takes new versions, and gc and verify work on it.
    t.put("a", b"new");
    t.ok(&["rm", "b"]);
    t.ok(&["gc"]);
    assert_eq!(t.get("a"), b"new");
    assert!(!t.run(&["get", "b"]).status.success());
    t.ok(&["verify"]);
    let log = String::from_utf8(t.ok(&["log", "a"])).unwrap();
    assert_eq!(log.matches("version ").count(), 4, "{log}");
}

#[test]
fn the_upgrade_waits_for_the_store_to_itself() {
    let t = old_store(9);
    // Another process has the store open (its open lock shared), as an older mount would.
    let lock = std::fs::File::create(t.store().join("open.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).unwrap();
    let busy = t.run(&["log", "a"]);
    assert_eq!(busy.status.code(), Some(10), "{busy:?}");
    let err = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("needs a one-time upgrade to format 10"),
        "{err}"
    );
    drop(lock);
    assert_eq!(format(&t), 10);
    t.ok(&["verify"]);
}

#[test]
fn commands_started_together_on_an_old_store_all_succeed() {
    let t = old_store(8);
    // One of them upgrades; the others wait for it instead of failing.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            t.cmd(&["log", "a"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .matches("version ")
                .count(),
            3
        );
    }
    assert_eq!(format(&t), 10);
}
