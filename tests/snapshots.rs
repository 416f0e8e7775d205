//! Snapshots end to end on real stores in temp dirs: forget (retention per host and path,
//! removal of the file versions only forgotten snapshots used, then gc) and diff.

use std::collections::BTreeMap;
use std::fs::{self, FileTimes};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ouroboros_db::model::EntryKind;
use ouroboros_db::snapshot::stream::StreamReader;
use ouroboros_db::snapshot::{
    BackupOptions, DiffChange, KeepPolicy, KeepWithin, OwnerPolicy, RestoreOptions, RestoreReport,
};
use ouroboros_db::{Cas, CreateOptions, Error, Hash, Identity, NoProgress};

fn new_store() -> (tempfile::TempDir, Cas) {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::create(
        &dir.path().join("s"),
        &CreateOptions::default(),
        &Identity::generate(),
    )
    .unwrap();
    (dir, cas)
}

/// Deterministic incompressible bytes (xorshift), so each seed gives chunks of its own.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn backup(cas: &Cas, src: &Path, prefix: &str, host: Option<&str>) -> Hash {
    backup_report(cas, src, prefix, host).snapshot
}

/// `put -r` of `src` into `prefix`, with its report.
fn backup_report(
    cas: &Cas,
    src: &Path,
    prefix: &str,
    host: Option<&str>,
) -> ouroboros_db::snapshot::BackupReport {
    cas.put_tree(&BackupOptions {
        source: src.to_path_buf(),
        prefix: prefix.into(),
        exclude: &|_, _| false,
        host: host.map(str::to_string),
        progress: &NoProgress,
    })
    .unwrap()
}

fn keep_last(n: u32) -> KeepPolicy {
    KeepPolicy {
        last: Some(n),
        ..KeepPolicy::default()
    }
}

/// Every regular file under `root`, by relative path.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let t = fs::symlink_metadata(&p).unwrap().file_type();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let data = fs::read(&p).unwrap();
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), data);
            }
        }
    }
    out
}

fn restore(cas: &Cas, reference: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("r");
    restore_into(cas, reference, &target);
    files(&target)
}

