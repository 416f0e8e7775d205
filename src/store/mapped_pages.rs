//! Bounds how much of LMDB's memory map a process keeps mapped.
//!
//! LMDB reads through a shared, read-only map of `data.mdb`. Every page a command touches
//! stays mapped until the process exits, and the kernel maps up to 16 cached neighbours
//! with each fault ("fault-around"), so a restore of 500 MB showed about 380 MB of RssFile
//! and a `put -r` of /usr/share about 230 MB, although the pages are only page cache.
//! Users see that as the process's memory (`top`, cgroup limits, the OOM killer's score).
//! Dropping the mapping (`MADV_DONTNEED`) after each commit, after every [`RELEASE_EVERY`]
//! bytes of slices read, and whenever index lookups have mapped more than a quarter of the
//! process's own memory since (between [`LOOKUPS_BUDGET_MIN`] and [`LOOKUPS_BUDGET`]), keeps
//! RssFile near what one step touches; the pages stay in the page cache and fault back in,
//! unchanged, when read again.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Bytes of slices read between two releases of the map.
pub const RELEASE_EVERY: u64 = 16 << 20;
/// What one index lookup is counted as: the kernel maps the 16 pages around each page a
/// lookup faults in, and a lookup faults in a few. Restoring small files mapped 120 MB
/// between releases counted by slice bytes alone.
pub const LOOKUP: usize = 64 << 10;
/// Most growth of this process's mapped file pages, since the last release, at which index
/// lookups release the map. Lookups are measured rather than counted: how much a fault maps
/// depends on the kernel (256 KiB per random lookup on Linux 6.18, not 64), and `put -r`'s
/// writer, counted by versions, mapped over 100 MB between releases. Releasing costs a
/// fault again for every page still in use (the trees' upper levels), so not much less.
pub const LOOKUPS_BUDGET: u64 = 32 << 20;
/// Least growth at which lookups release the map. Between the two, the budget is a quarter
/// of the process's own (anonymous) memory: where that is small (backing up a source tree
/// again: 45 MB) the mapped pages would otherwise be half of what users see, and where it is
/// large (`put -r`'s write transaction: 160 MB) releasing often only costs faults (8 MiB
/// made the first backup of /usr/share 7% slower).
const LOOKUPS_BUDGET_MIN: u64 = 8 << 20;
/// Lookups between two looks at the mapped pages (a read of `/proc/self/statm`, 2-3
/// microseconds with the kernel's walk of the process's memory): at most 16 faults of
/// 256 KiB, half of [`LOOKUPS_BUDGET_MIN`], go unseen. At 4, `put -r` of small files read
/// statm once per file, 3% of its time.
const LOOKUPS_PER_CHECK: u64 = 16;

/// The address range of the store's map and a count of bytes read since it was released.
#[derive(Debug, Default)]
pub struct MappedPages {
    /// `(start, length)` of the mapping of `data.mdb`; `None` where it cannot be found (not
    /// Linux, `/proc` not mounted): then releasing does nothing.
    range: OnceLock<Option<(usize, usize)>>,
    /// The file, identified by device and inode (a path could name it twice, or not at all).
    file: Option<(u64, u64)>,
    read: AtomicU64,
    /// Index lookups noted, and the process's mapped file bytes after the last release.
    lookups: AtomicU64,
    after_release: AtomicU64,
}

impl MappedPages {
    /// Prepares to release the map of `data.mdb` in store directory `dir`; the map itself is
    /// looked up on the first release, once LMDB has made it.
    pub fn new(dir: &Path) -> Self {
        // A
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::metadata(dir.join("data.mdb"))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        MappedPages {
            range: OnceLock::new(),
            file,
            read: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            after_release: AtomicU64::new(0),
        }
    }

    /// True once a release has found the map (always false where releasing does nothing).
    #[cfg(test)]
    pub fn found(&self) -> bool {
        // A
        matches!(self.range.get(), Some(Some(_)))
    }

    /// Counts `bytes` read through the map (an index lookup as [`LOOKUP`]), releasing it
    /// every [`RELEASE_EVERY`] bytes.
    pub fn note_read(&self, bytes: usize) {
        // A
        let before = self.read.fetch_add(bytes as u64, Ordering::Relaxed);
        if before / RELEASE_EVERY != (before + bytes as u64) / RELEASE_EVERY {
            self.release();
        }
    }

    /// Notes an index lookup through the map, releasing it once the mapped file pages have
    /// grown by a quarter of the process's own memory, within [`LOOKUPS_BUDGET_MIN`] and
    /// [`LOOKUPS_BUDGET`] (every [`RELEASE_EVERY`] bytes counted as [`LOOKUP`]s where they
    /// cannot be measured).
    pub fn note_lookup(&self) {
        // A
        let n = self.lookups.fetch_add(1, Ordering::Relaxed);
        if n % LOOKUPS_PER_CHECK != 0 {
            return;
        }
        if self.check(LOOKUPS_BUDGET_MIN).is_none() {
            self.note_read(LOOKUP * LOOKUPS_PER_CHECK as usize);
        }
    }

