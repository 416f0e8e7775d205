//! SyncIndexTree over slice inventories: the same Merkle shape as the tree over live versions
//! (`sync_tree.rs`: 256 digests per level by chunk id byte, leaves at 2 bytes), over entries
//! `(chunk id, slice indexes)`. A node computes it two ways: over the slices it holds, and
//! over the slices placement gives some node among the chunk records it knows. When a peer's
//! "held" tree and this node's "placed for that peer" tree agree at the root, the peer holds
//! exactly its share; where they differ, descending only into differing buckets finds the
//! chunks it lacks or holds in excess, at a cost that follows the difference.

use serde::{Deserialize, Serialize};

use crate::cas::sync_tree::{Buckets, LEAF_DEPTH};
use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::route::hash_to_node::{self, NodeKey};

/// Domain separation of inventory digests; a new tree shape gets a new string.
const DOMAIN: &[u8] = b"ouro-slice-inventory-tree-v1";

/// One chunk of an inventory: which of its slices are (or should be) on a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The chunk id.
    pub chunk: Hash,
    /// Slice indexes, ascending; never empty.
    pub slices: Vec<u8>,
}

/// Whose inventory a tree is over.
///
/// Placement of a chunk covers the slices its record has: `k + m` of the store, or fewer for
/// a chunk too small to split k ways (`seal::erasure::effective_k`).
#[derive(Clone, Copy, Debug)]
pub enum Inventory<'a> {
    /// The slices this store holds.
    Held,
    /// The slices placement gives `node` among `nodes`, for every chunk record this store
    /// knows (what that node should hold, as far as this store can tell).
    Placed {
        /// The node whose share it is.
        node: NodeKey,
        /// The nodes placement chooses among.
        nodes: &'a [NodeKey],
    },
}

impl Cas {
    /// Calls `f` with every entry of `inventory` whose chunk id starts with `prefix`, in
    /// chunk id order.
    fn for_each_inventory(
        &self,
        prefix: &[u8],
        inventory: Inventory<'_>,
        mut f: impl FnMut(InventoryEntry),
    ) -> Result<()> {
        // A
        let txn = self.lmdb.read()?;
        if let Inventory::Placed { node, nodes } = inventory {
            return self
                .lmdb
                .chunks
                .walk(&txn, None, Some(prefix), |chunk, record| {
                    // A small chunk has fewer slices than the store's k+m (its k shrinks with
                    // its size): placement covers the slices it has.
                    let n = crate::model::ChunkRecord::decode(record?)?.slices.len();
                    let slices: Vec<u8> = hash_to_node::place(&chunk, nodes, n)
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n == node)
                        .map(|(i, _)| i as u8)
                        .collect();
                    if !slices.is_empty() {
                        f(InventoryEntry { chunk, slices });
                    }
                    Ok(true)
                });
        }
        let db = &self.lmdb.slices.locs;
        // LMDB refuses an empty key, so the whole tree is a plain walk.
        let walk: crate::store::KvIter<'_> = match prefix {
            [] => Box::new(db.iter(&txn)?),
            p => Box::new(db.prefix_iter(&txn, p)?),
        };
        for item in walk {
            let (k, v) = item?;
            let chunk = Hash(
                k.try_into()
                    .map_err(|_| Error::malformed("chunk index", "key is not 32 bytes"))?,
            );
            // The walk is over `slice_locs`: `v` is the bundle's sequence number.
            let bundle = self.lmdb.slices.bundle_at(&txn, v)?;
            let slices: Vec<u8> = bundle.slices.iter().map(|(i, _)| *i).collect();
            if !slices.is_empty() {
                f(InventoryEntry { chunk, slices });
            }
        }
        Ok(())
    }
}

