//! verify: every slice hash, that every chunk can be rebuilt (and, unlocked, that it
//! decrypts to its id), every blob's hash and references, and (verify_index) every index row
//! and head against the records. With repair, missing
//! or corrupt slices are rebuilt from the others; repair needs no identity because erasure
//! coding works on ciphertext.

use std::collections::HashSet;

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::maintenance::verify_members::Members;
use crate::maintenance::PAGE;
use crate::model::{ChunkRecord, SealedSlice};
use crate::progress::Progress;
use crate::route::{DataRouter, ShardSet};
use crate::seal::{erasure, open_chunk};
use crate::store::lock::GcLock;

/// A problem verify found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Slices of a chunk missing or corrupt; `repaired` when rebuilt.
    Slices {
        /// Chunk id.
        chunk: Hash,
        /// Missing slice indexes.
        missing: Vec<usize>,
        /// Corrupt slice indexes.
        corrupt: Vec<usize>,
        /// True when repair rebuilt them.
        repaired: bool,
    },
    /// A chunk cannot be rebuilt: fewer than k intact slices, or it fails to decrypt.
    Chunk {
        /// Chunk id.
        chunk: Hash,
        /// Why.
        reason: String,
    },
    /// An index row disagrees with the version record it names (a key's history or heads).
    Index {
        /// The key the row is filed under, when readable.
        key: Option<String>,
        /// Why.
        reason: String,
        /// True when repair deleted the row (it named a version that is not stored).
        repaired: bool,
    },
    /// A blob record or a reference of it is damaged.
    Blob {
        /// The version.
        hash: Hash,
        /// Its key, when readable.
        key: Option<String>,
        /// Why.
        reason: String,
    },
}

impl Damage {
    /// True when repair undid it.
    pub fn is_repaired(&self) -> bool {
        // A
        matches!(
            self,
            Damage::Slices { repaired: true, .. } | Damage::Index { repaired: true, .. }
        )
    }
}

/// What verify checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Chunks checked.
    pub chunks: u64,
    /// Slices checked.
    pub slices: u64,
    /// Packs of small chunks checked (their slices; their members count as chunks).
    pub packs: u64,
    /// Blobs checked.
    pub blobs: u64,
    /// Chunks decrypted end to end (only when unlocked).
    pub decrypted: u64,
    /// Chunks no version references (gc frees them).
    pub unreferenced_chunks: u64,
    /// Problems found.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    /// True when nothing is damaged, or everything damaged was repaired.
    pub fn is_healthy(&self) -> bool {
        // A
        self.damage.iter().all(Damage::is_repaired)
    }

    /// Damage that could not be repaired.
    pub fn unrecoverable(&self) -> impl Iterator<Item = &Damage> {
        // A
        self.damage.iter().filter(|d| !d.is_repaired())
    }
}

