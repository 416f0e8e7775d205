//! What the walk of `put -r` keeps of each directory until its record is written: its
//! entries, compactly, and what became of them once their files were stored.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::Entry;
use crate::snapshot::xattrs::Xattrs;

/// One directory as walked: its entries (contents filled in later) and, for each
/// subdirectory entry, the index of that directory in [`Walked::dirs`].
pub struct WalkedDir {
    /// Entries sorted by name, postcard-encoded: the walk of a large tree is over long
    /// before its files are stored, and encoded entries take about a fifth of the memory
    /// of [`Entry`] values (names, owners and times as short varints, no pointers).
    packed: Box<[u8]>,
    /// Its relative path (raw bytes; empty for the root).
    pub(super) rel: Box<[u8]>,
    /// `(entry index, dir index)` of subdirectories.
    pub subdirs: Vec<(usize, usize)>,
    /// What became of entries once their files were stored, by entry index.
    pub settled: Vec<(usize, Settled)>,
}

/// What became of an entry after the walk.
pub enum Settled {
    /// Its file was stored as this version, and had these extended attributes.
    Stored(Hash, Xattrs),
    /// Replaced by the parent snapshot's entry (its file could not be stored).
    Kept(Box<Entry>),
    /// Left out (its file could not be stored and had no earlier version, or the parent
    /// snapshot's record of a directory kept unlisted could not be read).
    Dropped,
}

impl WalkedDir {
    /// The walked directory at relative path `rel`, holding `entries`.
    pub(super) fn new(
        rel: Vec<u8>,
        entries: &[Entry],
        subdirs: Vec<(usize, usize)>,
        settled: Vec<(usize, Settled)>,
    ) -> Result<Self> {
        // A
        let packed = postcard::to_allocvec(entries)
            .map_err(|e| Error::Internal(format!("encoding walked entries: {e}")))?;
        Ok(WalkedDir {
            packed: packed.into_boxed_slice(),
            rel: rel.into_boxed_slice(),
            subdirs,
            settled,
        })
    }

    /// The entries as the walk found them.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        // A
        postcard::from_bytes(&self.packed)
            .map_err(|e| Error::Internal(format!("decoding walked entries: {e}")))
    }

    /// The entries with their settled contents, subdirectory `(entry index, record hash)`s
    /// from `subdirs` filled in and dropped entries left out; empties the directory.
    pub fn finish(&mut self, subdirs: &[(usize, Hash)]) -> Result<Vec<Entry>> {
        // A
        let mut entries: Vec<Option<Entry>> = self.entries()?.into_iter().map(Some).collect();
        self.packed = Box::default();
        for &(i, h) in subdirs {
            if let Some(Some(e)) = entries.get_mut(i) {
                e.content = Some(h);
            }
        }
        for (i, s) in std::mem::take(&mut self.settled) {
            let Some(slot) = entries.get_mut(i) else {
                continue;
            };
            match (s, slot.as_mut()) {
                (Settled::Stored(h, x), Some(e)) => {
                    e.content = Some(h);
                    e.xattrs = x;
                }
                (Settled::Kept(p), _) => *slot = Some(*p),
                (Settled::Dropped, _) => *slot = None,
                (Settled::Stored(..), None) => {}
            }
        }
        Ok(entries.into_iter().flatten().collect())
    }
}
