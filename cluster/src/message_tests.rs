//! Wire messages: pinned headers, variant indexes and encodings peers depend on, frame budgets,
//! refusals of oversized and foreign frames, and round trips and garbage (proptest).
#![cfg(test)]

use super::*;
use proptest::prelude::*;

#[test]
fn pinned_header() {
    let f = encode_frame(&Request::Members).unwrap();
    assert_eq!(&f[..6], &[b'O', 11, 1, 0, 0, 0]);
    assert_eq!(f.len(), 7);
}

#[tokio::test]
async fn frames_read_within_a_budget() {
    let budget = tokio::sync::Semaphore::new(4);
    let f = encode_frame(&Request::GetSlices {
        chunk: Hash([1; 32]),
        wanted: vec![0, 1],
    })
    .unwrap();
    let r: Request = read_frame_within(&mut &f[..], &[&budget]).await.unwrap();
    assert!(matches!(r, Request::GetSlices { .. }));
    assert_eq!(
        budget.available_permits(),
        4,
        "the budget comes back after the read"
    );
    let mut short = f.clone();
    short.truncate(f.len() - 1);
    assert!(read_frame::<Request>(&mut &short[..]).await.is_err());
}

#[test]
fn oversized_and_foreign_frames_are_refused() {
    let mut h = [b'O', VERSION, 0, 0, 0, 0];
    h[2..].copy_from_slice(&(MAX_FRAME + 1).to_le_bytes());
    assert!(matches!(
        check_header(&h),
        Err(ClusterError::Frame(FrameError::TooLarge(l))) if l == MAX_FRAME + 1
    ));
    assert!(matches!(
        check_header(&[b'O', 1, 0, 0, 0, 0]),
        Err(ClusterError::Frame(FrameError::Version(1)))
    ));
    assert!(matches!(
        check_header(&[b'X', VERSION, 0, 0, 0, 0]),
        Err(ClusterError::Frame(FrameError::NotOuro(b'X')))
    ));
}

#[test]
fn inventory_messages_have_pinned_variant_indexes() {
    let body = |r: &Request| postcard::to_stdvec(r).unwrap();
    assert_eq!(
        body(&Request::InventoryTree { prefix: vec![9] }),
        [11, 1, 9]
    );
    assert_eq!(body(&Request::CheckChunks { chunks: vec![] }), [12, 0]);
    let leaf = Response::InventoryLeaf(vec![InventoryEntry {
        chunk: Hash([5; 32]),
        slices: vec![1, 3],
    }]);
    let mut want = vec![13, 1];
    want.extend_from_slice(&[5; 32]);
    want.extend_from_slice(&[2, 1, 3]);
    assert_eq!(postcard::to_stdvec(&leaf).unwrap(), want);
    assert_eq!(postcard::to_stdvec(&Response::Noted).unwrap(), [14]);
}

#[test]
fn batched_slice_messages_have_pinned_encodings() {
    let body = |r: &Request| postcard::to_stdvec(r).unwrap();
    let mut want = vec![13, 1];
    want.extend_from_slice(&[7; 32]);
    want.extend_from_slice(&[2, 0, 3]);
    let items = vec![SliceWant {
        chunk: Hash([7; 32]),
        wanted: vec![0, 3],
    }];
    assert_eq!(body(&Request::GetSlicesMany { items }), want);
    let mut want = vec![14, 1];
    want.extend_from_slice(&[7; 32]);
    want.extend_from_slice(&[1, 2, 2]);
    let items = vec![FetchWant {
        chunk: Hash([7; 32]),
        wanted: vec![2],
        need: 2,
    }];
    assert_eq!(body(&Request::FetchMany { items }), want);
    let answer = Response::SlicesMany(vec![
        vec![],
        vec![Slice {
            index: 1,
            bytes: vec![9, 9],
        }],
    ]);
    assert_eq!(
        postcard::to_stdvec(&answer).unwrap(),
        [15, 2, 0, 1, 1, 2, 9, 9]
    );
}

#[test]
fn heartbeat_news_has_a_pinned_encoding() {
    let news = NodeNews {
        addr: "a".into(),
        chunks_held: 1,
        tombstones: 300,
        logs: LogEnds {
            log: Hash([4; 32]),
            blobs: 2,
            wal: 3,
        },
        ..NodeNews::default()
    };
    let mut want = vec![1, 1, b'a', 1, 0, 0, 0, 0, 0, 0, 0xAC, 0x02, 0];
    want.extend_from_slice(&[4; 32]);
    want.extend_from_slice(&[2, 3, 0]);
    assert_eq!(postcard::to_stdvec(&Request::Hello(news)).unwrap(), want);
}

proptest! {
    #[test]
    fn inventory_leaves_round_trip(
        entries in prop::collection::vec((any::<[u8; 32]>(), prop::collection::vec(any::<u8>(), 1..8)), 0..20),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let leaf: Vec<InventoryEntry> = entries
            .into_iter()
            .map(|(c, slices)| InventoryEntry { chunk: Hash(c), slices })
            .collect();
        let f = encode_frame(&Response::InventoryLeaf(leaf.clone())).unwrap();
        // A message valid up to a few bytes reaches the body's decoder and its limits.
        let _ = decode_body::<Response>(&ouroboros_db::fuzzing::mutate(&f[6..], &edits));
        match decode_body::<Response>(&f[6..]).unwrap() {
            Response::InventoryLeaf(got) => prop_assert_eq!(got, leaf),
            _ => prop_assert!(false),
        }
    }

    #[test]
    fn round_trip(chunk in any::<[u8; 32]>(), wanted in prop::collection::vec(any::<u8>(), 0..10)) {
        let f = encode_frame(&Request::GetSlices { chunk: Hash(chunk), wanted: wanted.clone() }).unwrap();
        let h: [u8; 6] = f[..6].try_into().unwrap();
        prop_assert_eq!(check_header(&h).unwrap(), f.len() - 6);
        match decode_body::<Request>(&f[6..]).unwrap() {
            Request::GetSlices { chunk: c, wanted: w } => { prop_assert_eq!(c, Hash(chunk)); prop_assert_eq!(w, wanted); }
            _ => prop_assert!(false),
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_body::<Request>(&bytes);
        let _ = decode_body::<Response>(&bytes);
        if let Ok(h) = <[u8; 6]>::try_from(&bytes[..bytes.len().min(6)]) {
            let _ = check_header(&h);
        }
    }
}