/// Restores snapshot `reference` into `target`, owners left as they come, and checks that
/// nothing failed.
fn restore_into(cas: &Cas, reference: &str, target: &Path) {
    let report = restore_report(cas, reference, target);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// Restores snapshot `reference` into `target`, owners left as they come; its report.
fn restore_report(cas: &Cas, reference: &str, target: &Path) -> RestoreReport {
    cas.restore_snapshot(
        reference,
        target,
        &RestoreOptions {
            delete: false,
            dry_run: false,
            filter: &|_, _| true,
            owners: Some(OwnerPolicy::Skip),
            progress: &NoProgress,
        },
    )
    .unwrap()
}

fn at(prefix: &str, h: &Hash) -> String {
    format!("{prefix}@{}", h.to_hex())
}

/// The current head of `key`.
fn head(cas: &Cas, key: &str) -> Hash {
    cas.log(key, 1).unwrap()[0].hash
}

/// True when version `v` of `key` is marked removed.
fn is_removed(cas: &Cas, key: &str, v: &Hash) -> bool {
    cas.log(key, usize::MAX)
        .unwrap()
        .iter()
        .find(|i| i.hash == *v)
        .map(|i| i.removed)
        .unwrap()
}

/// Ten runs: `log.bin` changes every run, `tmpN.bin` lives for one run (runs 2 and 5), two
/// files never change. forget --keep-last 3 then gc frees what only runs 1-7 used.
#[test]
fn forget_then_gc_frees_what_only_forgotten_snapshots_used() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "static.txt", b"never changes");
    write(src.path(), "docs/readme.md", &noise(1000, 5000));
    let mut runs = Vec::new();
    for run in 1..=10u64 {
        write(src.path(), "log.bin", &noise(run, 300_000));
        if run == 2 || run == 5 {
            write(
                src.path(),
                &format!("tmp{run}.bin"),
                &noise(100 + run, 200_000),
            );
        }
        if run == 3 || run == 6 {
            fs::remove_file(src.path().join(format!("tmp{}.bin", run - 1))).unwrap();
        }
        let snap = backup(&cas, src.path(), "p", None);
        runs.push((snap, head(&cas, "p/log.bin"), files(src.path())));
    }
    let before = cas.stats().unwrap();

    let report = cas.forget("p", &keep_last(3), false).unwrap();
    let kept: Vec<Hash> = report.kept().map(|d| d.hash).collect();
    let gone: Vec<Hash> = report.forgotten().map(|d| d.hash).collect();
    assert_eq!(kept, runs[7..].iter().map(|r| r.0).collect::<Vec<_>>());
    assert_eq!(gone, runs[..7].iter().map(|r| r.0).collect::<Vec<_>>());
    assert!(report.snapshots[9]
        .reasons
        .contains(&"newest snapshot".to_string()));
    // log.bin of runs 1-7; tmp2 and tmp5 are heads of their keys, the rest is shared.
    assert_eq!(report.versions_removed, 7);
    for (snap, log, _) in &runs[..7] {
        assert!(matches!(
            cas.resolve_snapshot(&at("p", snap)),
            Err(Error::NotFound(_))
        ));
        assert!(is_removed(&cas, "p/log.bin", log));
    }
    for (_, log, _) in &runs[7..] {
        assert!(!is_removed(&cas, "p/log.bin", log));
    }
    assert_eq!(cas.snapshots("p").unwrap().len(), 3);

    let gc = cas.gc(&NoProgress).unwrap();
    assert!(gc.versions_released >= 14, "{gc:?}");
    assert!(gc.chunks_freed >= 7, "{gc:?}");
    let after = cas.stats().unwrap();
    assert!(
        after.unique_bytes + 7 * 300_000 <= before.unique_bytes,
        "{before:?} -> {after:?}"
    );
    for (snap, _, expected) in &runs[7..] {
        assert_eq!(&restore(&cas, &at("p", snap)), expected);
    }
    // Deleted files keep their last version: it is the head of their key.
    let mut out = Vec::new();
    cas.get("p/tmp2.bin", &mut out).unwrap();
    assert_eq!(out, noise(102, 200_000));
}

#[test]
fn keep_last_one_keeps_the_newest_and_every_key_head() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.txt", b"1");
    write(src.path(), "only-in-1.txt", b"short-lived");
    let s1 = backup(&cas, src.path(), "p", None);
    let a1 = head(&cas, "p/a.txt");
    fs::remove_file(src.path().join("only-in-1.txt")).unwrap();
    write(src.path(), "a.txt", b"22");
    backup(&cas, src.path(), "p", None);
    let a2 = head(&cas, "p/a.txt");
    write(src.path(), "a.txt", b"333");
    let s3 = backup(&cas, src.path(), "p", None);
    let a3 = head(&cas, "p/a.txt");
    let only = head(&cas, "p/only-in-1.txt");

    let report = cas.forget("p/", &keep_last(1), false).unwrap();
    assert_eq!(report.prefix, "p");
    assert_eq!(report.kept().map(|d| d.hash).collect::<Vec<_>>(), [s3]);
    assert_eq!(report.forgotten().count(), 2);
    assert_eq!(report.versions_removed, 2);
    assert!(is_removed(&cas, "p/a.txt", &a1));
    assert!(is_removed(&cas, "p/a.txt", &a2));
    assert!(!is_removed(&cas, "p/a.txt", &a3));
    assert!(!is_removed(&cas, "p/only-in-1.txt", &only));
    assert_eq!(head(&cas, "p/a.txt"), a3);
    assert_eq!(head(&cas, "p/only-in-1.txt"), only);
    assert_eq!(cas.resolve_snapshot("p").unwrap().0, s3);
    assert!(cas.resolve_snapshot(&at("p", &s1)).is_err());

    // Again: nothing left to forget.
    let again = cas.forget("p", &keep_last(1), false).unwrap();
    assert_eq!((again.forgotten().count(), again.versions_removed), (0, 0));
    cas.gc(&NoProgress).unwrap();
    let mut out = Vec::new();
    cas.get("p/only-in-1.txt", &mut out).unwrap();
    assert_eq!(out, b"short-lived");
    assert_eq!(
        restore(&cas, "p"),
        BTreeMap::from([(PathBuf::from("a.txt"), b"333".to_vec())])
    );
}

