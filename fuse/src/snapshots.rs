//! `.ouro/snapshots`: the snapshots of every prefix (runs of `put -r`), nested by prefix
//! (`.ouro/snapshots/home/ann/<time>_<short>/`), with `latest` pointing at the newest.
//!
//! A snapshot's directories are tree records inside its tree stream. The stream's index is
//! read once per snapshot (a few kept), records are read through the mount's shared chunk
//! cache and kept decoded in a small LRU keyed by tree hash, bounded by entries, so a
//! directory is decoded once however often it is looked up in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use fuser::{Errno, FileAttr, FileType};
use ouroboros_db::model::tree::tree_hash;
use ouroboros_db::model::{snapshot_key, ChunkRef, Entry, TreeRecord};
use ouroboros_db::snapshot::stream::StreamReader;
use ouroboros_db::{ChunkOffsets, Error, Hash, TreeEntry};

use crate::fs::{errno, time_of, DirEntry, OuroFs, MAX_DIR_ENTRIES};
use crate::node::{join, snapshot_dir_name, Node};

/// Snapshots whose stream index is kept open.
const STREAMS: usize = 8;
/// Entries of decoded tree records kept (a few hundred bytes each): a directory of 100,000
/// entries stays cached while it is listed and looked up in.
const CACHED_ENTRIES: usize = 300_000;
/// The name of the link to a prefix's newest snapshot.
pub(crate) const LATEST: &str = "latest";
/// Where snapshot keys live in the store (`.ouro/snapshots/PREFIX`), without the `/`.
const SNAPSHOT_KEYS: &str = ".ouro/snapshots";

/// One snapshot opened for reading its directories.
pub(crate) struct SnapStream {
    /// The snapshot version's chunks and where each starts.
    chunks: Vec<ChunkRef>,
    offsets: ChunkOffsets,
    /// Where each tree record lies in the stream, sorted by hash.
    index: Vec<(Hash, u64, u32)>,
    /// The backed-up directory itself: its metadata, and as content its tree's hash.
    pub(crate) root: Entry,
}

/// Decoded tree records, least recently used first out, bounded by their entries.
#[derive(Default)]
struct RecordLru {
    map: HashMap<Hash, (Arc<TreeRecord>, u64)>,
    order: BTreeMap<u64, Hash>,
    entries: usize,
    tick: u64,
}

/// What the mount keeps of snapshots between requests.
#[derive(Default)]
pub(crate) struct SnapCache {
    streams: Mutex<VecDeque<(Hash, Arc<SnapStream>)>>,
    records: Mutex<RecordLru>,
}

fn eio(what: &str, e: &Error) -> Errno {
    // A
    tracing::warn!(error = %e, "{what}");
    errno(e)
}

impl OuroFs {
    /// Snapshot `snap` opened (its stream index read), from the cache or now.
    pub(crate) fn snap_stream(&self, snap: &Hash) -> Result<Arc<SnapStream>, Errno> {
        // A
        let mut streams = self.snaps.streams.lock().map_err(|_| Errno::EIO)?;
        if let Some(at) = streams.iter().position(|(h, _)| h == snap) {
            if let Some(hit) = streams.remove(at) {
                let s = Arc::clone(&hit.1);
                streams.push_back(hit);
                return Ok(s);
            }
        }
        drop(streams);
        let blob = self.cas.blob(snap).map_err(|e| errno(&e))?;
        let root = blob.meta.snapshot().ok_or(Errno::ENOENT)?.root.clone();
        let reader = StreamReader::open(&self.cas, blob.clone())
            .map_err(|e| eio("opening a snapshot's tree stream failed", &e))?;
        let stream = Arc::new(SnapStream {
            index: reader.index().to_vec(),
            offsets: ChunkOffsets::new(&blob),
            chunks: blob.chunks,
            root,
        });
        let mut streams = self.snaps.streams.lock().map_err(|_| Errno::EIO)?;
        if streams.len() >= STREAMS {
            streams.pop_front();
        }
        streams.push_back((*snap, Arc::clone(&stream)));
        Ok(stream)
    }

    /// The directory record `tree` of a snapshot, decoded once and then cached.
    pub(crate) fn snap_record(
        &self,
        stream: &SnapStream,
        tree: &Hash,
    ) -> Result<Arc<TreeRecord>, Errno> {
        // A
        {
            let mut lru = self.snaps.records.lock().map_err(|_| Errno::EIO)?;
            lru.tick += 1;
            let tick = lru.tick;
            if let Some((rec, old)) = lru.map.get_mut(tree).map(|(r, t)| {
                let old = *t;
                *t = tick;
                (Arc::clone(r), old)
            }) {
                lru.order.remove(&old);
                lru.order.insert(tick, *tree);
                return Ok(rec);
            }
        }
        let i = stream
            .index
            .binary_search_by(|row| row.0.cmp(tree))
            .map_err(|_| Errno::EIO)?;
        let (_, off, len) = stream.index[i];
        let bytes = self.snap_bytes(stream, off, len as usize)?;
        if tree_hash(&bytes) != *tree {
            tracing::warn!(tree = %tree.short(), "a snapshot directory does not match its hash");
            return Err(Errno::EIO);
        }
        let rec = Arc::new(
            TreeRecord::decode(&bytes).map_err(|e| eio("a snapshot directory is damaged", &e))?,
        );
        let mut lru = self.snaps.records.lock().map_err(|_| Errno::EIO)?;
        let weight = rec.entries.len() + 1;
        if weight <= CACHED_ENTRIES && !lru.map.contains_key(tree) {
            lru.tick += 1;
            let tick = lru.tick;
            lru.entries += weight;
            lru.map.insert(*tree, (Arc::clone(&rec), tick));
            lru.order.insert(tick, *tree);
            while lru.entries > CACHED_ENTRIES {
                let Some((_, victim)) = lru.order.pop_first() else {
                    break;
                };
                if let Some((r, _)) = lru.map.remove(&victim) {
                    lru.entries -= r.entries.len() + 1;
                }
            }
        }
        Ok(rec)
    }

