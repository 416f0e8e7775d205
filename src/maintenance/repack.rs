//! Repacking, gc's last step on a store of its own: a pack is freed whole once no member
//! names it, but a pack where only a few members live on keeps the bytes of the dead ones.
//! gc therefore rewrites every pack whose live frames (those holding at least one live member)
//! make less than [`REPACK_BELOW`] of its payload: those frames (still encrypted: no key is
//! needed, so a locked store is repacked too) are copied into new packs, their members'
//! records moved there, and the old packs freed, all in one transaction per group, so a
//! crash leaves either the old pack or the new one in use. Dead members inside a live frame
//! keep their bytes until the frame's last member goes.
//!
//! On a cluster node gc does not repack: the nodes would each write different packs for the
//! same members. There a pack's space comes back once all its members are freed.

use std::collections::HashMap;

use crate::cas::{now_nanos, Cas};
use crate::error::Result;
use crate::hash::Hash;
use crate::maintenance::PAGE;
use crate::model::ChunkRecord;
use crate::progress::Progress;
use crate::route::DataRouter;
use crate::seal::erasure;
use crate::seal::pack::{build_pack, Member, PACK_TARGET};
use crate::store::deletion_wal::{Deletion, WalEntry};

/// Share of a pack's payload its live members must hold for gc to leave it as it is.
pub const REPACK_BELOW: f64 = 0.5;

/// What repacking did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepackReport {
    /// Old packs rewritten (and freed).
    pub packs_rewritten: u64,
    /// Encoded slice bytes the old packs held.
    pub bytes_freed: u64,
    /// Slices the old packs held.
    pub slices_freed: u64,
}

impl Cas {
    /// Rewrites the live members of mostly-dead packs into new packs; `None` on a cluster
    /// node. The caller holds the gc lock exclusively.
    pub(crate) fn repack(&self, progress: &dyn Progress) -> Result<Option<RepackReport>> {
        // PA
        if self.in_cluster()? {
            return Ok(None);
        }
        let sparse = self.sparse_packs()?;
        let mut report = RepackReport::default();
        if sparse.is_empty() {
            return Ok(Some(report));
        }
        let members = self.members_of(&sparse)?;
        let mut group: Vec<Hash> = Vec::new();
        let mut group_bytes = 0u64;
        for (pack, live) in &sparse {
            if group_bytes + live > PACK_TARGET as u64 && !group.is_empty() {
                self.rewrite_packs(&group, &members, &mut report)?;
                group.clear();
                group_bytes = 0;
            }
            group.push(*pack);
            group_bytes += live;
            progress.advance(1);
        }
        if !group.is_empty() {
            self.rewrite_packs(&group, &members, &mut report)?;
        }
        Ok(Some(report))
    }

    /// Packs whose live members hold less than [`REPACK_BELOW`] of their payload, with the
    /// live bytes of each, in id order.
    fn sparse_packs(&self) -> Result<Vec<(Hash, u64)>> {
        // A
        // Live frames per pack: a frame is known by its offset, and counted once.
        let mut live: HashMap<Hash, HashMap<u32, u64>> = HashMap::new();
        let mut sizes: Vec<(Hash, u64)> = Vec::new();
        self.each_record(|id, record| {
            if record.is_pack() {
                sizes.push((id, u64::from(record.sealed_len)));
            } else if let Some((pack, offset)) = record.pack() {
                live.entry(pack)
                    .or_default()
                    .insert(offset, u64::from(record.sealed_len));
            }
        })?;
        let live: HashMap<Hash, u64> = live
            .into_iter()
            .map(|(p, frames)| (p, frames.values().sum()))
            .collect();
        Ok(sizes
            .into_iter()
            .filter_map(|(id, size)| {
                let l = live.get(&id).copied().unwrap_or(0);
                ((l as f64) < size as f64 * REPACK_BELOW && l > 0).then_some((id, l))
            })
            .collect())
    }

