//! The description of a snapshot: one run of `put -r`, recorded as a version of the
//! prefix's snapshot key whose content is the tree stream (`crate::snapshot::stream`).

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::model::tree::Entry;

/// First segments of the keys that hold snapshots: the snapshots of prefix `P` are the
/// versions of key `.ouro/snapshots/P` (a reserved segment, so no user key collides).
pub const SNAPSHOT_KEY_PREFIX: &str = ".ouro/snapshots/";

/// Most errors a snapshot lists by path; the count covers all of them.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// What one run of `put -r` saw and did, as restic's snapshot summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Regular files new since the parent snapshot.
    pub files_new: u64,
    /// Regular files whose content or metadata changed.
    pub files_changed: u64,
    /// Regular files unchanged.
    pub files_unchanged: u64,
    /// Paths in the parent snapshot that are gone.
    pub removed: u64,
    /// Directories in the tree.
    pub dirs: u64,
    /// Entries of every kind in the tree.
    pub entries: u64,
    /// Bytes of content in the tree's regular files.
    pub total_bytes: u64,
    /// Sealed bytes this run added to the store (new chunks, parity included).
    pub bytes_added: u64,
    /// Paths that could not be read (their previous version is kept when there is one).
    pub errors: u64,
}

/// The description of a snapshot, kept in its version's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The backed-up directory itself: its metadata, and as content the hash of its tree
    /// record.
    pub root: Entry,
    /// Host name of the machine that ran the backup.
    pub host: String,
    /// The backed-up directory, as raw bytes of its absolute path.
    pub path: Vec<u8>,
    /// When the walk started (ns since the epoch).
    pub started: i64,
    /// When the snapshot was complete (ns since the epoch).
    pub finished: i64,
    /// Counts of what the run found and stored.
    pub summary: SnapshotSummary,
    /// Paths (relative, raw bytes) that failed and why; at most [`MAX_LISTED_ERRORS`].
    pub errors: Vec<(Vec<u8>, String)>,
}

/// The key holding the snapshots of `prefix`.
pub fn snapshot_key(prefix: &str) -> String {
    // A
    format!("{SNAPSHOT_KEY_PREFIX}{prefix}")
}

/// The prefix whose snapshots `key` holds, when it is a snapshot key.
pub fn prefix_of_snapshot_key(key: &str) -> Option<&str> {
    // A
    key.strip_prefix(SNAPSHOT_KEY_PREFIX)
        .filter(|p| crate::model::validate_key(p).is_ok())
}

impl SnapshotInfo {
    /// The hash of the root directory's tree record.
    pub fn root_tree(&self) -> Option<Hash> {
        // A
        self.root.content
    }
}

/// Checks a key a stored or replicated version may have: a user key, or a snapshot key
/// (which users cannot write directly, but peers replicate).
pub fn validate_stored_key(key: &str) -> crate::error::Result<()> {
    // A
    match prefix_of_snapshot_key(key) {
        Some(_) => Ok(()),
        None => crate::model::validate_key(key),
    }
}
