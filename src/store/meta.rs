//! Store configuration, written once at init.

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkingParams;
use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{Db, RoTxn, RwTxn};

/// Type tag of the configuration record.
pub const CONFIG_TAG: u8 = b'M';
/// On-disk format version of stores written by this build.
pub const FORMAT_VERSION: u32 = 10;
/// Oldest format this build opens: an older store is upgraded to 10 when it is opened
/// ([`crate::store::upgrade`]); 7 lacks only deltas, 8 names versions by hash in its
/// indexes, and 9 names keys by their path in each version's history row.
pub const OLDEST_FORMAT: u32 = 7;
const CONFIG_KEY: &[u8] = b"config";
const LOG_ID_KEY: &[u8] = b"log_id";

/// Everything fixed at `init`: format, erasure code, compression, chunking, key epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// On-disk format version.
    pub format: u32,
    /// Random id of this store.
    pub store_id: Hash,
    /// Creation time (ns since the epoch).
    pub created: i64,
    /// Data slices per chunk.
    pub k: u8,
    /// Parity slices per chunk.
    pub m: u8,
    /// zstd level for new chunks.
    pub zstd_level: i32,
    /// FastCDC sizes.
    pub chunking: ChunkingParams,
    /// Key epoch used for new chunks.
    pub current_epoch: u32,
}

impl StoreConfig {
    /// Checks the values `init` would have accepted: a damaged record (`k = 0`, `m = 127`)
    /// must stop the store from opening rather than seal or rebuild chunks with it.
    pub fn validate(&self) -> Result<()> {
        // A
        let damaged = |reason: String| {
            Error::malformed(
                "store config",
                format!(
                    "{reason}: the store's configuration is damaged (restore it from a backup)"
                ),
            )
        };
        if !(1..=64).contains(&self.k) || self.m > 64 {
            return Err(damaged(format!(
                "erasure code {}+{} is out of range (1 <= k <= 64, m <= 64)",
                self.k, self.m
            )));
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err(damaged(format!(
                "zstd level {} is out of range (1-19)",
                self.zstd_level
            )));
        }
        self.chunking.validate().map_err(|e| damaged(e.to_string()))
    }
}

/// The `meta` database.
pub struct Meta(pub(crate) Db);

impl Meta {
    /// Reads the configuration, checking the format version.
    pub fn config(&self, txn: &RoTxn) -> Result<StoreConfig> {
        // A
        let bytes = self
            .0
            .get(txn, CONFIG_KEY)?
            .ok_or_else(|| Error::NotInitialised("store has no configuration".into()))?;
        let c: StoreConfig = codec::decode("config", CONFIG_TAG, bytes)?;
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&c.format) {
            return Err(Error::UnsupportedFormat {
                found: c.format,
                supported: FORMAT_VERSION,
            });
        }
        c.validate()?;
        Ok(c)
    }

    /// Records when gc last finished (ns since the epoch).
    pub fn put_last_gc(&self, txn: &mut RwTxn, time: i64) -> Result<()> {
        // A
        Ok(self.0.put(txn, b"last_gc", &time.to_le_bytes())?)
    }

    /// The id of this store's logs (blob log, DeletionWAL), created on first use.
    pub fn log_id(&self, txn: &RoTxn) -> Result<Option<Hash>> {
        // A
        Ok(self
            .0
            .get(txn, LOG_ID_KEY)?
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Hash))
    }

    /// Sets the id of this store's logs.
    pub fn put_log_id(&self, txn: &mut RwTxn, id: &Hash) -> Result<()> {
        // A
        Ok(self.0.put(txn, LOG_ID_KEY, &id.0)?)
    }

    /// Writes the configuration.
    pub fn put_config(&self, txn: &mut RwTxn, c: &StoreConfig) -> Result<()> {
        // A
        Ok(self
            .0
            .put(txn, CONFIG_KEY, &codec::encode(CONFIG_TAG, c)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(k: u8, m: u8) -> StoreConfig {
        StoreConfig {
            format: FORMAT_VERSION,
            store_id: Hash([0; 32]),
            created: 0,
            k,
            m,
            zstd_level: 3,
            chunking: ChunkingParams::default(),
            current_epoch: 0,
        }
    }

    #[test]
    fn damaged_erasure_codes_are_refused() {
        assert!(config(4, 2).validate().is_ok());
        assert!(config(1, 0).validate().is_ok());
        for (k, m) in [(0, 2), (4, 127), (65, 1), (255, 255)] {
            let e = config(k, m).validate().unwrap_err();
            assert!(matches!(e, Error::Malformed { .. }), "{e}");
            assert!(e.to_string().contains(&format!("{k}+{m}")), "{e}");
        }
        let mut c = config(4, 2);
        c.zstd_level = 0;
        assert!(c.validate().is_err());
    }
}
