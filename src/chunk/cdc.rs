//! FastCDC v2020 chunking over any reader, with the store's secret seed and size limits.
//! Cut points are part of the format (they decide dedup), so the parameters are pinned per
//! store and by test vectors.

use std::io::Read;

use fastcdc::v2020::Normalization;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Minimum, average and maximum chunk sizes of a store, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkingParams {
    /// No chunk is shorter, except the last one of a blob.
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// No chunk is longer; also the chunker's buffer size.
    pub max: u32,
}

impl Default for ChunkingParams {
    /// 512 KiB / 1 MiB / 4 MiB: see README "Chunk size" for the dedup-against-speed figures.
    fn default() -> Self {
        // A
        ChunkingParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkingParams {
    /// Checks the limits FastCDC imposes (even sizes, min <= avg <= max, ranges).
    pub fn validate(&self) -> Result<()> {
        // A
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (fastcdc::v2020::MINIMUM_MIN..=fastcdc::v2020::MINIMUM_MAX).contains(&min)
            && (fastcdc::v2020::AVERAGE_MIN..=fastcdc::v2020::AVERAGE_MAX).contains(&avg)
            && (fastcdc::v2020::MAXIMUM_MIN..=fastcdc::v2020::MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "chunk sizes {min}/{avg}/{max} are not valid: need even sizes with \
                 64 B..1 MiB <= 256 B..4 MiB <= 1 KiB..16 MiB (min <= avg <= max)"
            )))
        }
    }
}

/// Cut points of an in-memory buffer: the same boundaries [`Chunker`] finds when streaming
/// the same bytes, without its `max`-sized buffer.
pub fn cut_in_memory(
    data: &[u8],
    params: ChunkingParams,
    seed: u64,
) -> Result<Vec<std::ops::Range<usize>>> {
    // A
    params.validate()?;
    Ok(fastcdc::v2020::FastCDC::with_level_and_seed(
        data,
        params.min as usize,
        params.avg as usize,
        params.max as usize,
        Normalization::Level1,
        seed,
    )
    .map(|c| c.offset..c.offset + c.length)
    .collect())
}

/// Iterator over the chunks of a reader: yields owned plaintext buffers.
///
/// Finds the same cut points as fastcdc's `StreamCDC` (both cut the first `max` bytes of what
/// is left), but keeps a window of up to twice `max` and moves its unread tail to the front
/// only when less than `max` is left: `StreamCDC` shifts its whole buffer after every chunk,
/// about three bytes moved per byte chunked, which was a tenth of `put`'s reading thread.
pub struct Chunker<R: Read> {
    source: R,
    params: ChunkingParams,
    seed: u64,
    window: Vec<u8>,
    /// Where the unread part of `window` starts.
    start: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// Starts chunking `source` with the store's parameters and secret seed.
    pub fn new(source: R, params: ChunkingParams, seed: u64) -> Result<Self> {
        // A
        params.validate()?;
        Ok(Chunker {
            source,
            params,
            seed,
            window: Vec::new(),
            start: 0,
            eof: false,
        })
    }

