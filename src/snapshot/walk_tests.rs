//! The walk under a tree that changes while it is walked: every entry's status, link target
//! and attributes are those of the directory the walk listed.
#![cfg(test)]

use std::cell::Cell;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::*;
use crate::snapshot::owners::Owners;

/// Walks `root` with `found` called on each file found.
fn walk_with(root: &Path, found: &dyn Fn(FoundFile)) -> Walked {
    walk_after(root, None, found)
}

/// [`walk_with`], after a run that recorded `parent` for the root.
fn walk_after(root: &Path, parent: Option<TreeRecord>, found: &dyn Fn(FoundFile)) -> Walked {
    let owners = Owners::system();
    let noatime = NoAtime::default();
    let cx = WalkContext {
        prefix: "t",
        exclude: &|_, _| false,
        parent: None,
        owners: &owners,
        noatime: &noatime,
        deleted: &Default::default(),
        found,
    };
    Walked::walk(root, 0, parent, &cx).unwrap()
}

/// The entries the walk recorded for relative directory `rel`.
fn entries(w: &Walked, rel: &str) -> Vec<Entry> {
    let d = w
        .dirs
        .iter()
        .find(|d| &d.rel[..] == rel.as_bytes())
        .unwrap_or_else(|| panic!("no directory {rel}"));
    d.entries().unwrap()
}

fn named<'e>(es: &'e [Entry], name: &str) -> &'e Entry {
    es.iter()
        .find(|e| e.name == name.as_bytes())
        .unwrap_or_else(|| panic!("no entry {name}"))
}

fn mkdir(p: &Path, mode: u32) {
    std::fs::create_dir(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A user swaps their directory for a link to another (root's) right after the walk listed
/// it: the entries after the swap are still those of the directory listed (the walk took
/// the status of each by path, through the link: another owner, mode and link target, and
/// a directory listed from elsewhere or refused).
#[test]
fn entries_are_those_of_the_listed_directory_after_it_is_swapped_for_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let root = base.join("root");
    let d = root.join("d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a"), b"first").unwrap();
    symlink("mine", d.join("b")).unwrap();
    mkdir(&d.join("c"), 0o700);
    std::fs::write(d.join("c/inner"), b"mine").unwrap();
    let other = base.join("other");
    std::fs::create_dir(&other).unwrap();
    symlink("theirs", other.join("b")).unwrap();
    mkdir(&other.join("c"), 0o755);
    std::fs::write(other.join("c/evil"), b"theirs").unwrap();
    let swapped = Cell::new(false);
    let w = walk_with(&root, &|f| {
        if f.path.ends_with("d/a") && !swapped.replace(true) {
            std::fs::rename(&d, root.join("d.orig")).unwrap();
            symlink(&other, &d).unwrap();
        }
    });
    assert!(swapped.get());
    let es = entries(&w, "d");
    assert_eq!(named(&es, "b").target, b"mine");
    assert_eq!(named(&es, "c").mode, 0o700);
    let inner: Vec<_> = entries(&w, "d/c").into_iter().map(|e| e.name).collect();
    assert_eq!(inner, vec![b"inner".to_vec()]);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
}

/// A directory renamed over between its parent's listing and its own is recorded as the
/// directory whose names were listed, not with the status of the one replaced.
#[test]
fn a_directory_renamed_over_before_it_is_listed_has_the_listed_ones_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    mkdir(&root.join("d"), 0o700);
    std::fs::write(root.join("e"), b"found after d is stat'ed").unwrap();
    mkdir(&root.join("x"), 0o751);
    std::fs::write(root.join("x/from-x"), b"x").unwrap();
    let renamed = Cell::new(false);
    let w = walk_with(&root, &|f| {
        if f.path.ends_with("e") && !renamed.replace(true) {
            std::fs::rename(root.join("x"), root.join("d")).unwrap();
        }
    });
    assert!(renamed.get());
    let es = entries(&w, "");
    assert_eq!(named(&es, "d").mode, 0o751);
    let names: Vec<_> = entries(&w, "d").into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"from-x".to_vec()]);
}

/// Directories, symlinks and FIFOs get their attributes from the walk; a regular file's are
/// left to the reading of its content.
#[test]
fn attributes_of_all_but_regular_files_are_read_by_the_walk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    mkdir(&root.join("d"), 0o755);
    std::fs::write(root.join("f"), b"x").unwrap();
    let set = |p: &Path| {
        rustix::fs::lsetxattr(p, c"user.k", b"v", rustix::fs::XattrFlags::empty()).is_ok()
    };
    if !set(&root.join("d")) || !set(&root.join("f")) {
        eprintln!("skipped: this file system has no user xattrs");
        return;
    }
    let w = walk_with(&root, &|_| {});
    let es = entries(&w, "");
    let want = vec![(b"user.k".to_vec(), b"v".to_vec())];
    assert_eq!(named(&es, "d").xattrs, want);
    assert!(named(&es, "f").xattrs.is_empty());
    assert_eq!(w.jobs.len(), 1);
}

