//! Stage 2 of the write pipeline: seal a chunk (compress, encrypt, erasure-code) into
//! SealedSlices, and the reverse.

pub mod cipher;
pub mod compress;
pub mod delta;
pub mod erasure;
pub mod frame_cache;
pub mod pack;
pub mod sealer;

pub use pack::seal_pack;
pub use sealer::{open_chunk, open_chunk_into, seal_chunk, SealParams, SealedChunk};