impl Cas {
    /// Checks the whole store; with `repair`, rebuilds damaged slices. Progress counts chunks.
    pub fn verify(&self, repair: bool, progress: &dyn Progress) -> Result<VerifyReport> {
        // PA
        // Repair writes slices back: hold the gc lock like a put, so it never restores the
        // slices of a chunk gc is freeing (they would have no record and never be freed).
        let _lock = match repair {
            true => Some(GcLock::acquire(self.path(), false, &|| {
                progress.waiting("a gc is running")
            })?),
            false => None,
        };
        // Opening checked the data file already; a long-running caller's may have been cut
        // since, and pages past its end would kill the process rather than fail.
        self.lmdb.check_file()?;
        // Members are judged by what is stored now, not by a frame a read kept earlier.
        crate::seal::frame_cache::forget_all();
        let mut report = VerifyReport::default();
        let router = DataRouter::new(&self.lmdb);
        // In a cluster this store holds only the slices placement gives it.
        let cluster = self.in_cluster()?;
        let mut bad_chunks = Vec::new();
        let mut members = Members::default();
        progress.set_total(self.lmdb.chunks.len(&self.lmdb.read()?)?);
        let mut after = None;
        loop {
            let txn = self.lmdb.read()?;
            let page = self.lmdb.chunks.page(&txn, after, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            let mut fixes: Vec<Fix> = Vec::new();
            for (id, record) in &page {
                report.chunks += 1;
                let checked = match record {
                    Ok(record) => {
                        report.slices += record.slices.len() as u64;
                        // A pack is checked (its slices) but counted apart, as `stats` does.
                        if record.is_pack() {
                            report.chunks -= 1;
                            report.packs += 1;
                        } else if self.lmdb.chunks.refs(&txn, id)? == 0 {
                            report.unreferenced_chunks += 1;
                        }
                        match record.pack() {
                            // A member has no slices: its pack's are checked under its id.
                            Some(_) => self.check_member(&txn, id, cluster, &mut members)?,
                            None => self.check_chunk(&txn, &router, id, record, cluster, repair)?,
                        }
                    }
                    Err(e) => Checked::lost(e.to_string(), false),
                };
                tally(&mut report, &mut bad_chunks, &mut fixes, *id, checked);
                progress.advance(1);
            }
            drop(txn);
            if !fixes.is_empty() {
                let mut w = self.lmdb.write()?;
                for (id, index, bytes) in &fixes {
                    router.restore_slice(&mut w, id, *index, bytes)?;
                }
                self.lmdb.commit(w)?;
            }
            if members.full() {
                self.open_members(&mut members, &mut report, &mut bad_chunks)?;
            }
        }
        self.open_members(&mut members, &mut report, &mut bad_chunks)?;
        // A set: a lost pack can put thousands of members here, and every version's chunks
        // are looked up in it.
        let bad_chunks: HashSet<Hash> = bad_chunks.into_iter().collect();
        let gone = self.verify_blobs(&mut report, &bad_chunks, cluster, repair)?;
        self.verify_index(&mut report, repair, &gone)?;
        self.verify_log(&mut report)?;
        if self.is_unlocked() {
            self.verify_snapshots(&mut report)?;
        }
        tracing::info!(
            chunks = report.chunks,
            slices = report.slices,
            blobs = report.blobs,
            damage = report.damage.len(),
            "verify finished"
        );
        Ok(report)
    }

    /// Checks one chunk whose record was read: a pack member through its pack, any other
    /// chunk by its slices. With `repair`, damaged slices are rebuilt (written by `verify`).
    fn check_chunk(
        &self,
        txn: &crate::store::RoTxn,
        router: &DataRouter,
        id: &Hash,
        record: &ChunkRecord,
        cluster: bool,
        repair: bool,
    ) -> Result<Checked> {
        // PA
        let set = router.fetch_shards(txn, id, record, true)?;
        if cluster {
            return Ok(Checked {
                verdict: self.check_in_cluster(id, record, set, repair),
                decrypted: false,
            });
        }
        Ok(self.check_local(id, record, set, repair))
    }

    /// The verdict on a chunk of a cluster store, which holds only some of its slices: only
    /// corrupt ones are damage, repaired from slices the other nodes send.
    fn check_in_cluster(
        &self,
        id: &Hash,
        record: &ChunkRecord,
        set: ShardSet,
        repair: bool,
    ) -> Verdict {
        // PA
        if set.corrupt.is_empty() {
            return Verdict::Intact;
        }
        let repair = match repair {
            false => Repair::Skipped,
            true => match self.repair_from_cluster(id, record, &set.shards, &set.corrupt) {
                Ok(fixed) => Repair::Rebuilt(fixed),
                // The chunk may still be whole on the other nodes: not lost.
                Err(e) => Repair::Failed(e.to_string()),
            },
        };
        Verdict::Damaged {
            missing: Vec::new(),
            corrupt: set.corrupt,
            repair,
        }
    }

    /// The verdict on a chunk of a store of its own: it needs k intact slices and, unlocked,
    /// must open to its id; missing or corrupt slices are rebuilt from the others.
    fn check_local(&self, id: &Hash, record: &ChunkRecord, set: ShardSet, repair: bool) -> Checked {
        // PA
        let intact = set.shards.iter().filter(|s| s.is_some()).count();
        let damaged = !set.missing.is_empty() || !set.corrupt.is_empty();
        if intact < record.k as usize {
            let reason = format!(
                "only {intact} of {} slices intact, {} needed",
                record.slices.len(),
                record.k
            );
            return Checked::lost(reason, false);
        }
        let mut decrypted = false;
        // A pack has no plaintext of its own: its members are opened one by one.
        if let Some(keys) = self
            .keys_for(record.key_epoch)
            .ok()
            .filter(|_| !record.is_pack())
        {
            decrypted = true;
            if let Err(e) = open_chunk(keys, id, record, &set.shards) {
                return Checked::lost(e.to_string(), decrypted);
            }
        }
        if !damaged {
            return Checked {
                verdict: Verdict::Intact,
                decrypted,
            };
        }
        let repair = match repair {
            false => Repair::Skipped,
            true => match rebuild_slices(id, record, &set.shards) {
                Ok(rebuilt) => Repair::Rebuilt(
                    set.missing
                        .iter()
                        .chain(&set.corrupt)
                        .filter_map(|i| rebuilt.get(*i).map(|(_, b)| (*id, *i as u8, b.clone())))
                        .collect(),
                ),
                // Reported, not fatal: the rest of the store is still checked.
                Err(e) => Repair::Lost(e.to_string()),
            },
        };
        let verdict = Verdict::Damaged {
            missing: set.missing,
            corrupt: set.corrupt,
            repair,
        };
        Checked { verdict, decrypted }
    }

    /// True when verify opens pack member `member` on its own (on a store of its own, with
    /// the member's keys here), and so judges it by that rather than with its pack.
    pub(super) fn opens_alone(&self, member: &ChunkRecord, cluster: bool) -> bool {
        // A
        !cluster && self.keys_for(member.key_epoch).is_ok()
    }

    /// Checks a pack member: its pack is here. Unlocked and on a store of its own, it is
    /// queued in `members`, to be opened in pack order ([`Members`]).
    fn check_member(
        &self,
        txn: &crate::store::RoTxn,
        id: &Hash,
        cluster: bool,
        members: &mut Members,
    ) -> Result<Checked> {
        // PA
        let (pack, _, member) = match self.slices_holder(txn, id)? {
            Ok(holder) => holder,
            Err(e) => return Ok(Checked::lost(e.to_string(), false)),
        };
        if let Some(m) = member.filter(|m| self.opens_alone(m, cluster)) {
            if let Some((_, offset)) = m.pack() {
                members.defer(pack, offset, *id);
            }
        }
        Ok(Checked {
            verdict: Verdict::Intact,
            decrypted: false,
        })
    }

    /// Rebuilds this node's damaged slices of a chunk from slices the cluster sends.
    fn repair_from_cluster(
        &self,
        id: &Hash,
        record: &ChunkRecord,
        local: &[Option<&[u8]>],
        corrupt: &[usize],
    ) -> Result<Vec<Fix>> {
        // PA
        let remote = self.remote.as_ref().ok_or_else(|| {
            Error::Corrupt(format!(
                "chunk {}: damaged slices here; start this store's node (ouro node run) to repair them from the cluster",
                id.short()
            ))
        })?;
        let intact = local.iter().filter(|s| s.is_some()).count();
        let wanted: Vec<u8> = (0..local.len() as u8)
            .filter(|i| local[*i as usize].is_none())
            .collect();
        let fetched = remote.fetch(id, &wanted, (record.k as usize).saturating_sub(intact))?;
        let mut shards: Vec<Option<&[u8]>> = local.to_vec();
        DataRouter::add_fetched(
            record,
            &mut shards,
            fetched.iter().map(|(i, b)| (*i, b.as_slice())),
        );
        let rebuilt = rebuild_slices(id, record, &shards)?;
        Ok(corrupt
            .iter()
            .filter_map(|i| rebuilt.get(*i).map(|(_, b)| (*id, *i as u8, b.clone())))
            .collect())
    }
}

/// Records chunk `id` as one that cannot be read: its damage, and the id for the versions
/// using it (reported by `verify_blobs`).
pub(super) fn lost(
    report: &mut VerifyReport,
    bad_chunks: &mut Vec<Hash>,
    id: Hash,
    reason: String,
) {
    // A
    bad_chunks.push(id);
    report.damage.push(Damage::Chunk { chunk: id, reason });
}

/// A slice to write back: chunk, slice index, the slice's bytes.
type Fix = (Hash, u8, Vec<u8>);

/// What verify concluded about one chunk, and whether it decrypted it on the way; `tally`
/// files it into the report.
struct Checked {
    /// The conclusion.
    verdict: Verdict,
    /// The chunk was decrypted end to end (counted even when that failed).
    decrypted: bool,
}

impl Checked {
    /// A chunk that cannot be read, for `reason`.
    fn lost(reason: String, decrypted: bool) -> Self {
        // PA
        Checked {
            verdict: Verdict::Lost(reason),
            decrypted,
        }
    }
}

/// The verdict on one chunk.
enum Verdict {
    /// Nothing wrong found here.
    Intact,
    /// The chunk cannot be read: no record, too few intact slices, or it fails to decrypt.
    Lost(String),
    /// Slices missing or corrupt; `repair` says what was done about them.
    Damaged {
        /// Missing slice indexes.
        missing: Vec<usize>,
        /// Corrupt slice indexes.
        corrupt: Vec<usize>,
        /// What repair did.
        repair: Repair,
    },
}

/// What repair did for a chunk with damaged slices.
enum Repair {
    /// Not asked for.
    Skipped,
    /// The damaged slices rebuilt, to be written back.
    Rebuilt(Vec<Fix>),
    /// Repair failed, but the chunk is not lost for it (in a cluster, the other nodes may
    /// still hold it whole).
    Failed(String),
    /// Rebuilding showed the chunk cannot be read.
    Lost(String),
}

/// Files one chunk's verdict into the report: its damage (a lost chunk also in
/// `bad_chunks`, for the versions using it) and the slices repair rebuilt into `fixes`.
fn tally(
    report: &mut VerifyReport,
    bad_chunks: &mut Vec<Hash>,
    fixes: &mut Vec<Fix>,
    id: Hash,
    checked: Checked,
) {
    // PA
    report.decrypted += u64::from(checked.decrypted);
    let (missing, corrupt, repair) = match checked.verdict {
        Verdict::Intact => return,
        Verdict::Lost(reason) => return lost(report, bad_chunks, id, reason),
        Verdict::Damaged {
            missing,
            corrupt,
            repair,
        } => (missing, corrupt, repair),
    };
    let repaired = match repair {
        Repair::Skipped => false,
        Repair::Rebuilt(rebuilt) => {
            fixes.extend(rebuilt);
            true
        }
        Repair::Failed(reason) => {
            report.damage.push(Damage::Chunk { chunk: id, reason });
            false
        }
        Repair::Lost(reason) => {
            lost(report, bad_chunks, id, reason);
            false
        }
    };
    report.damage.push(Damage::Slices {
        chunk: id,
        missing,
        corrupt,
        repaired,
    });
}

/// Re-encodes a chunk's slices from any k intact shards; hashes must match the record, so a
/// repair can never write different bytes than were sealed.
pub(crate) fn rebuild_slices(
    id: &Hash,
    record: &crate::model::ChunkRecord,
    shards: &[Option<&[u8]>],
) -> Result<Vec<(Hash, Vec<u8>)>> {
    // PA
    let payload = erasure::reconstruct(record.k, record.m, record.sealed_len as usize, shards)?;
    let all = erasure::encode(&payload, record.k, record.m)?;
    let mut out = Vec::with_capacity(all.len());
    for (i, shard) in all.into_iter().enumerate() {
        let s = SealedSlice {
            header: crate::model::slice::SliceHeader {
                chunk: *id,
                index: i as u8,
                k: record.k,
                m: record.m,
            },
            payload: shard,
        };
        let bytes = s.encode()?;
        let h = Hash::of(&bytes);
        if record.slices.get(i) != Some(&h) {
            return Err(Error::Corrupt(format!(
                "rebuilt slice {i} of chunk {} does not match its hash",
                id.short()
            )));
        }
        out.push((h, bytes));
    }
    Ok(out)
}
