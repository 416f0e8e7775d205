//! Deltas on the read and write paths: a delta's base is read (in the reader's own
//! transaction, through any chain of deltas, at most [`MAX_DELTA_DEPTH`] long) before the
//! delta can be opened, and a put reads the base of each small chunk it may compress
//! against it (`src/seal/delta.rs`).

use crate::cas::get_member::{Fast, Holder};
use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::chunk::MAX_DELTA_DEPTH;
use crate::model::ChunkRecord;
use crate::route::remote::Wanted;
use crate::route::DataRouter;
use crate::seal::delta::{open_delta_frame, open_delta_into};
use crate::seal::open_chunk_into;
use crate::seal::pack::open_member_into;
use crate::store::RoTxn;

/// Plaintext bytes a chain of deltas may hold, all its chunks counted: a reader holds them
/// all at once while it opens the last (and decompresses each), so chains of large chunks
/// end sooner than [`MAX_DELTA_DEPTH`] (two links of 4 MiB chunks; eight of 1 MiB).
pub const MAX_CHAIN_BYTES: u64 = 12 << 20;

/// The chain of deltas a chunk ends: how many deltas lead to it from a whole chunk, and the
/// plaintext bytes of all of them and of that whole chunk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chain {
    pub links: u8,
    pub bytes: u64,
}

impl Chain {
    /// True when a delta against the chunk ending this chain (of `base_len` bytes, about
    /// the size of the new chunk) keeps the chain within its bounds.
    fn takes_another(self, base_len: usize) -> bool {
        // A
        self.links < MAX_DELTA_DEPTH && self.bytes + base_len as u64 <= MAX_CHAIN_BYTES
    }
}

impl Cas {
    /// The plaintext of chunk `base` when a new chunk may be compressed against it: `None`
    /// when it cannot be read, or sits at the end of a chain of deltas as long as allowed
    /// ([`MAX_DELTA_DEPTH`] links, [`MAX_CHAIN_BYTES`] with the new chunk; the new chunk is
    /// then sealed whole, which starts a new chain). Hand the buffer back
    /// with [`give_buffer`] once done with it.
    pub(crate) fn delta_base(&self, base: &Hash) -> Option<Vec<u8>> {
        // A
        let txn = self.lmdb.read().ok()?;
        let mut plain = take_buffer();
        match self.plain_into(&txn, base, 0, &mut plain) {
            Ok(chain) if chain.takes_another(plain.len()) => Some(plain),
            Ok(_) => {
                give_buffer(plain);
                None
            }
            Err(e) => {
                tracing::debug!(base = %base.short(), error = %e, "no delta: base unreadable");
                None
            }
        }
    }

    /// The plaintext of chunk `id`, read in `txn` (slices held here, else fetched from the
    /// other nodes) and checked against its id, into `plain`, with the chain of deltas it
    /// ends. `depth` is how many deltas deep this read already is.
    pub(crate) fn plain_into(
        &self,
        txn: &RoTxn,
        id: &Hash,
        depth: u8,
        plain: &mut Vec<u8>,
    ) -> Result<Chain> {
        // PA
        if depth > MAX_DELTA_DEPTH {
            return Err(Error::Corrupt(format!(
                "chunk {}: a chain of deltas longer than {MAX_DELTA_DEPTH}",
                id.short()
            )));
        }
        let held = self.slices_holder(txn, id)??;
        self.open_held(txn, id, &held, depth, plain)
    }

    /// [`Cas::plain_into`] for a chunk whose holder the caller looked up already.
    pub(crate) fn open_held(
        &self,
        txn: &RoTxn,
        id: &Hash,
        (holder, record, member): &Holder,
        depth: u8,
        plain: &mut Vec<u8>,
    ) -> Result<Chain> {
        // PA
        let base = match member.as_ref().and_then(|m| m.base()) {
            Some(b) => {
                let mut buf = take_buffer();
                let chain = self.plain_into(txn, &b, depth + 1, &mut buf)?;
                Some((buf, chain))
            }
            None => None,
        };
        let opened = self.open_over(txn, id, (holder, record, member.as_ref()), &base, plain);
        let chain = match &base {
            Some((_, c)) => Chain {
                links: c.links + 1,
                bytes: c.bytes + plain.len() as u64,
            },
            None => Chain {
                links: 0,
                bytes: plain.len() as u64,
            },
        };
        if let Some((buf, _)) = base {
            give_buffer(buf);
        }
        opened.map(|()| chain)
    }

