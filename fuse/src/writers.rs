//! Keys open for writing. Every descriptor open on a key shares one `WriteHandle`, as
//! descriptors share an inode: each sees the others' writes, a close stores what all of them
//! wrote, and an unlink or a rename moves or discards them together. The handle stays in
//! `pending` until the last descriptor's release, and meanwhile the key shows as a file.

use std::sync::{Arc, Mutex};

use fuser::{Errno, FileHandle};
use ouroboros_db::model::FileMeta;
use ouroboros_db::Hash;

use crate::fs::{errno, Handle, OpenWrite, OuroFs};
use crate::write_handle::WriteHandle;

/// The errno of a failed write or truncate of a temp file.
pub(crate) fn io_errno(e: &std::io::Error) -> Errno {
    // A
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Errno::ENOSPC,
        Some(libc::EFBIG) => Errno::EFBIG,
        _ => Errno::EIO,
    }
}

impl OuroFs {
    /// Stores what descriptor `fh`'s handle holds (a flush, fsync or release).
    pub(crate) fn commit(&self, fh: FileHandle, closing: bool) -> Result<(), Errno> {
        // PA
        let h = self.handle(fh)?;
        self.commit_handle(&h, closing)
    }

    fn commit_handle(&self, h: &Mutex<Handle>, closing: bool) -> Result<(), Errno> {
        // PA
        let mut guard = h.lock().map_err(|_| Errno::EIO)?;
        self.commit_locked(&mut guard, closing)
    }

    fn commit_locked(&self, h: &mut Handle, closing: bool) -> Result<(), Errno> {
        // PA
        if let Handle::Write(w) = h {
            w.commit(&self.cas, closing).map_err(|e| {
                tracing::warn!(key = %w.key, error = %e, "storing a version failed");
                errno(&e)
            })?;
        }
        Ok(())
    }

    /// Opens key `key` for writing: a new descriptor on its open handle, or a new handle
    /// holding its head's content. A new key's versions record `new_meta` (create's mode
    /// and caller), an existing key's keep the head's mode and owner.
    pub(crate) fn open_write(
        &self,
        key: &str,
        truncate: bool,
        append: bool,
        new_meta: Option<FileMeta>,
    ) -> Result<u64, Errno> {
        // A
        let h = match self.share_open(key)? {
            Some(h) => {
                if truncate {
                    if let Handle::Write(w) = &mut *h.lock().map_err(|_| Errno::EIO)? {
                        w.truncate_all().map_err(|e| io_errno(&e))?;
                    }
                }
                h
            }
            None => {
                let (h, mine) = self.new_write_handle(key, truncate, new_meta)?;
                if truncate && !mine {
                    if let Handle::Write(w) = &mut *h.lock().map_err(|_| Errno::EIO)? {
                        w.truncate_all().map_err(|e| io_errno(&e))?;
                    }
                }
                h
            }
        };
        let fh = self.add_shared(h);
        if append {
            self.append_fhs.lock().map_err(|_| Errno::EIO)?.insert(fh);
        }
        Ok(fh)
    }

    /// The open handle of `key`, counted as one more descriptor.
    fn share_open(&self, key: &str) -> Result<Option<Arc<Mutex<Handle>>>, Errno> {
        // A
        let mut p = self.pending.lock().map_err(|_| Errno::EIO)?;
        Ok(p.get_mut(key).map(|o| {
            o.fds += 1;
            Arc::clone(&o.handle)
        }))
    }

    /// A handle on a copy of `key`'s head (or empty), entered in `pending`; when another
    /// open entered one meanwhile, that one (this copy is dropped unstored), with false.
    fn new_write_handle(
        &self,
        key: &str,
        truncate: bool,
        new_meta: Option<FileMeta>,
    ) -> Result<(Arc<Mutex<Handle>>, bool), Errno> {
        // A
        let head = self.head_blob(key)?;
        let meta = match (&head, new_meta) {
            (Some((_, b)), _) if b.meta.file().is_some_and(|m| m.is_symlink()) => {
                return Err(Errno::ELOOP)
            }
            (Some((_, b)), _) => self.meta_of(b),
            (None, Some(m)) => m,
            (None, None) => self.default_meta(crate::meta::now_nanos()),
        };
        let head = head.as_ref().map(|(h, b)| (*h, b));
        let w = WriteHandle::open(&self.cas, &self.tmp_dir, key, head, truncate, meta)
            .map_err(|e| errno(&e))?;
        let mine = Arc::new(Mutex::new(Handle::Write(Box::new(w))));
        let mut p = self.pending.lock().map_err(|_| Errno::EIO)?;
        let o = p.entry(key.to_string()).or_insert_with(|| OpenWrite {
            handle: Arc::clone(&mine),
            fds: 0,
        });
        o.fds += 1;
        Ok((Arc::clone(&o.handle), Arc::ptr_eq(&o.handle, &mine)))
    }

    /// The write handle of a key open for writing, if any.
    pub(crate) fn pending_handle(&self, key: &str) -> Option<Arc<Mutex<Handle>>> {
        // A
        let p = self.pending.lock().ok()?;
        p.get(key).map(|o| Arc::clone(&o.handle))
    }

