//! HashToNode: which node holds which slice of a chunk, by rendezvous (highest random
//! weight) hashing over blake3. Written here, not taken from a crate, because placement is
//! part of the format: it must never change with a dependency upgrade (pinned in tests).

use crate::hash::Hash;

/// Domain separation of placement weights; a new placement scheme gets a new string.
const DOMAIN: &[u8] = b"ouro-hash-to-node-v1";

/// A node as placement knows it: its 32-byte public key.
pub type NodeKey = [u8; 32];

/// The weight of `node` for `chunk`: blake3(DOMAIN || node || chunk).
fn weight(node: &NodeKey, chunk: &Hash) -> [u8; 32] {
    // PA
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(node);
    h.update(&chunk.0);
    *h.finalize().as_bytes()
}

/// Nodes in order of preference for `chunk` (highest weight first). Adding or removing a
/// node moves only the slices that node gains or held.
pub fn ranking(chunk: &Hash, nodes: &[NodeKey]) -> Vec<NodeKey> {
    // PA
    let mut ranked: Vec<([u8; 32], NodeKey)> =
        nodes.iter().map(|n| (weight(n, chunk), *n)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// The node of each of a chunk's `slices` slices: slice i goes to the i-th ranked node, so
/// they land on distinct nodes whenever there are at least as many nodes as slices, and
/// otherwise wrap around as evenly as possible. Empty when there are no nodes.
pub fn place(chunk: &Hash, nodes: &[NodeKey], slices: usize) -> Vec<NodeKey> {
    // PA
    let ranked = ranking(chunk, nodes);
    if ranked.is_empty() {
        return Vec::new();
    }
    (0..slices).map(|i| ranked[i % ranked.len()]).collect()
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
        let p = place(&chunk, &nodes(6), 6);
        let firsts: Vec<u8> = p.iter().map(|n| n[0]).collect();
        assert_eq!(firsts, PINNED);
        assert_eq!(hex(&weight(&[1; 32], &chunk))[..16], *PINNED_WEIGHT,);
    }

    const PINNED: [u8; 6] = [5, 4, 1, 0, 2, 3];
    const PINNED_WEIGHT: &str = "d1f0eb276adc169d";

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
        fn removing_a_node_moves_only_its_slices(seed in any::<[u8; 32]>(), gone in 0u8..7) {
            let all = nodes(7);
            let before = ranking(&Hash(seed), &all);
            let rest: Vec<NodeKey> = all.iter().copied().filter(|n| n[0] != gone).collect();
            let after = ranking(&Hash(seed), &rest);
            let expected: Vec<NodeKey> = before.into_iter().filter(|n| n[0] != gone).collect();
            prop_assert_eq!(after, expected);
        }
    }
}
