//! `ouro forget`: thins out the snapshots of a prefix by restic's `--keep-*` rules, applied
//! per (host, path) as restic groups them, then removes the file versions only forgotten
//! snapshots used. It only marks, as `rm KEY@VERSION` does (and through the same path, so a
//! cluster's DeletionWAL carries it to every node); `ouro gc` frees the chunks afterwards.
//!
//! Safe beside a running `put -r`: a run commits its files before its snapshot, its new
//! files are heads of their keys (never removed), and its unchanged files point at versions
//! its parent references; the parent is a head of the snapshot history when the run starts,
//! and heads and the newest snapshot of every (host, path) are always kept. The exception is
//! two runs of one host and path at once: once the other commits, the shared parent is
//! neither, and the files the other saw change may lose the versions this run reuses.

use std::collections::{BTreeMap, HashSet};

use crate::cas::{now_nanos, Cas};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::snapshot::{prefix_of_snapshot_key, snapshot_key};
use crate::model::{validate_key, Blob, EntryKind};
use crate::snapshot::names::key_segment;
use crate::snapshot::retention::{apply_local, KeepPolicy};
use crate::snapshot::stream::StreamReader;
use crate::store::deletion_wal::{Deletion, WalEntry};
use crate::store::{RoTxn, RwTxn};

/// Why a head of the snapshot history is kept when no rule keeps it.
const HEAD_REASON: &str = "head of the snapshot history";
/// Snapshot keys read per page when looking for overlapping prefixes.
const KEY_PAGE: usize = 1000;

/// What `forget` decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetDecision {
    /// The snapshot version.
    pub hash: Hash,
    /// When its run started (ns since the epoch).
    pub time: i64,
    /// The host that made it.
    pub host: String,
    /// The directory it backed up (raw bytes).
    pub path: Vec<u8>,
    /// True when it is kept.
    pub keep: bool,
    /// Every rule that keeps it ("last snapshot", "daily snapshot", "newest snapshot", ...);
    /// empty when it is forgotten.
    pub reasons: Vec<String>,
}

/// What a forget did, or with `dry_run` would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetReport {
    /// The prefix whose snapshots were thinned out.
    pub prefix: String,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Every live snapshot of the prefix, oldest first, with its decision.
    pub snapshots: Vec<ForgetDecision>,
    /// File versions removed (would be, with `dry_run`): those the forgotten snapshots
    /// used that no kept snapshot uses and that are not the head of their key.
    pub versions_removed: u64,
}

impl ForgetReport {
    /// The snapshots kept, oldest first.
    pub fn kept(&self) -> impl Iterator<Item = &ForgetDecision> {
        // A
        self.snapshots.iter().filter(|d| d.keep)
    }

    /// The snapshots forgotten (removed, or to be removed with `dry_run`), oldest first.
    pub fn forgotten(&self) -> impl Iterator<Item = &ForgetDecision> {
        // A
        self.snapshots.iter().filter(|d| !d.keep)
    }
}

/// Everything forget decides from one read of the index.
struct Plan {
    /// The prefix's snapshots, oldest first, as `decisions`.
    own: Vec<(Hash, Blob)>,
    decisions: Vec<ForgetDecision>,
    /// Live snapshots of overlapping prefixes, with the key segments leading from their
    /// root down to this prefix (empty for prefixes at or under it).
    others: Vec<(Blob, Vec<String>)>,
}

