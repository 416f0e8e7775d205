//! HashToNode: which node holds which slice of a chunk, by rendezvous (highest random
//! weight) hashing over blake3. Written here, not taken from a crate, because placement is
//! part of the format: it must never change with a dependency upgrade (pinned in tests).

use crate::hash::Hash;

/// Domain separation of placement weights; a new placement scheme gets a new string.
const DOMAIN: &[u8] = b"ouro-hash-to-node-v1";

/// A node as placement knows it: its 32-byte public key.
pub type NodeKey = [u8; 32];

/// The weight of `node` for slice `index` of `chunk`: BLAKE3(DOMAIN || node || chunk || index).
fn weight(node: &NodeKey, chunk: &Hash, index: u8) -> [u8; 32] {
    // PA
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(node);
    h.update(&chunk.0);
    h.update(&[index]);
    *h.finalize().as_bytes()
}

/// The node of each of a chunk's `slices` slices. Slice by slice, in index order, among the
/// nodes holding the fewest slices of this chunk so far, the one with the highest weight for
/// that slice wins: slices land on distinct nodes whenever there are at least as many nodes
/// as slices, and otherwise as evenly as possible. A node that holds none of a chunk's slices
/// can come or go without moving any; losing the holder of slice j leaves slices 0..j where
/// they are. Empty when there are no nodes.
pub fn place(chunk: &Hash, nodes: &[NodeKey], slices: usize) -> Vec<NodeKey> {
    // PA
    let mut nodes: Vec<NodeKey> = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        return Vec::new();
    }
    let mut count = vec![0usize; nodes.len()];
    let mut out = Vec::with_capacity(slices);
    for i in 0..slices {
        let least = count.iter().copied().min().unwrap_or(0);
        let best = (0..nodes.len())
            .filter(|n| count[*n] == least)
            .max_by_key(|n| weight(&nodes[*n], chunk, i as u8));
        let Some(best) = best else { break };
        count[best] += 1;
        out.push(nodes[best]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(n: u8) -> Vec<NodeKey> {
        (0..n).map(|i| [i; 32]).collect()
    }

    #[test]
    fn pinned_placement() {
        // Placement is part of the format: these must never change.
        let chunk = Hash([42; 32]);
        let p = place(&chunk, &nodes(7), 6);
        let firsts: Vec<u8> = p.iter().map(|n| n[0]).collect();
        assert_eq!(firsts, PINNED);
        assert_eq!(hex(&weight(&[1; 32], &chunk, 0))[..16], *PINNED_WEIGHT);
    }

    const PINNED: [u8; 6] = [3, 5, 2, 6, 1, 4];
    const PINNED_WEIGHT: &str = "cdc71ab8b405b6ce";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    proptest! {
        #[test]
        fn distinct_when_enough_nodes(seed in any::<[u8; 32]>(), n in 6u8..12) {
            let p = place(&Hash(seed), &nodes(n), 6);
            let mut d = p.clone();
            d.sort();
            d.dedup();
            prop_assert_eq!(d.len(), 6);
        }

        #[test]
        fn even_when_few_nodes(seed in any::<[u8; 32]>(), n in 1u8..6) {
            let p = place(&Hash(seed), &nodes(n), 6);
            for node in nodes(n) {
                let c = p.iter().filter(|x| **x == node).count();
                prop_assert!(c == 6 / n as usize || c == 6 / n as usize + 1);
            }
        }

        #[test]
        fn losing_a_node_moves_little(seed in any::<[u8; 32]>(), gone in 0u8..8) {
            let all = nodes(8);
            let before = place(&Hash(seed), &all, 6);
            let rest: Vec<NodeKey> = all.iter().copied().filter(|n| n[0] != gone).collect();
            let after = place(&Hash(seed), &rest, 6);
            match before.iter().position(|n| n[0] == gone) {
                // Not a holder: nothing moves.
                None => prop_assert_eq!(after, before),
                // The holder of slice j: slices before j stay.
                Some(j) => prop_assert_eq!(&after[..j], &before[..j]),
            }
        }
    }
}
