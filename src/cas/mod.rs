//! CAS: the content-addressed, versioned blob store, as the design names it. This is the
//! main API of the library: create or open a store, unlock it with an age identity, then
//! put, get, log, merge, rm, verify, gc.
//!
//! ```
//! use ouroboros_db::{Cas, CreateOptions, Identity, PutOptions};
//! # fn main() -> Result<(), ouroboros_db::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let me = Identity::generate();
//! let cas = Cas::create(dir.path(), &CreateOptions::default(), &me)?;
//! let v1 = cas.put("notes.txt", &b"hello"[..], &PutOptions::default())?;
//! let mut out = Vec::new();
//! cas.get("notes.txt", &mut out)?;
//! assert_eq!(out, b"hello");
//! assert_eq!(cas.log("notes.txt", 10)?[0].hash, v1.hash);
//! # Ok(()) }
//! ```

mod browse;
mod cluster_records;
mod condemn;
pub(crate) mod delta;
mod get;
mod get_member;
mod history;
mod inventory_tree;
mod key_moves;
mod put;
pub(crate) mod put_sealed;
mod put_writer;
mod reader;
mod recipients;
mod remove;
mod replica;
mod resolve;
mod sealing;
mod slices;
mod sparse_put;
mod sync_tree;

use std::collections::BTreeMap;
use std::path::Path;

pub use browse::TreeEntry;
pub use condemn::{sealing_id, FreeReport};
pub use get::ChunkReader;
pub use history::{KeyEntry, MergeSource, VersionInfo};
pub use inventory_tree::{leaf_difference, Inventory, InventoryEntry};
pub use put::{PutItem, PutOptions, PutOutcome};
pub use reader::{ChunkOffsets, VersionReader};

/// What a cluster node needs of a store beyond the embedder's API: replication of versions
/// and deletions, slice hand-over and repair, the sync and inventory trees, condemnation,
/// and the LMDB views. Obtained with [`Cas::replica`]; an embedder needs none of it, so it
/// is kept out of the API documentation.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Replica<'c>(pub(crate) &'c Cas);

/// A `Replica`'s methods are written against the store they are a view of.
impl std::ops::Deref for Replica<'_> {
    type Target = Cas;

    fn deref(&self) -> &Cas {
        // A
        self.0
    }
}
/// The key of the `info` record in the `cluster` database: present = the store belongs to a
/// cluster (the library reads it, the cluster crate writes it).
#[doc(hidden)]
pub use crate::store::cluster_state::CLUSTER_INFO_KEY;
/// The DeletionWAL's entries, as replicas exchange them.
#[doc(hidden)]
pub use crate::store::deletion_wal::{Deletion, WalEntry};
/// The wrapped keys a replica seed carries.
#[doc(hidden)]
pub use crate::store::key_index::WrappedKey;
pub use remove::RemoveOutcome;
pub use replica::{ReplicaSeed, VersionRecord};
pub use sealing::{wins_over, Adopted};
pub use slices::{Acceptance, SliceDelivery};
pub use sync_tree::LEAF_DEPTH as SYNC_LEAF_DEPTH;

use crate::chunk::ChunkingParams;
use crate::crypto::{Identity, Recipient, StoreKeys};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::seal::SealParams;
use crate::store::meta::FORMAT_VERSION;
use crate::store::{Lmdb, StoreConfig};

/// Options fixed when a store is created.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Data slices per chunk (k).
    pub k: u8,
    /// Parity slices per chunk (m): any m slices of a chunk may be lost.
    pub m: u8,
    /// zstd level for new chunks.
    pub zstd_level: i32,
    /// FastCDC chunk sizes.
    pub chunking: ChunkingParams,
    /// Extra recipients (besides the creating identity) who can read the store.
    pub recipients: Vec<Recipient>,
}

impl Default for CreateOptions {
    /// 4+2 erasure coding (survives any 2 lost slices at 1.5x), zstd level 3, 1 MiB chunks.
    fn default() -> Self {
        // A
        CreateOptions {
            k: 4,
            m: 2,
            zstd_level: 3,
            chunking: ChunkingParams::default(),
            recipients: Vec::new(),
        }
    }
}

