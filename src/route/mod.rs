//! Stage 4: routing sealed slices to where they live. With no cluster every slice goes to
//! the LocalSealedSliceStore; the cluster's HashToNode placement plugs in here.

pub mod data_router;
pub mod hash_to_node;
pub mod remote;

pub use data_router::{DataRouter, ShardSet};
