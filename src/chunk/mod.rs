//! Stage 1 of the write pipeline: content-defined chunking (FastCDC v2020, seeded gear table).

pub mod cdc;

pub use cdc::{Chunker, ChunkingParams};
