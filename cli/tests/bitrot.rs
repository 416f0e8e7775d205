//! Bit rot: stored slices damaged on disk (bytes flipped in `data.mdb` itself, slices
//! truncated or missing) in up to m of a chunk's k+m slices still read back right; `verify`
//! reports the damage, `verify --repair` restores it; beyond m a clear error names the key
//! and version while every other key still reads. Also what damaged LMDB pages do.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::fs::FileExt;

use common::{random_bytes, TestStore};
use ouroboros_db::{Cas, Hash};

/// The records holding the slices of the newest version of `key`, in order: its chunks,
/// or for a small tail chunk (a pack member) its pack. Only those split the full k+m ways:
/// a pack of a tail of a few bytes has fewer slices (where the tail falls depends on the
/// store's random chunking key).
fn chunks_of(t: &TestStore, key: &str) -> Vec<Hash> {
    let cas = Cas::open(&t.store()).unwrap();
    let (_, blob) = cas.newest_head_of(key).unwrap().unwrap();
    let txn = cas.replica().lmdb().read().unwrap();
    let mut out: Vec<Hash> = Vec::new();
    for c in &blob.chunks {
        let r = cas
            .replica()
            .lmdb()
            .chunks
            .get(&txn, &c.id)
            .unwrap()
            .unwrap();
        let id = r.pack().map_or(c.id, |(pack, _)| pack);
        let lmdb = cas.replica().lmdb();
        let whole = lmdb.chunks.get(&txn, &id).unwrap().unwrap().slices.len() == 6;
        if whole && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Slice `index` of `chunk` as stored.
fn slice_bytes(t: &TestStore, chunk: &Hash, index: u8) -> Vec<u8> {
    let cas = Cas::open(&t.store()).unwrap();
    let txn = cas.replica().lmdb().read().unwrap();
    let bundle = cas.replica().lmdb().slices.bundle(&txn, chunk).unwrap();
    bundle.get(index).unwrap().to_vec()
}

/// Flips a few bits of slice `index` of `chunk` in the store's file, behind LMDB's back,
/// as failing media would.
fn flip_on_disk(t: &TestStore, chunk: &Hash, index: u8) {
    let slice = slice_bytes(t, chunk, index);
    let path = t.store().join("data.mdb");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let disk = std::fs::read(&path).unwrap();
    let probe = &slice[..64];
    let at = disk
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("slice found in data.mdb");
    for off in [7usize, slice.len() / 2, slice.len() - 1] {
        let mut b = [0u8];
        file.read_exact_at(&mut b, (at + off) as u64).unwrap();
        b[0] ^= 0x5a;
        file.write_all_at(&b, (at + off) as u64).unwrap();
    }
    file.sync_all().unwrap();
}

/// Replaces (`Some`, e.g. a truncated copy) or drops (`None`) one slice.
fn damage(t: &TestStore, chunk: &Hash, index: u8, bytes: Option<&[u8]>) {
    common::damage_slice(&Cas::open(&t.store()).unwrap(), chunk, index, bytes);
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn damage_up_to_m_is_read_through_reported_and_repaired() {
    let t = TestStore::init("4+2");
    let a = random_bytes(6 << 20, 1);
    let b = random_bytes(1 << 20, 2);
    t.put("a", &a);
    t.put("b", &b);
    let chunks = chunks_of(&t, "a");
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    // Per chunk, two of six slices: flipped on disk + missing, flipped + truncated, ...
    for (i, c) in chunks.iter().enumerate() {
        let first = (i % 6) as u8;
        let second = ((i + 3) % 6) as u8;
        flip_on_disk(&t, c, first);
        match i % 3 {
            0 => damage(&t, c, second, None),
            1 => {
                let s = slice_bytes(&t, c, second);
                damage(&t, c, second, Some(&s[..s.len() / 3]));
            }
            _ => flip_on_disk(&t, c, second),
        }
    }
    assert!(t.get("a") == a, "reads survive m damaged slices per chunk");
    assert!(t.get("b") == b);
    let v = t.run(&["verify", "--json"]);
    assert_eq!(v.status.code(), Some(6), "{}", stderr(&v));
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    let damaged: Vec<&str> = report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["chunk"].as_str().unwrap())
        .collect();
    for c in &chunks {
        assert!(damaged.contains(&c.to_hex().as_str()), "{c:?} reported");
    }
    let r = t.run(&["verify", "--repair"]);
    assert!(r.status.success(), "{}", stderr(&r));
    t.ok(&["verify"]);
    for c in &chunks {
        let cas = Cas::open(&t.store()).unwrap();
        let txn = cas.replica().lmdb().read().unwrap();
        let n = cas
            .replica()
            .lmdb()
            .slices
            .bundle(&txn, c)
            .unwrap()
            .slices
            .len();
        assert_eq!(n, 6, "every slice back after repair");
    }
    assert!(t.get("a") == a);
}

#[test]
fn damage_beyond_m_names_the_key_and_version_and_spares_the_rest() {
    let t = TestStore::init("4+2");
    let a = random_bytes(3 << 20, 3);
    let b = random_bytes(2 << 20, 4);
    let c = random_bytes(100_000, 5);
    let ha = t.put("a", &a);
    t.put("b", &b);
    t.put("c", &c);
    let chunk = chunks_of(&t, "a")[0];
    flip_on_disk(&t, &chunk, 0);
    flip_on_disk(&t, &chunk, 1);
    damage(&t, &chunk, 5, None);
    let g = t.run(&["get", "a"]);
    assert_eq!(g.status.code(), Some(6), "corrupt beyond repair");
    let err = stderr(&g);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("a@{}", &ha[..8])), "{err}");
    assert!(g.stdout.is_empty() || g.stdout.len() < a.len());
    assert!(t.get("b") == b, "every other key still reads");
    assert!(t.get("c") == c);
    let v = t.run(&["verify", "--repair"]);
    assert_eq!(v.status.code(), Some(6));
    let out = String::from_utf8_lossy(&v.stdout).into_owned() + &stderr(&v);
    assert!(
        out.contains(&format!("a@{}", &ha[..8])),
        "verify names the version: {out}"
    );
    // The damage stays reported (nothing is silently dropped) and other keys still read.
    assert_eq!(t.run(&["verify"]).status.code(), Some(6));
    assert!(t.get("b") == b);
    // Removing the lost version and collecting garbage leaves a healthy store.
    t.ok(&["rm", "a"]);
    t.ok(&["gc"]);
    t.ok(&["verify"]);
    assert!(t.get("c") == c);
}

