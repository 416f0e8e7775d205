//! VersionIndex: each key's number, current heads and tombstone. The number (given once,
//! never again) names the key in its `key_to_hash` rows, so a key's path is stored once
//! instead of once per version.

use serde::{Deserialize, Serialize};

/// First bytes of the keys the library keeps for itself (snapshots).
const RESERVED_KEYS: &[u8] = b".ouro/";

/// `meta` key of the next key number (`u64` little-endian).
const NEXT_ID_KEY: &[u8] = b"next_key_id";

use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
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

/// The `version_index` database: key -> its number (u64 BE) ‖ encoded KeyState. Rows are
/// never deleted, so a key keeps its number for the store's life.
#[derive(Clone, Copy)]
pub struct VersionIndex {
    /// The rows.
    pub(crate) rows: Db,
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
pub(crate) fn value(id: u64, state: &KeyState) -> Result<Vec<u8>> {
    // A
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&codec::encode(KEY_STATE_TAG, state)?);
    Ok(v)
}

/// Decodes a row's value.
pub(crate) fn decode(value: &[u8]) -> Result<(u64, KeyState)> {
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
        self.rows
            .get(txn, key.as_bytes())?
            .map(|b| decode(b).map(|(_, s)| s))
            .transpose()
    }

    /// The key's number, if the key was ever written.
    pub(crate) fn id(&self, txn: &RoTxn, key: &str) -> Result<Option<u64>> {
        // A
        self.rows
            .get(txn, key.as_bytes())?
            .map(|b| split(b).map(|(id, _)| id))
            .transpose()
    }

    /// The key's number, given now (with an empty state) if the key has none yet.
    pub(crate) fn id_or_new(&self, txn: &mut RwTxn, key: &str) -> Result<u64> {
        // PA
        if let Some(id) = self.id(txn, key)? {
            return Ok(id);
        }
        let id = self.sequence().take(txn)?;
        self.rows
            .put(txn, key.as_bytes(), &value(id, &KeyState::default())?)?;
        Ok(id)
    }

    /// Replaces the key's state, keeping its number.
    pub fn put(&self, txn: &mut RwTxn, key: &str, state: &KeyState) -> Result<()> {
        // PA
        let id = self.id_or_new(txn, key)?;
        let mut s = state.clone();
        s.heads.sort();
        s.heads.dedup();
        Ok(self.rows.put(txn, key.as_bytes(), &value(id, &s)?)?)
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
        self.collect_live(self.rows.range(txn, &range)?, prefix, limit)
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
        let start: &[u8] = after.map(str::as_bytes).unwrap_or(prefix.as_bytes());
        // LMDB rejects empty keys, so an empty start means "from the beginning".
        let range = (
            match (after.is_some(), start.is_empty()) {
                (_, true) => std::ops::Bound::Unbounded,
                (true, false) => std::ops::Bound::Excluded(start),
                (false, false) => std::ops::Bound::Included(start),
            },
            std::ops::Bound::Unbounded,
        );
        self.collect_live(self.rows.range(txn, &range)?, prefix, limit)
    }

    /// Collects live keys from an iterator positioned at or before the first candidate.
    fn collect_live<'t>(
        &self,
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
            let (_, state) = decode(v)?;
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

    proptest! {
        #[test]
        fn values_round_trip(id in any::<u64>(), n in 0usize..4, deleted in any::<Option<i64>>()) {
            let state = KeyState { heads: (0..n).map(|i| Hash([i as u8; 32])).collect(), deleted };
            let v = value(id, &state).unwrap();
            prop_assert_eq!(decode(&v).unwrap(), (id, state));
            prop_assert!(split(&v[..7]).is_err());
        }
    }

    #[test]
    fn a_value_is_pinned() {
        let state = KeyState {
            heads: vec![Hash([7; 32])],
            deleted: None,
        };
        // The number, the tag 'H', the record's version 1, one head, no deletion.
        let mut want = vec![0, 0, 0, 0, 0, 0, 1, 2, b'H', 1, 1];
        want.extend_from_slice(&[7; 32]);
        want.push(0);
        assert_eq!(value(0x0102, &state).unwrap(), want);
    }
}
