//! Backups over a changing store: touched files, a gc waiting during a backup, escaped names,
//! hard-link groups, versions the store lost, deep trees, and keys removed between runs.

use super::*;

/// A file whose times moved but whose content, mode and owner did not keeps its key version
/// (no index records for it); the snapshot still restores the new mtime. A chmod is a version.
#[test]
fn a_touched_file_keeps_its_version_and_the_snapshot_its_new_time() {
    let (dir, cas) = new_store();
    let src = dir.path().join("src");
    write(&src, "a.txt", b"same bytes");
    let first = backup(&cas, &src, "t", None);
    let v1 = head(&cas, "t/a.txt");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let f = fs::File::options()
        .write(true)
        .open(src.join("a.txt"))
        .unwrap();
    f.set_times(FileTimes::new().set_modified(when)).unwrap();
    let report = backup_report(&cas, &src, "t", None);
    assert_ne!(report.snapshot, first, "the new time makes a new snapshot");
    assert_eq!(report.info.summary.files_changed, 1, "{:?}", report.info);
    assert_eq!(cas.log("t/a.txt", usize::MAX).unwrap().len(), 1);
    assert_eq!(head(&cas, "t/a.txt"), v1);

    let out = dir.path().join("r");
    restore_into(&cas, &at("t", &report.snapshot), &out);
    let got = fs::metadata(out.join("a.txt")).unwrap().modified().unwrap();
    assert_eq!(got, when);

    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    backup(&cas, &src, "t", None);
    assert_eq!(
        cas.log("t/a.txt", usize::MAX).unwrap().len(),
        2,
        "chmod: a version"
    );
}

/// A backup reuses an unchanged file's version from its parent snapshot. Meanwhile a newer
/// run of the same tree (the file changed) finishes, `forget --keep-last 1` drops the parent
/// with that version, and a gc waits for the lock. The gc must not get in between the first
/// backup's file put and its snapshot's commit: the snapshot lists the reused version, which
/// must stay readable (it was freed, and the committed snapshot failed to restore with
/// "chunk ... is missing").
#[test]
fn a_gc_waiting_during_a_backup_keeps_the_versions_it_reuses() {
    use ouroboros_db::Progress;
    use std::sync::{mpsc, Mutex, Once};

    /// Runs `hook` once, at the first bytes the backup reads.
    struct AtFirstRead<'a> {
        once: Once,
        hook: &'a (dyn Fn() + Sync),
    }
    impl Progress for AtFirstRead<'_> {
        fn advance(&self, _n: u64) {
            self.once.call_once(self.hook);
        }
    }
    /// Says when the gc starts waiting for the lock.
    struct Waits(Mutex<mpsc::Sender<()>>);
    impl Progress for Waits {
        fn waiting(&self, _why: &str) {
            let _ = self.0.lock().unwrap().send(());
        }
    }

    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "z/f", b"content X");
    settle(&src.path().join("z/f"));
    // Its ctime too must be 2 s older than the run that follows, or it is read again.
    std::thread::sleep(Duration::from_millis(2100));
    let first = backup(&cas, src.path(), "p", None);
    let reused = head(&cas, "p/z/f");
    write(src.path(), "a/big", &noise(1, 8 << 20));

    let (start_gc, gc_now) = mpsc::channel::<()>();
    let (gc_waits, gc_waiting) = mpsc::channel::<()>();
    let start_gc = Mutex::new(start_gc);
    let gc_waiting = Mutex::new(gc_waiting);
    let hook = || {
        // The walk found z/f unchanged (it lists `a` then `z`, long before a/big is read).
        write(src.path(), "z/f", b"content Y");
        cas.put_tree(&BackupOptions {
            source: src.path().to_path_buf(),
            prefix: "p".into(),
            exclude: &|rel, _| rel == &b"a/big"[..],
            host: None,
            progress: &NoProgress,
        })
        .unwrap();
        cas.forget("p", &keep_last(1), false).unwrap();
        assert!(
            is_removed(&cas, "p/z/f", &reused),
            "the scenario needs it removed"
        );
        start_gc.lock().unwrap().send(()).unwrap();
        // The gc waits now (the files' put holds the lock); it must go on waiting until
        // the snapshot is committed.
        gc_waiting
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .unwrap();
    };
    let progress = AtFirstRead {
        once: Once::new(),
        hook: &hook,
    };
    let snapshot = std::thread::scope(|s| {
        let backup = s.spawn(|| {
            cas.put_tree(&BackupOptions {
                source: src.path().to_path_buf(),
                prefix: "p".into(),
                exclude: &|_, _| false,
                host: None,
                progress: &progress,
            })
            .unwrap()
            .snapshot
        });
        gc_now.recv().unwrap();
        cas.gc(&Waits(Mutex::new(gc_waits))).unwrap();
        backup.join().unwrap()
    });
    assert_ne!(snapshot, first);
    let got = restore(&cas, &at("p", &snapshot));
    assert_eq!(got[Path::new("z/f")], b"content X");
    assert_eq!(got[Path::new("a/big")], noise(1, 8 << 20));
    cas.gc(&NoProgress).unwrap();
    assert_eq!(
        restore(&cas, &at("p", &snapshot))[Path::new("z/f")],
        b"content X"
    );
}

