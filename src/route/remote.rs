//! Slices held by other nodes. A store that belongs to a cluster holds only the slices
//! placement gives it; reads that find fewer than k intact slices here ask a
//! [`RemoteSlices`] (the running node) for the rest.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::ChunkRecord;

/// A source of slices held elsewhere (a cluster node, reached over its control socket or
/// from inside the node process).
pub trait RemoteSlices: Send + Sync {
    /// Encoded SealedSlices of chunk `id` among `wanted` (slice indexes): at least `need`
    /// of them when that many can be found (more are welcome); the caller checks every
    /// slice against the chunk record.
    fn fetch(&self, id: &Hash, wanted: &[u8], need: usize) -> Result<Vec<(u8, Vec<u8>)>>;

    /// [`RemoteSlices::fetch`] for several chunks at once, answers in order: a source that
    /// can ask for them in one exchange saves a round trip (and the wake-ups of one) per
    /// chunk. By default, one fetch after another.
    fn fetch_many(&self, items: &[Wanted]) -> Result<FetchedMany> {
        // A
        let all = items
            .iter()
            .map(|w| self.fetch(&w.chunk, &w.wanted, w.need))
            .collect::<Result<Vec<_>>>()?;
        Ok(FetchedMany::gather(all))
    }

    /// Takes back the buffer of a [`FetchedMany`] this source returned, once its slices
    /// are used, to receive a later answer into pages already faulted in.
    fn give_back(&self, _buffer: Vec<u8>) {
        // A
    }
}

/// The source of a cluster node's store whose node is not running (no answer on its
/// `node.sock`): slices other nodes hold cannot be fetched, and every fetch says so with
/// [`Error::Unreachable`]. Without it a read short of slices here would call intact data
/// corrupt.
pub struct NodeNotRunning {
    store: PathBuf,
}

impl NodeNotRunning {
    /// For the store in `store`.
    pub fn new(store: &Path) -> Self {
        // A
        NodeNotRunning {
            store: store.to_path_buf(),
        }
    }
}

impl RemoteSlices for NodeNotRunning {
    fn fetch(&self, _id: &Hash, _wanted: &[u8], _need: usize) -> Result<Vec<(u8, Vec<u8>)>> {
        // A
        Err(Error::Unreachable(format!(
            "this store belongs to a cluster and no node runs on it (nothing answers on {}): start `ouro node run` on {} to read slices other nodes hold",
            self.store.join("node.sock").display(),
            self.store.display()
        )))
    }
}

/// The encoded slices fetched for one chunk, with their indexes.
pub type Fetched = Vec<(u8, Vec<u8>)>;

/// The slices fetched for several chunks, left in the buffer they arrived in: answers
/// carry megabytes of slices, and copying each out cost a reader one more pass over them
/// and fresh pages for every copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchedMany {
    buffer: Vec<u8>,
    /// Per chunk asked, in order: (slice index, where its bytes are in `buffer`).
    spans: Vec<Vec<(u8, Range<usize>)>>,
}

impl FetchedMany {
    /// Slices found in `buffer`: per chunk, (slice index, byte range). `None` when a range
    /// lies outside the buffer.
    pub fn new(buffer: Vec<u8>, spans: Vec<Vec<(u8, Range<usize>)>>) -> Option<FetchedMany> {
        // A
        let inside = spans
            .iter()
            .flatten()
            .all(|(_, r)| r.start <= r.end && r.end <= buffer.len());
        inside.then_some(FetchedMany { buffer, spans })
    }

    /// Copies separately held answers, one per chunk, into one buffer.
    pub fn gather(all: Vec<Fetched>) -> FetchedMany {
        // A
        let mut buffer = Vec::with_capacity(all.iter().flatten().map(|(_, b)| b.len()).sum());
        let spans = all
            .into_iter()
            .map(|slices| {
                slices
                    .into_iter()
                    .map(|(i, b)| {
                        let start = buffer.len();
                        buffer.extend_from_slice(&b);
                        (i, start..buffer.len())
                    })
                    .collect()
            })
            .collect();
        FetchedMany { buffer, spans }
    }

    /// How many chunks it answers for.
    pub fn len(&self) -> usize {
        // A
        self.spans.len()
    }

    /// True when it answers for no chunk.
    pub fn is_empty(&self) -> bool {
        // A
        self.spans.is_empty()
    }

    /// The slices found for the `chunk`-th chunk asked (none past the end).
    pub fn slices(&self, chunk: usize) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        // A
        self.spans
            .get(chunk)
            .into_iter()
            .flatten()
            .filter_map(|(i, r)| self.buffer.get(r.clone()).map(|b| (*i, b)))
    }

    /// Adds the chunks of `more` after these (copying its slices: for reads split into
    /// several exchanges only).
    pub fn append(&mut self, more: FetchedMany) {
        // A
        let base = self.buffer.len();
        self.buffer.extend_from_slice(&more.buffer);
        self.spans.extend(more.spans.into_iter().map(|s| {
            s.into_iter()
                .map(|(i, r)| (i, r.start + base..r.end + base))
                .collect::<Vec<_>>()
        }));
    }

    /// The buffer, for [`RemoteSlices::give_back`].
    pub fn into_buffer(self) -> Vec<u8> {
        // A
        self.buffer
    }
}

/// The slices a reader asks for, for one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The chunk.
    pub chunk: Hash,
    /// Slice indexes it lacks.
    pub wanted: Vec<u8>,
    /// How many of them it needs.
    pub need: usize,
}

impl Wanted {
    /// What chunk `chunk` (record `record`) still needs from other nodes given the shards
    /// held here: `None` when k of them are.
    pub fn missing(chunk: Hash, record: &ChunkRecord, shards: &[Option<&[u8]>]) -> Option<Wanted> {
        // A
        let have = shards.iter().filter(|s| s.is_some()).count();
        let need = (record.k as usize).checked_sub(have).filter(|n| *n > 0)?;
        Some(Wanted {
            chunk,
            wanted: (0..record.slices.len() as u8)
                .filter(|i| shards.get(*i as usize).is_none_or(|s| s.is_none()))
                .collect(),
            need,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn gathered_answers_read_back_as_given(all in prop::collection::vec(
            prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..64)), 0..4), 0..6)) {
            let many = FetchedMany::gather(all.clone());
            prop_assert_eq!(many.len(), all.len());
            for (c, slices) in all.iter().enumerate() {
                let back: Vec<(u8, Vec<u8>)> = many.slices(c).map(|(i, b)| (i, b.to_vec())).collect();
                prop_assert_eq!(&back, slices);
            }
            prop_assert_eq!(many.slices(all.len()).count(), 0);
            // Two halves appended read back as the whole.
            let half = all.len() / 2;
            let mut joined = FetchedMany::gather(all[..half].to_vec());
            joined.append(FetchedMany::gather(all[half..].to_vec()));
            for c in 0..all.len() {
                prop_assert!(joined.slices(c).eq(many.slices(c)));
            }
        }
    }

    #[test]
    fn ranges_outside_the_buffer_are_refused() {
        assert!(FetchedMany::new(vec![0; 4], vec![vec![(0, 0..4)]]).is_some());
        assert!(FetchedMany::new(vec![0; 4], vec![vec![(0, 2..5)]]).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = vec![vec![(0, 3..2)]];
        assert!(FetchedMany::new(vec![0; 4], backwards).is_none());
    }
}
