//! verify, the versions: every version record hash-checked, its place in its key's history,
//! and its chunks present and readable; with repair, the rows of lost versions removed.

use std::collections::{HashMap, HashSet};

use crate::cas::Cas;
use crate::error::Result;
use crate::hash::Hash;
use crate::maintenance::verify::{Damage, VerifyReport};
use crate::maintenance::PAGE;
use crate::store::blob_store::row_hash;
use crate::store::sequence::seq_of;

impl Cas {
    /// Checks every version record, its place in its key's history, and that its chunks are
    /// here and not in `bad_chunks`. A pack member that was not opened one by one (`cluster`,
    /// or its keys are not here) is lost with its pack. With `repair`, removes the index rows
    /// of versions whose log row is gone, and returns their log sequences.
    pub(super) fn verify_blobs(
        &self,
        report: &mut VerifyReport,
        bad_chunks: &HashSet<Hash>,
        cluster: bool,
        repair: bool,
    ) -> Result<HashMap<Hash, u64>> {
        // PA
        let mut after = None;
        // Index rows of versions whose record is gone from the log: lost beyond repair,
        // reported once, and with repair removed, so that the indexes agree again.
        let mut gone = HashMap::new();
        loop {
            let txn = self.lmdb.read()?;
            let page = self.lmdb.blobs.page(&txn, after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            for hash in page {
                report.blobs += 1;
                let blob = match self.lmdb.blobs.get(&txn, &hash) {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(e) => {
                        let mut reason = e.to_string();
                        let seq = if repair {
                            self.lmdb.blobs.record_gone(&txn, &hash)?
                        } else {
                            None
                        };
                        if let Some(seq) = seq {
                            gone.insert(hash, seq);
                            reason.push_str(": lost; its index row is removed");
                        }
                        report.damage.push(Damage::Blob {
                            hash,
                            key: None,
                            reason,
                        });
                        continue;
                    }
                };
                if self
                    .lmdb
                    .removed
                    .get(&txn, &hash)?
                    .is_some_and(|r| r.released)
                {
                    continue;
                }
                let seq = self.lmdb.blobs.seq(&txn, &hash)?.unwrap_or(0);
                if !self
                    .lmdb
                    .key_to_hash
                    .has(&txn, &blob.key, blob.created, seq)?
                {
                    report.damage.push(Damage::Index {
                        repaired: false,
                        key: Some(blob.key.clone()),
                        reason: format!(
                            "{}@{} is missing from the key's history",
                            blob.key,
                            hash.short()
                        ),
                    });
                }
                for c in &blob.chunks {
                    // A member opened one by one was judged by that; any other is lost with
                    // its pack (reported under the pack's id).
                    let with_pack = match self.lmdb.chunks.get(&txn, &c.id) {
                        Ok(Some(r)) if !self.opens_alone(&r, cluster) => r.pack().map(|(p, _)| p),
                        _ => None,
                    };
                    if bad_chunks.contains(&c.id)
                        || with_pack.is_some_and(|p| bad_chunks.contains(&p))
                    {
                        report.damage.push(Damage::Blob {
                            hash,
                            key: Some(blob.key.clone()),
                            reason: format!(
                                "{}@{}: chunk {} cannot be rebuilt",
                                blob.key,
                                hash.short(),
                                c.id.short()
                            ),
                        });
                    } else if !self.lmdb.chunks.contains(&txn, &c.id)? {
                        report.damage.push(Damage::Blob {
                            hash,
                            key: Some(blob.key.clone()),
                            reason: format!(
                                "{}@{}: chunk {} is missing",
                                blob.key,
                                hash.short(),
                                c.id.short()
                            ),
                        });
                    }
                }
            }
        }
        if gone.is_empty() {
            return Ok(gone);
        }
        let mut w = self.lmdb.write()?;
        for hash in gone.keys() {
            self.lmdb.blobs.delete(&mut w, hash)?;
        }
        self.lmdb.commit(w)?;
        Ok(gone)
    }

    /// Walks `blob_log`, which `verify_blobs` (walking `blobs`) cannot see past: a record
    /// whose hash the `blobs` index does not map back to its sequence is reported, as one
    /// unreadable by hash (its index row lost) or logged twice (put again after that loss).
    /// Reported only: nothing shows whether such a version was removed meanwhile, since
    /// `rm KEY` and gc find versions through those very rows.
    pub(super) fn verify_log(&self, report: &mut VerifyReport) -> Result<()> {
        // A
        self.each_row(&self.lmdb.blobs.log, |txn, k, v| {
            // Looked up by the hash it was logged under; the record is hashed only when the
            // index disagrees (verify_blobs hashes every record it reaches).
            let (Ok(seq), Ok(hash)) = (seq_of("blob log", k), row_hash(v)) else {
                return Ok(());
            };
            let problem = match self.lmdb.blobs.seq(txn, &hash) {
                Ok(Some(s)) if s == seq => return Ok(()),
                Ok(Some(s)) => format!("is logged twice (sequences {seq} and {s})"),
                Ok(None) => format!("(log sequence {seq}) has lost its hash index row"),
                Err(e) => format!("(log sequence {seq}): {e}"),
            };
            let record = v.get(32..).unwrap_or_default();
            if Hash::of(record) != hash {
                // A damaged record: verify_blobs or the history check report it.
                return Ok(());
            }
            let key = crate::model::Blob::decode(record).ok().map(|b| b.key);
            let reason = format!("version {} {problem}", hash.short());
            report.damage.push(Damage::Index {
                key,
                reason,
                repaired: false,
            });
            Ok(())
        })
    }
}