/// A name holding a character keys refuse (a bidirectional override) is escaped in its key,
/// as a control character is, so a listing shows the override instead of obeying it; the
/// restore gives back the raw name.
#[test]
fn a_name_keys_refuse_is_escaped_in_its_key() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "evil\u{202E}txt.exe", b"x");
    let report = backup_report(&cas, src.path(), "p", None);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let mut out = Vec::new();
    cas.get("p/evil\\xe2\\x80\\xaetxt.exe", &mut out).unwrap();
    assert_eq!(out, b"x");
    assert_eq!(restore(&cas, "p")[Path::new("evil\u{202E}txt.exe")], b"x");
}

/// A hard-link group whose first name's version is lost: its other names are written from
/// their own versions, still linked to each other, and nothing is linked to a file this
/// restore did not write (an old file at the first name's path).
#[test]
fn a_hard_link_group_whose_first_name_is_lost_restores_its_other_names() {
    use std::os::unix::fs::MetadataExt;
    let (dir, cas) = new_store();
    let src = dir.path().join("src");
    write(&src, "h1", b"linked");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
    fs::hard_link(src.join("h1"), src.join("sub/h3")).unwrap();
    backup(&cas, &src, "t", None);
    let lost = head(&cas, "t/h1");
    let lmdb = cas.replica().lmdb();
    let mut txn = lmdb.write().unwrap();
    lmdb.blobs.delete(&mut txn, &lost).unwrap();
    txn.commit().unwrap();
    let target = dir.path().join("out");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("h1"), b"old").unwrap();
    let report = restore_report(&cas, "t", &target);
    assert_eq!(report.lost, 1, "{:?}", report.errors);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(fs::read(target.join("h1")).unwrap(), b"old");
    assert_eq!(fs::read(target.join("h2")).unwrap(), b"linked");
    assert_eq!(fs::read(target.join("sub/h3")).unwrap(), b"linked");
    let ino = |p: &str| fs::metadata(target.join(p)).unwrap().ino();
    assert_eq!(ino("h2"), ino("sub/h3"));
    assert_ne!(ino("h1"), ino("h2"));
}

