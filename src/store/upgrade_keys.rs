//! The upgrade of a format 9 store to format 10, whose keys have numbers: each
//! `version_index` value gains the key's number in front, and each `key_to_hash` row
//! `key ‖ 0 ‖ created ‖ sequence` becomes `number ‖ created ‖ sequence` (FORMAT.md). It
//! runs inside the upgrade's one write transaction (`upgrade.rs`), after the format 7/8
//! conversion when there was one.

use crate::codec;
use crate::error::Result;
use crate::store::key_to_hash;
use crate::store::sequence::seq_of;
use crate::store::upgrade::{each_row, read_batch};
use crate::store::version_index::{value, KeyState, StoredState, KEY_STATE_TAG};
use crate::store::{Lmdb, RwTxn};

/// Bytes after the NUL of a format 9 `key_to_hash` row: the time (8), the sequence (8).
pub(crate) const V9_ROW_TAIL: usize = 16;

/// A bound above every numbered row (their first byte is 0: numbers stay under 2^56) and
/// below every format 9 row (a key's first byte is never 0).
const ABOVE_NUMBERED: [u8; 25] = {
    let mut b = [0xff; 25];
    b[0] = 0;
    b
};

/// Numbers the keys in key order and rewrites the `key_to_hash` rows under the numbers;
/// returns the rows dropped because they did not parse (damage the old verify reported).
pub(crate) fn number_keys(lmdb: &Lmdb, txn: &mut RwTxn) -> Result<u64> {
    // PA
    let keys = lmdb.versions.rows;
    // Values numbered already (a store of this format whose config said otherwise) keep
    // their numbers: a KeyState starts with its tag, never with the 0 a number starts with.
    let numbered = |v: &[u8]| v.len() >= 8 && v[0] == 0;
    let mut next: u64 = 1;
    each_row(txn, keys, |_, _, v| {
        if numbered(&v) {
            next = next.max(seq_of("key number", &v[..8])?.saturating_add(1));
        }
        Ok(())
    })?;
    each_row(txn, keys, |txn, k, v| {
        if numbered(&v) {
            return Ok(());
        }
        // Heads become log sequences; a state that does not decode keeps its bytes (verify
        // reports it, as it did).
        let row = match codec::decode::<KeyState>("key state", KEY_STATE_TAG, &v) {
            Ok(state) => value(next, &lmdb.versions.stored(txn, &state)?)?,
            Err(_) => [&next.to_be_bytes()[..], &v].concat(),
        };
        keys.put(txn, &k, &row)?;
        next += 1;
        Ok(())
    })?;
    let rows = lmdb.key_to_hash.rows;
    let mut dropped = 0;
    loop {
        let batch = read_batch(txn, rows, Some(&ABOVE_NUMBERED))?;
        if batch.is_empty() {
            break;
        }
        for (old, _) in batch {
            rows.delete(txn, &old)?;
            let Some((key, tail)) = split_v9(&old) else {
                dropped += 1;
                continue;
            };
            let id = match lmdb.versions.id(txn, key)? {
                Some(id) => id,
                None => {
                    // History of a key without a state (none in a healthy store).
                    let id = next;
                    next += 1;
                    keys.put(txn, key.as_bytes(), &value(id, &StoredState::default())?)?;
                    id
                }
            };
            let created = (seq_of("key_to_hash", &tail[..8])? ^ (1 << 63)) as i64;
            let seq = seq_of("key_to_hash", &tail[8..])?;
            rows.put(txn, &key_to_hash::row(id, created, seq), &[])?;
        }
    }
    lmdb.versions.sequence().raise_to(txn, next)?;
    Ok(dropped)
}

/// The key and the 16-byte tail of a format 9 row, if it is one.
fn split_v9(row: &[u8]) -> Option<(&str, &[u8])> {
    // A
    let nul = row.iter().position(|b| *b == 0)?;
    let (key, tail) = (&row[..nul], &row[nul + 1..]);
    let key = std::str::from_utf8(key).ok().filter(|k| !k.is_empty())?;
    (tail.len() == V9_ROW_TAIL).then_some((key, tail))
}

/// A format 9 `key_to_hash` row (tests and the format 7/8 conversion's tests build them).
#[cfg(test)]
pub(crate) fn v9_row(key: &str, created: i64, tail: &[u8]) -> Vec<u8> {
    let mut r = key.as_bytes().to_vec();
    r.push(0);
    r.extend_from_slice(&((created as u64) ^ (1 << 63)).to_be_bytes());
    r.extend_from_slice(tail);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::hash::Hash;
    use crate::model::{Blob, BlobKind, VersionMeta};
    use crate::store::version_index::KEY_STATE_TAG;

    fn blob(key: &str, created: i64) -> Blob {
        Blob {
            key: key.into(),
            kind: BlobKind::for_parents(0),
            parents: vec![],
            created,
            size: 0,
            chunks: vec![],
            meta: VersionMeta::None,
        }
    }

    #[test]
    fn format_9_rows_get_key_numbers_and_every_version_reads() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let mut t = lmdb.write().unwrap();
        let mut want = Vec::new();
        for (key, created) in [("b", 5), ("a/x", -3), ("b", 9), ("c", 1)] {
            let (h, seq) = lmdb.blobs.put(&mut t, &blob(key, created)).unwrap();
            let row = v9_row(key, created, &seq.to_be_bytes());
            lmdb.key_to_hash.rows.put(&mut t, &row, &[]).unwrap();
            want.push((key, created, h));
        }
        // "c" has history but no state; "d" a state but no history; one row is damaged.
        for key in ["a/x", "b", "d"] {
            let state = KeyState {
                heads: vec![Hash([1; 32])],
                deleted: None,
            };
            let v = codec::encode(KEY_STATE_TAG, &state).unwrap();
            lmdb.versions.rows.put(&mut t, key.as_bytes(), &v).unwrap();
        }
        lmdb.key_to_hash.rows.put(&mut t, b"e\0short", &[]).unwrap();
        assert_eq!(number_keys(&lmdb, &mut t).unwrap(), 1);
        for (key, created, h) in &want {
            let v = lmdb.key_to_hash.versions(&t, key).unwrap();
            assert!(
                v.iter().any(|e| e.hash == *h && e.created == *created),
                "{key}"
            );
        }
        assert_eq!(lmdb.key_to_hash.versions(&t, "b").unwrap().len(), 2);
        let ids: Vec<u64> = ["a/x", "b", "c", "d"]
            .iter()
            .map(|k| lmdb.versions.id(&t, k).unwrap().unwrap())
            .collect();
        assert_eq!(ids, vec![1, 2, 4, 3]);
        assert_eq!(lmdb.versions.get(&t, "d").unwrap().unwrap().heads.len(), 1);
        assert_eq!(lmdb.versions.sequence().peek(&t).unwrap(), 5);
        assert_eq!(lmdb.key_to_hash.rows.len(&t).unwrap(), 4);
        assert_eq!(
            lmdb.key_to_hash.keys(&t, "", None, 10).unwrap(),
            vec!["a/x", "b", "c"]
        );
        // Twice changes nothing.
        assert_eq!(number_keys(&lmdb, &mut t).unwrap(), 0);
        assert_eq!(lmdb.versions.id(&t, "c").unwrap(), Some(4));
        assert_eq!(lmdb.key_to_hash.versions(&t, "b").unwrap().len(), 2);
        assert_eq!(lmdb.versions.sequence().peek(&t).unwrap(), 5);
    }
}
