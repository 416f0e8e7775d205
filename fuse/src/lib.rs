//! The FUSE view of an ouro store (`ouro mount`): keys as files, versions as directories.
//!
//! - `MOUNT/<key>`: the newest head of each key, writable (a version per close or fsync);
//! - `MOUNT/.ouro/versions/<key>/<UTC time, ns>_<short hash>/<base name>`: every version;
//! - `MOUNT/.ouro/heads/<key>/<short hash>`: the current heads;
//! - `MOUNT/.ouro/at/<time or date>/...`: the tree as it was then (lookups only);
//! - `MOUNT/.ouro/blobs/<hash>`: any version by its full hash;
//! - `MOUNT/.ouro/snapshots/<prefix>/<UTC time>_<short hash>/...`: every snapshot (`put -r`)
//!   as a read-only tree with its recorded metadata; `.../<prefix>/latest` links to the newest.
//!
//! Keys keep file metadata: chmod, chown, touch and `ln -s` store versions with the same
//! chunks and a new mode, owner, mtime or type; a directory keeps its own in a hidden marker
//! key `DIR/.ouro`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let cas: Arc<ouroboros_db::Cas> = unimplemented!();
//! let session = ouro_fuse::spawn(cas, "/mnt/ouro".as_ref(), ouro_fuse::MountOptions::default())?;
//! // ... the store is mounted until the session is dropped or unmounted.
//! session.umount_and_join()?;
//! # Ok(()) }
//! ```

mod blob_cache;
pub mod chunk_cache;
pub mod disk_cache;
pub mod fs;
pub mod fusermount;
mod listing;
mod meta;
pub mod node;
mod open;
mod ops;
mod rename;
mod snap_tree;
mod snapshots;
mod view;
pub mod write_handle;
mod writers;

use std::path::Path;
use std::sync::Arc;

pub use fs::{MountOptions, OuroFs};
use ouroboros_db::Cas;

/// Mounts the store at `mountpoint` and serves it from background threads until the returned
/// session is unmounted (or the mount is removed with `fusermount3 -u`).
pub fn spawn(
    cas: Arc<Cas>,
    mountpoint: &Path,
    opts: MountOptions,
) -> std::io::Result<fuser::BackgroundSession> {
    // A
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("ouro".into()),
        fuser::MountOption::Subtype("ouro".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        if opts.read_only {
            fuser::MountOption::RO
        } else {
            fuser::MountOption::RW
        },
    ];
    let acl = if opts.allow_other {
        // Others get in: the kernel checks each file's mode and owner against them.
        config
            .mount_options
            .push(fuser::MountOption::DefaultPermissions);
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.acl = acl;
    config.n_threads = Some(4);
    let read_only = opts.read_only;
    let fs = OuroFs::new(cas, opts);
    let notifier = std::sync::Arc::clone(&fs.notifier);
    let session = if rustix::process::geteuid().is_root() {
        fuser::Session::new(fs, mountpoint, &config)?
    } else {
        let mode = if read_only { "ro" } else { "rw" };
        let others = if matches!(acl, fuser::SessionACL::All) {
            ",allow_other,default_permissions"
        } else {
            ""
        };
        let fd = fusermount::mount(
            mountpoint,
            &format!("{mode},nosuid,nodev,fsname=ouro,subtype=ouro{others}"),
        )?;
        fuser::Session::from_fd(fs, fd, acl, config)?
    };
    let _ = notifier.set(session.notifier());
    session.spawn()
}
