//! What each inode of the mount is: a place in the key tree or in the read-only `.ouro`
//! views, with a stable inode number derived from its path.

use ouroboros_db::{format_time, Hash};

/// The read-only views under `MOUNT/.ouro`.
pub const META_DIR: &str = ".ouro";

/// Hex digits of a version's hash in `.ouro/versions` and `.ouro/heads` names.
pub const SHORT: usize = 8;

/// One inode of the mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// The mountpoint.
    Root,
    /// A directory of the key tree (a key prefix, without its trailing `/`).
    Dir(String),
    /// A key: the newest head's content.
    File(String),
    /// `.ouro`.
    Meta,
    /// `.ouro/versions/<p>` (`p` empty for `.ouro/versions` itself).
    VersionsDir(String),
    /// `.ouro/versions/<key>/<time>_<short>`.
    Version { key: String, hash: Hash },
    /// `.ouro/heads/<p>`.
    HeadsDir(String),
    /// `.ouro/at/<label>/<p>`, the tree as it was at `time` (`label` as the user wrote it).
    AtDir {
        time: i64,
        label: String,
        dir: String,
    },
    /// `.ouro/at` itself.
    AtRoot,
    /// `.ouro/blobs`.
    BlobsDir,
    /// A read-only file holding one version's content; `path` is its place in the mount.
    Frozen { path: String, hash: Hash },
    /// `.ouro/snapshots/<p>`: the snapshots of prefix `p` and the prefixes below it (`p`
    /// empty for `.ouro/snapshots` itself).
    SnapDir(String),
    /// `.ouro/snapshots/<p>/latest`: a symbolic link to the newest snapshot's directory.
    SnapLatest(String),
    /// `.ouro/snapshots/<prefix>/<time>_<short>`: the root directory of a snapshot.
    Snapshot { prefix: String, hash: Hash },
    /// An entry inside snapshot `snap`: the entry of tree record `dir` named by the last
    /// component of `path` (its raw path below the snapshot's root). `ino` is derived from
    /// the snapshot and the path (or the hard-link group), see [`snap_ino`].
    SnapEntry {
        snap: Hash,
        dir: Hash,
        path: Vec<u8>,
        ino: u64,
    },
}

impl Node {
    /// The node's path below the mountpoint, from which its inode number is derived.
    pub fn path(&self) -> String {
        // A
        match self {
            Node::Root => "/".into(),
            Node::Dir(d) | Node::File(d) => format!("/{d}"),
            Node::Meta => format!("/{META_DIR}"),
            Node::VersionsDir(p) => join(&format!("/{META_DIR}/versions"), p),
            Node::Version { key, hash } => format!(
                "/{META_DIR}/versions/{key}/{}",
                version_dir_name(0, hash, false)
            ),
            Node::HeadsDir(p) => join(&format!("/{META_DIR}/heads"), p),
            Node::AtRoot => format!("/{META_DIR}/at"),
            Node::AtDir { label, dir, .. } => join(&format!("/{META_DIR}/at/{label}"), dir),
            Node::BlobsDir => format!("/{META_DIR}/blobs"),
            Node::Frozen { path, .. } => path.clone(),
            Node::SnapDir(p) => join(&format!("/{META_DIR}/snapshots"), p),
            // `//` never occurs in a key: these paths cannot be a prefix's directory.
            Node::SnapLatest(p) => format!("/{META_DIR}/snapshots/{p}//latest"),
            Node::Snapshot { prefix, hash } => {
                format!("/{META_DIR}/snapshots/{prefix}//{hash}")
            }
            // Not a path of the mount: its inode number is kept in the node instead.
            Node::SnapEntry { snap, path, .. } => {
                format!("/{META_DIR}/snapshot-entry/{snap}/{}", path.escape_ascii())
            }
        }
    }

