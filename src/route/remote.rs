//! Slices held by other nodes. A store that belongs to a cluster holds only the slices
//! placement gives it; reads that find fewer than k intact slices here ask a
//! [`RemoteSlices`] (the running node) for the rest.

use crate::error::Result;
use crate::hash::Hash;

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
    fn fetch_many(&self, items: &[Wanted]) -> Result<Vec<Fetched>> {
        // A
        items
            .iter()
            .map(|w| self.fetch(&w.chunk, &w.wanted, w.need))
            .collect()
    }
}

/// The encoded slices fetched for one chunk, with their indexes.
pub type Fetched = Vec<(u8, Vec<u8>)>;

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
