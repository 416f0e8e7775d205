//! A check of LMDB's data file before it is mapped: LMDB maps `data.mdb` and follows page
//! numbers into the map without looking at the file's size, so a file cut short (a bad
//! copy, a full disk during a restore, a truncating tool) kills the process with SIGBUS on
//! the first page past its end, with nothing on stderr. This reads LMDB's two meta pages
//! with plain file I/O and refuses the store, as damaged, when the file ends before the
//! last page the newest meta page says is in use.
//!
//! A shorter file is not always damage: a page a transaction allocated past the end and
//! freed again before committing is never written (LMDB's own comment on `mm_last_pg`:
//! "the file may be shorter if the freeDB lists the final pages"). So when the file is
//! short, the free-page B-tree is read too, and only pages past the end that it does not
//! list count as missing.
//!
//! The layout read here (LMDB 0.9, `mdb.c`, 64-bit little-endian, `MDB_DEVEL` off): a page
//! starts with a 16-byte header (`mp_pgno` u64, `mp_pad` u16, `mp_flags` u16, `mp_lower`
//! u16, `mp_upper` u16; an overflow page has `mp_pages` u32 in place of the last two); a
//! meta page's `MDB_meta` follows it: magic, version, address, mapsize, two `MDB_db`
//! records (free, main; 48 bytes each, the free one's first u32 is the page size), then
//! `mm_last_pg` and `mm_txnid`.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// LMDB's magic number, in every meta page.
const MAGIC: u32 = 0xBEEF_C0DE;
/// LMDB's data format version (`MDB_DATA_VERSION` with `MDB_DEVEL` off).
const DATA_VERSION: u32 = 1;
/// Size of a page header (`PAGEHDRSZ` on 64-bit).
const HEADER: usize = 16;
/// Bytes of a meta page LMDB itself reads: the header and `MDB_meta`.
const META_LEN: usize = HEADER + 136;
/// The page size LMDB uses on this platform, assumed when the first meta page is unreadable.
const DEFAULT_PAGE: u64 = 4096;
/// Page flags (`mp_flags`).
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
/// Leaf node flag: the data lives on overflow pages.
const F_BIGDATA: u16 = 0x01;
/// An empty tree's root.
const P_INVALID: u64 = u64::MAX;
/// How often the check starts again when a writer committed while it read.
const ATTEMPTS: usize = 3;

/// What one meta page says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MetaPage {
    page_size: u64,
    free_root: u64,
    last_page: u64,
    txnid: u64,
}

/// Checks that `data.mdb` in `dir` holds every page LMDB's newest meta page says is in use
/// (or that those past its end are free); [`Error::Damaged`] when not. A store whose meta
/// pages are both unreadable is left to LMDB, which reports it (`MDB_INVALID`).
pub fn check(dir: &Path) -> Result<()> {
    // A
    // The layout read below is that of 64-bit little-endian builds of LMDB.
    if !cfg!(all(target_endian = "little", target_pointer_width = "64")) {
        return Ok(());
    }
    let path = dir.join("data.mdb");
    let file =
        File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    for _ in 0..ATTEMPTS {
        // Meta pages first, the size after: a writer extends the file before it writes the
        // meta page that needs the new pages, so the size read after is never too small.
        let metas = read_metas(&file)?;
        let len = file_len(&file, &path)?;
        let Some(meta) = newest(&metas) else {
            return match len < 2 * DEFAULT_PAGE {
                true => Err(too_short_for_metas(&path, len, first_page_size(&metas))),
                false => Ok(()),
            };
        };
        if len < 2 * meta.page_size {
            return Err(too_short_for_metas(&path, len, meta.page_size));
        }
        let need = meta
            .last_page
            .saturating_add(1)
            .saturating_mul(meta.page_size);
        if len >= need || tail_is_free(&file, &meta, len) {
            return Ok(());
        }
        // A writer that committed meanwhile may have reused pages of the free tree read
        // above: read again. With the same meta page, the damage is real.
        if newest(&read_metas(&file)?) == Some(meta) {
            return Err(Error::Damaged(format!(
                "{} is {len} bytes, LMDB's meta pages say it needs {need} (page {} of {} bytes is in use): restore it from a backup (`ouro node backup`, `ouro --store NEW node restore BACKUP`) or, on a cluster node, wipe the store and rejoin; see RELIABILITY.md, \"Damage to LMDB's own pages\"",
                path.display(),
                meta.last_page,
                meta.page_size
            )));
        }
    }
    Ok(())
}

