//! The cluster wire protocol (`ouro_cluster::message`): frame headers (`check_header`),
//! bodies of both directions (`decode_body::<Request>` and `::<Response>`) and whole frames
//! read from a stream (`read_frame`). Whatever decodes is encoded again: that frame must be
//! accepted and decode to a value that encodes to the same bytes; and the chunk records in
//! messages, which a node stores, must be ones the store can read back. A `SlicesMany` body
//! read in place (`slices_many::spans`) must find exactly the slices the whole decoding
//! finds, and written as pieces it must be the frame `encode_frame` writes.
#![no_main]
use std::future::Future;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use ouro_cluster::message::{
    check_header, decode_body, encode_frame, read_frame, Request, Response,
};
use ouro_cluster::slices_many;
use ouroboros_db::model::ChunkRecord;
use serde::{de::DeserializeOwned, Serialize};

/// Encodes `v` as a frame, reads it back and checks that it encodes the same again.
fn round_trip<T: Serialize + DeserializeOwned>(v: &T) {
    // A
    let Ok(frame) = encode_frame(v) else {
        return; // larger than a frame may be
    };
    let h: [u8; 6] = frame[..6].try_into().expect("6-byte header");
    assert_eq!(check_header(&h).expect("own header"), frame.len() - 6);
    let back: T = decode_body(&frame[6..]).expect("own frame decodes");
    assert_eq!(
        encode_frame(&back).expect("encodes again"),
        frame,
        "unstable encoding"
    );
}

/// Reads one frame of `T` from `bytes` as a node reads a QUIC stream; an in-memory reader
/// never waits, so one poll finishes it.
fn read_from<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    // A
    let mut r = bytes;
    let mut fut = std::pin::pin!(read_frame::<T>(&mut r));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v.ok(),
        Poll::Pending => panic!("reading from memory never waits"),
    }
}

/// Reading `SlicesMany` in place agrees with decoding it whole.
fn in_place_agrees(data: &[u8], whole: Option<&Response>) {
    // A
    let Ok(Some(spans)) = slices_many::spans(data) else {
        return;
    };
    assert!(spans.iter().flatten().all(|(_, r)| r.end <= data.len()));
    let Some(Response::SlicesMany(all)) = whole else {
        panic!("slices found in place in a body that is not a SlicesMany");
    };
    let found = slices_many::share(data.to_vec(), spans);
    assert_eq!(found.len(), all.len());
    for (f, a) in found.iter().zip(all) {
        assert!(f
            .iter()
            .map(|(i, b)| (*i, &b[..]))
            .eq(a.iter().map(|s| (s.index, &s.bytes[..]))));
    }
    if let (Ok(pieces), Ok(frame)) = (
        slices_many::frame_pieces(&found),
        encode_frame(&Response::SlicesMany(all.clone())),
    ) {
        assert_eq!(pieces.concat(), frame, "pieces differ from the frame");
    }
}

/// A chunk record a node accepted from a peer is stored: it must read back from the store.
fn storable(r: &ChunkRecord) {
    // A
    assert!(
        ChunkRecord::decode(&r.encode().unwrap()).is_ok(),
        "unreadable record accepted: {r:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(r) = decode_body::<Request>(data) {
        if let Request::PutSlices { record, .. } = &r {
            storable(record);
        }
        round_trip(&r);
    }
    let whole = decode_body::<Response>(data).ok();
    in_place_agrees(data, whole.as_ref());
    if let Ok(r) = decode_body::<Response>(data) {
        if let Response::Versions(versions) = &r {
            versions
                .iter()
                .flat_map(|v| &v.chunks)
                .for_each(|(_, c)| storable(c));
        }
        round_trip(&r);
    }
    if let Some(h) = data.first_chunk::<6>() {
        if let Ok(len) = check_header(h) {
            let body = &data[6..];
            let req = read_from::<Request>(data);
            let resp = read_from::<Response>(data);
            if body.len() < len {
                assert!(req.is_none() && resp.is_none(), "a short frame is an error");
            }
        }
    }
});
