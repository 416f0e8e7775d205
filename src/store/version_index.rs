//! VersionIndex: each key's number, current heads and tombstone. The number (given once,
//! never again) names the key in its `key_to_hash` rows, so a key's path is stored once
//! instead of once per version; heads are kept as their blob log sequences (2-3 bytes each
//! instead of 32), since each put of a tree rewrites most of this index's pages.

use serde::{Deserialize, Serialize};

/// First bytes of the keys the library keeps for itself (snapshots).
const RESERVED_KEYS: &[u8] = b".ouro/";

/// `meta` key of the next key number (`u64` little-endian).
const NEXT_ID_KEY: &[u8] = b"next_key_id";

use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::blob_store::BlobStore;
use crate::store::sequence::{seq_of, Sequence};
use crate::store::{Db, RoTxn, RwTxn};

/// Type tag of a key state record.
pub const KEY_STATE_TAG: u8 = b'H';

/// The state of one key: its heads (several after concurrent writes) and, when removed, the
/// tombstone time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// Current heads, sorted.
    pub heads: Vec<Hash>,
    /// Set by `rm KEY`: when the key was deleted. Cleared by the next put.
    pub deleted: Option<i64>,
}

/// A head as stored: the version's blob log sequence, or its hash when it has none (a head
/// whose record is not stored: damage, kept as it was rather than lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredHead {
    /// The version's sequence in `blob_log`.
    Seq(u64),
    /// The version's hash.
    Hash(Hash),
}

/// A KeyState as stored (tag `H`): heads as [`StoredHead`]s, in the order of their hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    /// Current heads.
    pub heads: Vec<StoredHead>,
    /// Set by `rm KEY`: when the key was deleted.
    pub deleted: Option<i64>,
}

/// The `version_index` database: key -> its number (u64 BE) ‖ encoded StoredState. Rows
/// are never deleted, so a key keeps its number for the store's life.
#[derive(Clone, Copy)]
pub struct VersionIndex {
    /// The rows.
    pub(crate) rows: Db,
    /// The blob records, which give each head's hash.
    pub(crate) blobs: BlobStore,
    /// The `key_to_hash` rows, which start with a key's number: the last one in use.
    pub(crate) numbered: Db,
    /// The store's `meta` database, which keeps numbers from coming back.
    pub(crate) meta: Db,
}

/// Splits a row's value into the key's number and its encoded state.
pub(crate) fn split(value: &[u8]) -> Result<(u64, &[u8])> {
    // A
    if value.len() < 8 {
        return Err(Error::malformed("key state", "no key number"));
    }
    let (id, state) = value.split_at(8);
    Ok((seq_of("key number", id)?, state))
}

/// The value of a key numbered `id` in `state`.
pub(crate) fn value(id: u64, state: &StoredState) -> Result<Vec<u8>> {
    // A
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&codec::encode(KEY_STATE_TAG, state)?);
    Ok(v)
}

/// The range of keys from `prefix` on, or after `after` when given. LMDB rejects empty keys,
/// so an empty start means "from the beginning".
pub(crate) fn keys_after<'a>(
    prefix: &'a str,
    after: Option<&'a str>,
) -> (std::ops::Bound<&'a [u8]>, std::ops::Bound<&'a [u8]>) {
    // A
    let start: &[u8] = after.map(str::as_bytes).unwrap_or(prefix.as_bytes());
    let from = match (after.is_some(), start.is_empty()) {
        (_, true) => std::ops::Bound::Unbounded,
        (true, false) => std::ops::Bound::Excluded(start),
        (false, false) => std::ops::Bound::Included(start),
    };
    (from, std::ops::Bound::Unbounded)
}

/// Decodes a row's value.
pub(crate) fn decode(value: &[u8]) -> Result<(u64, StoredState)> {
    // A
    let (id, state) = split(value)?;
    Ok((id, codec::decode("key state", KEY_STATE_TAG, state)?))
}

impl VersionIndex {
    /// The numbering of keys: from 1, never handing out a number twice.
    pub(crate) fn sequence(&self) -> Sequence {
        // A
        Sequence {
            db: self.numbered,
            meta: self.meta,
            mark: NEXT_ID_KEY,
            first: 1,
        }
    }

    /// The key's state, if the key was ever written.
    pub fn get(&self, txn: &RoTxn, key: &str) -> Result<Option<KeyState>> {
        // A
        Ok(self.get_numbered(txn, key)?.map(|(_, state)| state))
    }

