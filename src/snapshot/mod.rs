//! Snapshots: one per `put -r` run, holding a directory tree exactly as the walk saw it
//! (every kind of entry with its metadata), restorable exactly, listed, compared ([`diff`],
//! reading only the directories that differ) and thinned out by retention rules ([`forget`],
//! which also removes the file versions only forgotten snapshots used).
//!
//! A snapshot of prefix `P` is a version of the reserved key `.ouro/snapshots/P`: its
//! parent is the previous snapshot, so the runs of a prefix form a history with heads and
//! merges as keys do, and it replicates, verifies and is collected like any version. Its
//! [`SnapshotInfo`](crate::model::SnapshotInfo) (in the version's metadata) records host,
//! path, times and a summary; its content is the tree stream ([`stream`]): one
//! content-addressed [`TreeRecord`](crate::model::TreeRecord) per directory, whose file
//! entries point at versions of the files' keys.

pub mod backup;
pub mod diff;
pub mod dir_fd;
pub mod forget;
pub mod fsmeta;
mod handoff;
mod lazy_file;
pub mod list;
pub mod names;
pub mod owners;
pub mod pinned;
pub mod restore;
mod restore_files;
pub mod retention;
pub mod stream;
pub mod walk;
mod walk_pin;
mod walk_unlisted;
mod walked_dir;
pub mod xattrs;

pub use backup::{BackupOptions, BackupReport};
pub use diff::{DiffChange, DiffEntry, SnapshotDiff};
pub use forget::{ForgetDecision, ForgetReport};
pub use fsmeta::OwnerPolicy;
pub use list::SnapshotListing;
pub use restore::{Change, RestoreOptions, RestoreReport};
pub use retention::{KeepPolicy, KeepWithin, Verdict};