    /// A stable inode number: 1 for the root, else 63 bits of BLAKE3 of the path, so the same
    /// file has the same number in every mount.
    pub fn ino(&self) -> u64 {
        // A
        match self {
            Node::Root => return 1,
            Node::SnapEntry { ino, .. } => return *ino,
            _ => {}
        }
        let h = blake3::hash(self.path().as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        (u64::from_le_bytes(b) >> 1).max(2)
    }

    /// The inode number of this node's path once `renames` files were renamed away from it
    /// in this mount: the kernel keeps the old number for the new name, so a new file at
    /// the old path must not get it too.
    pub fn ino_after_renames(&self, renames: u32) -> u64 {
        // A
        if renames == 0 {
            return self.ino();
        }
        let h = blake3::hash(format!("{}\0{renames}", self.path()).as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        (u64::from_le_bytes(b) >> 1).max(2)
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        // A
        !matches!(
            self,
            Node::File(_) | Node::Frozen { .. } | Node::SnapLatest(_) | Node::SnapEntry { .. }
        )
    }

    /// True for everything under `.ouro`, which never changes through the mount.
    pub fn is_frozen(&self) -> bool {
        // A
        !matches!(self, Node::Root | Node::Dir(_) | Node::File(_))
    }
}

/// `a` + `b` with a `/` between them, or `a` alone when `b` is empty.
pub fn join(a: &str, b: &str) -> String {
    // A
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        (false, false) => format!("{a}/{b}"),
    }
}

/// The last component of a key: the file name a version directory holds.
pub fn base_name(key: &str) -> &str {
    // A
    key.rsplit('/').next().unwrap_or(key)
}

/// `<UTC time with nanoseconds>_<short hash>`, so that name order is creation order even for
/// versions made within one second. With `with_time` false only the hash part counts (inode
/// numbers must not depend on a lookup having the time).
pub fn version_dir_name(created: i64, hash: &Hash, with_time: bool) -> String {
    // A
    let short = &hash.to_hex()[..SHORT];
    if !with_time {
        return short.to_string();
    }
    let secs = format_time(created);
    let nanos = created.rem_euclid(1_000_000_000);
    match secs.strip_suffix('Z') {
        Some(s) => format!("{s}.{nanos:09}Z_{short}"),
        None => format!("{secs}_{short}"),
    }
}

/// `<UTC time with nanoseconds>_<short hash>` of a snapshot, the time without colons
/// (`2026-12-05T04-38-21.123456789Z`): names sort by time, even for two runs within one
/// second, and are valid on every file system a copy may land on.
pub fn snapshot_dir_name(time: i64, hash: &Hash) -> String {
    // A
    version_dir_name(time, hash, true).replace(':', "-")
}

/// The inode number of an entry of snapshot `snap` at raw path `path`, or of its hard-link
/// group `(device, inode)` so that every name of one file has one number: 63 bits of BLAKE3,
/// stable across mounts, as for the other nodes.
pub fn snap_ino(snap: &Hash, path: &[u8], hardlink: Option<(u64, u64)>) -> u64 {
    // A
    let mut h = blake3::Hasher::new();
    h.update(b"ouro snapshot entry\0");
    h.update(&snap.0);
    match hardlink {
        Some((dev, ino)) => {
            h.update(b"L");
            h.update(&dev.to_le_bytes());
            h.update(&ino.to_le_bytes());
        }
        None => {
            h.update(b"P");
            h.update(path);
        }
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    (u64::from_le_bytes(b) >> 1).max(2)
}

/// The hash prefix of a version directory name, if it has the right shape.
pub fn parse_version_dir_name(name: &str) -> Option<&str> {
    // A
    let (_, short) = name.rsplit_once('_')?;
    (short.len() == SHORT && short.bytes().all(|b| b.is_ascii_hexdigit())).then_some(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_inodes_are_stable() {
        let h = Hash([0xab; 32]);
        let name = version_dir_name(1_764_000_000_000_000_000, &h, true);
        assert_eq!(name, "2025-11-24T16:00:00.000000000Z_abababab");
        let later = version_dir_name(1_764_000_000_000_000_007, &Hash([0; 32]), true);
        assert!(
            later > name,
            "{later} sorts after {name}: creation order within a second"
        );
        assert_eq!(
            snapshot_dir_name(1_764_000_000_000_000_000, &h),
            "2025-11-24T16-00-00.000000000Z_abababab"
        );
        assert_ne!(snap_ino(&h, b"a", None), snap_ino(&h, b"b", None));
        assert_eq!(
            snap_ino(&h, b"a", Some((1, 2))),
            snap_ino(&h, b"b", Some((1, 2)))
        );
        assert_eq!(parse_version_dir_name(&name), Some("abababab"));
        assert_eq!(parse_version_dir_name("notes.txt"), None);
        assert_eq!(
            Node::File("a/b".into()).ino(),
            Node::File("a/b".into()).ino()
        );
        assert_ne!(
            Node::File("a/b".into()).ino(),
            Node::File("a/c".into()).ino()
        );
        assert_eq!(Node::Root.ino(), 1);
        let f = Node::File("a/b".into());
        assert_eq!(f.ino_after_renames(0), f.ino());
        assert_ne!(f.ino_after_renames(1), f.ino());
        assert_eq!(base_name("a/b/c"), "c");
        assert_eq!(join("", "x"), "x");
    }
}
