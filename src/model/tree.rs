//! Directory records of snapshots: one per directory, content-addressed like git's trees or
//! restic's tree blobs, so an unchanged subtree has the same hash in every run.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;

/// Type tag of an encoded tree record.
pub const TREE_TAG: u8 = b'E';

/// What kind of file system object an entry is. Sockets are not kept (they are created by
/// the program that listens on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file; its content is a key version.
    File,
    /// A directory; its content is a tree record.
    Dir,
    /// A symbolic link; its target is kept as raw bytes.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl EntryKind {
    /// Lowercase name used in `--json` output and listings.
    pub fn as_str(&self) -> &'static str {
        // A
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Fifo => "fifo",
            EntryKind::CharDevice => "chardev",
            EntryKind::BlockDevice => "blockdev",
        }
    }

    /// The `S_IFMT` type bits of this kind.
    pub fn type_bits(&self) -> u32 {
        // A
        match self {
            EntryKind::File => 0o100_000,
            EntryKind::Dir => 0o040_000,
            EntryKind::Symlink => 0o120_000,
            EntryKind::Fifo => 0o010_000,
            EntryKind::CharDevice => 0o020_000,
            EntryKind::BlockDevice => 0o060_000,
        }
    }
}

/// One entry of a directory, with everything the file system holds of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The name, raw bytes (need not be UTF-8).
    pub name: Vec<u8>,
    /// File, directory, symlink, FIFO or device.
    pub kind: EntryKind,
    /// Permission bits, setuid, setgid and sticky included (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner's user name at backup time (empty when unknown).
    pub user: String,
    /// Group name at backup time (empty when unknown).
    pub group: String,
    /// Modification time, ns since the epoch.
    pub mtime: i64,
    /// Access time, ns since the epoch.
    pub atime: i64,
    /// Status change time, ns since the epoch (recorded; the kernel sets it on restore).
    pub ctime: i64,
    /// Size in bytes (files: content length; symlinks: target length).
    pub size: u64,
    /// Files: the key version holding the content. Directories: the tree record's hash.
    pub content: Option<Hash>,
    /// Symlinks: the target, raw bytes.
    pub target: Vec<u8>,
    /// Devices: the device number (`st_rdev`).
    pub rdev: u64,
    /// Non-directories with several links: (device, inode), equal for every name of the
    /// same file, so a restore links them again.
    pub hardlink: Option<(u64, u64)>,
    /// Extended attributes (POSIX ACLs as `system.posix_acl_*`), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A directory: its entries sorted by name bytes. Its hash is BLAKE3 of its encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRecord {
    /// The entries, sorted by name, names unique.
    pub entries: Vec<Entry>,
}

impl TreeRecord {
    /// The canonical encoding: `[b'E'][1][postcard]` (FORMAT.md, "Tree record").
    pub fn encode(&self) -> Result<Vec<u8>> {
        // A
        codec::encode(TREE_TAG, self)
    }

    /// Decodes a tree record, rejecting wrong tags, versions, trailing bytes and entries
    /// that are not sorted by name or repeat a name.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        // A
        let t: TreeRecord = codec::decode("tree record", TREE_TAG, bytes)?;
        let sorted = t.entries.windows(2).all(|w| w[0].name < w[1].name);
        let named = t.entries.iter().all(|e| valid_name(&e.name));
        if !sorted || !named {
            return Err(crate::error::Error::malformed(
                "tree record",
                "entries not sorted, repeated or badly named",
            ));
        }
        Ok(t)
    }

    /// The entry called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        // A
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .and_then(|i| self.entries.get(i))
    }
}

/// A name a directory can hold: not empty, not `.` or `..`, no `/` or NUL. A damaged or
/// forged record could otherwise make a restore write outside its target.
pub fn valid_name(name: &[u8]) -> bool {
    // PA
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// The hash of an encoded tree record.
pub fn tree_hash(encoded: &[u8]) -> Hash {
    // A
    Hash::of(encoded)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample_entry(name: &[u8]) -> Entry {
        Entry {
            name: name.to_vec(),
            kind: EntryKind::File,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            user: "ann".into(),
            group: "users".into(),
            mtime: 1_764_000_000_123_456_789,
            atime: 1_764_000_001_000_000_000,
            ctime: 1_764_000_002_000_000_000,
            size: 5,
            content: Some(Hash([3; 32])),
            target: Vec::new(),
            rdev: 0,
            hardlink: Some((2049, 77)),
            xattrs: vec![(b"user.note".to_vec(), b"hi".to_vec())],
        }
    }

    /// Pinned vector: tree hashes are how unchanged subtrees are recognised across runs and
    /// releases. Never update it without a store format bump.
    #[test]
    fn pinned_hash() {
        let t = TreeRecord {
            entries: vec![sample_entry(b"a\xff"), sample_entry(b"b")],
        };
        let e = t.encode().unwrap();
        assert_eq!(&e[..2], &[b'E', 1]);
        assert_eq!(
            Hash::of(&e).to_hex(),
            "b1a1d034da135ee8e39895ca1a79ecaea69faff4f5792f4ce467f3892bc48dc1"
        );
    }

    #[test]
    fn rejects_unsorted_and_bad_names() {
        let bad = [
            vec![sample_entry(b"b"), sample_entry(b"a")],
            vec![sample_entry(b"a"), sample_entry(b"a")],
            vec![sample_entry(b"..")],
            vec![sample_entry(b"a/b")],
            vec![sample_entry(b"")],
        ];
        for entries in bad {
            let t = TreeRecord { entries };
            assert!(TreeRecord::decode(&t.encode().unwrap()).is_err());
        }
    }

    fn arb_kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            Just(EntryKind::File),
            Just(EntryKind::Dir),
            Just(EntryKind::Symlink),
            Just(EntryKind::Fifo),
            Just(EntryKind::CharDevice),
            Just(EntryKind::BlockDevice),
        ]
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            prop::collection::vec(1u8..=255, 1..12),
            arb_kind(),
            (any::<u32>(), any::<u32>(), any::<u32>(), ".{0,8}", ".{0,8}"),
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<u64>()),
            (
                prop::option::of(any::<[u8; 32]>().prop_map(Hash)),
                prop::collection::vec(any::<u8>(), 0..16),
                any::<u64>(),
                prop::option::of((any::<u64>(), any::<u64>())),
            ),
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 1..8),
                    prop::collection::vec(any::<u8>(), 0..8),
                ),
                0..3,
            ),
        )
            .prop_map(
                |(
                    name,
                    kind,
                    (mode, uid, gid, user, group),
                    (mtime, atime, ctime, size),
                    (content, target, rdev, hardlink),
                    xattrs,
                )| {
                    let name = name
                        .into_iter()
                        .map(|b| if b == b'/' { b'x' } else { b })
                        .collect();
                    Entry {
                        name,
                        kind,
                        mode,
                        uid,
                        gid,
                        user,
                        group,
                        mtime,
                        atime,
                        ctime,
                        size,
                        content,
                        target,
                        rdev,
                        hardlink,
                        xattrs,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(entries in prop::collection::vec(arb_entry(), 0..6)) {
            let mut entries = entries;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries.dedup_by(|a, b| a.name == b.name);
            entries.retain(|e| valid_name(&e.name));
            let t = TreeRecord { entries };
            prop_assert_eq!(TreeRecord::decode(&t.encode().unwrap()).ok(), Some(t));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = TreeRecord::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_with_header(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut b = vec![TREE_TAG, 1];
            b.extend(bytes);
            let _ = TreeRecord::decode(&b);
        }
    }
}
