//! The `SlicesMany` answer without copying its slices. It carries most of a read's bytes:
//! a node relaying peers' slices to a command decoded each into a buffer of its own and
//! encoded it into one more, and the command copied each out of the answer again. Here an
//! answer is decoded into ranges of the buffer it arrived in, and encoded as pieces that
//! point at the slices where they are, written with vectored I/O. The bytes on the wire are
//! exactly postcard's encoding of `Response::SlicesMany` (FORMAT.md); tests pin that.

use std::io::IoSlice;
use std::ops::Range;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{ClusterError, Result};
use crate::message::{FrameError, Response, MAGIC, MAX_FRAME, VERSION};

/// The slices found for each chunk asked, in order: (slice index, encoded slice).
pub type Found = Vec<Vec<(u8, Bytes)>>;

/// Per chunk, (slice index, range of the body) of each slice.
pub type Spans = Vec<Vec<(u8, Range<usize>)>>;

/// A slice as it is encoded, its bytes borrowed from the body.
#[derive(Deserialize)]
struct SliceRef<'a> {
    index: u8,
    #[serde(borrow)]
    bytes: &'a [u8],
}

/// The bytes postcard puts before the answers of a `Response::SlicesMany`: its variant tag.
fn tag() -> &'static [u8] {
    // A
    static TAG: OnceLock<Vec<u8>> = OnceLock::new();
    TAG.get_or_init(|| {
        // An empty list encodes as one 0 byte after the tag.
        let mut t = postcard::to_stdvec(&Response::SlicesMany(Vec::new())).unwrap_or_default();
        t.pop();
        t
    })
}

/// Where the slices of a `SlicesMany` body are; `None` when the body is another response
/// (decode it whole then: it may be an `Error`).
pub fn spans(body: &[u8]) -> Result<Option<Spans>> {
    // A
    let Some(rest) = body.strip_prefix(tag()) else {
        return Ok(None);
    };
    let found: Vec<Vec<SliceRef>> = postcard::from_bytes(rest).map_err(FrameError::Malformed)?;
    let base = body.as_ptr() as usize;
    Ok(Some(
        found
            .into_iter()
            .map(|slices| {
                slices
                    .into_iter()
                    .map(|s| {
                        let start = s.bytes.as_ptr() as usize - base;
                        (s.index, start..start + s.bytes.len())
                    })
                    .collect()
            })
            .collect(),
    ))
}

/// Where the slices of an answer to a read of `chunks` chunks are. Another answer is an
/// error: the answering node's refusal when it is one.
pub fn answer_spans(body: &[u8], chunks: usize) -> Result<Spans> {
    // A
    match spans(body)? {
        Some(s) if s.len() == chunks => Ok(s),
        Some(s) => Err(ClusterError::Protocol(format!(
            "answers for {} chunks to a read of {chunks}",
            s.len()
        ))),
        None => match crate::message::decode_body::<Response>(body)? {
            Response::Error(e) => Err(ClusterError::Protocol(e)),
            _ => Err(ClusterError::Protocol(format!(
                "an answer other than slices to a read of {chunks} chunks"
            ))),
        },
    }
}

/// Shares the slices of a `SlicesMany` body out of it, without copying them.
pub fn share(body: Vec<u8>, spans: Spans) -> Found {
    // A
    let body = Bytes::from(body);
    spans
        .into_iter()
        .map(|s| s.into_iter().map(|(i, r)| (i, body.slice(r))).collect())
        .collect()
}

/// A whole `SlicesMany` frame (header included) as pieces: the small encoding bytes in one
/// buffer, the slices where they are.
pub fn frame_pieces(found: &Found) -> Result<Vec<Bytes>> {
    // A
    let mut glue = Vec::with_capacity(16 + found.iter().map(|s| 8 + 12 * s.len()).sum::<usize>());
    // (end of the glue before it, slice) in order: the glue is cut at these points.
    let mut cuts: Vec<(usize, &Bytes)> = Vec::new();
    glue.extend_from_slice(&[MAGIC, VERSION, 0, 0, 0, 0]);
    glue.extend_from_slice(tag());
    varint(&mut glue, found.len());
    for slices in found {
        varint(&mut glue, slices.len());
        for (i, b) in slices {
            glue.push(*i);
            varint(&mut glue, b.len());
            cuts.push((glue.len(), b));
        }
    }
    let body = glue.len() - 6 + cuts.iter().map(|(_, b)| b.len()).sum::<usize>();
    let len = u32::try_from(body)
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| ClusterError::Protocol(format!("message of {body} bytes is too large")))?;
    glue[2..6].copy_from_slice(&len.to_le_bytes());
    let glue = Bytes::from(glue);
    let mut pieces = Vec::with_capacity(2 * cuts.len() + 1);
    let mut at = 0;
    for (end, b) in cuts {
        if end > at {
            pieces.push(glue.slice(at..end));
        }
        if !b.is_empty() {
            pieces.push(b.clone());
        }
        at = end;
    }
    if glue.len() > at {
        pieces.push(glue.slice(at..));
    }
    Ok(pieces)
}