    /// `len` bytes of a snapshot's stream from `off`, through the shared chunk cache.
    fn snap_bytes(&self, stream: &SnapStream, off: u64, len: usize) -> Result<Vec<u8>, Errno> {
        // A
        let mut out = Vec::with_capacity(len);
        let mut pos = off;
        let end = off.saturating_add(len as u64);
        while pos < end {
            let (i, within) = stream.offsets.chunk_at(pos).ok_or(Errno::EIO)?;
            let id = stream.chunks.get(i).ok_or(Errno::EIO)?.id;
            let chunk = self
                .cache
                .chunk(&id)
                .map_err(|e| eio("reading a snapshot's tree stream failed", &e))?;
            let from = within as usize;
            let take = ((end - pos) as usize).min(chunk.len().saturating_sub(from));
            if take == 0 {
                return Err(Errno::EIO);
            }
            out.extend_from_slice(chunk.get(from..from + take).ok_or(Errno::EIO)?);
            pos += take as u64;
        }
        Ok(out)
    }

    /// What `name` is inside `.ouro/snapshots/<p>`: `latest`, a snapshot (by its exact
    /// `<time>_<short>` name) or a longer prefix.
    pub(crate) fn snap_dir_child(&self, p: &str, name: &str) -> Result<Node, Errno> {
        // A
        if !p.is_empty() {
            if name == LATEST && self.newest_snapshot_name(p)?.is_some() {
                return Ok(Node::SnapLatest(p.to_string()));
            }
            if let Some((_, short)) = name.rsplit_once('_') {
                if let Ok((hash, blob)) = self.cas.resolve_snapshot(&format!("{p}@{short}")) {
                    if snapshot_dir_name(blob.created, &hash) == name {
                        return Ok(Node::Snapshot {
                            prefix: p.to_string(),
                            hash,
                        });
                    }
                }
            }
        }
        let q = join(p, name);
        let key = snapshot_key(&q);
        let err = |e: Error| errno(&e);
        if self.cas.is_key(&key).map_err(err)? || self.cas.is_dir(&key).map_err(err)? {
            Ok(Node::SnapDir(q))
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// The `<time>_<short>` name of the newest snapshot of prefix `p`, if it has any.
    pub(crate) fn newest_snapshot_name(&self, p: &str) -> Result<Option<String>, Errno> {
        // A
        let all = self.cas.snapshots(p).map_err(|e| errno(&e))?;
        Ok(all.last().map(|s| snapshot_dir_name(s.time, &s.hash)))
    }

    /// The entries of `.ouro/snapshots/<p>` after `.` and `..`: its snapshots, `latest` and
    /// the longer prefixes (a prefix named like a snapshot or `latest` is shadowed).
    pub(crate) fn list_snap_dir(&self, p: &str, out: &mut Vec<DirEntry>) -> Result<(), Errno> {
        // A
        let err = |e: Error| errno(&e);
        let mut taken = std::collections::HashSet::new();
        if !p.is_empty() {
            let all = self.cas.snapshots(p).map_err(err)?;
            for s in &all {
                let node = Node::Snapshot {
                    prefix: p.to_string(),
                    hash: s.hash,
                };
                let attr = self.entry_attr(node.ino(), &s.info.root);
                let name = snapshot_dir_name(s.time, &s.hash);
                taken.insert(name.clone());
                self.push_entry(out, node, name, attr);
            }
            if let Some(newest) = all.last() {
                let node = Node::SnapLatest(p.to_string());
                let attr = self.latest_attr(&node, newest.time, &newest.hash);
                taken.insert(LATEST.to_string());
                self.push_entry(out, node, LATEST.to_string(), attr);
            }
        }
        let dir = match p {
            "" => SNAPSHOT_KEYS.to_string(),
            p => snapshot_key(p),
        };
        for e in self.cas.children(&dir, MAX_DIR_ENTRIES).map_err(err)? {
            let name = match e {
                TreeEntry::Key { name, .. } | TreeEntry::Dir(name) => name,
            };
            if taken.insert(name.clone()) {
                let node = Node::SnapDir(join(p, &name));
                let attr = self.make_attr(&node, FileType::Directory, 0, self.store_time());
                self.push_entry(out, node, name, attr);
            }
        }
        Ok(())
    }

    /// Adds one entry with known attributes to a listing.
    fn push_entry(&self, out: &mut Vec<DirEntry>, node: Node, name: String, attr: FileAttr) {
        // A
        let ino = self.remember(node.clone());
        out.push(DirEntry {
            ino,
            kind: attr.kind,
            name,
            node,
            attr: Some(attr),
            heads: Vec::new(),
        });
    }

    /// Attributes of `latest`: a symbolic link as old as the snapshot it names.
    pub(crate) fn latest_attr(&self, node: &Node, time: i64, hash: &Hash) -> FileAttr {
        // A
        let len = snapshot_dir_name(time, hash).len() as u64;
        let mut a = self.make_attr(node, FileType::Symlink, len, time_of(time));
        a.perm = 0o777;
        a
    }

    /// When the store was made: the time of directories that have no other.
    pub(crate) fn store_time(&self) -> std::time::SystemTime {
        // A
        time_of(self.cas.config().created)
    }
}