/// Parses an erasure-code spec `K+M` (e.g. `4+2`).
pub fn parse_ec(spec: &str) -> Result<(u8, u8)> {
    // A
    let bad = || {
        Error::InvalidArgument(format!(
            "erasure code {spec:?} must be K+M with 1 <= K <= 64, 0 <= M <= 64 (e.g. 4+2)"
        ))
    };
    let (k, m) = spec.split_once('+').ok_or_else(bad)?;
    let k: u8 = k.trim().parse().map_err(|_| bad())?;
    let m: u8 = m.trim().parse().map_err(|_| bad())?;
    if !(1..=64).contains(&k) || m > 64 {
        return Err(bad());
    }
    Ok((k, m))
}

/// An open store. Metadata operations (log, heads, ls, stats, verify of hashes) work on a
/// locked store; content operations need [`Cas::unlock`] with an identity.
///
/// An open store runs one thread of its own, which keeps the store pages the process maps
/// bounded (`src/store/map_watch.rs`); dropping the `Cas` stops it. Do not use a `Cas` in
/// a child process forked without `exec`: LMDB forbids it, and the thread is not there.
pub struct Cas {
    pub(crate) lmdb: Lmdb,
    pub(crate) config: StoreConfig,
    /// Unwrapped key bundles by epoch.
    pub(crate) keys: BTreeMap<u32, StoreKeys>,
    /// Where reads find slices this store does not hold (set when a cluster node runs).
    pub(crate) remote: Option<std::sync::Arc<dyn crate::route::remote::RemoteSlices>>,
}

/// Current time in nanoseconds since the epoch.
pub(crate) fn now_nanos() -> i64 {
    // A
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Cas {
    /// Creates a store in `dir` whose keys are wrapped for `identity` and any extra
    /// recipients; the returned store is unlocked.
    pub fn create(dir: &Path, opts: &CreateOptions, identity: &Identity) -> Result<Self> {
        // PA
        if Lmdb::exists(dir) {
            return Err(Error::AlreadyInitialised(dir.display().to_string()));
        }
        parse_ec(&format!("{}+{}", opts.k, opts.m))?;
        opts.chunking.validate()?;
        if !(1..=19).contains(&opts.zstd_level) {
            return Err(Error::InvalidArgument(format!(
                "zstd level {} must be 1..=19",
                opts.zstd_level
            )));
        }
        let lmdb = Lmdb::open(dir, true)?;
        let keys = StoreKeys::generate();
        let config = StoreConfig {
            format: FORMAT_VERSION,
            store_id: Hash(rand::random()),
            created: now_nanos(),
            k: opts.k,
            m: opts.m,
            zstd_level: opts.zstd_level,
            chunking: opts.chunking,
            current_epoch: 0,
        };
        let mut recipients = vec![identity.recipient()];
        recipients.extend(opts.recipients.iter().cloned());
        let mut txn = lmdb.write()?;
        lmdb.meta.put_config(&mut txn, &config)?;
        for r in &recipients {
            let w = WrappedKey {
                recipient: r.to_string(),
                wrapped: r.wrap(&keys.encode()?)?,
            };
            lmdb.key_index.put(&mut txn, 0, &r.fingerprint(), &w)?;
        }
        lmdb.commit(txn)?;
        let mut cas = Cas {
            lmdb,
            config,
            keys: BTreeMap::new(),
            remote: None,
        };
        cas.keys.insert(0, keys);
        crate::store::reserve::ensure(dir);
        Ok(cas)
    }

    /// True when `dir` holds a store (whether or not it opens).
    pub fn exists(dir: &Path) -> bool {
        // A
        Lmdb::exists(dir)
    }

    /// Opens an existing store, locked (no identity yet).
    pub fn open(dir: &Path) -> Result<Self> {
        // A
        let mut lmdb = Lmdb::open(dir, false)?;
        let mut config = lmdb.meta.config(&lmdb.read()?)?;
        if config.format < FORMAT_VERSION {
            lmdb = crate::store::upgrade::upgrade(dir, lmdb, config.format)?;
            config = lmdb.meta.config(&lmdb.read()?)?;
        }
        Ok(Cas {
            lmdb,
            config,
            keys: BTreeMap::new(),
            remote: None,
        })
    }

    /// Unwraps the store's keys with `identity`; fails with [`Error::Identity`] when the
    /// identity is not a recipient of the store.
    pub fn unlock(&mut self, identity: &Identity) -> Result<()> {
        // PA
        let fp = identity.recipient().fingerprint();
        let txn = self.lmdb.read()?;
        let mut keys = BTreeMap::new();
        for epoch in 0..=self.config.current_epoch {
            if let Some(w) = self.lmdb.key_index.get(&txn, epoch, &fp)? {
                let k = StoreKeys::decode(&identity.unwrap(&w.wrapped)?)?;
                keys.insert(epoch, k);
            }
        }
        if !keys.contains_key(&self.config.current_epoch) {
            return Err(Error::Identity(format!(
                "identity {} is not a recipient of this store (see `ouro recipient ls`)",
                identity.recipient()
            )));
        }
        tracing::debug!(epochs = keys.len(), "store unlocked");
        self.keys = keys;
        Ok(())
    }

    /// Makes reads ask `remote` for slices this store does not hold: how a store that
    /// belongs to a cluster reads chunks whose slices live on other nodes.
    pub fn set_remote(&mut self, remote: std::sync::Arc<dyn crate::route::remote::RemoteSlices>) {
        // A
        self.remote = Some(remote);
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        // A
        &self.config
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        // A
        self.lmdb.path()
    }

    /// The LMDB layer, for maintenance code and tests.
    pub(crate) fn lmdb(&self) -> &Lmdb {
        // A
        &self.lmdb
    }

    /// The cluster's handle on this store (replication, hand-over, repair, audits): not
    /// part of the embedder's API.
    #[doc(hidden)]
    pub fn replica(&self) -> Replica<'_> {
        // A
        Replica(self)
    }

    /// Fails when another process rotated the store's keys since this handle was opened:
    /// sealing under the old epoch would keep data readable by a removed recipient.
    pub(crate) fn check_epoch(&self, txn: &crate::store::RoTxn) -> Result<()> {
        // PA
        let on_disk = self.lmdb.meta.config(txn)?.current_epoch;
        if on_disk != self.config.current_epoch {
            return Err(Error::Identity(format!(
                "the store's keys were rotated (epoch {} -> {on_disk}) since it was opened: open it again",
                self.config.current_epoch
            )));
        }
        Ok(())
    }

    pub(crate) fn current_keys(&self) -> Result<&StoreKeys> {
        // A
        self.keys
            .get(&self.config.current_epoch)
            .ok_or(Error::Locked)
    }

    pub(crate) fn keys_for(&self, epoch: u32) -> Result<&StoreKeys> {
        // A
        if self.keys.is_empty() {
            return Err(Error::Locked);
        }
        self.keys.get(&epoch).ok_or_else(|| {
            Error::Identity(format!("this identity cannot unwrap key epoch {epoch}"))
        })
    }

    /// True once [`Cas::unlock`] (or create) gave the store its keys.
    pub fn is_unlocked(&self) -> bool {
        // A
        !self.keys.is_empty()
    }

    pub(crate) fn seal_params(&self) -> SealParams {
        // A
        SealParams {
            k: self.config.k,
            m: self.config.m,
            zstd_level: self.config.zstd_level,
        }
    }
}

