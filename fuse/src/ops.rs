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

use std::os::unix::ffi::OsStrExt;

use ouroboros_db::model::meta::TYPE_FILE;
use ouroboros_db::model::FileMeta;

use crate::chunk_cache::ReadData;
use crate::fs::{errno, Handle, OuroFs, TTL};
use crate::meta::{now_nanos, MetaChange};
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
            if name.len() > crate::fs::NAME_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            let parent = self.node(parent)?;
            let (node, attr) = match parent {
                // Names in snapshots are raw bytes, not necessarily UTF-8.
                Node::Snapshot { .. } | Node::SnapEntry { .. } => {
                    self.snap_child(&parent, name.as_bytes())?
                }
                _ => {
                    let node = self.child(&parent, name.to_str().ok_or(Errno::ENOENT)?)?;
                    let attr = self.attr(&node)?;
                    (node, attr)
                }
            };
            self.remember(node);
            Ok::<_, Errno>(attr)
        })();
        match r {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        // A
        match self.attr_of(ino, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
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
                match &node {
                    Node::File(key) => self.truncate_key(key, len, fh)?,
                    n if n.is_dir() => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EROFS),
                }
            }
            // Mode, owners and mtime are kept (a new version with the same chunks); atime
            // is not.
            let change = MetaChange {
                mode,
                uid,
                gid,
                mtime,
            };
            self.change_meta(&node, change, req.uid(), fh)?;
            self.attr_of(ino, fh)
        })();
        match r {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
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
            self.make_dir(&p, mode & !umask, req.uid(), req.gid())?;
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
        match self.unlink_key(parent, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        // A
        let r = (|| {
            let p = self.writable_key(parent, name)?;
            match self.child(&self.node(parent)?, name.to_str().ok_or(Errno::EINVAL)?)? {
                Node::Dir(_) => self.remove_dir(&p),
                _ => Err(Errno::ENOTDIR),
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
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // PA
        let r = self.rename_node((parent, name), (newparent, newname), flags.bits());
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
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        // A
        let r = (|| {
            let key = self.writable_key(parent, name)?;
            ouroboros_db::model::validate_key(&key).map_err(|e| errno(&e))?;
            let meta = FileMeta {
                mode: TYPE_FILE | (mode & !umask & 0o7777),
                uid: req.uid(),
                gid: req.gid(),
                mtime: now_nanos(),
            };
            let append = flags & libc::O_APPEND != 0;
            let fh = self.open_write(&key, true, append, Some(meta))?;
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
                Handle::Dir(_) | Handle::SnapDir(_) => return Err(Errno::EISDIR),
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
            let append = self
                .append_fhs
                .lock()
                .map_err(|_| Errno::EIO)?
                .contains(&fh.0);
            let h = self.handle(fh)?;
            let mut guard = h.lock().map_err(|_| Errno::EIO)?;
            match &mut *guard {
                Handle::Write(w) => w
                    .write(offset, data, append)
                    .map_err(|e| crate::writers::io_errno(&e)),
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
        match self.release_fh(fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // A
        match self.open_dir(ino) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        // A
        self.read_dir(fh, offset, reply);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: fuser::ReplyDirectoryPlus,
    ) {
        // A
        self.read_dir_plus(fh, offset, reply);
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

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // A
        // Not ENOSYS, which would make the kernel stop asking for every file of the mount,
        // snapshot entries included (the price: `ls -l` asks once per file, ~15 us each).
        match self.node(ino).and_then(|n| self.xattr(&n, name.as_bytes())) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        // A
        match self.node(ino).and_then(|n| self.xattr_names(&n)) {
            Ok(names) => reply_xattr(reply, size, &names),
            Err(e) => reply.error(e),
        }
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
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        // A
        let r = (|| {
            let key = self.writable_key(parent, link_name)?;
            let name = link_name.to_str().ok_or(Errno::EINVAL)?;
            if self.child(&self.node(parent)?, name).is_ok() {
                return Err(Errno::EEXIST);
            }
            let target = target.as_os_str().as_bytes();
            self.make_symlink(&key, target, req.uid(), req.gid())?;
            let node = Node::File(key);
            let attr = self.attr(&node)?;
            self.remember(node);
            Ok(attr)
        })();
        match r {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        // A
        match self.node(ino).and_then(|n| self.read_link(&n)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        // A
        self.forget_snap(ino.0, nlookup);
        self.forget_orphan(ino.0);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // A
        match self.allocate(fh, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
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

/// Answers getxattr or listxattr with `value`: its size when asked for the size (0), else
/// the value, or ERANGE when it does not fit.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    // A
    match (size, u32::try_from(value.len())) {
        (_, Err(_)) => reply.error(Errno::E2BIG),
        (0, Ok(len)) => reply.size(len),
        (max, Ok(len)) if len > max => reply.error(Errno::ERANGE),
        _ => reply.data(value),
    }
}