    /// Stores what a key's open handle holds now (as a release would): a reader or a
    /// rename then finds it in the store.
    pub(crate) fn settle_pending(&self, key: &str) -> Result<(), Errno> {
        // PA
        match self.pending_handle(key) {
            Some(h) => self.commit_handle(&h, true),
            None => Ok(()),
        }
    }

    /// Stops a key's open handle from storing anything (the key was unlinked or replaced)
    /// and forgets it as the key's; returns it.
    pub(crate) fn discard_pending(&self, key: &str) -> Option<Arc<Mutex<Handle>>> {
        // A
        let o = self.pending.lock().ok()?.remove(key)?;
        if let Ok(Handle::Write(w)) = o.handle.lock().as_deref_mut() {
            w.discard();
        }
        Some(o.handle)
    }

    /// After key `from` was moved to `to` (whose head is now `head`): its open handle
    /// stores there from now on; one open on `to` before was replaced, so it is discarded.
    pub(crate) fn retarget_pending(&self, from: &str, to: &str, head: Hash) -> Result<(), Errno> {
        // A
        let replaced = self.discard_pending(to);
        let moved = self.pending.lock().map_err(|_| Errno::EIO)?.remove(from);
        if let Some(o) = moved {
            if let Handle::Write(w) = &mut *o.handle.lock().map_err(|_| Errno::EIO)? {
                w.retarget(to, head);
            }
            self.pending
                .lock()
                .map_err(|_| Errno::EIO)?
                .insert(to.to_string(), o);
        }
        drop(replaced);
        Ok(())
    }

    /// Release of descriptor `fh`: the last descriptor of a key's handle stores what is not
    /// stored yet (a file created or truncated and never written). Others store nothing:
    /// their close already stored their writes, and the handle may hold another
    /// descriptor's writes in progress (`echo 2 > f` right after `echo 1 > f` shares the
    /// first one's handle, truncated: storing it here would add an empty version).
    pub(crate) fn release_fh(&self, fh: FileHandle) -> Result<(), Errno> {
        // PA
        let h = self.handle(fh)?;
        let r = {
            // Held from the decision to the store: an open sharing the handle meanwhile
            // (and truncating it) either counts here or comes after the store.
            let mut guard = h.lock().map_err(|_| Errno::EIO)?;
            if let Handle::Write(w) = &*guard {
                let mut p = self.pending.lock().map_err(|_| Errno::EIO)?;
                if let Some(o) = p.get_mut(&w.key).filter(|o| Arc::ptr_eq(&o.handle, &h)) {
                    if o.fds > 1 {
                        o.fds -= 1;
                        drop(p);
                        drop(guard);
                        self.forget_fh(fh.0);
                        return Ok(());
                    }
                }
            }
            self.commit_locked(&mut guard, true)
        };
        self.close(fh.0);
        r
    }

    /// Drops descriptor `fh` without touching `pending`.
    fn forget_fh(&self, fh: u64) -> Option<Arc<Mutex<Handle>>> {
        // A
        if let Ok(mut a) = self.append_fhs.lock() {
            a.remove(&fh);
        }
        self.handles.lock().ok().and_then(|mut h| h.remove(&fh))
    }

    /// Release: the descriptor is gone; a key's handle leaves `pending` with its last one.
    pub(crate) fn close(&self, fh: u64) {
        // A
        let Some(h) = self.forget_fh(fh) else {
            return;
        };
        let key = match h.lock().as_deref() {
            Ok(Handle::Write(w)) => w.key.clone(),
            _ => return,
        };
        if let Ok(mut p) = self.pending.lock() {
            if let Some(o) = p.get_mut(&key).filter(|o| Arc::ptr_eq(&o.handle, &h)) {
                o.fds = o.fds.saturating_sub(1);
                if o.fds == 0 {
                    p.remove(&key);
                }
            }
        }
    }

    /// Truncates key `key` to `len`: through its open handle, or as a version of its own.
    pub(crate) fn truncate_key(
        &self,
        key: &str,
        len: u64,
        fh: Option<FileHandle>,
    ) -> Result<(), Errno> {
        // A
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let open = fh
            .and_then(|fh| self.handle(fh).ok())
            .or_else(|| self.pending_handle(key));
        if let Some(h) = open {
            return match &mut *h.lock().map_err(|_| Errno::EIO)? {
                Handle::Write(w) => w.set_len(len).map_err(|e| io_errno(&e)),
                _ => Err(Errno::EBADF),
            };
        }
        if len > crate::write_handle::MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        // `truncate FILE` without opening it: a version of its own.
        let fh = self.open_write(key, len == 0, false, None)?;
        let res = (|| {
            if let Handle::Write(w) = &mut *self
                .handle(FileHandle(fh))?
                .lock()
                .map_err(|_| Errno::EIO)?
            {
                w.set_len(len).map_err(|e| io_errno(&e))?;
            }
            self.commit(FileHandle(fh), true)
        })();
        self.close(fh);
        res
    }

    /// fallocate: mode 0 extends the file to `offset + length` (the new part a hole, as a
    /// filesystem without preallocation does); other modes are EOPNOTSUPP.
    pub(crate) fn allocate(
        &self,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        // A
        if mode != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        match &mut *self.handle(fh)?.lock().map_err(|_| Errno::EIO)? {
            Handle::Write(w) => {
                if end > w.size().map_err(|e| io_errno(&e))? {
                    w.set_len(end).map_err(|e| io_errno(&e))?;
                }
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }
}
