//! SyncIndexTree, store side: a Merkle tree over the set of live versions, cut by the
//! bytes of their hashes. Level 0 has 256 digests (one per first byte), each of them 256
//! (second byte), and a leaf lists its hashes. Two nodes compare digests from the top and
//! descend only where they differ, so finding what one lacks costs in proportion to the
//! difference, not to the store. Digests are computed on demand from LMDB's hash-ordered
//! databases: nothing extra is written on puts.

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;

/// Domain separation of bucket digests; a new tree shape gets a new string.
const DOMAIN: &[u8] = b"ouro-sync-index-tree-v1";
/// Depth of the leaves (bytes of hash prefix).
pub const LEAF_DEPTH: usize = 2;

impl Cas {
    /// Calls `f` with every live version (stored and not removed) whose hash starts with
    /// `prefix`, in hash order: one merge of the `blobs` and `removed` databases.
    fn for_each_live(&self, prefix: &[u8], mut f: impl FnMut(Hash)) -> Result<()> {
        // A
        let txn = self.lmdb.read()?;
        // LMDB refuses an empty key, so the whole tree is a plain walk.
        let walk = |db: &crate::store::Db| -> Result<crate::store::KvIter<'_>> {
            Ok(match prefix {
                [] => Box::new(db.iter(&txn)?),
                p => Box::new(db.prefix_iter(&txn, p)?),
            })
        };
        let mut removed = walk(&self.lmdb.removed.0)?.peekable();
        for item in walk(&self.lmdb.blobs.by_hash)? {
            let (k, _) = item?;
            while matches!(removed.peek(), Some(Ok((r, _))) if *r < k) {
                removed.next();
            }
            if matches!(removed.peek(), Some(Ok((r, _))) if *r == k) {
                continue;
            }
            let h: [u8; 32] = k
                .try_into()
                .map_err(|_| Error::malformed("blob", "key is not 32 bytes"))?;
            f(Hash(h));
        }
        Ok(())
    }
}

/// The 256 child digests of one tree node, shared by the trees over versions and over slice
/// inventories: bucket `b` hashes the domain, then what is added to it in order; an empty
/// bucket's digest is 32 zero bytes.
pub(crate) struct Buckets {
    domain: &'static [u8],
    hashers: Vec<Option<blake3::Hasher>>,
}

impl Buckets {
    /// 256 empty buckets whose digests start with `domain`.
    pub(crate) fn new(domain: &'static [u8]) -> Self {
        // A
        Buckets {
            domain,
            hashers: (0..256).map(|_| None).collect(),
        }
    }

    /// Appends `parts` to bucket `b`.
    pub(crate) fn add(&mut self, b: u8, parts: &[&[u8]]) {
        // A
        let domain = self.domain;
        let x = self.hashers[usize::from(b)].get_or_insert_with(|| {
            let mut x = blake3::Hasher::new();
            x.update(domain);
            x
        });
        for p in parts {
            x.update(p);
        }
    }

    /// The 256 digests.
    pub(crate) fn digests(self) -> Vec<Hash> {
        // A
        self.hashers
            .into_iter()
            .map(|x| x.map_or(Hash([0; 32]), |x| Hash(*x.finalize().as_bytes())))
            .collect()
    }
}

/// The cluster's side of this part of the store (see [`crate::cas::Replica`]).
impl crate::cas::Replica<'_> {
    /// The 256 child digests under `prefix` (0 or 1 bytes): child `b` digests the live
    /// versions whose hash starts with `prefix ‖ b` (all zeros when there are none).
    pub fn sync_digests(&self, prefix: &[u8]) -> Result<Vec<Hash>> {
        // A
        if prefix.len() >= LEAF_DEPTH {
            return Err(Error::InvalidArgument(format!(
                "sync tree digests exist above depth {LEAF_DEPTH}, not at {}",
                prefix.len()
            )));
        }
        let depth = prefix.len();
        let mut buckets = Buckets::new(DOMAIN);
        self.for_each_live(prefix, |h| buckets.add(h.0[depth], &[&h.0]))?;
        Ok(buckets.digests())
    }

    /// The live versions of one leaf (a `LEAF_DEPTH`-byte hash prefix).
    pub fn sync_leaf(&self, prefix: &[u8]) -> Result<Vec<Hash>> {
        // A
        if prefix.len() != LEAF_DEPTH {
            return Err(Error::InvalidArgument(format!(
                "a sync tree leaf is a {LEAF_DEPTH}-byte prefix"
            )));
        }
        let mut out = Vec::new();
        self.for_each_live(prefix, |h| out.push(h))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest of a bucket of live versions is part of the wire protocol: pinned.
    #[test]
    fn version_digests_are_pinned() {
        let mut b = Buckets::new(DOMAIN);
        for h in [[0x21u8; 32], [0x21; 32], [0x30; 32]] {
            b.add(h[0], &[&h]);
        }
        let d = b.digests();
        assert_eq!(d[0], Hash([0; 32]));
        let mut want = blake3::Hasher::new();
        want.update(b"ouro-sync-index-tree-v1");
        want.update(&[0x21; 32]);
        want.update(&[0x21; 32]);
        assert_eq!(d[0x21].0, *want.finalize().as_bytes());
        assert_eq!(
            d[0x30].to_string(),
            "487382ae2403d8c17a4b20a77db0b29502f046bb57c05e5306a96907ffc0047b"
        );
    }
}