    /// Releases the map when the process's mapped file pages grew by more than the budget
    /// (a quarter of its own memory, within `least` and [`LOOKUPS_BUDGET`]) since the last
    /// release; returns the mapped bytes seen (`None` where they cannot be measured).
    pub fn check(&self, least: u64) -> Option<u64> {
        // A
        let (now, own) = memory()?;
        let budget = (own / 4).clamp(least.min(LOOKUPS_BUDGET), LOOKUPS_BUDGET);
        // Growth counts from the least seen since the release: pages another map let go
        // of meanwhile must not hide this one's.
        let base = self
            .after_release
            .fetch_min(now, Ordering::Relaxed)
            .min(now);
        if now > base + budget {
            self.release();
        }
        Some(now)
    }

    /// True when the store's map was found, so [`MappedPages::release`] does something.
    pub fn can_release(&self) -> bool {
        // A
        self.map_range().is_some()
    }

    /// `(start, length)` of the store's map, looked up once (`None`: not found).
    fn map_range(&self) -> Option<(usize, usize)> {
        // A
        *self.range.get_or_init(|| self.file.and_then(find_mapping))
    }

    /// Unmaps every page of the store's map from this process (they stay in the page
    /// cache). Safe at any time: a later read, even through a slice borrowed before, faults
    /// the same bytes back in from the file.
    pub fn release(&self) {
        // PA
        let range = self.map_range();
        #[cfg(target_os = "linux")]
        if let Some((start, len)) = range {
            // SAFETY: [start, start + len) is LMDB's shared, read-only mapping of data.mdb
            // (the only mapping of that file when it was looked up, so this handle's own, see
            // `find_mapping`), which lives as long as the environment (LMDB never moves it:
            // the map size is fixed at open) and so as long as `self`: its holders are the
            // store's handle and the store's watch thread (`map_watch.rs`), which holds the
            // environment until it ends. MADV_DONTNEED on a shared file
            // mapping only drops this process's page-table entries: no data is lost, and
            // any access after it, from any thread, reads the file's current bytes again,
            // which are the bytes LMDB wrote (it writes with pwrite, never through the map).
            let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
            if rc != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "releasing LMDB's map");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = range;
        if let Some((mapped, _)) = memory() {
            self.after_release.store(mapped, Ordering::Relaxed);
        }
    }
}

/// This process's mapped file bytes (`RssFile` and `RssShmem`) and its other resident
/// bytes (`RssAnon`), from `/proc/self/statm`; `None` where that cannot be read.
fn memory() -> Option<(u64, u64)> {
    // A
    use std::os::unix::fs::FileExt;
    static STATM: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let statm = STATM
        .get_or_init(|| std::fs::File::open("/proc/self/statm").ok())
        .as_ref()?;
    let mut buf = [0u8; 128];
    let n = statm.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(buf.get(..n)?).ok()?;
    parse_statm(text, rustix::param::page_size() as u64)
}

/// `(mapped file bytes, other resident bytes)` from the text of `/proc/PID/statm`
/// ("size resident shared text lib data dt", in pages of `page` bytes).
fn parse_statm(text: &str, page: u64) -> Option<(u64, u64)> {
    // A
    let mut fields = text.split_whitespace().skip(1);
    let resident: u64 = fields.next()?.parse().ok()?;
    let shared: u64 = fields.next()?.parse().ok()?;
    Some((shared * page, resident.saturating_sub(shared) * page))
}

/// The mapping of the file with device and inode `file`, from `/proc/self/maps`, when it
/// is the only one. This handle's map exists for as long as the handle, so a single mapping
/// of the file is that map; with two (the same file opened again through another path, such
/// as a hard-linked copy of the store), either could be the other handle's, which may be
/// unmapped later and its addresses reused (MADV_DONTNEED there would zero that memory):
/// then nothing is released.
fn find_mapping(file: (u64, u64)) -> Option<(usize, usize)> {
    // A
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    only_mapping(&maps, file)
}

