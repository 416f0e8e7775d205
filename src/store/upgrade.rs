//! The one-time upgrade of an older store to format 10. From format 7 or 8 to 9, records are
//! appended under sequence numbers and found through small indexes: `blob_log` rows hold the
//! blob records instead of their hashes, `blobs` maps a hash to its sequence, `key_to_hash`
//! and `parent_child` rows end in the version's sequence instead of its hash, `chunks` holds
//! the chunk records by sequence and `chunk_refs` maps a chunk id to its record's sequence
//! and its count. From 9 to 10, keys get numbers (`upgrade_keys.rs`). FORMAT.md has both.
//!
//! It runs in one write transaction, so a store is either upgraded whole or not at all,
//! and with the store to itself (its open lock exclusive): a running older build would
//! read the new rows as damage and write old ones among them.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hash::Hash;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Blob, ChunkRecord};
use crate::store::blob_store::{row_hash, BlobStore};
use crate::store::chunk_index::{ChunkIndex, Entry};
use crate::store::meta::FORMAT_VERSION;
use crate::store::open_lock::OpenLock;
use crate::store::sequence::seq_of;
use crate::store::upgrade_keys::{number_keys, V9_ROW_TAIL};
use crate::store::{iter_after, parent_child, Db, Lmdb, RwTxn};

/// How long an upgrade waits for the store to itself.
const PATIENCE: Duration = Duration::from_secs(5);
/// Rows read into memory at a time.
const BATCH: usize = 4096;
/// Bytes of a sequence number, the value `blobs` holds once upgraded: a blob record is
/// never this short (its tag, version, key, times and lists take at least 10).
const SEQ_LEN: usize = 8;

/// Upgrades the store `lmdb` has open at `dir` and opens it again, or explains why it
/// cannot be upgraded now. Another process of this build upgrading it meanwhile is waited
/// for.
pub(crate) fn upgrade(dir: &Path, lmdb: Lmdb, from: u32) -> Result<Lmdb> {
    // PA
    if lmdb.is_read_only() {
        return Err(Error::denied(format!(
                "store {} has format {from} and needs a one-time upgrade to format {FORMAT_VERSION}, which this user cannot write; run any ouro command on it once as its owner",
                dir.display()
            )));
    }
    drop(lmdb.close(Duration::from_secs(10))?);
    let lock = alone(dir, from)?;
    let lmdb = Lmdb::open_holding(dir, false, Some(lock))?;
    let mut txn = lmdb.write()?;
    let mut config = lmdb.meta.config(&txn)?;
    if config.format < FORMAT_VERSION {
        if config.format < 9 {
            convert(&lmdb, &mut txn)?;
        }
        let dropped = number_keys(&lmdb, &mut txn)?;
        if dropped > 0 {
            tracing::warn!(
                rows = dropped,
                "the upgrade dropped malformed key history rows (damage the old format's verify reported)"
            );
        }
        config.format = FORMAT_VERSION;
        lmdb.meta.put_config(&mut txn, &config)?;
        lmdb.commit(txn)?;
        tracing::info!(store = %dir.display(), from, "upgraded the store's format");
    } else {
        drop(txn);
    }
    drop(lmdb.close(Duration::from_secs(10))?);
    Lmdb::open(dir, false)
}

