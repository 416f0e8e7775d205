//! # ouroboros-db
//!
//! A content-addressed, versioned blob store: the library behind the `ouro` command.
//!
//! Data is addressed by BLAKE3 hashes and versioned in a git-like DAG of [`model::Blob`]s.
//! Content is cut into deduplicated chunks ([`chunk`]), each sealed ([`seal`]: zstd, or a
//! delta against the previous version's chunk, AES-256-GCM under keys wrapped for age
//! recipients, Reed-Solomon k+m) into SealedSlices, stored in a local LMDB store ([`store`])
//! and routed to where they live ([`route`]). [`Cas`] is the API.
//!
//! See `ARCHITECTURE.md` for the codemap and `FORMAT.md` for every on-disk record.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod buffers;
pub mod cas;
pub mod chunk;
pub mod codec;
pub mod crypto;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod maintenance;
pub mod model;
pub mod progress;
pub mod route;
pub mod seal;
pub mod snapshot;
/// The LMDB layer: one typed view per design component, private to the library. The cluster
/// crate reaches what it needs through [`Replica`], an embedder through [`Cas`]; the
/// workspace's white-box tests see it with the `internals` feature.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod store;
#[cfg(not(feature = "internals"))]
pub(crate) mod store;
mod threads;

#[doc(hidden)]
pub use cas::Replica;
pub use cas::{
    parse_ec, sealing_id, wins_over, Adopted, Cas, ChunkOffsets, ChunkReader, CreateOptions,
    FreeReport, MergeSource, PutItem, PutOptions, PutOutcome, RemoveOutcome, TreeEntry,
    VersionInfo, VersionReader,
};
pub use crypto::{Identity, Recipient};
pub use error::{Error, Result};
pub use hash::Hash;
pub use maintenance::{Compacted, Damage, GcReport, Stats, VerifyReport};
pub use model::reference::{format_time, parse_time};
pub use model::Blob;
pub use progress::{NoProgress, Progress};
pub use store::{PageUse, StoreConfig};
