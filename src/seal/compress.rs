//! zstd compression of chunks; chunks that do not shrink are stored raw (flag byte 0).

use std::cell::RefCell;

use crate::error::{Error, Result};

/// Flag byte: the body is raw plaintext.
pub const RAW: u8 = 0;
/// Flag byte: the body is one zstd frame.
pub const ZSTD: u8 = 1;
/// Flag byte: the body is one zstd frame compressed with a base chunk's plaintext as its
/// prefix (a delta frame: it decodes only given that plaintext).
pub const DELTA: u8 = 2;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Appends `[flag][body]` for `plaintext` to `out`: zstd at `level` when that is smaller,
/// else raw. Compressors are reused per thread (allocating one costs more than a small chunk).
pub fn compress_into(plaintext: &[u8], level: i32, out: &mut Vec<u8>) -> Result<()> {
    // A
    let start = out.len();
    out.push(ZSTD);
    // Room for a frame shorter than the plaintext, left uninitialised: zstd writes into the
    // spare capacity after the flag byte. A frame that does not fit would be stored raw
    // anyway; zeroing a worst-case bound first touched every page of it for nothing.
    out.reserve(plaintext.len());
    let written = COMPRESSOR.with(|cell| -> Result<Option<usize>> {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            let c = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::InvalidArgument(format!("zstd level {level}: {e}")))?;
            *slot = Some((level, c));
        }
        let (_, c) = slot
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("zstd".into()))?;
        let mut dst = std::io::Cursor::new(&mut *out);
        dst.set_position(start as u64 + 1);
        // A frame larger than the room fails to fit, which only means "stored raw".
        Ok(c.compress_to_buffer(plaintext, &mut dst).ok())
    })?;
    match written {
        Some(n) if n < plaintext.len() => out.truncate(start + 1 + n),
        _ => {
            out.truncate(start);
            out.push(RAW);
            out.extend_from_slice(plaintext);
        }
    }
    Ok(())
}

/// Reverses [`compress_into`] given `[flag][body]` and the known plaintext size.
pub fn decompress(flagged: &[u8], size: usize) -> Result<Vec<u8>> {
    // A
    let mut out = Vec::new();
    decompress_into(flagged, size, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (replacing what it held): a reader that hands the same
/// buffers round reuses memory already faulted in instead of fresh pages per chunk.
pub fn decompress_into(flagged: &[u8], size: usize, out: &mut Vec<u8>) -> Result<()> {
    // A
    out.clear();
    match flagged.split_first() {
        Some((&RAW, body)) if body.len() == size => {
            out.extend_from_slice(body);
            Ok(())
        }
        Some((&ZSTD, body)) => {
            crate::buffers::make_room(out, size);
            // Decompressors are reused per thread, as compressors are. zstd writes from
            // index 0 up to the capacity, so a frame that decodes to more than `size` fails
            // or comes out too long; it cannot write past the buffer.
            let written = DECOMPRESSOR
                .with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(zstd::bulk::Decompressor::new()?);
                    }
                    match slot.as_mut() {
                        Some(d) => d.decompress_to_buffer(body, out),
                        None => Err(std::io::Error::other("no decompressor")),
                    }
                })
                .map_err(|e| Error::Corrupt(format!("zstd frame does not decode: {e}")))?;
            if written == size {
                Ok(())
            } else {
                out.clear();
                Err(Error::Corrupt(
                    "chunk decompressed to the wrong size".into(),
                ))
            }
        }
        _ => Err(Error::Corrupt("unknown compression flag or size".into())),
    }
}

/// `[DELTA][body]` for `plaintext` compressed at `level` against `base` (zstd's prefix:
/// matches may point into the base, as into earlier input). A context of its own per call:
/// the prefix is borrowed for this frame only.
pub fn compress_against(plaintext: &[u8], base: &[u8], level: i32) -> Result<Vec<u8>> {
    // A
    use zstd::zstd_safe::{CCtx, CParameter};
    let fail = |what: &str, code: usize| {
        Error::InvalidArgument(format!(
            "zstd {what}: {}",
            zstd::zstd_safe::get_error_name(code)
        ))
    };
    let mut cctx = CCtx::try_create().ok_or_else(|| fail("context", 0))?;
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(|c| fail("level", c))?;
    // The window must reach back over the whole prefix: zstd's default at level 3 for a
    // large input is 2 MiB, and a chunk and its base may reach 8 MiB together.
    // Over a large base, level 3's hash tables keep too few positions to find the base's
    // copy of each stretch; long-distance matching finds them (as `zstd --patch-from`).
    let reach = (base.len() + plaintext.len()).max(1);
    if reach > 1 << 20 {
        let log = (usize::BITS - (reach - 1).leading_zeros()).clamp(20, 27);
        cctx.set_parameter(CParameter::WindowLog(log))
            .map_err(|c| fail("window", c))?;
        cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
            .map_err(|c| fail("long-distance matching", c))?;
    }
    cctx.ref_prefix(base).map_err(|c| fail("prefix", c))?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(plaintext.len()) + 1);
    out.push(DELTA);
    let mut dst = std::io::Cursor::new(&mut out);
    dst.set_position(1);
    cctx.compress2(&mut dst, plaintext)
        .map_err(|c| fail("compression", c))?;
    Ok(out)
}

