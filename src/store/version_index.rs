//! VersionIndex: each key's current heads and tombstone.

use serde::{Deserialize, Serialize};

/// First bytes of the keys the library keeps for itself (snapshots).
const RESERVED_KEYS: &[u8] = b".ouro/";

use crate::codec;
use crate::error::Result;
use crate::hash::Hash;
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

/// The `version_index` database: key -> KeyState.
pub struct VersionIndex(pub(crate) Db);

impl VersionIndex {
    /// The key's state, if the key was ever written.
    pub fn get(&self, txn: &RoTxn, key: &str) -> Result<Option<KeyState>> {
        // A
        self.0
            .get(txn, key.as_bytes())?
            .map(|b| codec::decode("key state", KEY_STATE_TAG, b))
            .transpose()
    }

    /// Replaces the key's state.
    pub fn put(&self, txn: &mut RwTxn, key: &str, state: &KeyState) -> Result<()> {
        // PA
        let mut s = state.clone();
        s.heads.sort();
        s.heads.dedup();
        Ok(self
            .0
            .put(txn, key.as_bytes(), &codec::encode(KEY_STATE_TAG, &s)?)?)
    }

    /// Deletes the key's state entirely (after gc removed every version of a deleted key).
    pub fn delete(&self, txn: &mut RwTxn, key: &str) -> Result<()> {
        // PA
        self.0.delete(txn, key.as_bytes())?;
        Ok(())
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
        self.collect_live(self.0.range(txn, &range)?, prefix, limit)
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
        self.collect_live(self.0.range(txn, &range)?, prefix, limit)
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
            let state: KeyState = codec::decode("key state", KEY_STATE_TAG, v)?;
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
