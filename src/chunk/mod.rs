//! Stage 1 of the write pipeline: content-defined chunking (FastCDC v2020, seeded gear table).

pub mod cdc;

pub use cdc::{Chunker, ChunkingParams};

use std::io::Read;

use crate::error::{Error, Result};

/// Calls `f` with each chunk of `reader`. Inputs known to fit in one chunk buffer are read
/// whole and cut in memory: the streaming chunker allocates and zeroes a `max`-sized buffer,
/// which would dominate the cost of small files.
pub(crate) fn for_each_chunk(
    mut reader: Box<dyn Read + Send + '_>,
    size_hint: Option<u64>,
    params: ChunkingParams,
    seed: u64,
    mut f: impl FnMut(Vec<u8>) -> Result<()>,
) -> Result<()> {
    // A
    match size_hint {
        Some(n) if n <= params.max as u64 => {
            let mut data = Vec::with_capacity(n as usize + 1);
            (&mut reader)
                .take(params.max as u64 + 1)
                .read_to_end(&mut data)
                .map_err(Error::Input)?;
            if data.len() > params.max as usize {
                // The file grew since it was measured: stream it after all.
                for chunk in Chunker::new(std::io::Cursor::new(data).chain(reader), params, seed)? {
                    f(chunk?)?;
                }
                return Ok(());
            }
            let ranges = crate::chunk::cdc::cut_in_memory(&data, params, seed)?;
            // Most files are one chunk: hand over the buffer itself instead of a copy.
            if let [only] = ranges.as_slice() {
                if only.len() == data.len() {
                    return f(data);
                }
            }
            for range in ranges {
                f(data[range].to_vec())?;
            }
            Ok(())
        }
        _ => {
            for data in Chunker::new(reader, params, seed)? {
                f(data?)?;
            }
            Ok(())
        }
    }
}
