//! Mounting as a normal user: `fusermount3` (setuid root) mounts and hands back the open
//! `/dev/fuse` descriptor over a socket, as libfuse does. This works even where `/dev/fuse`
//! itself is readable by root only.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use rustix::net::{
    recvmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SocketFlags, SocketType,
};

/// Runs `fusermount3 -o OPTIONS -- MOUNTPOINT` and returns the FUSE device it opened.
pub fn mount(mountpoint: &Path, options: &str) -> io::Result<OwnedFd> {
    // A
    // Our end is close-on-exec; fusermount3 inherits only its own end.
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )?;
    rustix::io::fcntl_setfd(&ours, rustix::io::FdFlags::CLOEXEC)?;
    let out = Command::new("fusermount3")
        .arg("-o")
        .arg(options)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running fusermount3: {e}")))?;
    drop(theirs);
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let msg = text.trim().trim_start_matches("fusermount3: ");
        return Err(io::Error::other(format!(
            "fusermount3: {msg} (normal users need read-write access to /dev/fuse, mode 0666 on Debian)"
        )));
    }
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(
        &ours,
        &mut [io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other("fusermount3 returned no FUSE device"))
}