/// Postcard's unsigned varint (LEB128).
fn varint(out: &mut Vec<u8>, mut n: usize) {
    // A
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Writes `pieces` in order with vectored writes (a few hundred at a time: the kernel
/// takes at most 1024 per call).
pub async fn write_pieces(w: &mut (impl AsyncWrite + Unpin), pieces: &[Bytes]) -> Result<()> {
    // A
    let failed = |e: std::io::Error| ClusterError::Protocol(format!("writing a frame: {e}"));
    for group in pieces.chunks(256) {
        let mut io: Vec<IoSlice> = group.iter().map(|p| IoSlice::new(p)).collect();
        let mut left = &mut io[..];
        while !left.is_empty() {
            let n = w.write_vectored(left).await.map_err(failed)?;
            if n == 0 {
                return Err(failed(std::io::ErrorKind::WriteZero.into()));
            }
            IoSlice::advance_slices(&mut left, n);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{encode_frame, Slice};
    use proptest::prelude::*;

    fn found() -> impl Strategy<Value = Found> {
        prop::collection::vec(
            prop::collection::vec(
                (
                    any::<u8>(),
                    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from),
                ),
                0..4,
            ),
            0..70,
        )
    }

    fn as_response(found: &Found) -> Response {
        Response::SlicesMany(
            found
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|(index, b)| Slice {
                            index: *index,
                            bytes: b.to_vec(),
                        })
                        .collect()
                })
                .collect(),
        )
    }

    proptest! {
        #[test]
        fn pieces_are_postcards_frame_and_spans_find_every_slice(found in found()) {
            let pieces = frame_pieces(&found).unwrap();
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            let want = encode_frame(&as_response(&found)).unwrap();
            prop_assert_eq!(&joined, &want);
            let body = joined[6..].to_vec();
            let spans = spans(&body).unwrap().unwrap();
            prop_assert_eq!(share(body, spans), found);
        }

        #[test]
        fn spans_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some(spans)) = spans(&body) {
                for (_, r) in spans.iter().flatten() {
                    prop_assert!(r.end <= body.len());
                }
            }
        }
    }

    #[test]
    fn answers_of_the_wrong_kind_or_size_are_errors_that_carry_a_refusal() {
        let found: Found = vec![vec![(1, Bytes::from_static(b"abc"))]];
        let frame = frame_pieces(&found).unwrap().concat();
        let body = &frame[6..];
        let spans = answer_spans(body, 1).unwrap();
        assert_eq!(spans.len(), 1);
        let (index, range) = spans[0][0].clone();
        assert_eq!((index, &body[range]), (1, &b"abc"[..]));
        assert!(answer_spans(body, 2).is_err());
        let refused = postcard::to_stdvec(&Response::Error("no such chunk".into())).unwrap();
        let e = answer_spans(&refused, 1).unwrap_err().to_string();
        assert!(e.contains("no such chunk"), "{e}");
    }

    #[test]
    fn other_responses_are_not_taken_for_slices() {
        let body = postcard::to_stdvec(&Response::Error("no".into())).unwrap();
        assert_eq!(spans(&body).unwrap(), None);
        let body = postcard::to_stdvec(&Response::Stored).unwrap();
        assert_eq!(spans(&body).unwrap(), None);
    }

    #[tokio::test]
    async fn vectored_writes_send_every_piece_in_order() {
        let found: Found = (0..300u16)
            .map(|i| vec![((i % 6) as u8, Bytes::from(vec![i as u8; 1000 + i as usize]))])
            .collect();
        let pieces = frame_pieces(&found).unwrap();
        let (mut a, mut b) = tokio::io::duplex(4096);
        let want: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        write_pieces(&mut a, &pieces).await.unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), want);
    }
}
