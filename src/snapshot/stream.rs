//! The tree stream: the content of a snapshot version. Every directory's tree record, in
//! post-order (children before parents, the root last), then an index of the records by
//! hash, then a fixed footer:
//!
//! ```text
//! records  : TreeRecord encodings, back to back (each appears once)
//! index    : [b'I'][1][postcard Vec<(Hash, u64 offset, u32 length)>], sorted by hash
//! footer   : index offset (u64 LE) | index length (u64 LE) | b"OUROTREE"
//! ```
//!
//! An unchanged tree gives the same bytes, so its chunks deduplicate; the index lets a
//! reader (a restore, the mount) fetch one directory without decoding the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cas::{Cas, ChunkReader};
use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::tree::{tree_hash, TreeRecord};
use crate::model::Blob;

const INDEX_TAG: u8 = b'I';
const MAGIC: &[u8; 8] = b"OUROTREE";
const FOOTER: usize = 24;
/// Decoded chunks a reader keeps (1 MiB each on average).
const CACHED_CHUNKS: usize = 32;

type IndexRow = (Hash, u64, u32);

/// Builds a tree stream.
#[derive(Default)]
pub struct StreamWriter {
    bytes: Vec<u8>,
    index: HashMap<Hash, (u64, u32)>,
}

impl StreamWriter {
    /// Appends a directory record (once per distinct record) and returns its hash.
    pub fn add(&mut self, record: &TreeRecord) -> Result<Hash> {
        // A
        let enc = record.encode()?;
        let hash = tree_hash(&enc);
        if !self.index.contains_key(&hash) {
            let len = u32::try_from(enc.len())
                .map_err(|_| Error::InvalidArgument("a directory record over 4 GiB".into()))?;
            self.index.insert(hash, (self.bytes.len() as u64, len));
            self.bytes.extend_from_slice(&enc);
        }
        Ok(hash)
    }

    /// The whole stream: records, index, footer.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        // A
        let mut rows: Vec<IndexRow> = self.index.iter().map(|(h, &(o, l))| (*h, o, l)).collect();
        rows.sort_unstable_by_key(|r| r.0);
        let index = codec::encode(INDEX_TAG, &rows)?;
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(&index);
        self.bytes.extend_from_slice(&at.to_le_bytes());
        self.bytes
            .extend_from_slice(&(index.len() as u64).to_le_bytes());
        self.bytes.extend_from_slice(MAGIC);
        Ok(self.bytes)
    }
}

/// Reads directory records out of a snapshot version, decoding only the chunks it needs.
pub struct StreamReader<'c> {
    cas: &'c Cas,
    blob: Blob,
    /// Start offset of each chunk.
    starts: Vec<u64>,
    index: Vec<IndexRow>,
    cache: Mutex<HashMap<usize, Arc<Vec<u8>>>>,
}

