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
}
