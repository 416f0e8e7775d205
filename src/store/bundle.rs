//! The slice bundle record: the slices of one chunk held here, under one sequence number
//! of the `slices` database (FORMAT.md, "Slice bundle").

use crate::error::{Error, Result};
use crate::hash::Hash;

/// Type tag of an encoded slice bundle.
const BUNDLE_TAG: u8 = b'L';
/// Version of the bundle encoding.
const BUNDLE_VERSION: u8 = 2;

/// The slices of one chunk held here: `(index, encoded SealedSlice)`, borrowed from the map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Bundle<'t> {
    /// The chunk: kept in the bundle so that a walk in sequence order (the cluster hands
    /// new slices to the nodes that placement names) knows what it is looking at.
    pub chunk: Hash,
    /// Present slices in index order.
    pub slices: Vec<(u8, &'t [u8])>,
}

impl<'t> Bundle<'t> {
    /// Encodes `[b'L'][2][chunk id 32]` then per slice `[index u8][len u32 LE][bytes]`.
    pub fn encode(&self) -> Vec<u8> {
        // A
        let mut out = Vec::with_capacity(self.encoded_len());
        // Writing into a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Length of [`Bundle::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        // A
        34 + self.slices.iter().map(|(_, b)| b.len() + 5).sum::<usize>()
    }

    /// Writes [`Bundle::encode`]'s bytes to `out`: the writer puts them straight into the
    /// space LMDB reserves for the value, without a copy of the slices in between.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        // A
        out.write_all(&[BUNDLE_TAG, BUNDLE_VERSION])?;
        out.write_all(&self.chunk.0)?;
        for (i, b) in &self.slices {
            out.write_all(&[*i])?;
            out.write_all(&(b.len() as u32).to_le_bytes())?;
            out.write_all(b)?;
        }
        Ok(())
    }

    /// Decodes a bundle without copying; a truncated or malformed bundle is an error.
    pub fn decode(bytes: &'t [u8]) -> Result<Self> {
        // A
        let bad = |why: &str| Error::malformed("slice bundle", why);
        let rest = match bytes {
            [BUNDLE_TAG, BUNDLE_VERSION, rest @ ..] => rest,
            [BUNDLE_TAG, v, ..] => return Err(bad(&format!("unknown version {v}"))),
            _ => return Err(bad("wrong tag")),
        };
        let (id, mut rest) = rest
            .split_first_chunk::<32>()
            .ok_or_else(|| bad("truncated chunk id"))?;
        let mut slices = Vec::new();
        while let [i, l0, l1, l2, l3, tail @ ..] = rest {
            let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
            if tail.len() < len {
                return Err(bad("truncated slice"));
            }
            if slices.last().is_some_and(|(last, _)| last >= i) {
                return Err(bad("slice indexes out of order"));
            }
            let (b, after) = tail.split_at(len);
            slices.push((*i, b));
            rest = after;
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Bundle {
            chunk: Hash(*id),
            slices,
        })
    }

    /// The encoded slice with this index, if held.
    pub fn get(&self, index: u8) -> Option<&'t [u8]> {
        // A
        self.slices
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pinned_encoding() {
        let b = Bundle {
            chunk: Hash([7; 32]),
            slices: vec![(0, b"ab".as_slice()), (2, b"c".as_slice())],
        };
        let mut want = vec![b'L', 2];
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[0, 2, 0, 0, 0, b'a', b'b', 2, 1, 0, 0, 0, b'c']);
        assert_eq!(b.encode(), want);
    }

    proptest! {
        #[test]
        fn round_trip(slices in prop::collection::btree_map(any::<u8>(), prop::collection::vec(any::<u8>(), 0..200), 0..8),
                      edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)) {
            let b = Bundle { chunk: Hash([3; 32]), slices: slices.iter().map(|(i, s)| (*i, s.as_slice())).collect() };
            let enc = b.encode();
            // A bundle valid up to a few bytes reaches the per-slice length checks.
            let _ = Bundle::decode(&crate::fuzzing::mutate(&enc, &edits));
            prop_assert_eq!(Bundle::decode(&enc).unwrap(), b);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = Bundle::decode(&bytes);
            let _ = Bundle::decode(&[&[BUNDLE_TAG, BUNDLE_VERSION][..], &bytes].concat());
        }
    }
}
