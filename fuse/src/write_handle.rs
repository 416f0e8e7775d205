//! A key opened for writing: changes go to an unlinked temp file in the store directory (not
//! RAM), and become one new version when the file is flushed (close) or fsynced.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ouroboros_db::model::{FileMeta, VersionMeta};
use ouroboros_db::{Cas, Hash, PutOptions, Result};

use crate::meta::now_nanos;

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
    append: bool,
    /// Mode, owner and time the next version records: those of the version opened (or given
    /// to create), the time of the last write, or what setattr set meanwhile.
    meta: FileMeta,
    /// Changed by setattr since the last commit: stored at the next flush even unwritten.
    meta_dirty: bool,
    /// Unlinked while open: writes still go to the temp file, nothing is stored.
    discarded: bool,
}

impl WriteHandle {
    /// A handle on an empty temp file (in `dir`), holding `parent`'s content unless `truncate`;
    /// its versions record `meta` (with the time of each write).
    pub fn open(
        cas: &Cas,
        dir: &Path,
        key: &str,
        parent: Option<Hash>,
        (truncate, append): (bool, bool),
        meta: FileMeta,
    ) -> Result<Self> {
        // A
        let io =
            |e| ouroboros_db::Error::io(format!("creating a temp file in {}", dir.display()), e);
        let mut file = tempfile::tempfile_in(dir).map_err(io)?;
        if let (Some(p), false) = (parent, truncate) {
            cas.get(&format!("{key}@{}", p.to_hex()), &mut file)?;
        }
        Ok(WriteHandle {
            key: key.to_string(),
            parent,
            file,
            dirty: false,
            must_store: parent.is_none() || truncate,
            append,
            meta: FileMeta {
                mtime: if truncate { now_nanos() } else { meta.mtime },
                ..meta
            },
            meta_dirty: false,
            discarded: false,
        })
    }

    /// Writes at `offset` (at the end when opened with O_APPEND).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        // A
        let at = if self.append { self.size()? } else { offset };
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

    /// Truncates or extends the content.
    pub fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        // A
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
        let mut reader = self
            .file
            .try_clone()
            .map_err(|e| ouroboros_db::Error::io("reopening a temp file", e))?;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| ouroboros_db::Error::io("rewinding a temp file", e))?;
        let opts = PutOptions {
            parents: Some(self.parent.into_iter().collect()),
            meta: VersionMeta::File(self.meta),
            ..PutOptions::default()
        };
        let out = cas.put(&self.key, reader, &opts)?;
        self.parent = Some(out.hash);
        self.dirty = false;
        self.meta_dirty = false;
        self.must_store = false;
        Ok(Some(out.hash))
    }
}