/// A directory removed between its parent's listing and its own has no entry, and counts as
/// removed since the previous run as one its parent's listing missed would.
#[test]
fn a_directory_gone_before_its_listing_is_left_out_and_counted_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    mkdir(&root.join("d"), 0o755);
    std::fs::write(root.join("e"), b"found after d is stat'ed").unwrap();
    let before = TreeRecord {
        entries: entries(&walk_with(&root, &|_| {}), ""),
    };
    let mut w = walk_after(&root, Some(before), &|f| {
        if f.path.ends_with("e") {
            std::fs::remove_dir(root.join("d")).unwrap();
        }
    });
    assert_eq!(w.dirs.len(), 1);
    let names: Vec<_> = w.dirs[0].finish(&[]).unwrap();
    let names: Vec<_> = names.into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"e".to_vec()]);
    assert_eq!(w.removed, 1);
    assert!(w
        .notes
        .iter()
        .any(|(p, n)| p == b"d" && n.contains("vanished")));
}

/// A file unchanged since the parent snapshot gets the attributes it has now, not those the
/// parent recorded: a run by another user (who sees no `trusted.*` attributes) or on a file
/// system whose ctime ignores attribute changes must not hide them from the next run.
#[test]
fn an_unchanged_file_has_the_attributes_on_disk_not_the_parents() {
    use crate::cas::{Cas, CreateOptions};
    use crate::snapshot::stream::StreamReader;
    use crate::snapshot::BackupOptions;
    let store = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(src.path()).unwrap();
    let f = root.join("f");
    std::fs::write(&f, b"content").unwrap();
    let attr = rustix::fs::lsetxattr(&f, c"user.k", b"v", rustix::fs::XattrFlags::empty());
    if attr.is_err() {
        eprintln!("skipped: this file system has no user xattrs");
        return;
    }
    let cas = Cas::create(
        store.path(),
        &CreateOptions::default(),
        &crate::crypto::Identity::generate(),
    )
    .unwrap();
    let report = cas
        .put_tree(&BackupOptions {
            source: root.clone(),
            prefix: "p".into(),
            exclude: &|_, _| false,
            host: None,
            progress: &crate::progress::NoProgress,
        })
        .unwrap();
    let (_, blob) = cas.resolve_snapshot("p").unwrap();
    let reader = StreamReader::open(&cas, blob).unwrap();
    let mut parent = reader.tree(&report.info.root_tree().unwrap()).unwrap();
    assert_eq!(parent.entries[0].xattrs.len(), 1);
    parent.entries[0].xattrs.clear();
    let owners = Owners::system();
    let noatime = NoAtime::default();
    let cx = WalkContext {
        prefix: "p",
        exclude: &|_, _| false,
        // Every time counts as settled: the file is unchanged.
        parent: Some((&reader, i64::MAX)),
        owners: &owners,
        noatime: &noatime,
        deleted: &Default::default(),
        found: &|_| {},
    };
    let w = Walked::walk(&root, 0, Some(parent), &cx).unwrap();
    assert_eq!((w.unchanged, w.jobs.len()), (1, 0));
    let es = entries(&w, "");
    assert_eq!(
        named(&es, "f").xattrs,
        vec![(b"user.k".to_vec(), b"v".to_vec())]
    );
}

/// A directory replaced by a file or a symlink between its parent's listing and its own is
/// left out with a note, as a vanished one: the next run reads what stands there.
#[test]
fn a_directory_replaced_before_its_listing_is_left_out_with_a_note() {
    for link in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        mkdir(&root.join("d"), 0o755);
        std::fs::write(root.join("e"), b"found after d is stat'ed").unwrap();
        let mut w = walk_with(&root, &|f| {
            if f.path.ends_with("e") {
                std::fs::remove_dir(root.join("d")).unwrap();
                if link {
                    symlink("/", root.join("d")).unwrap();
                } else {
                    std::fs::write(root.join("d"), b"now a file").unwrap();
                }
            }
        });
        assert!(w.errors.is_empty(), "{:?}", w.errors);
        assert!(
            w.notes
                .iter()
                .any(|(p, n)| p == b"d" && n.contains("no longer a directory")),
            "{:?}",
            w.notes
        );
        let names: Vec<_> = w.dirs[0].finish(&[]).unwrap();
        assert_eq!(names.len(), 1, "{link}");
    }
}