impl<'c> StreamReader<'c> {
    /// Opens the tree stream of snapshot version `blob`, reading its footer and index.
    pub fn open(cas: &'c Cas, blob: Blob) -> Result<Self> {
        // A
        let mut starts = Vec::with_capacity(blob.chunks.len());
        let mut at = 0u64;
        for c in &blob.chunks {
            starts.push(at);
            at += u64::from(c.size);
        }
        if at != blob.size || at < FOOTER as u64 {
            return Err(Error::malformed("tree stream", "shorter than its footer"));
        }
        let mut r = StreamReader {
            cas,
            blob,
            starts,
            index: Vec::new(),
            cache: Mutex::new(HashMap::new()),
        };
        let footer = r.range(at - FOOTER as u64, FOOTER)?;
        if &footer[16..24] != MAGIC {
            return Err(Error::malformed("tree stream", "no footer"));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&footer[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let (off, len) = (word(0), word(8));
        if off.checked_add(len) != Some(at - FOOTER as u64) {
            return Err(Error::malformed("tree stream", "index out of place"));
        }
        let len =
            usize::try_from(len).map_err(|_| Error::malformed("tree stream", "huge index"))?;
        let rows: Vec<IndexRow> = codec::decode("tree index", INDEX_TAG, &r.range(off, len)?)?;
        if !rows.windows(2).all(|w| w[0].0 < w[1].0)
            || rows
                .iter()
                .any(|&(_, o, l)| o.saturating_add(u64::from(l)) > off)
        {
            return Err(Error::malformed("tree index", "unsorted or out of range"));
        }
        r.index = rows;
        Ok(r)
    }

    /// The snapshot version this reader reads.
    pub fn blob(&self) -> &Blob {
        // A
        &self.blob
    }

    /// The directory record with hash `hash`, checked against it.
    pub fn tree(&self, hash: &Hash) -> Result<TreeRecord> {
        // A
        let i = self
            .index
            .binary_search_by(|row| row.0.cmp(hash))
            .map_err(|_| {
                Error::malformed("tree stream", format!("no directory {}", hash.short()))
            })?;
        let (_, off, len) = self.index[i];
        let bytes = self.range(off, len as usize)?;
        if tree_hash(&bytes) != *hash {
            return Err(Error::malformed(
                "tree stream",
                format!("directory {} does not match its hash", hash.short()),
            ));
        }
        TreeRecord::decode(&bytes)
    }

    /// `len` bytes of the stream from `off`.
    fn range(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        // A
        let mut out = Vec::with_capacity(len);
        let mut pos = off;
        let end = off.saturating_add(len as u64);
        while pos < end {
            let i = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
            let chunk = self.chunk(i)?;
            let from = (pos - self.starts[i]) as usize;
            let take = ((end - pos) as usize).min(chunk.len().saturating_sub(from));
            if take == 0 {
                return Err(Error::malformed("tree stream", "read past its end"));
            }
            out.extend_from_slice(&chunk[from..from + take]);
            pos += take as u64;
        }
        Ok(out)
    }

    fn chunk(&self, i: usize) -> Result<Arc<Vec<u8>>> {
        // A
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Internal("tree cache lock".into()))?;
        if let Some(c) = cache.get(&i) {
            return Ok(Arc::clone(c));
        }
        let id = self
            .blob
            .chunks
            .get(i)
            .ok_or_else(|| Error::malformed("tree stream", "offset past the end"))?
            .id;
        let data = Arc::new(self.cas.read_chunk(&id)?);
        if cache.len() >= CACHED_CHUNKS {
            cache.clear();
        }
        cache.insert(i, Arc::clone(&data));
        Ok(data)
    }
}

// For the mount, which reads records through its own shared chunk cache.
impl StreamReader<'_> {
    /// Where each directory record lies in the stream: `(hash, offset, length)`, sorted by
    /// hash (checked when the stream was opened).
    pub fn index(&self) -> &[(Hash, u64, u32)] {
        // A
        &self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_records_same_bytes() {
        let mut a = StreamWriter::default();
        let mut b = StreamWriter::default();
        let t = TreeRecord::default();
        assert_eq!(a.add(&t).ok(), b.add(&t).ok());
        assert_eq!(a.add(&t).ok(), b.add(&t).ok());
        let (a, b) = (a.finish().unwrap(), b.finish().unwrap());
        assert_eq!(a, b);
        assert_eq!(&a[a.len() - 8..], MAGIC);
    }

    /// Pinned vector: the stream's bytes decide which chunks of a snapshot deduplicate
    /// against the previous run. Never change it without a store format bump.
    #[test]
    fn pinned_stream() {
        let mut w = StreamWriter::default();
        let empty = w.add(&TreeRecord::default()).unwrap_or_default();
        let mut dir = crate::model::tree::tests::sample_entry(b"d");
        dir.kind = crate::model::EntryKind::Dir;
        dir.content = Some(empty);
        let root = w
            .add(&TreeRecord { entries: vec![dir] })
            .unwrap_or_default();
        let bytes = w.finish().unwrap();
        assert_eq!(
            root.to_hex(),
            "08055bf3fa932cc72f6b8d92e9111980cc82f9729fde6005f623e28869bfe29d"
        );
        assert_eq!(
            Hash::of(&bytes).to_hex(),
            "990fe1cbec282e45278552c26b02df22c91dbf7b3a195d2b07fb46fc83053a5a"
        );
    }
}
