//! Random access into a version: [`VersionReader`] is `Read + Seek` over a version's
//! content, decoding only the chunk that holds the position; [`ChunkOffsets`] maps an offset
//! to that chunk (the mount uses it too).

use std::io::{Read, Seek, SeekFrom};

use crate::cas::{Cas, ChunkReader};
use crate::error::{Error, Result};
use crate::model::{Blob, ToRef};

/// Where each chunk of a version starts, for finding the chunk that holds an offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkOffsets {
    /// Start offset of each chunk, then the total size.
    starts: Vec<u64>,
}

impl ChunkOffsets {
    /// Indexes `blob`'s chunks by their sizes.
    pub fn new(blob: &Blob) -> Self {
        // A
        let mut starts = Vec::with_capacity(blob.chunks.len() + 1);
        let mut at = 0u64;
        for c in &blob.chunks {
            starts.push(at);
            at = at.saturating_add(u64::from(c.size));
        }
        starts.push(at);
        ChunkOffsets { starts }
    }

    /// The content's size: the sum of its chunks' sizes.
    pub fn size(&self) -> u64 {
        // A
        self.starts.last().copied().unwrap_or(0)
    }

    /// Where chunk `index` starts (the size for the index past the last chunk).
    pub fn start(&self, index: usize) -> Option<u64> {
        // A
        self.starts.get(index).copied()
    }

    /// The index of the chunk holding `offset`, and `offset`'s position inside it; `None`
    /// at or past the end.
    pub fn chunk_at(&self, offset: u64) -> Option<(usize, u64)> {
        // A
        if offset >= self.size() {
            return None;
        }
        // Chunks of size 0 share their start with the next one: take the last chunk that
        // starts at or before the offset, which is never empty.
        let index = self
            .starts
            .partition_point(|s| *s <= offset)
            .checked_sub(1)?;
        Some((index, offset - self.starts[index]))
    }
}

/// `Read + Seek` over one version's content. Each read decodes (and verifies) at most the
/// chunks it spans; the last chunk decoded is kept, so sequential reads decode each chunk once.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom};
/// use ouroboros_db::{Cas, CreateOptions, Identity, PutOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let cas = Cas::create(dir.path(), &CreateOptions::default(), &Identity::generate())?;
/// cas.put("log.txt", &b"line one\nline two\n"[..], &PutOptions::default())?;
/// let mut r = cas.open_version("log.txt")?;
/// r.seek(SeekFrom::Start(9)).map_err(ouroboros_db::Error::Input)?;
/// let mut line = String::new();
/// r.read_to_string(&mut line).map_err(ouroboros_db::Error::Input)?;
/// assert_eq!(line, "line two\n");
/// # Ok::<(), ouroboros_db::Error>(())
/// ```
pub struct VersionReader<'c> {
    cas: &'c Cas,
    blob: Blob,
    offsets: ChunkOffsets,
    pos: u64,
    /// The last chunk decoded: its index and plaintext.
    current: Option<(usize, Vec<u8>)>,
}

impl Cas {
    /// Opens the version `reference` names for random access (its content must still be
    /// readable: not removed).
    pub fn open_version(&self, reference: &(impl ToRef + ?Sized)) -> Result<VersionReader<'_>> {
        // A
        let (_, blob) = self.resolve_readable(reference)?;
        Ok(VersionReader::new(self, blob))
    }
}

impl<'c> VersionReader<'c> {
    /// A reader over `blob`'s content, read through `cas`.
    pub fn new(cas: &'c Cas, blob: Blob) -> Self {
        // A
        let offsets = ChunkOffsets::new(&blob);
        VersionReader {
            cas,
            blob,
            offsets,
            pos: 0,
            current: None,
        }
    }

    /// The version's record (key, parents, size, chunks, metadata).
    pub fn blob(&self) -> &Blob {
        // A
        &self.blob
    }

    /// The content's size in bytes.
    pub fn size(&self) -> u64 {
        // A
        self.offsets.size()
    }

    /// The plaintext of chunk `index`, decoded once and kept until another is needed.
    fn chunk(&mut self, index: usize) -> Result<&[u8]> {
        // A
        if self.current.as_ref().map(|(i, _)| *i) != Some(index) {
            let id = self
                .blob
                .chunks
                .get(index)
                .ok_or_else(|| Error::Internal(format!("no chunk {index} in this version")))?
                .id;
            let plain = self.cas.read_chunk(&id)?;
            let want = self.blob.chunks[index].size as usize;
            if plain.len() != want {
                return Err(Error::Corrupt(format!(
                    "chunk {} decoded to {} bytes, the version says {want}",
                    id.short(),
                    plain.len()
                )));
            }
            self.current = Some((index, plain));
        }
        Ok(self
            .current
            .as_ref()
            .map(|(_, p)| p.as_slice())
            .unwrap_or(&[]))
    }
}

impl Read for VersionReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A
        let Some((index, within)) = self.offsets.chunk_at(self.pos) else {
            return Ok(0);
        };
        let chunk = self.chunk(index).map_err(std::io::Error::other)?;
        let from = usize::try_from(within).map_err(std::io::Error::other)?;
        let n = buf.len().min(chunk.len().saturating_sub(from));
        buf[..n].copy_from_slice(&chunk[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for VersionReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        // A
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        // As for files: before the start is an error, past the end reads nothing.
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the version",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChunkRef;
    use crate::Hash;
    use proptest::prelude::*;

    fn offsets(sizes: &[u32]) -> ChunkOffsets {
        let blob = Blob {
            key: "k".into(),
            parents: Vec::new(),
            created: 0,
            kind: crate::model::BlobKind::VersionVector,
            size: sizes.iter().map(|s| u64::from(*s)).sum(),
            meta: Default::default(),
            chunks: sizes
                .iter()
                .map(|&size| ChunkRef {
                    id: Hash([0; 32]),
                    size,
                })
                .collect(),
        };
        ChunkOffsets::new(&blob)
    }

    proptest! {
        /// Every offset inside the content maps to the chunk that holds it, none past it.
        #[test]
        fn every_offset_finds_its_chunk(sizes in prop::collection::vec(0u32..50, 0..20), probe in 0u64..1200) {
            let o = offsets(&sizes);
            let total: u64 = sizes.iter().map(|s| u64::from(*s)).sum();
            prop_assert_eq!(o.size(), total);
            match o.chunk_at(probe) {
                None => prop_assert!(probe >= total),
                Some((i, within)) => {
                    prop_assert!(within < u64::from(sizes[i]));
                    prop_assert_eq!(o.start(i).unwrap() + within, probe);
                }
            }
        }
    }
}