#[test]
fn verify_reports_a_file_version_a_live_snapshot_lists_but_the_store_lost() {
    // What a gc racing a backup once left (a snapshot over a version it freed): every chunk
    // intact, yet the snapshot does not restore whole. verify must say so, and a restore
    // must name the lost file and restore every other.
    use ouroboros_db::store::removed::Removal;
    let (dir, cas) = new_store();
    let src = dir.path().join("src");
    write(&src, "a", b"first file");
    write(&src, "b", b"second file");
    write(&src, "c/d", b"third file");
    backup(&cas, &src, "t", None);
    assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
    let (a, b) = (head(&cas, "t/a"), head(&cas, "t/b"));
    let lmdb = cas.replica().lmdb();
    let mut txn = lmdb.write().unwrap();
    lmdb.blobs.delete(&mut txn, &a).unwrap();
    let freed = Removal {
        time: 1,
        whole_key: false,
        released: true,
    };
    lmdb.removed.put(&mut txn, &b, &freed).unwrap();
    txn.commit().unwrap();
    let report = cas.verify(false, &NoProgress).unwrap();
    assert!(!report.is_healthy());
    let reasons: Vec<String> = report
        .damage
        .iter()
        .map(|d| format!("{d:?}"))
        .filter(|d| d.contains("live snapshot"))
        .collect();
    assert_eq!(reasons.len(), 2, "{:?}", report.damage);
    assert!(
        reasons.iter().any(|r| r.contains("not stored")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("t/b@") && r.contains("gc freed")),
        "{reasons:?}"
    );
    let target = dir.path().join("out");
    // A dry run names the file whose version is gone, as the restore will.
    let dry = cas
        .restore_snapshot(
            "t",
            &target,
            &RestoreOptions {
                delete: false,
                dry_run: true,
                filter: &|_, _| true,
                owners: Some(OwnerPolicy::Skip),
                progress: &NoProgress,
            },
        )
        .unwrap();
    assert_eq!(dry.lost, 1, "{:?}", dry.errors);
    assert_eq!(dry.errors[0].0, "a");
    // Directories in the way: of the lost file (kept, as nothing replaces it) and of one
    // restored (replaced once its content is written).
    write(&target, "a/keep", b"mine");
    write(&target, "b/gone", b"replaced");
    let restored = restore_report(&cas, "t", &target);
    assert_eq!(restored.lost, 1, "{:?}", restored.errors);
    assert_eq!(restored.errors.len(), 1, "{:?}", restored.errors);
    assert_eq!(restored.errors[0].0, "a");
    // What was not written is no change.
    assert!(restored.changes.iter().all(|(p, _)| p != "a"));
    assert!(restored.changes.iter().any(|(p, _)| p == "b"));
    assert_eq!(fs::read(target.join("a/keep")).unwrap(), b"mine");
    assert_eq!(fs::read(target.join("b")).unwrap(), b"second file");
    assert_eq!(fs::read(target.join("c/d")).unwrap(), b"third file");
}

/// More directories than the walk keeps open for the reading (`dir_fd::MAX_OPEN`), each
/// with files, some nested: files past the bound are opened by path, and every one is
/// stored and restored.
#[test]
fn a_tree_of_more_directories_than_are_kept_open_restores_whole() {
    let (_s, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    let dirs = ouroboros_db::snapshot::dir_fd::MAX_OPEN * 2 + 3;
    for d in 0..dirs {
        write(
            src.path(),
            &format!("d{d}/f"),
            format!("file {d}").as_bytes(),
        );
        if d % 7 == 0 {
            write(src.path(), &format!("d{d}/sub/g"), &noise(d as u64, 3000));
        }
    }
    let report = backup_report(&cas, src.path(), "t", None);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(restore(&cas, "t"), files(src.path()));
}

/// `rm` of a file's key, then a backup of a tree that still holds the file, unchanged: the
/// key holds the file again (a new version, its content shared), as the snapshot does;
/// the other unchanged files are still not read.
#[test]
fn a_removed_key_whose_file_is_unchanged_holds_it_again_after_a_backup() {
    let (_d, cas) = new_store();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.txt", b"hello");
    write(src.path(), "b.txt", b"other");
    settle(&src.path().join("a.txt"));
    settle(&src.path().join("b.txt"));
    // Their ctimes too must be 2 s older than the run, or they are read again anyway.
    std::thread::sleep(Duration::from_millis(2100));
    backup(&cas, src.path(), "p", None);
    cas.remove("p/a.txt").unwrap();
    assert!(cas.get("p/a.txt", &mut Vec::new()).is_err());
    let report = backup_report(&cas, src.path(), "p", None);
    assert_eq!(report.info.summary.files_unchanged, 1, "b.txt only");
    assert_eq!(report.info.summary.bytes_added, 0, "the content is shared");
    let mut out = Vec::new();
    cas.get("p/a.txt", &mut out).unwrap();
    assert_eq!(out, b"hello");
    assert_eq!(restore(&cas, "p"), files(src.path()));
}
