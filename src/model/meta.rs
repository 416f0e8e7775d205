//! What a version records besides its content: a file's metadata (for keys written by
//! `put -r` and the mount) or the description of a snapshot (for snapshot versions).

use serde::{Deserialize, Serialize};

use crate::model::snapshot::SnapshotInfo;

/// File type bits of a mode (`S_IFMT`).
pub const TYPE_BITS: u32 = 0o170_000;
/// The type bits of a regular file (`S_IFREG`).
pub const TYPE_FILE: u32 = 0o100_000;
/// The type bits of a symbolic link (`S_IFLNK`).
pub const TYPE_SYMLINK: u32 = 0o120_000;

/// Metadata a version carries besides its content. Part of the Blob record, so a change of
/// mode or time is a new version with the same chunks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionMeta {
    /// Plain content (`ouro put`): no file metadata recorded.
    #[default]
    None,
    /// A file's metadata: a regular file, or a symbolic link whose content is its target.
    File(FileMeta),
    /// A snapshot of a tree (`put -r`): its content is the snapshot's tree stream.
    Snapshot(Box<SnapshotInfo>),
}

impl VersionMeta {
    /// The file metadata, when this version has any.
    pub fn file(&self) -> Option<&FileMeta> {
        // A
        match self {
            VersionMeta::File(f) => Some(f),
            _ => None,
        }
    }

    /// True when `self` and `other` differ at most in a file's modification time: `put -r`
    /// keeps the head then, since a snapshot's tree entry records the times of each run and a
    /// version costs more index space than a small file's content.
    pub fn same_but_mtime(&self, other: &VersionMeta) -> bool {
        // A
        match (self, other) {
            (VersionMeta::File(a), VersionMeta::File(b)) => {
                FileMeta { mtime: 0, ..*a } == FileMeta { mtime: 0, ..*b }
            }
            _ => self == other,
        }
    }

    /// The snapshot description, when this version is a snapshot.
    pub fn snapshot(&self) -> Option<&SnapshotInfo> {
        // A
        match self {
            VersionMeta::Snapshot(s) => Some(s),
            _ => None,
        }
    }
}

/// A file's metadata as a key version keeps it: what `ls -l` shows and `chmod`, `chown`
/// and `touch` change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// `st_mode`: type bits ([`TYPE_FILE`] or [`TYPE_SYMLINK`]) and permission bits,
    /// setuid, setgid and sticky included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime: i64,
}

impl FileMeta {
    /// True when this version is a symbolic link (its content is the target).
    pub fn is_symlink(&self) -> bool {
        // A
        self.mode & TYPE_BITS == TYPE_SYMLINK
    }
}