impl<'c> Replica<'c> {
    /// The LMDB layer. It lives as long as the store handle, not as this `Replica`.
    #[cfg(not(feature = "internals"))]
    pub(crate) fn lmdb(&self) -> &'c Lmdb {
        // A
        self.0.lmdb()
    }

    /// The LMDB layer, for the workspace's white-box tests (feature `internals`).
    #[cfg(feature = "internals")]
    pub fn lmdb(&self) -> &'c Lmdb {
        // A
        self.0.lmdb()
    }
}

/// A store in a temp dir, and a version's content, for the library's unit tests.
#[cfg(test)]
pub(crate) mod test_store {
    use crate::{Cas, CreateOptions, Identity};

    /// A new store with the default options in a temp dir (kept alive by the first value).
    pub(crate) fn store() -> (tempfile::TempDir, Cas) {
        let dir = tempfile::tempdir().unwrap();
        let cas =
            Cas::create(dir.path(), &CreateOptions::default(), &Identity::generate()).unwrap();
        (dir, cas)
    }

    /// The content of the version `r` names.
    pub(crate) fn get(cas: &Cas, r: &str) -> Vec<u8> {
        let mut out = Vec::new();
        cas.get(r, &mut out).unwrap();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_specs() {
        assert_eq!(parse_ec("4+2").unwrap(), (4, 2));
        assert_eq!(parse_ec("1+0").unwrap(), (1, 0));
        for bad in ["4", "0+2", "4+-1", "a+b", "65+1", "4+2+1"] {
            assert!(parse_ec(bad).is_err(), "{bad}");
        }
    }
}
