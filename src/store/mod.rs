//! Stage 3: the local key/value store on LMDB (heed). One named database per design
//! component; every component here is a thin typed view that works inside the caller's
//! transaction, so a put or an rm commits all its records atomically.

pub mod blob_log;
pub mod blob_store;
pub mod bundle;
pub mod chunk_index;
pub mod cluster_state;
pub mod condemned;
pub mod data_file;
pub mod deletion_wal;
pub mod key_index;
pub mod key_to_hash;
pub mod lmdb;
pub mod local_sealed_slice_store;
pub mod lock;
pub(crate) mod map_watch;
pub mod mapped_pages;
pub mod meta;
pub mod open_lock;
pub mod parent_child;
pub mod removed;
pub mod reserve;
pub(crate) mod sequence;
pub mod upgrade;
pub mod upgrade_keys;
pub mod version_index;

pub use lmdb::{Lmdb, PageUse, RoTxn, RwTxn};
pub use meta::StoreConfig;

pub(crate) type Db = heed::Database<'static, heed::types::Bytes, heed::types::Bytes>;

/// Iterator over raw `(key, value)` pairs of one database.
pub(crate) type KvIter<'t> = Box<dyn Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>> + 't>;

/// Iterates a database from the start, or from just after `after`: how every component
/// pages through its records in short transactions.
pub(crate) fn iter_after<'t>(
    db: &Db,
    txn: &'t RoTxn,
    after: Option<&[u8]>,
) -> crate::error::Result<KvIter<'t>> {
    // A
    Ok(match after {
        None => Box::new(db.iter(txn)?),
        Some(a) => Box::new(db.range(
            txn,
            &(std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded),
        )?),
    })
}
