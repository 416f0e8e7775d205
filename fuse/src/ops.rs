//! The kernel's requests, answered from the tree view, the chunk cache and write handles.
//! What POSIX features are not supported, and the error each returns, is in the README.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::chunk_cache::ReadData;
use crate::fs::{errno, Handle, OuroFs, TTL};
use crate::node::Node;

impl Filesystem for OuroFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // A
        // O_TRUNC arrives with open instead of as a separate truncate, which would otherwise
        // store an empty version before every `> file`.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Files opened with direct I/O can still be mapped into memory (Linux >= 6.6; older
        // kernels refuse shared mappings of them with ENODEV).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        let readahead = match config.set_max_readahead(1 << 20) {
            Ok(_) => 1 << 20,
            Err(max) => config.set_max_readahead(max).map(|_| max).unwrap_or(0),
        };
        tracing::debug!(readahead, "fuse init");
        // Listings carry attributes, so `ls -l` of 100k keys needs no lookup per key.
        // With READDIRPLUS_AUTO the kernel asks for them only when stats follow (not for `ls`).
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // A
        let r = (|| {
            let parent = self.node(parent)?;
            let name = name.to_str().ok_or(Errno::ENOENT)?;
            let node = self.child(&parent, name)?;
            let attr = self.attr(&node)?;
            self.remember(node);
            Ok::<_, Errno>(attr)
        })();
        match r {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        // A
        match self.node(ino).and_then(|n| self.attr(&n)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // A
        let r = (|| {
            let node = self.node(ino)?;
            if let Some(len) = size {
                let Node::File(key) = &node else {
                    return Err(if node.is_dir() {
                        Errno::EISDIR
                    } else {
                        Errno::EROFS
                    });
                };
                if self.opts.read_only {
                    return Err(Errno::EROFS);
                }
                let open = fh.and_then(|fh| self.handle(fh).ok());
                let open = open.or_else(|| {
                    let fh = *self.pending.lock().ok()?.get(key)?;
                    self.handle(FileHandle(fh)).ok()
                });
                match open {
                    Some(h) => match &mut *h.lock().map_err(|_| Errno::EIO)? {
                        Handle::Write(w) => w.set_len(len).map_err(|_| Errno::EIO)?,
                        _ => return Err(Errno::EBADF),
                    },
                    // `truncate FILE` without opening it: a version of its own.
                    None => {
                        let fh = self.open_write(key, len == 0, false)?;
                        let res = (|| {
                            if let Handle::Write(w) = &mut *self
                                .handle(FileHandle(fh))?
                                .lock()
                                .map_err(|_| Errno::EIO)?
                            {
                                w.set_len(len).map_err(|_| Errno::EIO)?;
                            }
                            self.commit(FileHandle(fh), true)
                        })();
                        self.close(fh);
                        res?;
                    }
                }
            }
            // Modes, owners and times are not stored: ouro versions content only.
            self.attr(&node)
        })();
        match r {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        // A
        let r = (|| {
            let p = self.writable_key(parent, name)?;
            if self
                .child(&self.node(parent)?, name.to_str().ok_or(Errno::EINVAL)?)
                .is_ok()
            {
                return Err(Errno::EEXIST);
            }
            self.empty_dirs
                .lock()
                .map_err(|_| Errno::EIO)?
                .insert(p.clone());
            let node = Node::Dir(p);
            let attr = self.attr(&node)?;
            self.remember(node);
            Ok(attr)
        })();
        match r {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        // PA
        let r = (|| {
            let key = self.writable_key(parent, name)?;
            match self.child(&self.node(parent)?, name.to_str().ok_or(Errno::EINVAL)?)? {
                Node::File(_) => {}
                _ => return Err(Errno::EISDIR),
            }
            if self
                .pending
                .lock()
                .map(|p| p.contains_key(&key))
                .unwrap_or(false)
                && !self.cas.is_key(&key).map_err(|e| errno(&e))?
            {
                // Created and still open, never stored: nothing to remove.
                return Ok(());
            }
            self.cas.remove(&key).map(|_| ()).map_err(|e| errno(&e))
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        // A
        let r = (|| {
            let p = self.writable_key(parent, name)?;
            if self.cas.is_dir(&p).map_err(|e| errno(&e))? {
                return Err(Errno::ENOTEMPTY);
            }
            if self.empty_dirs.lock().map_err(|_| Errno::EIO)?.remove(&p) {
                Ok(())
            } else {
                Err(Errno::ENOENT)
            }
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // PA
        let r = (|| {
            let from = self.writable_key(parent, name)?;
            let to = self.writable_key(newparent, newname)?;
            match self.child(&self.node(parent)?, name.to_str().ok_or(Errno::EINVAL)?)? {
                Node::File(_) => {
                    let (hash, _, _) = self.head(&from)?.ok_or(Errno::ENOENT)?;
                    self.cas.copy_version(&hash, &to).map_err(|e| errno(&e))?;
                    self.cas.remove(&from).map(|_| ()).map_err(|e| errno(&e))
                }
                Node::Dir(_) => {
                    let mut empty = self.empty_dirs.lock().map_err(|_| Errno::EIO)?;
                    if empty.remove(&from) {
                        empty.insert(to);
                        Ok(())
                    } else {
                        // Moving every key below: `mv` copies and removes them instead.
                        Err(Errno::EXDEV)
                    }
                }
                _ => Err(Errno::EROFS),
            }
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // A
        let r = self.open_file(ino, flags.0);
        match r {
            Ok((fh, flags)) => reply.opened(FileHandle(fh), flags),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        // A
        let r = (|| {
            let key = self.writable_key(parent, name)?;
            ouroboros_db::model::validate_key(&key).map_err(|_| Errno::EINVAL)?;
            let fh = self.open_write(&key, true, flags & libc::O_APPEND != 0)?;
            let node = Node::File(key);
            let attr = self.attr(&node)?;
            self.forget_cached_version(attr.ino);
            self.remember(node);
            Ok((fh, attr))
        })();
        match r {
            Ok((fh, attr)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // A
        let r = (|| {
            let h = self.handle(fh)?;
            let blob = match &*h.lock().map_err(|_| Errno::EIO)? {
                Handle::Read(b) => Arc::clone(b),
                Handle::Write(w) => {
                    return w
                        .read(offset, size as usize)
                        .map(ReadData::Copied)
                        .map_err(|_| Errno::EIO)
                }
                Handle::Dir(_) => return Err(Errno::EISDIR),
            };
            // The handle's lock is released: readers of one file decode in parallel.
            let data = self
                .cache
                .read(ino.0, &blob, offset, size as usize)
                .map_err(|e| {
                    tracing::warn!(key = %blob.blob.key, error = %e, "read failed");
                    errno(&e)
                })?;
            if blob.read_at_random() {
                self.mark_read_at_random(ino.0);
            }
            Ok(data)
        })();
        match r {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // A
        let r = (|| {
            let h = self.handle(fh)?;
            let mut guard = h.lock().map_err(|_| Errno::EIO)?;
            match &mut *guard {
                Handle::Write(w) => w.write(offset, data).map_err(|e| {
                    if e.raw_os_error() == Some(libc::ENOSPC) {
                        Errno::ENOSPC
                    } else {
                        Errno::EIO
                    }
                }),
                _ => Err(Errno::EBADF),
            }
        })();
        match r {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // PA
        // Every close(2) flushes: storing here makes the version exist when close returns.
        match self.commit(fh, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // PA
        match self.commit(fh, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // PA
        let r = self.commit(fh, true);
        self.close(fh.0);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // A
        match self.node(ino).and_then(|n| self.list(ino.0, &n)) {
            Ok(entries) => reply.opened(
                FileHandle(self.add_handle(Handle::Dir(entries))),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // A
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Ok(guard) = h.lock() else {
            return reply.error(Errno::EIO);
        };
        let Handle::Dir(entries) = &*guard else {
            return reply.error(Errno::ENOTDIR);
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        // A
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Ok(mut guard) = h.lock() else {
            return reply.error(Errno::EIO);
        };
        let Handle::Dir(entries) = &mut *guard else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut at = offset as usize;
        while at < entries.len() {
            // The kernel's buffer takes a few dozen entries: read attributes for about that
            // many at once and keep them for the next call.
            let end = entries.len().min(at + 64);
            let page = &mut entries[at..end];
            let sets: Vec<&[ouroboros_db::Hash]> = page
                .iter()
                .filter(|e| e.attr.is_none() && !e.heads.is_empty())
                .map(|e| e.heads.as_slice())
                .collect();
            let mut newest = match self.cas.newest_heads(&sets) {
                Ok(n) => n.into_iter(),
                Err(e) => return reply.error(errno(&e)),
            };
            for (j, e) in page.iter_mut().enumerate() {
                let attr = match (e.attr, e.heads.is_empty()) {
                    (Some(a), _) => Some(a),
                    (None, false) => newest.next().flatten().map(|(_, size, created)| {
                        self.make_attr(
                            &e.node,
                            fuser::FileType::RegularFile,
                            size,
                            crate::fs::time_of(created),
                        )
                    }),
                    (None, true) => self.attr(&e.node).ok(),
                };
                // An entry that vanished since the listing is left out.
                let Some(attr) = attr else { continue };
                e.attr = Some(attr);
                let next = (at + j + 1) as u64;
                if reply.add(INodeNo(e.ino), next, &e.name, &TTL, &attr, Generation(0)) {
                    return reply.ok();
                }
            }
            at += page.len();
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        // A
        self.close(fh.0);
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // A
        // ENOSYS makes the kernel stop asking (no xattrs on this mount), saving a round trip
        // per file in `ls -l`.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        // A
        let _ = size;
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        // A
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        // A
        reply.error(Errno::ENOTSUP);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // A
        reply.error(Errno::EPERM);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        // A
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // A
        reply.error(Errno::EPERM);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // A
        match self.node(ino) {
            Ok(n)
                if mask.contains(fuser::AccessFlags::W_OK)
                    && (self.opts.read_only || n.is_frozen()) =>
            {
                reply.error(Errno::EROFS)
            }
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A
        match rustix::fs::statvfs(self.cas.path()) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(_) => reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096),
        }
    }
}