/// The one shared mapping of `file` in a `/proc/self/maps` text; `None` for none or several.
fn only_mapping(maps: &str, file: (u64, u64)) -> Option<(usize, usize)> {
    // A
    let mut found = maps.lines().filter_map(|line| parse_line(line, file));
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// `(start, length)` of one `/proc/self/maps` line when it maps `file`, a shared mapping
/// (`start-end perms offset major:minor inode path`).
fn parse_line(line: &str, (dev, ino): (u64, u64)) -> Option<(usize, usize)> {
    // A
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let major = u64::from_str_radix(major, 16).ok()?;
    let minor = u64::from_str_radix(minor, 16).ok()?;
    if inode != ino || !perms.ends_with('s') || !same_device(dev, major, minor) {
        return None;
    }
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some((start, end.checked_sub(start)?))
}

/// Whether `st_dev` `dev` is device `major:minor` (glibc's encoding of `dev_t`).
fn same_device(dev: u64, major: u64, minor: u64) -> bool {
    // A
    let dev_major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let dev_minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    dev_major == major && dev_minor == minor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_splits_into_mapped_and_own_memory() {
        assert_eq!(
            parse_statm("90000 3000 1000 100 0 2500 0\n", 4096),
            Some((1000 * 4096, 2000 * 4096))
        );
        assert_eq!(parse_statm("90000 3000", 4096), None);
        assert_eq!(parse_statm("", 4096), None);
        assert!(memory().is_some_and(|(_, own)| own > 0));
    }

    #[test]
    fn parses_a_shared_mapping_of_the_file_only() {
        let dev = (0xfe << 8) | 0x01;
        let line = "7f0000000000-7f0000400000 r--s 00000000 fe:01 1234     /tmp/s/data.mdb";
        assert_eq!(
            parse_line(line, (dev, 1234)),
            Some((0x7f00_0000_0000, 0x40_0000))
        );
        assert_eq!(parse_line(line, (dev, 1235)), None);
        assert_eq!(parse_line(line, (dev + 1, 1234)), None);
        let private = line.replace("r--s", "r--p");
        assert_eq!(parse_line(&private, (dev, 1234)), None);
        assert_eq!(parse_line("garbage", (dev, 1234)), None);
        assert_eq!(parse_line("", (dev, 1234)), None);
    }

    /// Two mappings of the file (a hard-linked copy of the store opened too): either may
    /// be the other handle's, so neither is taken.
    #[test]
    fn a_file_mapped_twice_is_not_released() {
        let dev = (0xfe << 8) | 0x01;
        let a = "7f0000000000-7f0000400000 r--s 00000000 fe:01 1234     /tmp/a/data.mdb";
        let b = "7e0000000000-7e0000400000 r--s 00000000 fe:01 1234     /tmp/b/data.mdb";
        let other = "7d0000000000-7d0000400000 r--s 00000000 fe:01 99     /tmp/c/data.mdb";
        let one = format!("{other}\n{a}\n");
        assert_eq!(
            only_mapping(&one, (dev, 1234)),
            Some((0x7f00_0000_0000, 0x40_0000))
        );
        assert_eq!(only_mapping(&format!("{b}\n{a}\n"), (dev, 1234)), None);
        assert_eq!(only_mapping(other, (dev, 1234)), None);
    }

    /// Bytes borrowed from the map before a release read the same after it (they fault
    /// back in from the file), and the release finds the map of this very store.
    #[cfg(target_os = "linux")]
    #[test]
    fn slices_read_the_same_after_a_release() {
        use crate::hash::Hash;
        use crate::store::Lmdb;
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let slices: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 300_000]).collect();
        let refs: Vec<&[u8]> = slices.iter().map(|s| s.as_slice()).collect();
        let mut txn = lmdb.write().unwrap();
        lmdb.slices
            .put_chunk(&mut txn, &Hash([9; 32]), &refs)
            .unwrap();
        lmdb.commit(txn).unwrap();
        assert!(
            lmdb.slices.mapped.found(),
            "the map of data.mdb was not found"
        );
        let txn = lmdb.read().unwrap();
        let bundle = lmdb.slices.bundle(&txn, &Hash([9; 32])).unwrap();
        let before: Vec<Vec<u8>> = bundle.slices.iter().map(|(_, b)| b.to_vec()).collect();
        lmdb.slices.mapped.release();
        let after: Vec<Vec<u8>> = bundle.slices.iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(before, after);
        assert_eq!(after, slices);
    }

    /// Hostile: two handles on one data.mdb (a store and a hard-linked copy, `cp -al`), one
    /// closed: the other's release must not touch memory that is no longer its map.
    #[test]
    fn release_never_touches_memory_outside_its_own_map() {
        use crate::store::Lmdb;
        let dir = tempfile::tempdir().unwrap();
        let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
        let a = Lmdb::open(&a_dir, true).unwrap();
        std::fs::create_dir(&b_dir).unwrap();
        for f in ["data.mdb", "lock.mdb"] {
            std::fs::hard_link(a_dir.join(f), b_dir.join(f)).unwrap();
        }
        let b = Lmdb::open(&b_dir, false).unwrap();
        a.commit(a.write().unwrap()).unwrap();
        drop(b);
        let mut held: Vec<Vec<u8>> = Vec::new();
        for _ in 0..8 {
            held.push(vec![0xaa; 16 << 20]);
        }
        a.commit(a.write().unwrap()).unwrap();
        for (i, v) in held.iter().enumerate() {
            assert!(
                v.iter().all(|&x| x == 0xaa),
                "buffer {i} at {:p} was zeroed by a release",
                v.as_ptr()
            );
        }
    }

    #[test]
    fn big_device_numbers_round_trip() {
        // major 259 (NVMe), minor 65536: both above the old 8-bit fields.
        let (major, minor) = (259u64, 65_536u64);
        let dev = ((major & 0xfffff000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffffff00) << 12)
            | (minor & 0xff);
        assert!(same_device(dev, major, minor));
        assert!(!same_device(dev, major, minor + 1));
    }
}