/// The damage of a file too short to hold LMDB's two meta pages.
fn too_short_for_metas(path: &Path, len: u64, page_size: u64) -> Error {
    // A
    Error::Damaged(format!(
        "{} is {len} bytes, shorter than LMDB's two meta pages ({} bytes): restore it from a backup (`ouro node backup`, `ouro --store NEW node restore BACKUP`) or, on a cluster node, wipe the store and rejoin; see RELIABILITY.md, \"Damage to LMDB's own pages\"",
        path.display(),
        2 * page_size
    ))
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    // A
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))
}

/// The two meta pages, as LMDB finds them: the first at offset 0, the second one page
/// size (the first's) further. `None` for one that is absent or invalid.
fn read_metas(file: &File) -> Result<[Option<MetaPage>; 2]> {
    // A
    let first = read_meta(file, 0)?;
    let second = match first {
        Some(m) => read_meta(file, m.page_size)?,
        None => None,
    };
    Ok([first, second])
}

/// The meta page at `offset`, when it is one: the meta flag, magic and version right,
/// and a page size LMDB could have written (a power of two, 512 B to 64 KiB).
fn read_meta(file: &File, offset: u64) -> Result<Option<MetaPage>> {
    // A
    let mut b = [0u8; META_LEN];
    match file.read_exact_at(&mut b, offset) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("reading LMDB's meta pages", e)),
    }
    let page_size = u64::from(u32_at(&b, HEADER + 24));
    let valid = u16_at(&b, 10) & P_META != 0
        && u32_at(&b, HEADER) == MAGIC
        && u32_at(&b, HEADER + 4) == DATA_VERSION
        && page_size.is_power_of_two()
        && (512..=65536).contains(&page_size);
    Ok(valid.then(|| MetaPage {
        page_size,
        free_root: u64_at(&b, HEADER + 24 + 40),
        last_page: u64_at(&b, HEADER + 120),
        txnid: u64_at(&b, HEADER + 128),
    }))
}

/// The meta page LMDB uses: the valid one with the larger transaction id.
fn newest(metas: &[Option<MetaPage>; 2]) -> Option<MetaPage> {
    // A
    metas.iter().flatten().copied().max_by_key(|m| m.txnid)
}

/// The page size the first meta page gives, or LMDB's default, for messages.
fn first_page_size(metas: &[Option<MetaPage>; 2]) -> u64 {
    // A
    metas[0].map_or(DEFAULT_PAGE, |m| m.page_size)
}

/// True when every page from the file's end to `meta.last_page` is listed in the free
/// tree: such pages were never written and LMDB never reads them before writing them.
/// False when one is not, or the free tree itself cannot be read within the file.
fn tail_is_free(file: &File, meta: &MetaPage, len: u64) -> bool {
    // A
    // A page cut in the middle counts as missing.
    let first_missing = len / meta.page_size;
    let wanted = meta
        .last_page
        .saturating_sub(first_missing)
        .saturating_add(1);
    let mut tree = FreeTree {
        file,
        page_size: meta.page_size,
        pages_in_file: first_missing,
        missing: first_missing..=meta.last_page,
        free: BTreeSet::new(),
    };
    tree.walk(meta.free_root).is_some() && tree.free.len() as u64 == wanted
}

/// A walk over LMDB's free-page B-tree (keys: transaction ids; data: lists of page
/// numbers, a count first), collecting the free pages among those the file lacks.
struct FreeTree<'f> {
    file: &'f File,
    page_size: u64,
    /// Whole pages the file holds.
    pages_in_file: u64,
    /// The pages in use by the meta page that the file lacks.
    missing: std::ops::RangeInclusive<u64>,
    /// Those of them the free tree lists.
    free: BTreeSet<u64>,
}

