//! A key opened for writing: changes go to an unlinked temp file in the store directory (not
//! RAM), and become one new version when the file is flushed (close) or fsynced. Every
//! descriptor open on the key shares one handle, as they would share an inode.
//!
//! The temp file stays sparse: a head with holes is copied in without writing them, and a
//! file with holes is stored without reading them (`Cas::put_file`).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ouroboros_db::cas::ChunkReader;
use ouroboros_db::model::{FileMeta, VersionMeta};
use ouroboros_db::{Blob, Cas, Hash, PutOptions, Result};

use crate::meta::now_nanos;

/// Largest file the mount stores (1 TiB, the most an LMDB store holds): writes or truncates
/// beyond it fail with EFBIG at once instead of making a version nothing could keep.
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// The error of a write or truncate beyond [`MAX_FILE_SIZE`].
fn too_big() -> std::io::Error {
    // A
    std::io::Error::from_raw_os_error(libc::EFBIG)
}

/// An open-for-writing key.
pub struct WriteHandle {
    /// The key the content is stored under.
    pub key: String,
    /// The head the file was opened from: the new version's parent (a concurrent write
    /// elsewhere then makes a second head, as the design wants).
    pub parent: Option<Hash>,
    file: File,
    /// Written to since the last commit.
    dirty: bool,
    /// Created or truncated by open and not stored yet: stored at release even if unwritten
    /// (`touch`, `: > file`), but not at every flush, so that a shell's `dup2` + `close`
    /// before writing makes no empty version.
    must_store: bool,
    /// Mode, owner and time the next version records: those of the version opened (or given
    /// to create), the time of the last write, or what setattr set meanwhile.
    meta: FileMeta,
    /// Changed by setattr since the last commit: stored at the next flush even unwritten.
    meta_dirty: bool,
    /// Unlinked while open: writes still go to the temp file, nothing is stored.
    discarded: bool,
}

impl WriteHandle {
    /// A handle on an empty temp file (in `dir`), holding the content of `head` (the key's
    /// head and its record) unless `truncate`; its versions record `meta` (with the time of
    /// each write) and descend from `head`.
    pub fn open(
        cas: &Cas,
        dir: &Path,
        key: &str,
        head: Option<(Hash, &Blob)>,
        truncate: bool,
        meta: FileMeta,
    ) -> Result<Self> {
        // A
        let io =
            |e| ouroboros_db::Error::io(format!("creating a temp file in {}", dir.display()), e);
        let mut file = tempfile::tempfile_in(dir).map_err(io)?;
        let parent = head.map(|(h, _)| h);
        if let (Some((p, blob)), false) = (head, truncate) {
            let distinct = blob
                .chunks
                .iter()
                .map(|c| c.id)
                .collect::<std::collections::HashSet<_>>();
            if distinct.len() == blob.chunks.len() {
                // No chunk repeats, so no hole was stored as one: the parallel get path.
                cas.get(&format!("{key}@{}", p.to_hex()), &mut file)?;
            } else {
                copy_sparse(cas, blob, &file)?;
            }
        }
        Ok(WriteHandle {
            key: key.to_string(),
            parent,
            file,
            dirty: false,
            must_store: parent.is_none() || truncate,
            meta: FileMeta {
                mtime: if truncate { now_nanos() } else { meta.mtime },
                ..meta
            },
            meta_dirty: false,
            discarded: false,
        })
    }

    /// Writes at `offset` (at the end for a descriptor opened with O_APPEND); EFBIG past
    /// [`MAX_FILE_SIZE`].
    pub fn write(&mut self, offset: u64, data: &[u8], append: bool) -> std::io::Result<()> {
        // A
        let at = if append { self.size()? } else { offset };
        if at.saturating_add(data.len() as u64) > MAX_FILE_SIZE {
            return Err(too_big());
        }
        self.file.write_all_at(data, at)?;
        self.dirty = true;
        self.meta.mtime = now_nanos();
        Ok(())
    }

