//! Deltas on the read and write paths: a delta's base is read (in the reader's own
//! transaction, through any chain of deltas, at most [`MAX_DELTA_DEPTH`] long) before the
//! delta can be opened, and a put reads the base of each small chunk it may compress
//! against it (`src/seal/delta.rs`).

use crate::cas::get_member::Fast;
use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::chunk::MAX_DELTA_DEPTH;
use crate::route::remote::Wanted;
use crate::route::DataRouter;
use crate::seal::delta::{open_delta_frame, open_delta_into};
use crate::seal::open_chunk_into;
use crate::seal::pack::open_member_into;
use crate::store::RoTxn;

impl Cas {
    /// The plaintext of chunk `base` when a new chunk may be compressed against it: `None`
    /// when it cannot be read, or sits at the end of a chain of deltas as long as allowed
    /// (the new chunk is then sealed whole, which starts a new chain).
    pub(crate) fn delta_base(&self, base: &Hash) -> Option<Vec<u8>> {
        // A
        let txn = self.lmdb.read().ok()?;
        match self.plain_in(&txn, base, 0) {
            Ok((plain, depth)) if depth < MAX_DELTA_DEPTH => Some(plain),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(base = %base.short(), error = %e, "no delta: base unreadable");
                None
            }
        }
    }

    /// The plaintext of chunk `id`, read in `txn` (slices held here, else fetched from the
    /// other nodes) and checked against its id, with the length of the chain of deltas it
    /// ends (0: not a delta). `depth` is how many deltas deep this read already is.
    pub(crate) fn plain_in(&self, txn: &RoTxn, id: &Hash, depth: u8) -> Result<(Vec<u8>, u8)> {
        // PA
        if depth > MAX_DELTA_DEPTH {
            return Err(Error::Corrupt(format!(
                "chunk {}: a chain of deltas longer than {MAX_DELTA_DEPTH}",
                id.short()
            )));
        }
        let (holder, record, member) = self.slices_holder(txn, id)??;
        let base = match member.as_ref().and_then(|m| m.base()) {
            Some(b) => Some(self.plain_in(txn, &b, depth + 1)?),
            None => None,
        };
        // First from the data slices that cover the frame, unhashed, as a read of a member.
        if let Some(m) = &member {
            let keys = self.keys_for(m.key_epoch)?;
            let mut plain = Vec::new();
            let opened = match &base {
                None => {
                    match self.open_member_fast(txn, id, m, &holder, &record, 0, None, &|_| true) {
                        Fast::Opened(p) => {
                            plain = p;
                            true
                        }
                        _ => false,
                    }
                }
                Some((b, _)) => {
                    self.frame_unchecked(txn, m, &holder, &record)
                        .is_some_and(|sealed| {
                            open_delta_frame(keys, id, m, sealed, b, &mut plain).is_ok()
                        })
                }
            };
            if opened {
                return Ok((plain, base.map_or(0, |(_, chain)| chain + 1)));
            }
        }
        let router = DataRouter::new(&self.lmdb);
        let mut shards = router.fetch_shards(txn, &holder, &record, false)?.shards;
        let have = shards.iter().filter(|s| s.is_some()).count();
        let fetched = match self.remote.as_ref() {
            Some(remote) if have < record.k as usize => {
                let ask = Wanted {
                    chunk: holder,
                    wanted: (0..record.slices.len() as u8)
                        .filter(|i| shards[*i as usize].is_none())
                        .collect(),
                    need: record.k as usize - have,
                };
                Some(remote.fetch_many(std::slice::from_ref(&ask))?)
            }
            _ => None,
        };
        if let Some(f) = &fetched {
            DataRouter::add_fetched(&record, &mut shards, f.slices(0));
        }
        let keys = self.keys_for(member.as_ref().unwrap_or(&record).key_epoch)?;
        let mut plain = Vec::new();
        let chain = match (&member, &base) {
            (None, _) => open_chunk_into(keys, id, &record, &shards, &mut plain).map(|()| 0),
            (Some(m), None) => {
                open_member_into(keys, id, m, &record, &shards, &mut plain).map(|()| 0)
            }
            (Some(m), Some((b, chain))) => {
                open_delta_into(keys, id, m, &record, &shards, b, &mut plain).map(|()| chain + 1)
            }
        }?;
        Ok((plain, chain))
    }
}