#[test]
fn two_hosts_in_one_prefix_each_keep_their_newest() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    let mut newest = BTreeMap::new();
    for run in 0..6u64 {
        let host = if run % 2 == 0 { "alpha" } else { "beta" };
        write(src.path(), "a.txt", &noise(run, 1000));
        let s = backup(&cas, src.path(), "p", Some(host));
        newest.insert(host, (s, files(src.path())));
    }
    let report = cas.forget("p", &keep_last(1), false).unwrap();
    assert_eq!(report.forgotten().count(), 4);
    let kept: Vec<(String, Hash)> = report.kept().map(|d| (d.host.clone(), d.hash)).collect();
    assert_eq!(
        kept,
        [
            ("alpha".to_string(), newest["alpha"].0),
            ("beta".to_string(), newest["beta"].0)
        ]
    );
    assert!(report
        .kept()
        .all(|d| d.reasons.contains(&"newest snapshot".to_string())));
    let live: Vec<String> = cas
        .snapshots("p")
        .unwrap()
        .iter()
        .map(|s| s.info.host.clone())
        .collect();
    assert_eq!(live, ["alpha", "beta"]);
    cas.gc(&NoProgress).unwrap();
    for (s, expected) in newest.values() {
        assert_eq!(&restore(&cas, &at("p", s)), expected);
    }
}

#[test]
fn dry_run_changes_nothing() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    for run in 0..4u64 {
        write(src.path(), "a.txt", &noise(run, 100_000));
        backup(&cas, src.path(), "p", None);
    }
    let log_before = cas.log("p/a.txt", usize::MAX).unwrap();
    let dry = cas.forget("p", &keep_last(1), true).unwrap();
    assert!(dry.dry_run);
    assert_eq!((dry.forgotten().count(), dry.versions_removed), (3, 3));
    assert_eq!(cas.snapshots("p").unwrap().len(), 4);
    assert_eq!(cas.log("p/a.txt", usize::MAX).unwrap(), log_before);
    assert_eq!(cas.gc(&NoProgress).unwrap().chunks_freed, 0);
    let real = cas.forget("p", &keep_last(1), false).unwrap();
    assert_eq!(real.snapshots, dry.snapshots);
    assert_eq!(real.versions_removed, dry.versions_removed);
    assert!(cas.gc(&NoProgress).unwrap().chunks_freed >= 3);
}

/// Snapshots of an enclosing prefix (`home`) keep the versions they share with the
/// snapshots of `home/ann` that forget drops.
#[test]
fn overlapping_prefixes_keep_shared_versions() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "ann/f.txt", b"first");
    let home = backup(&cas, src.path(), "home", None);
    let v1 = head(&cas, "home/ann/f.txt");
    backup(&cas, &src.path().join("ann"), "home/ann", None);
    assert_eq!(
        head(&cas, "home/ann/f.txt"),
        v1,
        "unchanged: the same version"
    );
    write(src.path(), "ann/f.txt", b"second");
    backup(&cas, &src.path().join("ann"), "home/ann", None);

    let report = cas.forget("home/ann", &keep_last(1), false).unwrap();
    assert_eq!(
        (report.forgotten().count(), report.versions_removed),
        (1, 0)
    );
    assert!(!is_removed(&cas, "home/ann/f.txt", &v1));
    cas.gc(&NoProgress).unwrap();
    assert_eq!(
        restore(&cas, &at("home", &home)),
        BTreeMap::from([(PathBuf::from("ann/f.txt"), b"first".to_vec())])
    );
}

