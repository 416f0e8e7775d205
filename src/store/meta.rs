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
pub const FORMAT_VERSION: u32 = 4;
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
        if c.format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                found: c.format,
                supported: FORMAT_VERSION,
            });
        }
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
        Ok(self.0.put(txn, CONFIG_KEY, &codec::encode(CONFIG_TAG, c))?)
    }
}