/// Reverses [`compress_against`] given the same `base` and the known plaintext size, into
/// `out` (replacing what it held).
pub fn decompress_against(
    flagged: &[u8],
    base: &[u8],
    size: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    // A
    use zstd::zstd_safe::DCtx;
    out.clear();
    let Some((&DELTA, body)) = flagged.split_first() else {
        return Err(Error::Corrupt("a delta frame without its flag".into()));
    };
    let corrupt = |code: usize| {
        Error::Corrupt(format!(
            "delta frame does not decode: {}",
            zstd::zstd_safe::get_error_name(code)
        ))
    };
    let mut dctx = DCtx::try_create().ok_or_else(|| corrupt(0))?;
    dctx.ref_prefix(base).map_err(corrupt)?;
    crate::buffers::make_room(out, size);
    let written = dctx.decompress(out, body).map_err(corrupt)?;
    if written != size {
        out.clear();
        return Err(Error::Corrupt(
            "chunk decompressed to the wrong size".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_thread_compressing_at_three_levels_in_turn_gets_each_right() {
        let text: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for level in [3, 5, 3, 9, 5, 3] {
            let mut out = Vec::new();
            compress_into(&text, level, &mut out).unwrap();
            assert_eq!(out[0], ZSTD);
            assert_eq!(decompress(&out, text.len()).unwrap(), text);
            let mut again = Vec::new();
            let c = zstd::bulk::compress(&text, level).unwrap();
            compress_into(&text, level, &mut again).unwrap();
            assert_eq!(again[1..], c[..], "level {level}");
        }
    }

    proptest! {
        /// A delta frame opens to its plaintext given its base, and fails (never panics or
        /// writes past `size`) given another base or a damaged body.
        #[test]
        fn deltas_round_trip(base in prop::collection::vec(any::<u8>(), 0..20_000),
                             edit in prop::collection::vec(any::<u8>(), 0..300),
                             at in any::<usize>(), flip in any::<usize>()) {
            let at = if base.is_empty() { 0 } else { at % base.len() };
            let plain = [&base[..at], &edit[..], &base[at..]].concat();
            let d = compress_against(&plain, &base, 3).unwrap();
            prop_assert_eq!(d[0], DELTA);
            let mut out = vec![9; 3];
            decompress_against(&d, &base, plain.len(), &mut out).unwrap();
            prop_assert_eq!(&out, &plain);
            prop_assert!(decompress(&d, plain.len()).is_err(), "a delta needs its base");
            prop_assert!(decompress_against(&d, &base, plain.len() + 1, &mut out).is_err());
            let mut bad = d.clone();
            let i = 1 + flip % (bad.len() - 1).max(1);
            if i < bad.len() { bad[i] ^= 0x40; }
            if let Ok(()) = decompress_against(&bad, &base, plain.len(), &mut out) {
                prop_assert_eq!(out.len(), plain.len());
            }
        }
    }

    #[test]
    fn a_large_chunk_reaches_back_over_its_whole_base() {
        // 4 MiB of incompressible bytes, edited near the start: matches 4 MiB back.
        let base: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ (i >> 16) as u8)
            .collect();
        let mut plain = base.clone();
        plain[100] ^= 1;
        let d = compress_against(&plain, &base, 3).unwrap();
        assert!(d.len() < 64 << 10, "{} bytes", d.len());
        let mut out = Vec::new();
        decompress_against(&d, &base, plain.len(), &mut out).unwrap();
        assert!(out == plain);
    }

    #[test]
    fn a_small_edit_costs_little_against_its_base() {
        let base: Vec<u8> = (0..2_000u32)
            .flat_map(|i| format!("line {i}: {}\n", i.wrapping_mul(2654435761)).into_bytes())
            .collect();
        let mut plain = base.clone();
        plain[20_000] ^= 1;
        let d = compress_against(&plain, &base, 3).unwrap();
        let mut alone = Vec::new();
        compress_into(&plain, 3, &mut alone).unwrap();
        assert!(
            d.len() * 50 < alone.len(),
            "{} bytes, {} alone",
            d.len(),
            alone.len()
        );
    }

    #[test]
    fn compressible_shrinks_and_random_stays_raw() {
        let text = b"abcabcabc".repeat(1000);
        let mut out = Vec::new();
        compress_into(&text, 3, &mut out).unwrap();
        assert_eq!(out[0], ZSTD);
        assert!(out.len() < text.len() / 10);
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut out2 = Vec::new();
        compress_into(&noise, 3, &mut out2).unwrap();
        assert_eq!(decompress(&out2, noise.len()).unwrap(), noise);
    }

    proptest! {
        #[test]
        fn round_trip(data in prop::collection::vec(any::<u8>(), 0..5000), level in 1i32..6) {
            let mut out = Vec::new();
            compress_into(&data, level, &mut out).unwrap();
            prop_assert_eq!(decompress(&out, data.len()).unwrap(), data);
        }

        #[test]
        fn decompressing_into_a_used_buffer_gives_the_same_plaintext(
            data in prop::collection::vec(any::<u8>(), 0..5000),
            junk in prop::collection::vec(any::<u8>(), 0..9000),
        ) {
            let mut flagged = Vec::new();
            compress_into(&data, 3, &mut flagged).unwrap();
            let mut out = junk;
            decompress_into(&flagged, data.len(), &mut out).unwrap();
            prop_assert_eq!(out, data);
        }

        #[test]
        fn decompress_never_panics(data in prop::collection::vec(any::<u8>(), 0..300), size in 0usize..1000) {
            let _ = decompress(&data, size);
        }
    }
}