/// forget from cron while put -r runs: no live snapshot ever loses a file.
#[test]
fn forget_racing_backups_loses_nothing() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "static.txt", b"always here");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for run in 0..8u64 {
                write(src.path(), "a.txt", &noise(run, 50_000));
                backup(&cas, src.path(), "p", None);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            match cas.forget("p", &keep_last(1), false) {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    cas.forget("p", &keep_last(1), false).unwrap();
    cas.gc(&NoProgress).unwrap();
    for snap in cas.snapshots("p").unwrap() {
        let got = restore(&cas, &at("p", &snap.hash));
        assert_eq!(got.len(), 2);
        assert_eq!(got[Path::new("static.txt")], b"always here");
    }
    assert_eq!(restore(&cas, "p"), files(src.path()));
}

/// Times that keep a file "unchanged" for put -r and its atime still on read (relatime
/// updates an atime only when it is older than mtime or ctime).
fn settle(path: &Path) {
    let now = SystemTime::now();
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_times(
        FileTimes::new()
            .set_accessed(now + Duration::from_secs(3600))
            .set_modified(now - Duration::from_secs(3600)),
    )
    .unwrap();
}

#[test]
fn diff_finds_each_kind_of_change_and_skips_equal_subtrees() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    for (rel, data) in [
        ("keep.txt", &b"same"[..]),
        ("changed.txt", b"before"),
        ("removed.txt", b"x"),
        ("chmod.txt", b"perm"),
        ("to_link", b"f"),
        ("dir_to_file/inner.txt", b"i"),
        ("gone/a.txt", b"a"),
        ("gone/sub/b.txt", b"b"),
        ("same/deep/x.txt", b"x"),
        ("same/y.txt", b"y"),
    ] {
        write(root, rel, data);
        settle(&root.join(rel));
    }
    // Past the 2 s in which put -r does not trust times, so run 2 reuses unchanged files.
    std::thread::sleep(Duration::from_millis(2100));
    let first = backup(&cas, root, "p", None);
    assert!(matches!(
        cas.last_two_snapshots("p"),
        Err(Error::NotFound(_))
    ));

    write(root, "changed.txt", b"after!");
    fs::remove_file(root.join("removed.txt")).unwrap();
    fs::set_permissions(root.join("chmod.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(root.join("to_link")).unwrap();
    symlink("keep.txt", root.join("to_link")).unwrap();
    fs::remove_dir_all(root.join("dir_to_file")).unwrap();
    write(root, "dir_to_file", b"now a file");
    fs::remove_dir_all(root.join("gone")).unwrap();
    write(root, "added.txt", b"new");
    write(root, "new/n1.txt", b"1");
    write(root, "new/n2/x.txt", b"2");
    let second = backup(&cas, root, "p", None);

    let (older, newer) = cas.last_two_snapshots("p").unwrap();
    assert_eq!(
        (older.to_string(), newer.to_string()),
        (at("p", &first), at("p", &second))
    );
    let d = cas.snapshot_diff(&older, &newer).unwrap();
    assert_eq!((d.from, d.to), (first, second));
    let got: Vec<(String, DiffChange, EntryKind)> = d
        .changes
        .iter()
        .map(|c| (String::from_utf8(c.path.clone()).unwrap(), c.change, c.kind))
        .collect();
    let want = [
        ("added.txt", DiffChange::Added, EntryKind::File),
        ("changed.txt", DiffChange::Content, EntryKind::File),
        ("chmod.txt", DiffChange::Metadata, EntryKind::File),
        ("dir_to_file", DiffChange::Type, EntryKind::File),
        ("gone", DiffChange::Removed, EntryKind::Dir),
        ("new", DiffChange::Added, EntryKind::Dir),
        ("removed.txt", DiffChange::Removed, EntryKind::File),
        ("to_link", DiffChange::Type, EntryKind::Symlink),
    ]
    .map(|(p, c, k)| (p.to_string(), c, k));
    assert_eq!(got, want);
    assert_eq!(cas.diff_snapshots(&older, &newer).unwrap(), d.changes);

    // `same/` is one tree in both runs, so only the two roots were read.
    let subtree = |snap: &Hash| {
        let blob = cas.blob(snap).unwrap();
        let root_tree = blob.meta.snapshot().unwrap().root_tree().unwrap();
        let reader = StreamReader::open(&cas, blob).unwrap();
        reader
            .tree(&root_tree)
            .unwrap()
            .get(b"same")
            .unwrap()
            .content
    };
    if subtree(&first) == subtree(&second) {
        assert_eq!(d.trees_read, 2);
    } else {
        // A file system that updates atimes on every read (strictatime) changes the
        // recorded entries; the diff must still list nothing under same/.
        eprintln!(
            "same/ was re-recorded (strictatime?): {} trees read",
            d.trees_read
        );
    }

    // Reversed: additions become removals, types flip back.
    let back = cas.diff_snapshots(&newer, &older).unwrap();
    let kinds: Vec<(&[u8], DiffChange)> =
        back.iter().map(|c| (c.path.as_slice(), c.change)).collect();
    assert!(kinds.contains(&(&b"added.txt"[..], DiffChange::Removed)));
    assert!(kinds.contains(&(&b"gone"[..], DiffChange::Added)));
    assert!(back
        .iter()
        .any(|c| c.path == b"dir_to_file" && c.kind == EntryKind::Dir));

    // Another prefix of the same tree: other versions, same content and metadata.
    backup(&cas, root, "q", None);
    assert_eq!(cas.diff_snapshots("p", "q").unwrap(), []);
    assert_eq!(cas.diff_snapshots("p", "p").unwrap(), []);
}

#[test]
fn bad_refs_and_policies_are_errors_not_panics() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.txt", b"a");
    backup(&cas, src.path(), "p", None);
    let usage = |e: Error| {
        matches!(
            e,
            Error::InvalidArgument(_) | Error::InvalidKey { .. } | Error::InvalidRef { .. }
        )
    };
    for (from, to) in [
        ("nope", "p"),
        ("p", "nope"),
        ("p@~5", "p"),
        ("p@00000000deadbeef", "p"),
    ] {
        let e = cas.diff_snapshots(from, to).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{from} {to}: {e:?}");
    }
    assert!(usage(cas.diff_snapshots("", "p").unwrap_err()));
    assert!(usage(cas.diff_snapshots("p@~x", "p").unwrap_err()));
    assert!(matches!(
        cas.last_two_snapshots("p"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        cas.last_two_snapshots("nope"),
        Err(Error::NotFound(_))
    ));
    assert!(usage(cas.last_two_snapshots("").unwrap_err()));

    let e = cas.forget("p", &KeepPolicy::default(), false).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("at least one --keep-*")),
        "{e:?}"
    );
    assert!(usage(cas.forget("p", &keep_last(0), false).unwrap_err()));
    assert!(matches!(
        cas.forget("nope", &keep_last(1), true),
        Err(Error::NotFound(_))
    ));
    assert!(usage(cas.forget("", &keep_last(1), false).unwrap_err()));
    assert!(usage(cas.forget("/abs", &keep_last(1), false).unwrap_err()));
    assert!(usage(KeepWithin::parse("3x").unwrap_err()));
    let within = KeepPolicy {
        within: Some(KeepWithin::parse("1d").unwrap()),
        ..KeepPolicy::default()
    };
    assert_eq!(cas.forget("p", &within, false).unwrap().kept().count(), 1);
    assert_eq!(cas.snapshots("p").unwrap().len(), 1);
}

// Parts kept in files of their own, declared last so that they see the macros above.
#[path = "snapshots/backups.rs"]
mod backups;