    /// Reads back what was written so far.
    pub fn read(&self, offset: u64, size: usize) -> std::io::Result<Vec<u8>> {
        // A
        let mut buf = vec![0; size];
        let mut got = 0;
        while got < size {
            let n = self.file.read_at(&mut buf[got..], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Truncates or extends the content (extending leaves a hole); EFBIG past
    /// [`MAX_FILE_SIZE`].
    pub fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        // A
        if len > MAX_FILE_SIZE {
            return Err(too_big());
        }
        self.file.set_len(len)?;
        self.dirty = true;
        self.meta.mtime = now_nanos();
        Ok(())
    }

    /// Current content length.
    pub fn size(&self) -> std::io::Result<u64> {
        // A
        Ok(self.file.metadata()?.len())
    }

    /// The metadata the next version records.
    pub fn meta(&self) -> FileMeta {
        // A
        self.meta
    }

    /// True while something is not stored yet (content written, a new or truncated file not
    /// yet stored, or metadata set): a setattr then changes this handle, not the key's head.
    pub fn unstored(&self) -> bool {
        // A
        self.dirty || self.must_store || self.meta_dirty
    }

    /// Records new metadata for the next version (chmod, chown, touch on an open file).
    pub fn set_meta(&mut self, meta: FileMeta) {
        // A
        self.meta = meta;
        self.meta_dirty = true;
    }

    /// The head changed under this handle by a metadata-only version (setattr while nothing
    /// was unstored): later versions descend from it and keep its metadata.
    pub fn rebase(&mut self, head: Hash, meta: FileMeta) {
        // A
        self.parent = Some(head);
        self.meta = meta;
    }

    /// The file was unlinked while open: nothing of it is stored from now on.
    pub fn discard(&mut self) {
        // A
        self.discarded = true;
    }

    /// True once unlinked while open.
    pub fn is_discarded(&self) -> bool {
        // A
        self.discarded
    }

    /// Opened again with O_TRUNC while open: empty, and stored at release even unwritten,
    /// as a new handle opened with O_TRUNC (not at the next flush: the shell's `dup2` and
    /// `close` before `echo x > f` writes must not store an empty version).
    pub fn truncate_all(&mut self) -> std::io::Result<()> {
        // A
        self.file.set_len(0)?;
        self.dirty = false;
        self.must_store = true;
        self.meta.mtime = now_nanos();
        Ok(())
    }

    /// The file was renamed while open: later versions go to `key`, after `head` (the
    /// version the rename made).
    pub fn retarget(&mut self, key: &str, head: Hash) {
        // A
        self.key = key.to_string();
        self.parent = Some(head);
    }

    /// Stores the content as a new version when it was written to (or its metadata set)
    /// since the last commit (`closing`: also when it was created or truncated and never
    /// stored).
    pub fn commit(&mut self, cas: &Cas, closing: bool) -> Result<Option<Hash>> {
        // PA
        if self.discarded || !(self.dirty || self.meta_dirty || closing && self.must_store) {
            return Ok(None);
        }
        let opts = PutOptions {
            parents: Some(self.parent.into_iter().collect()),
            meta: VersionMeta::File(self.meta),
            ..PutOptions::default()
        };
        // Holes are not read: a file with one byte at 1 TiB stores in about a second.
        let out = cas.put_file(&self.key, &self.file, &opts)?;
        self.parent = Some(out.hash);
        self.dirty = false;
        self.meta_dirty = false;
        self.must_store = false;
        Ok(Some(out.hash))
    }
}

/// Writes `blob`'s content into `file`, leaving holes where it holds chunks of zeros (each
/// distinct chunk is decoded once to find out; a chunk repeated many times is a hole's block).
fn copy_sparse(cas: &Cas, blob: &Blob, file: &File) -> Result<()> {
    // A
    let io = |e| ouroboros_db::Error::io("writing a temp file", e);
    let mut zero: HashMap<Hash, bool> = HashMap::new();
    let mut at = 0u64;
    for c in &blob.chunks {
        if zero.get(&c.id) != Some(&true) {
            let data = cas.read_chunk(&c.id)?;
            let is_zero = *zero
                .entry(c.id)
                .or_insert_with(|| data.iter().all(|&b| b == 0));
            if !is_zero {
                file.write_all_at(&data, at).map_err(io)?;
            }
        }
        at += u64::from(c.size);
    }
    file.set_len(blob.size).map_err(io)
}
