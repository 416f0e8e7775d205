//! Reading a chunk sealed into a pack: find the record whose slices hold it (the chunk's
//! own, or its pack's), and open a member's frame straight from the one or two data slices
//! its bytes lie in, without hashing whole slices: the frame's authentication tag and the
//! member's id check those bytes end to end. Anything else (a slice missing or damaged, a tag that
//! fails) goes the checked way: every slice hash-checked and the pack rebuilt.

use crate::cas::get::Pool;
use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{ChunkRecord, SealedSlice};
use crate::seal::pack::{
    covering_shards, member_from_data_shards, open_member_cached, open_member_from_frame,
};
use crate::store::RoTxn;

/// What the fast read of a member came to.
pub(super) enum Fast {
    /// Opened and checked.
    Opened(Vec<u8>),
    /// Not possible or failed: read it the checked way.
    Checked,
    /// The reader stopped while this waited for its turn.
    Stop,
}

/// Where a chunk's slices are: `(id of the record holding them, that record, the chunk's
/// own record when it is a pack member)`.
pub(crate) type Holder = (Hash, ChunkRecord, Option<ChunkRecord>);

impl Cas {
    /// The sealed bytes of member (or delta) `member`'s frame, copied from the data slices
    /// of pack `pack_id` held here that cover them, unhashed (the frame's authentication tag
    /// and the chunk's id check them); `None` when those slices are not all here.
    pub(super) fn frame_unchecked(
        &self,
        txn: &RoTxn,
        member: &ChunkRecord,
        pack_id: &Hash,
        pack: &ChunkRecord,
    ) -> Option<Vec<u8>> {
        // PA
        let (_, offset) = member.pack()?;
        let bundle = self
            .lmdb
            .slices
            .bundle_part(txn, pack_id, member.sealed_len as usize)
            .ok()?;
        let mut shards: Vec<Option<&[u8]>> = vec![None; pack.slices.len()];
        for i in covering_shards(pack, offset, member.sealed_len) {
            let split = bundle.get(i).map(SealedSlice::split);
            if let Some(Ok((h, payload))) = split {
                if h.index == i && h.chunk == *pack_id {
                    if let Some(slot) = shards.get_mut(i as usize) {
                        *slot = Some(payload);
                    }
                }
            }
        }
        let mut sealed = Vec::new();
        member_from_data_shards(pack, &shards, offset, member.sealed_len, &mut sealed)?;
        Some(sealed)
    }

    /// The record whose slices hold chunk `id`; the inner error names what is missing.
    pub(crate) fn slices_holder(
        &self,
        txn: &RoTxn,
        id: &Hash,
    ) -> Result<std::result::Result<Holder, Error>> {
        // PA
        let Some(record) = self.lmdb.chunks.get(txn, id)? else {
            return Ok(Err(Error::Corrupt(format!(
                "chunk {} is missing",
                id.short()
            ))));
        };
        let Some((pack, _)) = record.pack() else {
            return Ok(Ok((*id, record, None)));
        };
        Ok(match self.lmdb.chunks.get(txn, &pack)? {
            Some(p) if p.is_pack() => Ok((pack, p, Some(record))),
            _ => Err(Error::Corrupt(format!(
                "chunk {}: its pack {} is missing",
                id.short(),
                pack.short()
            ))),
        })
    }

    /// Opens pack member `id` from the data slices held here that cover it, once its turn
    /// comes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_member_fast(
        &self,
        txn: &RoTxn,
        id: &Hash,
        member: &ChunkRecord,
        pack_id: &Hash,
        pack: &ChunkRecord,
        pos: usize,
        pool: Option<&Pool>,
        turn: &dyn Fn(usize) -> bool,
    ) -> Fast {
        // PA
        let Ok(keys) = self.keys_for(member.key_epoch) else {
            return Fast::Checked;
        };
        let mut plain = pool.map(Pool::take).unwrap_or_default();
        let give_back = |plain: Vec<u8>| {
            if let Some(p) = pool {
                p.give(plain);
            }
            Fast::Checked
        };
        // The frame opened for the member before (a restore reads a frame's members in turn).
        if let Some(Ok(())) = open_member_cached(keys, pack_id, id, member, &mut plain) {
            if turn(pos) {
                return Fast::Opened(plain);
            }
            give_back(plain);
            return Fast::Stop;
        }
        let Some(sealed) = self.frame_unchecked(txn, member, pack_id, pack) else {
            return give_back(plain);
        };
        if !turn(pos) {
            return Fast::Stop;
        }
        match open_member_from_frame(keys, pack_id, id, member, sealed, &mut plain) {
            Ok(()) => Fast::Opened(plain),
            Err(_) => give_back(plain),
        }
    }
}