impl FreeTree<'_> {
    /// Walks the tree from `root`; `None` when a page is outside the file or is not what
    /// the tree says it is.
    fn walk(&mut self, root: u64) -> Option<()> {
        // A
        if root == P_INVALID {
            return Some(());
        }
        let mut stack = vec![root];
        // A tree has fewer pages than the file: more visits mean a cycle.
        let mut budget = self.pages_in_file;
        while let Some(pgno) = stack.pop() {
            budget = budget.checked_sub(1)?;
            let page = self.page(pgno, 1)?;
            let flags = u16_at(&page, 10);
            for node in nodes(&page)? {
                if flags & P_BRANCH != 0 {
                    // A branch node's page number: mn_lo, mn_hi, then mn_flags above them.
                    let lo = u64::from(u32_at(&page, node));
                    stack.push(lo | u64::from(u16_at(&page, node + 4)) << 32);
                } else if flags & P_LEAF != 0 {
                    self.leaf_node(&page, node)?;
                } else {
                    return None;
                }
            }
        }
        Some(())
    }

    /// Collects the page numbers of one leaf node's list (inline, or on overflow pages).
    fn leaf_node(&mut self, page: &[u8], node: usize) -> Option<()> {
        // A
        let size = u32_at(page, node) as usize;
        let flags = u16_at(page, node + 4);
        let data = node + 8 + usize::from(u16_at(page, node + 6));
        let list = if flags & F_BIGDATA != 0 {
            let first = u64_at(page.get(data..data + 8)?, 0);
            let head = self.page(first, 1)?;
            if u16_at(&head, 10) & P_OVERFLOW == 0 {
                return None;
            }
            let pages = u64::from(u32_at(&head, 12));
            let run = self.page(first, pages)?;
            run.get(HEADER..HEADER + size)?.to_vec()
        } else {
            page.get(data..data + size)?.to_vec()
        };
        let count = usize::try_from(u64_at(list.get(..8)?, 0)).ok()?;
        let ids = list.get(8..)?;
        for id in ids.chunks_exact(8).take(count) {
            let pgno = u64_at(id, 0);
            if self.missing.contains(&pgno) {
                self.free.insert(pgno);
            }
        }
        Some(())
    }

    /// `count` pages from `pgno`, when they lie within the file and the first names itself.
    fn page(&self, pgno: u64, count: u64) -> Option<Vec<u8>> {
        // A
        if count == 0 || pgno.checked_add(count)? > self.pages_in_file {
            return None;
        }
        let len = usize::try_from(count.checked_mul(self.page_size)?).ok()?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pgno.checked_mul(self.page_size)?)
            .ok()?;
        (u64_at(&buf, 0) == pgno).then_some(buf)
    }
}