/// What a node lacks and holds in excess, comparing the leaf it should hold (`placed`) with
/// the one it holds (`held`), both in chunk id order: `(lacking, extra)`.
pub fn leaf_difference(
    placed: &[InventoryEntry],
    held: &[InventoryEntry],
) -> (Vec<InventoryEntry>, Vec<InventoryEntry>) {
    // A
    let minus = |a: &[InventoryEntry], b: &[InventoryEntry]| -> Vec<InventoryEntry> {
        a.iter()
            .filter_map(|e| {
                let other = b
                    .binary_search_by(|x| x.chunk.cmp(&e.chunk))
                    .ok()
                    .map(|i| &b[i].slices);
                let slices: Vec<u8> = e
                    .slices
                    .iter()
                    .filter(|i| other.is_none_or(|o| !o.contains(i)))
                    .copied()
                    .collect();
                (!slices.is_empty()).then_some(InventoryEntry {
                    chunk: e.chunk,
                    slices,
                })
            })
            .collect()
    };
    (minus(placed, held), minus(held, placed))
}

/// Adds an entry to the bucket of its chunk id's byte at `depth`: chunk id, number of
/// indexes, the indexes (FORMAT.md, "Inventory digests").
fn add_entry(buckets: &mut Buckets, depth: usize, e: &InventoryEntry) {
    // A
    // At most 255 indexes exist, so the count fits one byte.
    let count = [e.slices.len() as u8];
    buckets.add(e.chunk.0[depth], &[&e.chunk.0, &count, &e.slices]);
}

/// The cluster's side of this part of the store (see [`crate::cas::Replica`]).
impl crate::cas::Replica<'_> {
    /// The 256 child digests of `inventory` under `prefix` (0 or 1 bytes): child `b` digests
    /// the entries whose chunk id starts with `prefix ‖ b` (all zeros when there are none).
    pub fn inventory_digests(&self, prefix: &[u8], inventory: Inventory<'_>) -> Result<Vec<Hash>> {
        // A
        if prefix.len() >= LEAF_DEPTH {
            return Err(Error::InvalidArgument(format!(
                "inventory tree digests exist above depth {LEAF_DEPTH}, not at {}",
                prefix.len()
            )));
        }
        let depth = prefix.len();
        let mut buckets = Buckets::new(DOMAIN);
        self.for_each_inventory(prefix, inventory, |e| add_entry(&mut buckets, depth, &e))?;
        Ok(buckets.digests())
    }

    /// The entries of `inventory` in one leaf (a `LEAF_DEPTH`-byte chunk id prefix).
    pub fn inventory_leaf(
        &self,
        prefix: &[u8],
        inventory: Inventory<'_>,
    ) -> Result<Vec<InventoryEntry>> {
        // A
        if prefix.len() != LEAF_DEPTH {
            return Err(Error::InvalidArgument(format!(
                "an inventory tree leaf is a {LEAF_DEPTH}-byte prefix"
            )));
        }
        let mut out = Vec::new();
        self.for_each_inventory(prefix, inventory, |e| out.push(e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest format is part of the wire protocol: pinned.
    #[test]
    fn inventory_digests_are_pinned() {
        let mut b = Buckets::new(DOMAIN);
        for (c, s) in [([0x11u8; 32], vec![0u8, 4]), ([0x12; 32], vec![2])] {
            add_entry(
                &mut b,
                0,
                &InventoryEntry {
                    chunk: Hash(c),
                    slices: s,
                },
            );
        }
        let d = b.digests();
        assert_eq!(d[0x13], Hash([0; 32]));
        let mut want = blake3::Hasher::new();
        want.update(b"ouro-slice-inventory-tree-v1");
        want.update(&[0x11; 32]);
        want.update(&[2, 0, 4]);
        assert_eq!(d[0x11].0, *want.finalize().as_bytes());
        assert_eq!(
            d[0x12].to_string(),
            "00c5d3acbafe60b1d6d3fc03b979defdd322498a6336786deaf3186d35d170ad"
        );
    }

    #[test]
    fn leaf_difference_splits_lacking_and_extra() {
        let e = |c: u8, s: &[u8]| InventoryEntry {
            chunk: Hash([c; 32]),
            slices: s.to_vec(),
        };
        let placed = [e(1, &[0, 1]), e(2, &[3]), e(4, &[5])];
        let held = [e(1, &[1]), e(3, &[2]), e(4, &[5])];
        let (lacking, extra) = leaf_difference(&placed, &held);
        assert_eq!(lacking, [e(1, &[0]), e(2, &[3])]);
        assert_eq!(extra, [e(3, &[2])]);
    }
}
