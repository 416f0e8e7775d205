//! The data model of the design: Blob (a version of a key), Chunk (a deduplicated block of
//! content) and SealedSlice (one erasure-coded, encrypted fragment of a chunk), plus the
//! key and ref syntax users type.

pub mod blob;
pub mod chunk;
pub mod key;
pub mod meta;
pub mod nanos;
pub mod reference;
pub mod slice;
pub mod snapshot;
pub mod tree;

pub use blob::{Blob, BlobKind, ChunkRef};
pub use chunk::{ChunkKind, ChunkRecord};
pub use key::validate_key;
pub use meta::{FileMeta, VersionMeta};
pub use reference::{Ref, Selector, ToRef};
pub use slice::SealedSlice;
pub use snapshot::{snapshot_key, SnapshotInfo, SnapshotSummary};
pub use tree::{Entry, EntryKind, TreeRecord};