/// The offsets of a branch or leaf page's nodes (`mp_ptrs`), each checked to leave room
/// for a node header within the page.
fn nodes(page: &[u8]) -> Option<Vec<usize>> {
    // A
    let lower = usize::from(u16_at(page, 12));
    let n = lower.checked_sub(HEADER)? / 2;
    (0..n)
        .map(|i| {
            let at = usize::from(u16_at(page, HEADER + 2 * i));
            (at >= HEADER && at + 8 <= page.len()).then_some(at)
        })
        .collect()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    // A
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    // A
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    // A
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heed::types::Bytes;
    use rand::{Rng, SeedableRng};

    type Db = heed::Database<'static, Bytes, Bytes>;

    /// The test's database, created when absent.
    fn db(env: &heed::Env) -> Db {
        let w = env.write_txn().unwrap();
        env.create_databases_and_commit(w, |o, w| -> heed::Result<_> {
            let db = o.create_database::<Bytes, Bytes>(w, Some("d"))?;
            Ok(heed::CommitOrAbort::<_, ()>::Commit(db))
        })
        .unwrap()
        .unwrap_commit()
    }

    fn env(dir: &Path) -> heed::Env {
        // SAFETY: a fresh directory only this test opens.
        unsafe {
            heed::EnvOpenOptions::new()
                .map_size(1 << 30)
                .max_dbs(2)
                .open(dir)
                .unwrap()
        }
    }

    /// A store with churn: values small and large (overflow pages), deletions, a reader
    /// held across many commits (so the free tree grows to several pages, its lists onto
    /// overflow pages), and last a transaction that frees the pages the one before it
    /// allocated at the end of the file. Returns what it holds.
    fn churn(dir: &Path, seed: u64) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        let env = env(dir);
        let db = db(&env);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut model = std::collections::BTreeMap::new();
        let mut held = None;
        for round in 0..60 {
            match round {
                10 => held = Some(env.clone().static_read_txn().unwrap()),
                40 => held = None,
                _ => {}
            }
            let mut w = env.write_txn().unwrap();
            for _ in 0..rng.gen_range(1..300) {
                let k = rng.gen_range(0u32..3000).to_be_bytes().to_vec();
                if rng.gen_bool(0.35) {
                    db.delete(&mut w, &k).unwrap();
                    model.remove(&k);
                } else {
                    let len = match rng.gen_bool(0.2) {
                        true => rng.gen_range(5000..40000),
                        false => rng.gen_range(1..300),
                    };
                    let v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    db.put(&mut w, &k, &v).unwrap();
                    model.insert(k, v);
                }
            }
            w.commit().unwrap();
        }
        drop(held);
        let mut w = env.write_txn().unwrap();
        for i in 0u32..40 {
            db.put(&mut w, &(10_000 + i).to_be_bytes(), &[1u8; 60_000])
                .unwrap();
        }
        w.commit().unwrap();
        let mut w = env.write_txn().unwrap();
        for i in 0u32..40 {
            db.delete(&mut w, &(10_000 + i).to_be_bytes()).unwrap();
        }
        w.commit().unwrap();
        model
    }

    /// Every page the free tree lists, with the meta page in use.
    fn free_pages(dir: &Path) -> (MetaPage, BTreeSet<u64>) {
        let file = File::open(dir.join("data.mdb")).unwrap();
        let meta = newest(&read_metas(&file).unwrap()).unwrap();
        let mut tree = FreeTree {
            file: &file,
            page_size: meta.page_size,
            pages_in_file: file.metadata().unwrap().len() / meta.page_size,
            missing: 0..=meta.last_page,
            free: BTreeSet::new(),
        };
        tree.walk(meta.free_root).unwrap();
        (meta, tree.free)
    }

    #[test]
    fn a_file_cut_short_is_damage_unless_only_free_pages_are_gone() {
        for seed in 0..6 {
            let dir = tempfile::tempdir().unwrap();
            let model = churn(dir.path(), seed);
            check(dir.path()).unwrap();
            let (meta, free) = free_pages(dir.path());
            assert!(free.iter().all(|p| *p >= 2 && *p <= meta.last_page));
            let data = dir.path().join("data.mdb");
            let full = std::fs::metadata(&data).unwrap().len();
            assert_eq!(full, (meta.last_page + 1) * meta.page_size);
            // The highest page in use: past it, only free pages, which LMDB writes before
            // it reads them. A file ending there (as one whose last pages were allocated
            // and freed in one transaction does) is whole.
            let used = (0..=meta.last_page)
                .rev()
                .find(|p| !free.contains(p))
                .unwrap();
            assert!(
                used < meta.last_page,
                "seed {seed}: the last transaction freed the end"
            );
            let whole = (used + 1) * meta.page_size;
            std::fs::File::options()
                .write(true)
                .open(&data)
                .unwrap()
                .set_len(whole)
                .unwrap();
            check(dir.path()).unwrap();
            {
                let env = env(dir.path());
                let db = db(&env);
                let r = env.read_txn().unwrap();
                let back: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = db
                    .iter(&r)
                    .unwrap()
                    .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect();
                assert_eq!(back, model, "seed {seed}");
                drop(r);
                let mut w = env.write_txn().unwrap();
                for i in 0u32..200 {
                    db.put(&mut w, &i.to_le_bytes(), &[7u8; 9000]).unwrap();
                }
                w.commit().unwrap();
            }
            check(dir.path()).unwrap();
            // One byte short of the last used page: damage, whatever the free tree says.
            let (meta, free) = free_pages(dir.path());
            let used = (0..=meta.last_page)
                .rev()
                .find(|p| !free.contains(p))
                .unwrap();
            let f = std::fs::File::options().write(true).open(&data).unwrap();
            f.set_len((used + 1) * meta.page_size - 1).unwrap();
            assert!(
                matches!(check(dir.path()), Err(Error::Damaged(_))),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn short_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.mdb");
        for len in [0usize, 100, 4096, 8191] {
            std::fs::write(&data, vec![0u8; len]).unwrap();
            assert!(matches!(check(dir.path()), Err(Error::Damaged(_))), "{len}");
        }
        // Not an LMDB file at all: LMDB says so itself.
        std::fs::write(&data, vec![1u8; 3 * 4096]).unwrap();
        check(dir.path()).unwrap();
    }
}