/// Takes the store's open lock exclusive, trying for [`PATIENCE`]: commands started
/// together on an old store each let go of it to get here, and take turns (the first
/// upgrades, the others find it done). A process that keeps the store open (an older
/// mount or node) makes it give up.
fn alone(dir: &Path, from: u32) -> Result<OpenLock> {
    // PA
    let started = std::time::Instant::now();
    loop {
        if let Some(lock) = OpenLock::try_exclusive(dir)? {
            return Ok(lock);
        }
        if started.elapsed() >= PATIENCE {
            return Err(Error::Retry(format!(
                "store {} has format {from} and needs a one-time upgrade to format {FORMAT_VERSION}, which needs the store to itself, and another process has it open (a node, a mount, or an older ouro); once it has stopped",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rewrites the six databases in `txn` as format 9 has them.
pub(crate) fn convert(lmdb: &Lmdb, txn: &mut RwTxn) -> Result<()> {
    // PA
    let damaged = chunk_records(txn, &lmdb.chunks)?;
    log_records(txn, lmdb.blobs)?;
    log_unlogged(txn, lmdb.blobs)?;
    recount(txn, lmdb, damaged)?;
    let by_hash = lmdb.blobs.by_hash;
    // A row is `key`, a NUL (keys hold none), the time (8) and then the hash (32).
    let mut dropped = rewrite_rows(txn, lmdb.key_to_hash.rows, |txn, row| {
        if row.first() == Some(&0) {
            // Numbered already (format 10): a key never starts with NUL.
            return Ok(Keep::Done);
        }
        let Some(nul) = row.iter().position(|b| *b == 0) else {
            return Ok(Keep::Drop);
        };
        let (head, tail) = row.split_at(nul + 1);
        match tail.len() {
            V9_ROW_TAIL => Ok(Keep::Done),
            40 => Ok(match seq_by_hash(txn, by_hash, &tail[8..])? {
                Some(seq) => Keep::As([head, &tail[..8], &seq.to_be_bytes()].concat()),
                None => Keep::Drop,
            }),
            _ => Ok(Keep::Drop),
        }
    })?;
    dropped += rewrite_rows(txn, lmdb.parent_child.rows, |txn, row| {
        if row.len() == 40 {
            return Ok(Keep::Done);
        }
        let Some((parent, child)) = <[u8; 64]>::try_from(row)
            .ok()
            .map(|r| (Hash(r[..32].try_into().unwrap_or_default()), r))
        else {
            return Ok(Keep::Drop);
        };
        Ok(match seq_by_hash(txn, by_hash, &child[32..])? {
            Some(seq) => Keep::As(parent_child::row(&parent, seq).to_vec()),
            None => Keep::Drop,
        })
    })?;
    if dropped > 0 {
        tracing::warn!(
            rows = dropped,
            "the upgrade dropped index rows naming versions that are not stored (damage the old format's verify reported)"
        );
    }
    Ok(())
}

/// Replaces each old log row's hash by the hash and the record `blobs` held under it, and
/// that record by the row's sequence (rows already upgraded are left). A version logged
/// twice (stored again after gc dropped it) keeps its last place; a row whose record is
/// gone goes too, and the log's numbering goes on after the last row it had.
fn log_records(txn: &mut RwTxn, blobs: BlobStore) -> Result<()> {
    // PA
    let (by_hash, log) = (blobs.by_hash, blobs.log);
    let last = match log.last(txn)? {
        Some((k, _)) => seq_of("blob log", k)?,
        None => return Ok(()),
    };
    each_row(txn, log, |txn, k, v| {
        if v.len() > 32 && by_hash.get(txn, &v[..32])? == Some(&k[..]) {
            // Already this format's: a store upgraded before, whose config said otherwise.
            return Ok(());
        }
        let found = match v.len() {
            32 => by_hash.get(txn, &v)?.map(<[u8]>::to_vec),
            _ => None,
        };
        let row = match found {
            Some(earlier) if earlier.len() == SEQ_LEN => {
                // Logged before: move the row here from its earlier place.
                let moved = log.get(txn, &earlier)?.map(<[u8]>::to_vec);
                log.delete(txn, &earlier)?;
                moved
            }
            Some(record) => Some([&v[..], &record].concat()),
            None => None,
        };
        match row {
            Some(r) if r.len() > 32 && r[..32] == v[..] && Hash::of(&r[32..]).0[..] == v[..] => {
                log.put(txn, &k, &r)?;
                by_hash.put(txn, &v, &k)?;
            }
            _ => {
                log.delete(txn, &k)?;
            }
        }
        Ok(())
    })?;
    blobs.sequence().raise_to(txn, last + 1)
}

/// Appends the records `blobs` holds that no log row named (none in a healthy store).
fn log_unlogged(txn: &mut RwTxn, blobs: BlobStore) -> Result<()> {
    // PA
    each_row(txn, blobs.by_hash, |txn, hash, record| {
        if record.len() == SEQ_LEN {
            return Ok(());
        }
        let next = blobs.sequence().take(txn)?;
        blobs
            .log
            .put(txn, &next.to_be_bytes(), &[&hash[..], &record].concat())?;
        Ok(blobs.by_hash.put(txn, &hash, &next.to_be_bytes())?)
    })
}

/// Moves each chunk record from under its id to under a new sequence in the same database
/// (records already there are 8-byte keys, ids 32), and makes each `chunk_refs` row the
/// record's sequence and the count it held (a count without a record gets sequence 0).
/// Returns the chunks whose count did not decode: [`recount`] counts them again.
fn chunk_records(txn: &mut RwTxn, chunks: &ChunkIndex) -> Result<BTreeSet<Hash>> {
    // PA
    let (records, refs) = (chunks.records, chunks.refs);
    let mut next = 1;
    for item in records.iter(txn)? {
        let (k, _) = item?;
        if k.len() == SEQ_LEN {
            next = next.max(seq_of("chunk record", k)? + 1);
        }
    }
    let mut damaged = BTreeSet::new();
    let mut count = |id: &[u8], v: Option<&[u8]>| match v.map(<[u8; 8]>::try_from) {
        Some(Ok(b)) => u64::from_le_bytes(b),
        None => 0,
        Some(Err(_)) => {
            damaged.insert(Hash(id.try_into().unwrap_or_default()));
            0
        }
    };
    each_row(txn, records, |txn, id, record| {
        if id.len() != 32 {
            return Ok(());
        }
        let entry = Entry {
            seq: next,
            refs: count(&id, refs.get(txn, &id)?),
        };
        records.put(txn, &next.to_be_bytes(), &record)?;
        refs.put(txn, &id, &entry.encode())?;
        records.delete(txn, &id)?;
        next += 1;
        Ok(())
    })?;
    each_row(txn, refs, |txn, id, v| {
        if v.len() == Entry::LEN {
            return Ok(());
        }
        match count(&id, Some(&v)) {
            0 => {
                refs.delete(txn, &id)?;
            }
            n => refs.put(txn, &id, &Entry { seq: 0, refs: n }.encode())?,
        }
        Ok(())
    })?;
    chunks.sequence().raise_to(txn, next)?;
    Ok(damaged)
}

/// Counts the references of `ids` again from what holds them (every chunk occurrence of a
/// version whose references gc has not released, every member or delta record naming
/// one): a count that did not decode must never become 0 and let gc free a chunk in use.
fn recount(txn: &mut RwTxn, lmdb: &Lmdb, ids: BTreeSet<Hash>) -> Result<()> {
    // PA
    if ids.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        chunks = ids.len(),
        "counting again the references of chunks whose count was damaged"
    );
    let mut counts: BTreeMap<Hash, u64> = ids.into_iter().map(|id| (id, 0)).collect();
    each_row(txn, lmdb.blobs.log, |txn, _, row| {
        let (Ok(hash), Some(Ok(blob))) = (row_hash(&row), row.get(32..).map(Blob::decode)) else {
            return Ok(());
        };
        if !lmdb.removed.get(txn, &hash)?.is_some_and(|r| r.released) {
            for c in &blob.chunks {
                counts.entry(c.id).and_modify(|n| *n += 1);
            }
        }
        Ok(())
    })?;
    each_row(txn, lmdb.chunks.records, |_, _, record| {
        for held in ChunkRecord::decode(&record)
            .iter()
            .flat_map(ChunkRecord::holds)
        {
            counts.entry(held).and_modify(|n| *n += 1);
        }
        Ok(())
    })?;
    let refs = lmdb.chunks.refs;
    for (id, n) in counts {
        let seq = match refs.get(txn, &id.0)? {
            Some(v) => Entry::decode(v).map_or(0, |e| e.seq),
            None => 0,
        };
        match (seq, n) {
            (0, 0) => {
                refs.delete(txn, &id.0)?;
            }
            (seq, refs_now) => {
                let entry = Entry {
                    seq,
                    refs: refs_now,
                };
                refs.put(txn, &id.0, &entry.encode())?;
            }
        }
    }
    Ok(())
}

/// What becomes of one row of an index being rewritten.
enum Keep {
    /// Already in the new layout.
    Done,
    /// Replaced by this row.
    As(Vec<u8>),
    /// Names a version that is not stored: dropped, as gc would have.
    Drop,
}

/// Rewrites every row of `db` (keys only; values are empty) as `f` says.
fn rewrite_rows(
    txn: &mut RwTxn,
    db: Db,
    mut f: impl FnMut(&RwTxn, &[u8]) -> Result<Keep>,
) -> Result<u64> {
    // PA
    let mut dropped = 0;
    each_row(txn, db, |txn, k, _| {
        match f(txn, &k)? {
            Keep::Done => {}
            Keep::As(new) => {
                db.delete(txn, &k)?;
                db.put(txn, &new, &[])?;
            }
            Keep::Drop => {
                db.delete(txn, &k)?;
                dropped += 1;
            }
        }
        Ok(())
    })?;
    Ok(dropped)
}

/// The sequence `blobs` gives the hash `h` once [`log_records`] ran.
fn seq_by_hash(txn: &RwTxn, by_hash: Db, h: &[u8]) -> Result<Option<u64>> {
    // A
    match by_hash.get(txn, h)? {
        Some(v) if v.len() == SEQ_LEN => seq_of("blob index", v).map(Some),
        _ => Ok(None),
    }
}

/// Calls `f` with every row of `db` in key order, copied out of the map [`BATCH`] rows at a
/// time so that `f` may write to `txn`; rows `f` adds after the one it was given are met
/// too.
pub(crate) fn each_row(
    txn: &mut RwTxn,
    db: Db,
    mut f: impl FnMut(&mut RwTxn, Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<()> {
    // PA
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = read_batch(txn, db, after.as_deref())?;
        let Some((k, _)) = rows.last() else {
            return Ok(());
        };
        after = Some(k.clone());
        for (k, v) in rows {
            f(txn, k, v)?;
        }
    }
}

/// Up to [`BATCH`] rows of `db` after `after`, copied out of the map.
pub(crate) fn read_batch(
    txn: &RwTxn,
    db: Db,
    after: Option<&[u8]>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    // A
    let mut out = Vec::with_capacity(BATCH);
    for item in iter_after(&db, txn, after)?.take(BATCH) {
        let (k, v) = item?;
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Blob, BlobKind, VersionMeta};

    fn blob(key: &str, created: i64, parents: Vec<Hash>) -> Blob {
        Blob {
            key: key.into(),
            kind: BlobKind::for_parents(parents.len()),
            parents,
            created,
            size: 0,
            chunks: vec![],
            meta: VersionMeta::None,
        }
    }

    /// Writes `blob` as format 8 did; returns its hash.
    fn old_put(lmdb: &Lmdb, t: &mut RwTxn, seq: u64, b: &Blob) -> Hash {
        let bytes = b.encode().unwrap();
        let h = Hash::of(&bytes);
        lmdb.blobs.by_hash.put(t, &h.0, &bytes).unwrap();
        lmdb.blobs.log.put(t, &seq.to_be_bytes(), &h.0).unwrap();
        let row = crate::store::upgrade_keys::v9_row(&b.key, b.created, &h.0);
        lmdb.key_to_hash.rows.put(t, &row, &[]).unwrap();
        for p in &b.parents {
            lmdb.parent_child
                .rows
                .put(t, &[p.0, h.0].concat(), &[])
                .unwrap();
        }
        h
    }

    #[test]
    fn format_8_chunk_records_move_under_sequences_with_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let mut t = lmdb.write().unwrap();
        let record = |size| crate::model::ChunkRecord {
            size,
            sealed_len: size,
            key_epoch: 0,
            nonce: [0; 12],
            k: 1,
            m: 0,
            slices: vec![Hash([size as u8; 32])],
            kind: crate::model::ChunkKind::Sliced,
        };
        let (x, y, z) = (Hash([1; 32]), Hash([2; 32]), Hash([3; 32]));
        let (c, d) = (lmdb.chunks.records, lmdb.chunks.refs);
        c.put(&mut t, &x.0, &record(5).encode().unwrap()).unwrap();
        c.put(&mut t, &y.0, &record(6).encode().unwrap()).unwrap();
        d.put(&mut t, &x.0, &3u64.to_le_bytes()).unwrap();
        // A count with no record (a damaged store): kept as a count.
        d.put(&mut t, &z.0, &2u64.to_le_bytes()).unwrap();
        convert(&lmdb, &mut t).unwrap();
        convert(&lmdb, &mut t).unwrap();
        assert_eq!(lmdb.chunks.get(&t, &x).unwrap(), Some(record(5)));
        assert_eq!(lmdb.chunks.get(&t, &y).unwrap(), Some(record(6)));
        assert_eq!(lmdb.chunks.refs(&t, &x).unwrap(), 3);
        assert_eq!(lmdb.chunks.refs(&t, &y).unwrap(), 0);
        assert_eq!(lmdb.chunks.refs(&t, &z).unwrap(), 2);
        assert!(!lmdb.chunks.contains(&t, &z).unwrap());
        assert_eq!(lmdb.chunks.len(&t).unwrap(), 2);
        let ids: Vec<Hash> = lmdb
            .chunks
            .page(&t, None, 10)
            .unwrap()
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        assert_eq!(ids, vec![x, y]);
        lmdb.chunks.put(&mut t, &z, &record(7)).unwrap();
        assert_eq!(lmdb.chunks.get(&t, &z).unwrap(), Some(record(7)));
        assert_eq!(lmdb.chunks.refs(&t, &z).unwrap(), 2);
        assert_eq!(lmdb.chunks.delete(&mut t, &x).unwrap(), Vec::<Hash>::new());
        assert_eq!(lmdb.chunks.get(&t, &x).unwrap(), None);
    }

    #[test]
    fn format_8_rows_become_sequences_and_every_version_reads() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let mut t = lmdb.write().unwrap();
        let a = old_put(&lmdb, &mut t, 1, &blob("k", 1, vec![]));
        let b = old_put(&lmdb, &mut t, 2, &blob("k", 2, vec![a]));
        // Logged twice (stored again after gc dropped it): it keeps its last place.
        let c = old_put(&lmdb, &mut t, 3, &blob("j", 3, vec![]));
        lmdb.blobs
            .log
            .put(&mut t, &5u64.to_be_bytes(), &c.0)
            .unwrap();
        // Logged, then dropped by gc: in the middle and last.
        lmdb.blobs
            .log
            .put(&mut t, &4u64.to_be_bytes(), &[9; 32])
            .unwrap();
        lmdb.blobs
            .log
            .put(&mut t, &6u64.to_be_bytes(), &[8; 32])
            .unwrap();
        convert(&lmdb, &mut t).unwrap();
        // Twice is idempotent.
        convert(&lmdb, &mut t).unwrap();
        assert_eq!(number_keys(&lmdb, &mut t).unwrap(), 0);
        assert_eq!(lmdb.blobs.seq(&t, &a).unwrap(), Some(1));
        assert_eq!(lmdb.blobs.seq(&t, &c).unwrap(), Some(5));
        assert_eq!(lmdb.blob_log.last(&t).unwrap(), 6);
        let (log, _) = lmdb.blob_log.since(&t, 0, 10).unwrap();
        assert_eq!(log, vec![(1, a), (2, b), (5, c)]);
        let hashes = |key| -> Vec<Hash> {
            let v = lmdb.key_to_hash.versions(&t, key).unwrap();
            v.into_iter().map(|e| e.hash).collect()
        };
        assert_eq!(hashes("k"), vec![a, b]);
        assert_eq!(hashes("j"), vec![c]);
        assert_eq!(lmdb.parent_child.children(&t, &a).unwrap(), vec![b]);
        assert_eq!(lmdb.blobs.get(&t, &b).unwrap().unwrap().parents, vec![a]);
        let (_, next) = lmdb.blobs.put(&mut t, &blob("k", 7, vec![b])).unwrap();
        assert_eq!(next, 7);
    }

    #[test]
    fn a_count_that_does_not_decode_is_counted_again_never_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let lmdb = Lmdb::open(dir.path(), true).unwrap();
        let mut t = lmdb.write().unwrap();
        let x = Hash([1; 32]);
        let sliced = crate::model::ChunkRecord {
            size: 5,
            sealed_len: 5,
            key_epoch: 0,
            nonce: [0; 12],
            k: 1,
            m: 0,
            slices: vec![Hash([9; 32])],
            kind: crate::model::ChunkKind::Sliced,
        };
        let (c, d) = (lmdb.chunks.records, lmdb.chunks.refs);
        c.put(&mut t, &x.0, &sliced.encode().unwrap()).unwrap();
        d.put(&mut t, &x.0, &[1, 2, 3]).unwrap();
        // Two occurrences in one live version, one in a version whose references gc released.
        let mut live = blob("k", 1, vec![]);
        live.chunks = vec![
            crate::model::ChunkRef { id: x, size: 5 },
            crate::model::ChunkRef { id: x, size: 5 },
        ];
        old_put(&lmdb, &mut t, 1, &live);
        let mut gone = blob("j", 2, vec![]);
        gone.chunks = vec![crate::model::ChunkRef { id: x, size: 5 }];
        let g = old_put(&lmdb, &mut t, 2, &gone);
        let released = crate::store::removed::Removal {
            time: 3,
            whole_key: false,
            released: true,
        };
        lmdb.removed.put(&mut t, &g, &released).unwrap();
        convert(&lmdb, &mut t).unwrap();
        assert_eq!(lmdb.chunks.refs(&t, &x).unwrap(), 2);
        assert_eq!(lmdb.chunks.get(&t, &x).unwrap(), Some(sliced));
    }
}