    /// Opens chunk `id` into `plain` given its holder (the record whose slices hold it, and
    /// its own record when a member) and, for a delta, its base's plaintext and chain.
    fn open_over(
        &self,
        txn: &RoTxn,
        id: &Hash,
        (holder, record, member): (&Hash, &ChunkRecord, Option<&ChunkRecord>),
        base: &Option<(Vec<u8>, Chain)>,
        plain: &mut Vec<u8>,
    ) -> Result<()> {
        // PA
        // First from the data slices that cover the frame, unhashed, as a read of a member.
        if let Some(m) = member {
            let keys = self.keys_for(m.key_epoch)?;
            let opened = match base {
                None => match self.open_member_fast(txn, id, m, holder, record, 0, None, &|_| true)
                {
                    Fast::Opened(p) => {
                        *plain = p;
                        true
                    }
                    _ => false,
                },
                Some((b, _)) => self
                    .frame_unchecked(txn, m, holder, record)
                    .is_some_and(|sealed| open_delta_frame(keys, id, m, sealed, b, plain).is_ok()),
            };
            if opened {
                return Ok(());
            }
        }
        let router = DataRouter::new(&self.lmdb);
        let mut shards = router.fetch_shards(txn, holder, record, false)?.shards;
        let fetched = match (
            self.remote.as_ref(),
            Wanted::missing(*holder, record, &shards),
        ) {
            (Some(remote), Some(ask)) => Some(remote.fetch_many(std::slice::from_ref(&ask))?),
            _ => None,
        };
        if let Some(f) = &fetched {
            DataRouter::add_fetched(record, &mut shards, f.slices(0));
        }
        let keys = self.keys_for(member.unwrap_or(record).key_epoch)?;
        match (member, base) {
            (None, _) => open_chunk_into(keys, id, record, &shards, plain),
            (Some(m), None) => open_member_into(keys, id, m, record, &shards, plain),
            (Some(m), Some((b, _))) => open_delta_into(keys, id, m, record, &shards, b, plain),
        }
    }
}

thread_local! {
    /// A plaintext buffer kept per thread for bases: a chunk of up to 4 MiB read, used and
    /// freed per delta made glibc raise its mmap threshold and keep the freed blocks in its
    /// heap (`get` of a 539 MB file with 65 large deltas peaked at 68 MB instead of 47).
    static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread at most: one serves the usual chain (a delta and a whole base);
/// each kept buffer of a large base stays in the process's memory.
const KEPT_BUFFERS: usize = 1;

/// A buffer for a base's plaintext: one this thread gave back, or a new one.
pub(crate) fn take_buffer() -> Vec<u8> {
    // A
    BUFFERS
        .with(|b| b.try_borrow_mut().ok().and_then(|mut b| b.pop()))
        .unwrap_or_default()
}

/// Gives a buffer from [`take_buffer`] back to this thread.
pub(crate) fn give_buffer(mut buf: Vec<u8>) {
    // A
    buf.clear();
    BUFFERS.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            if b.len() < KEPT_BUFFERS {
                b.push(buf);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_end_at_eight_links_or_twelve_mib() {
        let chain = |links, mib: u64| Chain {
            links,
            bytes: mib << 20,
        };
        // Whole 4 MiB chunk, then two deltas of 4 MiB: the third would make 16 MiB.
        assert!(chain(0, 4).takes_another(4 << 20));
        assert!(chain(1, 8).takes_another(4 << 20));
        assert!(!chain(2, 12).takes_another(4 << 20));
        // Small chunks: the count ends the chain first.
        assert!(chain(7, 1).takes_another(60 << 10));
        assert!(!chain(8, 1).takes_another(60 << 10));
    }
}
