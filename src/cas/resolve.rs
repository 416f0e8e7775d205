//! Turning refs (`KEY`, `KEY@prefix`, `KEY@~N`, `KEY@time`) into version hashes.

use crate::cas::Cas;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::{Blob, Ref, Selector, ToRef};
use crate::store::RoTxn;

impl Cas {
    /// Resolves a ref to a version hash (the version may have been removed).
    ///
    /// ```
    /// use ouroboros_db::{model::Ref, Cas, CreateOptions, Identity, PutOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let cas = Cas::create(dir.path(), &CreateOptions::default(), &Identity::generate())?;
    /// let v1 = cas.put("backup", &b"monday"[..], &PutOptions::default())?;
    /// let v2 = cas.put("backup", &b"tuesday"[..], &PutOptions::default())?;
    /// // Typed refs need no parsing and no escaping ...
    /// assert_eq!(cas.resolve(&Ref::key("backup")?)?, v2.hash);
    /// assert_eq!(cas.resolve(&Ref::back("backup", 1)?)?, v1.hash);
    /// assert_eq!(cas.resolve(&Ref::version("backup", v1.hash)?)?, v1.hash);
    /// // ... and text is read as a user types it.
    /// assert_eq!(cas.resolve("backup@~1")?, v1.hash);
    /// # Ok::<(), ouroboros_db::Error>(())
    /// ```
    pub fn resolve(&self, reference: &(impl ToRef + ?Sized)) -> Result<Hash> {
        // A
        let r = reference.to_ref()?;
        let txn = self.lmdb.read()?;
        self.resolve_in(&txn, &r)
    }

    /// Resolves a ref to a version whose content can still be read.
    pub fn resolve_readable(&self, reference: &(impl ToRef + ?Sized)) -> Result<(Hash, Blob)> {
        // A
        let r = reference.to_ref()?;
        let txn = self.lmdb.read()?;
        let hash = self.resolve_in(&txn, &r)?;
        if self.lmdb.removed.get(&txn, &hash)?.is_some() {
            return Err(Error::NotFound(format!(
                "version {} of {:?} was removed",
                hash.short(),
                r.key
            )));
        }
        let blob =
            self.lmdb.blobs.get(&txn, &hash)?.ok_or_else(|| {
                Error::NotFound(format!("version {} of {:?}", hash.short(), r.key))
            })?;
        Ok((hash, blob))
    }

    pub(crate) fn resolve_in(&self, txn: &RoTxn, r: &Ref) -> Result<Hash> {
        // A
        let text = r.to_string();
        match &r.selector {
            Selector::Exact(h) => match self.lmdb.blobs.get(txn, h)? {
                Some(b) if b.key == r.key => Ok(*h),
                _ => Err(Error::NotFound(format!(
                    "no version {} of {:?}",
                    h.short(),
                    r.key
                ))),
            },
            Selector::Head => self.single_head(txn, &r.key),
            Selector::HashPrefix(p) => {
                let matches: Vec<Hash> = self
                    .lmdb
                    .key_to_hash
                    .versions(txn, &r.key)?
                    .into_iter()
                    .map(|v| v.hash)
                    .filter(|h| h.has_hex_prefix(p))
                    .collect();
                match matches.as_slice() {
                    [] => Err(Error::NotFound(format!(
                        "no version of {:?} matches {p}",
                        r.key
                    ))),
                    [h] => Ok(*h),
                    _ => Err(Error::AmbiguousRef {
                        reference: text,
                        candidates: matches,
                    }),
                }
            }
            Selector::Back(n) => {
                let mut h = self.single_head(txn, &r.key)?;
                for i in 0..*n {
                    let blob = self.lmdb.blobs.get(txn, &h)?.ok_or_else(|| {
                        Error::NotFound(format!("{text}: version {} is gone", h.short()))
                    })?;
                    h = *blob.parents.first().ok_or_else(|| {
                        Error::NotFound(format!(
                            "{text}: {:?} has only {} versions in its history",
                            r.key,
                            i + 1
                        ))
                    })?;
                }
                Ok(h)
            }
            Selector::At(t) => {
                let state = self.lmdb.versions.get(txn, &r.key)?;
                let versions = self.lmdb.key_to_hash.versions(txn, &r.key)?;
                let mut candidate = None;
                for v in versions.iter().rev().filter(|v| v.created <= *t) {
                    match self.lmdb.removed.get(txn, &v.hash)? {
                        Some(rm) if !rm.whole_key || rm.time <= *t => continue,
                        _ => {}
                    }
                    candidate = Some(*v);
                    break;
                }
                if let Some(d) = state.as_ref().and_then(|s| s.deleted) {
                    if d <= *t && candidate.is_none_or(|c| c.created < d) {
                        return Err(Error::KeyDeleted { key: r.key.clone() });
                    }
                }
                candidate
                    .map(|c| c.hash)
                    .ok_or_else(|| Error::NotFound(format!("{:?} had no version at {text}", r.key)))
            }
        }
    }

    fn single_head(&self, txn: &RoTxn, key: &str) -> Result<Hash> {
        // A
        match self.lmdb.versions.get(txn, key)? {
            None => Err(Error::NotFound(format!("no key {key:?}"))),
            Some(s) if s.heads.is_empty() && s.deleted.is_some() => Err(Error::KeyDeleted {
                key: key.to_string(),
            }),
            Some(s) => match s.heads.as_slice() {
                [] => Err(Error::NotFound(format!("key {key:?} has no versions left"))),
                [h] => Ok(*h),
                _ => Err(Error::MultipleHeads {
                    key: key.to_string(),
                    heads: s.heads,
                }),
            },
        }
    }
}