impl Cas {
    /// Forgets the snapshots of `prefix` that no rule of `policy` keeps (the newest of each
    /// host and path always stays), and removes the file versions only they used and that
    /// are not the head of their key, in one transaction. `dry_run` only reports. Run
    /// [`Cas::gc`] afterwards to free the chunks.
    ///
    /// ```
    /// # use ouroboros_db::{Cas, CreateOptions, Identity, NoProgress};
    /// # use ouroboros_db::snapshot::{BackupOptions, KeepPolicy};
    /// # fn main() -> Result<(), ouroboros_db::Error> {
    /// # let store = tempfile::tempdir().unwrap();
    /// # let src = tempfile::tempdir().unwrap();
    /// let cas = Cas::create(store.path(), &CreateOptions::default(), &Identity::generate())?;
    /// let backup = BackupOptions {
    ///     source: src.path().to_path_buf(),
    ///     prefix: "docs".into(),
    ///     exclude: &|_, _| false,
    ///     host: None,
    ///     progress: &NoProgress,
    /// };
    /// for text in ["one", "two", "three"] {
    ///     std::fs::write(src.path().join("a.txt"), text).unwrap();
    ///     cas.put_tree(&backup)?;
    /// }
    /// let policy = KeepPolicy { last: Some(1), ..KeepPolicy::default() };
    /// let report = cas.forget("docs", &policy, false)?;
    /// assert_eq!(report.forgotten().count(), 2);
    /// assert_eq!(report.versions_removed, 2); // "one" and "two"; "three" is the head
    /// assert_eq!(cas.snapshots("docs")?.len(), 1);
    /// cas.gc(&NoProgress)?;
    /// # Ok(()) }
    /// ```
    pub fn forget(&self, prefix: &str, policy: &KeepPolicy, dry_run: bool) -> Result<ForgetReport> {
        // PA
        if policy.is_empty() {
            return Err(Error::InvalidArgument(
                "forget needs at least one --keep-* rule".into(),
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        validate_key(prefix)?;
        let plan = self.plan_forget(prefix, policy)?;
        if plan.own.is_empty() {
            return Err(Error::NotFound(format!(
                "no snapshot of {prefix:?} (back it up with put -r)"
            )));
        }
        let doomed: Vec<Hash> = plan
            .decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.hash)
            .collect();
        let candidates = match doomed.is_empty() {
            true => Vec::new(),
            false => self.unshared_versions(&plan)?,
        };
        let versions_removed = if dry_run {
            let txn = self.lmdb.read()?;
            let mut n = 0;
            for v in &candidates {
                n += u64::from(self.removable_in(&txn, prefix, v)?.is_some());
            }
            n
        } else {
            self.remove_forgotten(prefix, &doomed, &candidates)?
        };
        Ok(ForgetReport {
            prefix: prefix.to_string(),
            dry_run,
            snapshots: plan.decisions,
            versions_removed,
        })
    }

    /// Reads the prefix's snapshots, its heads and the overlapping prefixes' snapshots in
    /// one read transaction, so the keep decisions see one state of the history.
    fn plan_forget(&self, prefix: &str, policy: &KeepPolicy) -> Result<Plan> {
        // A
        let txn = self.lmdb.read()?;
        let key = snapshot_key(prefix);
        let own = self.live_snapshots_in(&txn, &key)?;
        let heads = match self.lmdb.versions.get(&txn, &key)? {
            Some(state) if state.deleted.is_none() => state.heads,
            _ => Vec::new(),
        };
        let decisions = decide(policy, &own, &heads);
        let others = self.overlapping_snapshots_in(&txn, prefix)?;
        Ok(Plan {
            own,
            decisions,
            others,
        })
    }

    /// The live (not removed) snapshot versions of snapshot key `key`, oldest first.
    fn live_snapshots_in(&self, txn: &RoTxn, key: &str) -> Result<Vec<(Hash, Blob)>> {
        // A
        let mut out = Vec::new();
        for v in self.lmdb.key_to_hash.versions(txn, key)? {
            if self.lmdb.removed.get(txn, &v.hash)?.is_some() {
                continue;
            }
            if let Some(blob) = self.lmdb.blobs.get(txn, &v.hash)? {
                if blob.meta.snapshot().is_some() {
                    out.push((v.hash, blob));
                }
            }
        }
        out.sort_by_key(|(h, b)| (b.created, *h));
        Ok(out)
    }

    /// Live snapshots of the prefixes whose files may be this prefix's: its ancestors
    /// (`home` for `home/ann`) and the prefixes under it (`home/ann/src`).
    fn overlapping_snapshots_in(
        &self,
        txn: &RoTxn,
        prefix: &str,
    ) -> Result<Vec<(Blob, Vec<String>)>> {
        // A
        let mut out = Vec::new();
        for (at, _) in prefix.match_indices('/') {
            let below: Vec<String> = prefix[at + 1..].split('/').map(str::to_string).collect();
            for (_, blob) in self.live_snapshots_in(txn, &snapshot_key(&prefix[..at]))? {
                out.push((blob, below.clone()));
            }
        }
        let under = snapshot_key(&format!("{prefix}/"));
        let mut after: Option<String> = None;
        loop {
            let page = self
                .lmdb
                .key_to_hash
                .keys(txn, &under, after.as_deref(), KEY_PAGE)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for key in page.iter().filter(|k| prefix_of_snapshot_key(k).is_some()) {
                for (_, blob) in self.live_snapshots_in(txn, key)? {
                    out.push((blob, Vec::new()));
                }
            }
            after = Some(last);
        }
        Ok(out)
    }

    /// The file versions forgotten snapshots use and no kept snapshot (of this prefix or an
    /// overlapping one) uses. Each distinct directory is read once: kept trees first, so a
    /// tree a kept snapshot shares is skipped whole when a forgotten one meets it.
    fn unshared_versions(&self, plan: &Plan) -> Result<Vec<Hash>> {
        // A
        let mut visited = HashSet::new();
        let mut kept = HashSet::new();
        for ((_, blob), d) in plan.own.iter().zip(&plan.decisions) {
            if d.keep {
                self.file_versions(blob, &[], &mut visited, &mut kept)?;
            }
        }
        for (blob, below) in &plan.others {
            self.file_versions(blob, below, &mut visited, &mut kept)?;
        }
        let mut used = HashSet::new();
        for ((_, blob), d) in plan.own.iter().zip(&plan.decisions) {
            if !d.keep {
                self.file_versions(blob, &[], &mut visited, &mut used)?;
            }
        }
        let mut out: Vec<Hash> = used.difference(&kept).copied().collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Adds the file versions of snapshot `blob` to `out`, starting at the directories the
    /// key segments `below` lead to from its root; directories in `visited` are skipped.
    pub(crate) fn file_versions(
        &self,
        blob: &Blob,
        below: &[String],
        visited: &mut HashSet<Hash>,
        out: &mut HashSet<Hash>,
    ) -> Result<()> {
        // A
        let root = blob
            .meta
            .snapshot()
            .and_then(|s| s.root_tree())
            .ok_or_else(|| Error::malformed("snapshot", "no root tree"))?;
        let reader = StreamReader::open(self, blob.clone())?;
        // The way down is only partly read (the entries along it), so it is not marked
        // visited: the same tree met elsewhere must still be read whole.
        let mut level = vec![root];
        for segment in below {
            let mut next = Vec::new();
            for h in &level {
                for e in reader.tree(h)?.entries {
                    if e.kind == EntryKind::Dir && key_segment(&e.name) == *segment {
                        next.extend(e.content);
                    }
                }
            }
            level = next;
        }
        let mut work: Vec<Hash> = level.into_iter().filter(|h| visited.insert(*h)).collect();
        while let Some(h) = work.pop() {
            for e in reader.tree(&h)?.entries {
                match (e.kind, e.content) {
                    (EntryKind::Dir, Some(sub)) if visited.insert(sub) => work.push(sub),
                    (EntryKind::Dir, _) => {}
                    (_, Some(version)) => {
                        out.insert(version);
                    }
                    (_, None) => {}
                }
            }
        }
        Ok(())
    }

    /// The key of version `hash` when forget may remove it: still live, not the head of
    /// its key, and of a key under `prefix` (only such keys are in the snapshots walked).
    fn removable_in(&self, txn: &RoTxn, prefix: &str, hash: &Hash) -> Result<Option<String>> {
        // A
        if self.lmdb.removed.get(txn, hash)?.is_some() {
            return Ok(None);
        }
        let Some(blob) = self.lmdb.blobs.get(txn, hash)? else {
            return Ok(None);
        };
        let under = blob
            .key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'));
        let Some(state) = self.lmdb.versions.get(txn, &blob.key)? else {
            return Ok(None);
        };
        Ok((under && !state.heads.contains(hash)).then_some(blob.key))
    }

    /// Removes the forgotten snapshots and then the candidate file versions still
    /// removable, in one write transaction; returns how many file versions it removed.
    fn remove_forgotten(&self, prefix: &str, doomed: &[Hash], candidates: &[Hash]) -> Result<u64> {
        // PA
        let mut txn = self.lmdb.write()?;
        let now = now_nanos();
        let key = snapshot_key(prefix);
        for hash in doomed {
            self.remove_one_in(&mut txn, &key, *hash, now)?;
        }
        let mut removed = 0;
        for hash in candidates {
            // Checked again in this transaction: a put since the plan may have made a
            // candidate a head again (never removed), or another forget removed it.
            if let Some(file_key) = self.removable_in(&txn, prefix, hash)? {
                removed += u64::from(self.remove_one_in(&mut txn, &file_key, *hash, now)?);
            }
        }
        self.lmdb.commit(txn)?;
        Ok(removed)
    }

    /// Removes one version as `rm KEY@VERSION` does (mark, DeletionWAL entry), unless it is
    /// removed already or a head of its key; true when it removed it.
    fn remove_one_in(&self, txn: &mut RwTxn, key: &str, hash: Hash, now: i64) -> Result<bool> {
        // PA
        if self.lmdb.removed.get(txn, &hash)?.is_some() {
            return Ok(false);
        }
        let Some(mut state) = self.lmdb.versions.get(txn, key)? else {
            return Ok(false);
        };
        if state.heads.contains(&hash) {
            return Ok(false);
        }
        let Some(blob) = self.lmdb.blobs.get(txn, &hash)? else {
            return Ok(false);
        };
        self.remove_version_in(txn, key, hash, &blob, &mut state, now)?;
        self.lmdb.deletion_wal.log_deletion(
            txn,
            &WalEntry {
                time: now,
                deletion: Deletion::Version {
                    key: key.to_string(),
                    hash,
                },
            },
        )?;
        Ok(true)
    }
}

/// Applies `policy` within each (host, path) group of `snapshots` (oldest first), so the
/// newest of every group stays: the parent its machine's next run builds on. Heads of the
/// snapshot history stay too, whatever the rules say, since a run may be building on one.
fn decide(policy: &KeepPolicy, snapshots: &[(Hash, Blob)], heads: &[Hash]) -> Vec<ForgetDecision> {
    // A
    let mut decisions: Vec<ForgetDecision> = snapshots
        .iter()
        .map(|(hash, blob)| {
            let info = blob.meta.snapshot();
            ForgetDecision {
                hash: *hash,
                time: blob.created,
                host: info.map(|s| s.host.clone()).unwrap_or_default(),
                path: info.map(|s| s.path.clone()).unwrap_or_default(),
                keep: false,
                reasons: Vec::new(),
            }
        })
        .collect();
    let mut groups: BTreeMap<(String, Vec<u8>), Vec<usize>> = BTreeMap::new();
    for (i, d) in decisions.iter().enumerate() {
        groups
            .entry((d.host.clone(), d.path.clone()))
            .or_default()
            .push(i);
    }
    for members in groups.values() {
        let times: Vec<i64> = members.iter().map(|&i| decisions[i].time).collect();
        for (&i, verdict) in members.iter().zip(apply_local(policy, &times)) {
            decisions[i].keep = verdict.keep;
            decisions[i].reasons = verdict.reasons;
        }
    }
    for d in decisions.iter_mut() {
        if !d.keep && heads.contains(&d.hash) {
            d.keep = true;
            d.reasons.push(HEAD_REASON.to_string());
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlobKind, Entry, SnapshotInfo, VersionMeta};

    fn snap(host: &str, time: i64) -> (Hash, Blob) {
        let root = Entry {
            name: b"src".to_vec(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime: 0,
            atime: 0,
            ctime: 0,
            size: 0,
            content: Some(Hash([1; 32])),
            target: Vec::new(),
            rdev: 0,
            hardlink: None,
            xattrs: Vec::new(),
        };
        let blob = Blob {
            key: snapshot_key("p"),
            parents: Vec::new(),
            created: time,
            kind: BlobKind::VersionVector,
            size: 0,
            chunks: Vec::new(),
            meta: VersionMeta::Snapshot(Box::new(SnapshotInfo {
                root,
                host: host.into(),
                path: b"/src".to_vec(),
                started: time,
                finished: time,
                summary: Default::default(),
                errors: Vec::new(),
            })),
        };
        (blob.hash().unwrap(), blob)
    }

    #[test]
    fn each_host_keeps_its_newest_and_heads_stay() {
        let snaps = vec![
            snap("a", 1),
            snap("b", 2),
            snap("a", 3),
            snap("b", 4),
            snap("a", 5),
        ];
        let policy = KeepPolicy {
            last: Some(1),
            ..KeepPolicy::default()
        };
        let kept: Vec<bool> = decide(&policy, &snaps, &[])
            .iter()
            .map(|d| d.keep)
            .collect();
        assert_eq!(kept, [false, false, false, true, true]);
        let with_head = decide(&policy, &snaps, &[snaps[0].0]);
        assert!(with_head[0].keep);
        assert_eq!(with_head[0].reasons, [HEAD_REASON]);
    }
}
