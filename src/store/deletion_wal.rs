//! DeletionWAL: an append-only log of every deletion, in commit order, that the cluster
//! propagates as tombstones so that no replica resurrects deleted data.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;
use crate::model::ChunkRecord;
use crate::store::{Db, RoTxn, RwTxn};

/// Type tag of a WAL entry.
pub const WAL_TAG: u8 = b'D';

/// What was deleted.
// `Resealed` carries two chunk records; entries are read a page at a time, so their size
// matters less than keeping the records unboxed as every other caller sees them.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deletion {
    /// `rm KEY`: the key and all its versions.
    Key {
        /// The key.
        key: String,
    },
    /// `rm KEY@VERSION`: one version.
    Version {
        /// The key.
        key: String,
        /// The version.
        hash: Hash,
    },
    /// gc freed a chunk and its slices (an embedded store's own record).
    Chunk {
        /// The chunk id.
        id: Hash,
    },
    /// gc on a cluster node condemned a sealing of a chunk that no live version uses:
    /// every node marks it (`src/store/condemned.rs`) and frees its slices once all
    /// members have applied this entry.
    Condemned {
        /// The chunk id.
        id: Hash,
        /// The condemned sealing (BLAKE3 of its record's canonical encoding).
        sealing: Hash,
    },
    /// A node replaced its record of chunk `id` with `record` by the one-sealing rule
    /// (`src/cas/sealing.rs`), and one of the two was a pack member. A member has no slices
    /// of its own, so no slice exchange would ever show the other nodes the winner: every
    /// node adopts it from this entry, before any of them frees the losing pack (freeing
    /// waits for every member to acknowledge the entries logged before the condemnation).
    Resealed {
        /// The chunk id.
        id: Hash,
        /// The winning record.
        record: ChunkRecord,
        /// The record of the pack the winner is in, when it is a member.
        pack: Option<ChunkRecord>,
    },
}

/// One WAL entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalEntry {
    /// When (ns).
    pub time: i64,
    /// What.
    pub deletion: Deletion,
}

/// Key of the floor record: the last compacted sequence (u64 BE). Sequence 0 is never an
/// entry's.
const FLOOR_KEY: [u8; 8] = [0; 8];

/// A big-endian u64 from the first 8 bytes (0 when shorter: never a valid sequence).
fn seq_of(b: &[u8]) -> u64 {
    // A
    let mut a = [0u8; 8];
    match b.get(..8) {
        Some(x) => {
            a.copy_from_slice(x);
            u64::from_be_bytes(a)
        }
        None => 0,
    }
}

/// The `deletion_wal` database: sequence number (u64 BE) -> WalEntry; key 0 holds the
/// compaction floor.
pub struct DeletionWal(pub(crate) Db);

impl DeletionWal {
    /// Appends an entry inside the transaction doing the deletion; returns its sequence.
    /// Sequences only grow, also across compaction (the floor record remembers the last
    /// compacted one), so peers' cursors stay meaningful.
    pub fn log_deletion(&self, txn: &mut RwTxn, entry: &WalEntry) -> Result<u64> {
        // PA
        let next = self.last_seq(txn)? + 1;
        self.0
            .put(txn, &next.to_be_bytes(), &codec::encode(WAL_TAG, entry)?)?;
        Ok(next)
    }

    /// The last compacted sequence (0 when nothing was compacted): a peer whose cursor is
    /// below it has missed tombstones.
    pub fn floor(&self, txn: &RoTxn) -> Result<u64> {
        // A
        Ok(self.0.get(txn, &FLOOR_KEY)?.map_or(0, seq_of))
    }

    /// The last sequence logged (or compacted), 0 when none.
    pub fn last_seq(&self, txn: &RoTxn) -> Result<u64> {
        // A
        // Entries compaction kept (condemnations still pending) may sort below the floor.
        let last = self.0.last(txn)?.map_or(0, |(k, _)| seq_of(k));
        Ok(last.max(self.floor(txn)?))
    }

    /// Entries held (not yet compacted).
    pub fn len(&self, txn: &RoTxn) -> Result<u64> {
        // A
        let n = self.0.len(txn)?;
        Ok(n.saturating_sub(u64::from(self.0.get(txn, &FLOOR_KEY)?.is_some())))
    }

    /// True when no entry is held.
    pub fn is_empty(&self, txn: &RoTxn) -> Result<bool> {
        // A
        Ok(self.len(txn)? == 0)
    }

    /// Drops the entries up to sequence `through` (every member has them), at most `limit`
    /// per call, except those `keep` names; returns how many it went over (kept ones too). The floor moves
    /// up with them; a kept entry stays below it, so that a node joining later (whose first
    /// pull starts at 0) still learns of it.
    pub fn compact(
        &self,
        txn: &mut RwTxn,
        through: u64,
        limit: usize,
        keep: &dyn Fn(&RoTxn, u64, &WalEntry) -> Result<bool>,
    ) -> Result<usize> {
        // PA
        let through = through.min(self.last_seq(txn)?);
        let old = self.floor(txn)?;
        if through <= old {
            return Ok(0);
        }
        let start = (old + 1).to_be_bytes();
        let end = through.to_be_bytes();
        let range = (
            std::ops::Bound::Included(&start[..]),
            std::ops::Bound::Included(&end[..]),
        );
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self
            .0
            .range(txn, &range)?
            .take(limit)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<std::result::Result<_, _>>()?;
        let reached = match entries.len() < limit {
            true => through,
            false => entries.last().map_or(old, |(k, _)| seq_of(k)),
        };
        for (k, v) in &entries {
            // An entry that does not decode is dropped with the rest: keeping it would help
            // no one, since no node can apply it.
            let kept = match codec::decode::<WalEntry>("deletion wal", WAL_TAG, v) {
                Ok(e) => keep(txn, seq_of(k), &e)?,
                Err(_) => false,
            };
            if !kept {
                self.0.delete(txn, k)?;
            }
        }
        self.0.put(txn, &FLOOR_KEY, &reached.to_be_bytes())?;
        Ok(entries.len())
    }

    /// Drops one entry (a kept condemnation whose chunk is settled).
    pub fn delete(&self, txn: &mut RwTxn, seq: u64) -> Result<()> {
        // PA
        if seq > 0 {
            self.0.delete(txn, &seq.to_be_bytes())?;
        }
        Ok(())
    }

    /// Entries with sequence > `after`, at most `limit`.
    pub fn since(&self, txn: &RoTxn, after: u64, limit: usize) -> Result<Vec<(u64, WalEntry)>> {
        // A
        // Sequences start at 1: the floor record (key 0) is never an entry.
        let start = after.saturating_add(1).max(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.0.range(
            txn,
            &(
                std::ops::Bound::Included(&start[..]),
                std::ops::Bound::Unbounded,
            ),
        )? {
            let (k, v) = item?;
            out.push((seq_of(k), codec::decode("deletion wal", WAL_TAG, v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