    /// The member records naming each of `packs`.
    fn members_of(&self, packs: &[(Hash, u64)]) -> Result<HashMap<Hash, Vec<(Hash, ChunkRecord)>>> {
        // A
        let mut out: HashMap<Hash, Vec<(Hash, ChunkRecord)>> =
            packs.iter().map(|(p, _)| (*p, Vec::new())).collect();
        self.each_record(|id, record| {
            if let Some(list) = record.pack().and_then(|(p, _)| out.get_mut(&p)) {
                list.push((id, record));
            }
        })?;
        Ok(out)
    }

    /// Calls `f` with every chunk record that decodes, in pages of short transactions.
    fn each_record(&self, mut f: impl FnMut(Hash, ChunkRecord)) -> Result<()> {
        // A
        let mut after = None;
        loop {
            let page = self.lmdb.chunks.page(&self.lmdb.read()?, after, PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(*last);
            for (id, record) in page {
                if let Ok(record) = record {
                    f(id, record);
                }
            }
        }
    }

    /// Copies the live members of `packs` into one new pack and frees the old ones, in one
    /// transaction. A pack that cannot be rebuilt is left as it is (verify reports it).
    fn rewrite_packs(
        &self,
        packs: &[Hash],
        members: &HashMap<Hash, Vec<(Hash, ChunkRecord)>>,
        report: &mut RepackReport,
    ) -> Result<()> {
        // PA
        let mut txn = self.lmdb.write()?;
        let router = DataRouter::new(&self.lmdb);
        let mut payload = Vec::new();
        let mut moved: Vec<Member> = Vec::new();
        let mut done: Vec<Hash> = Vec::new();
        for pack in packs {
            let Some(record) = self.lmdb.chunks.get(&txn, pack)? else {
                continue;
            };
            let set = router.fetch_shards(&txn, pack, &record, false)?;
            let Ok(old) =
                erasure::reconstruct(record.k, record.m, record.sealed_len as usize, &set.shards)
            else {
                tracing::warn!(pack = %pack.short(), "pack cannot be rebuilt: left for verify");
                continue;
            };
            // Each live frame is copied once; its members follow it to its new offset.
            let mut copied: HashMap<u32, u32> = HashMap::new();
            for (id, m) in members.get(pack).into_iter().flatten() {
                // Only members that still name this pack at that place move.
                if self.lmdb.chunks.get(&txn, id)?.as_ref() != Some(m) {
                    continue;
                }
                let Some((_, offset)) = m.pack() else {
                    continue;
                };
                let to = match copied.get(&offset) {
                    Some(to) => *to,
                    None => {
                        let range = offset as usize..offset as usize + m.sealed_len as usize;
                        let Some(bytes) = old.get(range) else {
                            continue;
                        };
                        let to = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                        payload.extend_from_slice(bytes);
                        copied.insert(offset, to);
                        to
                    }
                };
                moved.extend(Member::moved(*id, m, to));
            }
            done.push(*pack);
        }
        let mut written = 0u64;
        if !moved.is_empty() {
            let sealed = build_pack(self.seal_params(), &payload, moved)?;
            written = sealed.slices.iter().map(|(_, b)| b.len() as u64).sum();
            router.store_chunk(&mut txn, &sealed)?;
            for (id, record) in &sealed.members {
                self.lmdb.chunks.put(&mut txn, id, record)?;
            }
        }
        for pack in &done {
            // Every member moved: the old pack's count is zero now.
            if self.lmdb.chunks.refs(&txn, pack)? == 0 {
                let (n, bytes) = self.lmdb.slices.delete_chunk(&mut txn, pack)?;
                self.lmdb.chunks.delete(&mut txn, pack)?;
                let entry = WalEntry {
                    time: now_nanos(),
                    deletion: Deletion::Chunk { id: *pack },
                };
                self.lmdb.deletion_wal.log_deletion(&mut txn, &entry)?;
                report.packs_rewritten += 1;
                report.bytes_freed += bytes;
                report.slices_freed += n;
            }
        }
        // What the old packs held, less what the new one takes.
        report.bytes_freed = report.bytes_freed.saturating_sub(written);
        self.lmdb.commit(txn)
    }
}
