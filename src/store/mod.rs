//! Stage 3: the local key/value store on LMDB (heed). One named database per design
//! component; every component here is a thin typed view that works inside the caller's
//! transaction, so a put or an rm commits all its records atomically.

pub mod blob_store;
pub mod chunk_index;
pub mod deletion_wal;
pub mod key_index;
pub mod key_to_hash;
pub mod lmdb;
pub mod local_sealed_slice_store;
pub mod lock;
pub mod meta;
pub mod parent_child;
pub mod removed;
pub mod version_index;

pub use lmdb::{Lmdb, RoTxn, RwTxn};
pub use meta::StoreConfig;

type Db = heed::Database<'static, heed::types::Bytes, heed::types::Bytes>;