    /// The key's number and state, if the key was ever written: [`Self::id`] and
    /// [`Self::get`] in one lookup, for a put that then writes both its history row and
    /// its state.
    pub(crate) fn get_numbered(&self, txn: &RoTxn, key: &str) -> Result<Option<(u64, KeyState)>> {
        // A
        match self.rows.get(txn, key.as_bytes())? {
            Some(v) => {
                let (id, _) = split(v)?;
                Ok(Some((id, self.state_of(txn, key.as_bytes(), v, true)?)))
            }
            None => Ok(None),
        }
    }

    /// The state a row's value holds, its heads named by hash. A head whose log row is lost
    /// or damaged is an error when `strict` (reading, writing or removing the key: its other
    /// heads alone would hide a conflict, and a put would erase the damage), and is left out
    /// with a warning otherwise (listings). verify reports it either way.
    pub(crate) fn state_of(
        &self,
        txn: &RoTxn,
        key: &[u8],
        value: &[u8],
        strict: bool,
    ) -> Result<KeyState> {
        // A
        let (state, lost) = self.resolve(txn, decode(value)?.1);
        for (seq, damage) in lost {
            let key = String::from_utf8_lossy(key);
            let why = damage.unwrap_or_else(|| "no record".to_string());
            if strict {
                return Err(Error::Corrupt(format!(
                    "key {key:?}: a head (blob log sequence {seq}) has {why}; `ouro verify` reports it"
                )));
            }
            tracing::warn!(%key, seq, why, "a head is lost");
        }
        Ok(state)
    }

    /// A stored state with its heads named by hash, and the heads that could not be: their
    /// log sequence, and the error when the row is damaged rather than gone.
    pub(crate) fn resolve(
        &self,
        txn: &RoTxn,
        stored: StoredState,
    ) -> (KeyState, Vec<(u64, Option<String>)>) {
        // A
        let mut heads = Vec::with_capacity(stored.heads.len());
        let mut lost = Vec::new();
        for head in stored.heads {
            match head {
                StoredHead::Hash(h) => heads.push(h),
                StoredHead::Seq(seq) => match self.blobs.hash_at(txn, seq) {
                    Ok(Some(h)) => heads.push(h),
                    Ok(None) => lost.push((seq, None)),
                    Err(e) => lost.push((seq, Some(e.to_string()))),
                },
            }
        }
        let state = KeyState {
            heads,
            deleted: stored.deleted,
        };
        (state, lost)
    }

    /// `state` as stored: heads sorted by hash and named by their log sequences.
    pub(crate) fn stored(&self, txn: &RoTxn, state: &KeyState) -> Result<StoredState> {
        // A
        self.stored_knowing(txn, state, None)
    }

    /// [`Self::stored`], where the head `known` (a version the caller has just logged, with
    /// its sequence) needs no lookup.
    fn stored_knowing(
        &self,
        txn: &RoTxn,
        state: &KeyState,
        known: Option<(Hash, u64)>,
    ) -> Result<StoredState> {
        // A
        let mut hashes = state.heads.clone();
        hashes.sort();
        hashes.dedup();
        let mut heads = Vec::with_capacity(hashes.len());
        for h in hashes {
            let seq = match known {
                Some((k, seq)) if k == h => Some(seq),
                _ => self.blobs.seq(txn, &h)?,
            };
            heads.push(match seq {
                Some(seq) => StoredHead::Seq(seq),
                None => StoredHead::Hash(h),
            });
        }
        Ok(StoredState {
            heads,
            deleted: state.deleted,
        })
    }

    /// The key's number, if the key was ever written.
    pub(crate) fn id(&self, txn: &RoTxn, key: &str) -> Result<Option<u64>> {
        // A
        self.rows
            .get(txn, key.as_bytes())?
            .map(|b| split(b).map(|(id, _)| id))
            .transpose()
    }

    /// The keys numbered `ids`, found in one pass over every row: only for naming keys in a
    /// damage report.
    pub(crate) fn keys_of(
        &self,
        txn: &RoTxn,
        ids: &std::collections::HashSet<u64>,
    ) -> Result<std::collections::HashMap<u64, String>> {
        // A
        let mut out = std::collections::HashMap::new();
        for item in self.rows.iter(txn)? {
            let (k, v) = item?;
            if let Ok((n, _)) = split(v) {
                if ids.contains(&n) {
                    out.insert(n, String::from_utf8_lossy(k).into_owned());
                }
            }
        }
        Ok(out)
    }

    /// The key's number, given now (with an empty state) if the key has none yet.
    pub(crate) fn id_or_new(&self, txn: &mut RwTxn, key: &str) -> Result<u64> {
        // PA
        if let Some(id) = self.id(txn, key)? {
            return Ok(id);
        }
        let id = self.sequence().take(txn)?;
        self.rows
            .put(txn, key.as_bytes(), &value(id, &StoredState::default())?)?;
        Ok(id)
    }

