//! Store maintenance: verify (and repair), gc, compaction and stats. Each streams over the LMDB
//! databases in pages, so memory stays bounded however large the store is.

pub mod backup;
pub mod compact;
pub mod gc;
pub mod repack;
pub mod stats;
pub mod verify;
mod verify_index;
mod verify_members;
mod verify_versions;

pub use compact::Compacted;
pub use gc::GcReport;
pub use stats::Stats;
pub use verify::{Damage, VerifyReport};

/// Records per transaction when streaming over a database.
pub(crate) const PAGE: usize = 256;