/// LMDB keeps no checksums of its own pages; ouro's own checks catch damage to records
/// (every blob, chunk record and slice is hash-checked) but a damaged B-tree page may
/// make LMDB report MDB_CORRUPTED or lose what it points to. This records what happens to
/// the two meta pages, which LMDB does guard: RELIABILITY.md tells how to recover.
#[test]
fn damaged_lmdb_meta_pages() {
    let t = TestStore::init("2+1");
    let data = random_bytes(200_000, 6);
    t.put("k", &data);
    let path = t.store().join("data.mdb");
    let page = 4096u64;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut original = vec![0u8; 2 * page as usize];
    file.read_exact_at(&mut original, 0).unwrap();
    // One meta page damaged: LMDB falls back to the other one, which describes the
    // previous commit: the store opens and verifies, at most the last commit is lost.
    let garbage = random_bytes(page as usize, 7);
    for meta in 0..2u64 {
        file.write_all_at(&original, 0).unwrap();
        file.write_all_at(&garbage[16..page as usize], meta * page + 16)
            .unwrap();
        let v = t.run(&["verify"]);
        let err = stderr(&v);
        assert!(
            v.status.success() || v.status.code() == Some(1) || v.status.code() == Some(6),
            "meta {meta}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Both damaged: a clear error, no crash.
    file.write_all_at(&garbage[16..page as usize], 16).unwrap();
    file.write_all_at(&garbage[16..page as usize], page + 16)
        .unwrap();
    let v = t.run(&["get", "k"]);
    let err = stderr(&v);
    assert!(!v.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    eprintln!("both meta pages damaged: exit {:?}: {err}", v.status.code());
}

/// LMDB maps `data.mdb` and follows page numbers into the map without checking the file's
/// size: a file cut short used to kill every command with SIGBUS (exit 135, nothing on
/// stderr), and one cut by a page let `ls`, `get` and `verify` pass while the next `put`
/// died. Every command now refuses the store as damaged (exit 6) with a message, at every
/// length, and leaves the file as it was (LMDB would have written new meta pages into an
/// empty one).
#[test]
fn a_truncated_data_file_is_damage_never_a_signal() {
    use std::os::unix::process::ExitStatusExt;
    let t = TestStore::init("2+1");
    t.put("k", &random_bytes(3 << 20, 8));
    t.put("small", b"small");
    let path = t.store().join("data.mdb");
    let full = std::fs::read(&path).unwrap();
    let page = 4096;
    let lengths = [0, page, 2 * page, full.len() / 2, full.len() - page];
    for len in lengths {
        for args in [
            &["ls"][..],
            &["get", "k"],
            &["put", "k2", "-"],
            &["verify"],
            &["stats"],
        ] {
            std::fs::write(&path, &full[..len]).unwrap();
            let out = t.run_stdin(args, b"new content");
            let err = stderr(&out);
            assert_eq!(
                out.status.signal(),
                None,
                "{args:?} at {len} bytes: killed by a signal"
            );
            assert_eq!(out.status.code(), Some(6), "{args:?} at {len} bytes: {err}");
            assert!(
                err.contains("store damaged") && err.contains(&format!("data.mdb is {len} bytes")),
                "{args:?} at {len} bytes: {err}"
            );
            assert!(err.contains("node backup"), "says how to recover: {err}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                len as u64,
                "{args:?} left the file as it was"
            );
        }
    }
    // Whole again: everything works.
    std::fs::write(&path, &full).unwrap();
    t.ok(&["verify"]);
    assert_eq!(t.get("small"), b"small");
}