    /// Tops the window up to twice `max` once less than `max` is unread (or the input ends).
    fn fill(&mut self) -> Result<()> {
        // A
        let max = self.params.max as usize;
        if self.eof || self.window.len() - self.start >= max {
            return Ok(());
        }
        self.window.drain(..self.start);
        self.start = 0;
        let want = 2 * max - self.window.len();
        // The window's full size at once: `read_to_end` growing it would double it to
        // four times `max` (16 MiB of a put's peak memory with the default chunk sizes).
        self.window.reserve_exact(want);
        // `read_to_end` appends into spare capacity without zeroing it first, and keeps
        // reading through short reads: fewer bytes than asked means the input ended.
        let got = (&mut self.source)
            .take(want as u64)
            .read_to_end(&mut self.window)
            .map_err(Error::Input)?;
        self.eof = got < want;
        Ok(())
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        // A
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        let rest = &self.window[self.start..];
        if rest.is_empty() {
            return None;
        }
        let p = self.params;
        let cut = fastcdc::v2020::FastCDC::with_level_and_seed(
            rest,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            Normalization::Level1,
            self.seed,
        )
        .next()
        .map_or(rest.len(), |c| c.length);
        let chunk = rest[..cut].to_vec();
        self.start += cut;
        Some(Ok(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn cuts(data: &[u8], params: ChunkingParams, seed: u64) -> Vec<usize> {
        Chunker::new(data, params, seed)
            .unwrap()
            .map(|c| c.unwrap().len())
            .collect()
    }

    /// Pinned cut points: chunk boundaries decide dedup against existing data, so a change
    /// here (a fastcdc upgrade, other parameters) breaks dedup for every existing store.
    #[test]
    fn pinned_cut_points() {
        let data = pseudo_random(300_000, 42);
        let small = ChunkingParams {
            min: 8192,
            avg: 16384,
            max: 65536,
        };
        assert_eq!(
            cuts(&data, small, 7),
            vec![
                24010, 16730, 32672, 19785, 19181, 16515, 16090, 17472, 53674, 8588, 21517, 16742,
                17696, 10434, 8894
            ]
        );
    }

    #[test]
    fn seed_changes_cut_points_and_chunks_cover_input() {
        let data = pseudo_random(400_000, 1);
        let p = ChunkingParams {
            min: 4096,
            avg: 16384,
            max: 65536,
        };
        let a = cuts(&data, p, 1);
        let b = cuts(&data, p, 2);
        assert_ne!(a, b);
        assert_eq!(a.iter().sum::<usize>(), data.len());
        assert!(a[..a.len() - 1]
            .iter()
            .all(|&l| (4096..=65536).contains(&l)));
    }

    #[test]
    fn in_memory_cuts_match_streaming() {
        for (n, seed) in [(0usize, 1u64), (100, 2), (70_000, 3), (400_000, 4)] {
            let data = pseudo_random(n, seed);
            let p = ChunkingParams {
                min: 4096,
                avg: 16384,
                max: 65536,
            };
            let mem: Vec<usize> = cut_in_memory(&data, p, seed)
                .unwrap()
                .iter()
                .map(|r| r.len())
                .collect();
            assert_eq!(mem, cuts(&data, p, seed), "n={n}");
        }
    }

    /// Hands out at most `step` bytes per read, as pipes and slow files do.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Fails once with `kind` after `fail_at` bytes, hands out `step` bytes per read
    /// otherwise, and interrupts every third read.
    struct Flaky<'a> {
        data: &'a [u8],
        step: usize,
        fail_at: usize,
        kind: Option<std::io::ErrorKind>,
        reads: usize,
        given: usize,
    }

    impl Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            if self.reads % 3 == 0 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            if self.given >= self.fail_at {
                if let Some(kind) = self.kind.take() {
                    return Err(kind.into());
                }
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.given += n;
            Ok(n)
        }
    }

    /// `Interrupted` is retried and changes no cut; another error mid-stream is reported
    /// once, and a caller that goes on reading gets the same chunks, none lost or repeated.
    #[test]
    fn interrupted_reads_are_retried_and_errors_lose_nothing() {
        let data = pseudo_random(500_000, 5);
        let p = ChunkingParams {
            min: 2048,
            avg: 8192,
            max: 32768,
        };
        let plain: Vec<Vec<u8>> = Chunker::new(&data[..], p, 3)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        for fail_at in [0, 1, 40_000, 250_000, 499_999, 500_000] {
            let flaky = Flaky {
                data: &data,
                step: 7001,
                fail_at,
                kind: Some(std::io::ErrorKind::Other),
                reads: 0,
                given: 0,
            };
            let mut errors = 0;
            let mut chunks = Vec::new();
            for c in Chunker::new(flaky, p, 3).unwrap() {
                match c {
                    Ok(c) => chunks.push(c),
                    Err(e) => {
                        assert!(matches!(e, Error::Input(_)), "{e}");
                        errors += 1;
                    }
                }
            }
            assert_eq!(errors, 1, "fail_at {fail_at}");
            assert!(chunks == plain, "fail_at {fail_at}");
        }
    }

    /// The largest parameters (a 32 MiB window) and the defaults cut as StreamCDC does over
    /// inputs of many windows, read in odd sizes.
    #[test]
    fn big_parameters_cut_as_fastcdc_stream() {
        let data = pseudo_random(40 << 20, 11);
        for p in [
            ChunkingParams::default(),
            ChunkingParams {
                min: 1 << 20,
                avg: 4 << 20,
                max: 16 << 20,
            },
            ChunkingParams {
                min: 64,
                avg: 256,
                max: 1024,
            },
        ] {
            let ours: Vec<usize> = Chunker::new(
                Trickle {
                    data: &data,
                    step: 1_000_003,
                },
                p,
                9,
            )
            .unwrap()
            .map(|c| c.unwrap().len())
            .collect();
            let theirs: Vec<usize> = fastcdc::v2020::StreamCDC::with_level_and_seed(
                &data[..],
                p.min as usize,
                p.avg as usize,
                p.max as usize,
                Normalization::Level1,
                9,
            )
            .map(|c| c.unwrap().length)
            .collect();
            assert_eq!(ours, theirs, "{p:?}");
        }
    }

    proptest::proptest! {
        /// The windowed chunker cuts exactly where fastcdc's StreamCDC does (the cut points
        /// existing stores deduplicate against), whatever the read sizes.
        #[test]
        fn cuts_match_fastcdc_stream(
            n in 0usize..300_000,
            seed in proptest::prelude::any::<u64>(),
            step in 1usize..100_000,
        ) {
            let data = pseudo_random(n, seed | 1);
            let p = ChunkingParams { min: 2048, avg: 8192, max: 32768 };
            let ours: Vec<Vec<u8>> = Chunker::new(Trickle { data: &data, step }, p, seed)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let theirs: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(
                &data[..],
                2048,
                8192,
                32768,
                Normalization::Level1,
                seed,
            )
            .map(|c| c.unwrap().data)
            .collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn empty_input_has_no_chunks_and_bad_params_are_refused() {
        assert!(cuts(&[], ChunkingParams::default(), 0).is_empty());
        assert!(ChunkingParams {
            min: 3,
            avg: 1024,
            max: 4096
        }
        .validate()
        .is_err());
        assert!(ChunkingParams {
            min: 8192,
            avg: 4096,
            max: 65536
        }
        .validate()
        .is_err());
    }
}