    /// Replaces the key's state, keeping its number.
    pub fn put(&self, txn: &mut RwTxn, key: &str, state: &KeyState) -> Result<()> {
        // PA
        let id = self.id_or_new(txn, key)?;
        self.put_numbered(txn, key, id, state, None)
    }

    /// Replaces the state of the key numbered `id` (its number from
    /// [`Self::get_numbered`], or a new one from [`Self::sequence`] for a key without a
    /// row); `known` is a head the caller has just logged, with its sequence.
    pub(crate) fn put_numbered(
        &self,
        txn: &mut RwTxn,
        key: &str,
        id: u64,
        state: &KeyState,
        known: Option<(Hash, u64)>,
    ) -> Result<()> {
        // PA
        let stored = self.stored_knowing(txn, state, known)?;
        Ok(self.rows.put(txn, key.as_bytes(), &value(id, &stored)?)?)
    }

    /// Live keys under `prefix` from `start` (inclusive; `None` = the first), at most `limit`.
    pub fn list_from(
        &self,
        txn: &RoTxn,
        prefix: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, KeyState)>> {
        // A
        let from = start.unwrap_or(prefix);
        if from.is_empty() {
            return self.list(txn, prefix, None, limit);
        }
        let range = (
            std::ops::Bound::Included(from.as_bytes()),
            std::ops::Bound::Unbounded,
        );
        self.collect_live(txn, self.rows.range(txn, &range)?, prefix, limit)
    }

    /// Live keys (not deleted, at least one head) under `prefix`, in order, after `after`,
    /// at most `limit`: listings stream instead of loading every key.
    pub fn list(
        &self,
        txn: &RoTxn,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, KeyState)>> {
        // A
        let range = keys_after(prefix, after);
        self.collect_live(txn, self.rows.range(txn, &range)?, prefix, limit)
    }

    /// Keys under `prefix` removed by `rm` (deleted, not put again since): a backup stores
    /// their files again, even unchanged, so that each key holds its file once more.
    pub(crate) fn deleted_under(
        &self,
        txn: &RoTxn,
        prefix: &str,
    ) -> Result<std::collections::HashSet<String>> {
        // A
        let mut out = std::collections::HashSet::new();
        for item in self.rows.prefix_iter(txn, prefix.as_bytes())? {
            let (k, v) = item?;
            if decode(v)?.1.deleted.is_some() {
                out.insert(String::from_utf8_lossy(k).into_owned());
            }
        }
        Ok(out)
    }

    /// Collects live keys from an iterator positioned at or before the first candidate.
    fn collect_live<'t>(
        &self,
        txn: &RoTxn,
        iter: impl Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>>,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, KeyState)>> {
        // A
        // Reserved keys (snapshots) are listed only when asked for by their own prefix:
        // users' listings and the mount's key tree show the user's keys.
        let reserved = |k: &[u8]| {
            k.starts_with(RESERVED_KEYS) && !prefix.as_bytes().starts_with(RESERVED_KEYS)
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            if reserved(k) {
                continue;
            }
            let state = self.state_of(txn, k, v, false)?;
            if state.deleted.is_some() || state.heads.is_empty() {
                continue;
            }
            out.push((String::from_utf8_lossy(k).into_owned(), state));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head() -> impl Strategy<Value = StoredHead> {
        prop_oneof![
            any::<u64>().prop_map(StoredHead::Seq),
            any::<[u8; 32]>().prop_map(|h| StoredHead::Hash(Hash(h))),
        ]
    }

    proptest! {
        #[test]
        fn values_round_trip(
            id in any::<u64>(),
            heads in prop::collection::vec(head(), 0..4),
            deleted in any::<Option<i64>>(),
        ) {
            let state = StoredState { heads, deleted };
            let v = value(id, &state).unwrap();
            prop_assert_eq!(decode(&v).unwrap(), (id, state));
            prop_assert!(split(&v[..7]).is_err());
        }
    }

    #[test]
    fn a_value_is_pinned() {
        let state = StoredState {
            heads: vec![StoredHead::Seq(300), StoredHead::Hash(Hash([7; 32]))],
            deleted: Some(-1),
        };
        // The number; the tag 'H' and record version 1; two heads: variant 0 and 300 as a
        // varint, variant 1 and 32 bytes; Some(-1) as a zigzag varint.
        let mut want = vec![0, 0, 0, 0, 0, 0, 1, 2, b'H', 1, 2, 0, 0xac, 0x02, 1];
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[1, 1]);
        assert_eq!(value(0x0102, &state).unwrap(), want);
    }
}
