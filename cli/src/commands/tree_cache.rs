//! The `put -r` cache: for each file of a tree last stored from one directory under one
//! prefix, its size, mtime, ctime and inode and the version stored. A file whose stat is
//! unchanged and whose key still has that version as its single head is skipped without
//! being read, so a nightly run over an unchanged tree costs a directory walk.
//!
//! File: `<store>/cache/tree-<BLAKE3(dir \0 prefix) hex>.bin` = `[b'T'][1][postcard of
//! (walk start ns, entries)]`
//! (FORMAT.md). A missing or unreadable cache only makes the next run read every file.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

const TAG: u8 = b'T';

/// What the cache remembers of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        // A
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }
}

/// Timestamps closer than this (FAT rounds to 2 s) to the walk that cached them are not trusted: on filesystems
/// with coarse timestamps a file rewritten in the same tick keeps its stamp (git's "racily
/// clean" problem), so such files are read again (and stored only if their content changed).
const RACY_NS: i64 = 2_000_000_000;

/// The cache of one (directory, prefix) pair.
pub struct TreeCache {
    path: PathBuf,
    /// When the walk that wrote this cache started (ns since the epoch).
    written_ns: i64,
    /// Relative path -> (stamp, version hash).
    pub entries: HashMap<String, (Stamp, [u8; 32])>,
}

impl TreeCache {
    /// Loads the cache for `dir` stored under `prefix`; empty when absent or unreadable.
    pub fn load(store: &Path, dir: &Path, prefix: &str) -> Self {
        // A
        let mut id = dir.as_os_str().as_encoded_bytes().to_vec();
        id.push(0);
        id.extend_from_slice(prefix.as_bytes());
        let name = format!("tree-{}.bin", ouroboros_db::Hash::of(&id).to_hex());
        let path = store.join("cache").join(name);
        let (written_ns, list) = std::fs::read(&path)
            .ok()
            .and_then(|b| {
                ouroboros_db::codec::decode::<(i64, Vec<(String, Stamp, [u8; 32])>)>(
                    "tree cache",
                    TAG,
                    &b,
                )
                .ok()
            })
            .unwrap_or_default();
        let entries = list.into_iter().map(|(k, s, h)| (k, (s, h))).collect();
        TreeCache {
            path,
            written_ns,
            entries,
        }
    }

    /// True when the file at `rel` with `stamp` was stored as `head` and its stamp is old
    /// enough, compared with the walk that cached it, to be trusted.
    pub fn is_fresh(&self, rel: &str, stamp: &Stamp, head: &[u8; 32]) -> bool {
        // A
        let settled = self.written_ns - RACY_NS;
        match self.entries.get(rel) {
            Some((s, h)) => {
                s == stamp && h == head && stamp.mtime_ns < settled && stamp.ctime_ns < settled
            }
            None => false,
        }
    }

    /// Writes the cache atomically (temp file + rename), stamped with the start of the walk
    /// it describes.
    pub fn save(&self, walk_started_ns: i64) -> Result<()> {
        // A
        let dir = self.path.parent().context("cache path has no parent")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut list: Vec<(&String, &Stamp, &[u8; 32])> =
            self.entries.iter().map(|(k, (s, h))| (k, s, h)).collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        let bytes = ouroboros_db::codec::encode(TAG, &(walk_started_ns, list));
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("writing {}", self.path.display()))?;
        std::fs::write(tmp.path(), bytes)
            .with_context(|| format!("writing {}", self.path.display()))?;
        tmp.persist(&self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}
