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
        }
    }

    /// A stable inode number: 1 for the root, else 63 bits of BLAKE3 of the path, so the same
    /// file has the same number in every mount.
    pub fn ino(&self) -> u64 {
        // A
        if *self == Node::Root {
            return 1;
        }
        let h = blake3::hash(self.path().as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        (u64::from_le_bytes(b) >> 1).max(2)
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        // A
        !matches!(self, Node::File(_) | Node::Frozen { .. })
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

/// `<UTC time>_<short hash>`, so that name order is time order. With `with_time` false only
/// the hash part counts (inode numbers must not depend on a lookup having the time).
pub fn version_dir_name(created: i64, hash: &Hash, with_time: bool) -> String {
    // A
    let short = &hash.to_hex()[..SHORT];
    if with_time {
        format!("{}_{short}", format_time(created))
    } else {
        short.to_string()
    }
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
        assert_eq!(name, "2025-11-24T16:00:00Z_abababab");
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
        assert_eq!(base_name("a/b/c"), "c");
        assert_eq!(join("", "x"), "x");
    }
}
