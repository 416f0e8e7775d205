//! put -r and get -r: whole trees, one key per regular file.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use ouro_cli::cli::Global;
use ouroboros_db::{Error, PutItem};
use serde_json::json;

use super::content::{get_into_file, Durability};
use super::tree_cache::{Stamp, TreeCache};
use crate::output::{human_bytes, print_json};
use crate::progress::Bar;

/// A regular file found by the walk.
struct Found {
    rel: String,
    path: PathBuf,
    stamp: Stamp,
}

/// Opens its file on the first read, so a tree of 50k files never holds 50k descriptors.
struct LazyFile {
    path: PathBuf,
    file: Option<File>,
}

impl Read for LazyFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A
        if self.file.is_none() {
            self.file = Some(File::open(&self.path)?);
        }
        match self.file.as_mut() {
            Some(f) => f.read(buf),
            None => Ok(0),
        }
    }
}

/// Exclude patterns: matched against the path relative to the tree's root, and patterns
/// without a `/` also against the file or directory name (`*.tmp`, `node_modules`).
struct Excludes {
    paths: GlobSet,
    names: GlobSet,
}

impl Excludes {
    fn new(patterns: &[String]) -> Result<Self> {
        // A
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        for p in patterns {
            let g = Glob::new(p)
                .map_err(|e| Error::InvalidArgument(format!("bad --exclude pattern {p:?}: {e}")))?;
            if p.contains('/') {
                paths.add(g);
            } else {
                names.add(g);
            }
        }
        Ok(Excludes {
            paths: paths.build()?,
            names: names.build()?,
        })
    }

    fn excluded(&self, rel: &str) -> bool {
        // A
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.paths.is_match(rel) || self.names.is_match(name)
    }
}

/// `(path, reason)` pairs: what a walk skipped or failed on.
type PathNotes = Vec<(String, String)>;

/// Walks `root` without following symlinks: regular files, plus what was skipped and why,
/// and what could not be read.
fn walk(root: &Path, ex: &Excludes) -> (Vec<Found>, PathNotes, PathNotes) {
    // A
    let (mut found, mut skipped, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                errors.push((dir.display().to_string(), e.to_string()));
                continue;
            }
        };
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let path = e.path();
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                skipped.push((path.display().to_string(), "file name is not UTF-8".into()));
                continue;
            };
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            if ex.excluded(&rel) {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    errors.push((path.display().to_string(), e.to_string()));
                    continue;
                }
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                subdirs.push((path, rel));
            } else if ft.is_file() {
                found.push(Found {
                    rel,
                    path,
                    stamp: Stamp::of(&meta),
                });
            } else if ft.is_symlink() {
                skipped.push((
                    path.display().to_string(),
                    "symbolic link, not followed".into(),
                ));
            } else {
                skipped.push((
                    path.display().to_string(),
                    "special file (device, FIFO or socket)".into(),
                ));
            }
        }
        // Depth-first in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    (found, skipped, errors)
}

fn key_for(prefix: &str, rel: &str) -> String {
    // A
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

pub fn put_tree(g: &Global, dir: &str, prefix: Option<&Path>, exclude: &[String]) -> Result<i32> {
    // A
    let Some(prefix) = prefix else {
        bail!(Error::InvalidArgument(
            "put -r needs a directory and a key prefix: ouro put -r DIR PREFIX".into()
        ));
    };
    let prefix = prefix
        .to_str()
        .ok_or_else(|| Error::InvalidArgument("the key prefix must be UTF-8".into()))?
        .trim_end_matches('/')
        .to_string();
    if !prefix.is_empty() {
        ouroboros_db::model::validate_key(&prefix)?;
    }
    let root =
        std::fs::canonicalize(dir).with_context(|| format!("cannot open directory {dir}"))?;
    if !root.is_dir() {
        bail!(Error::InvalidArgument(format!("{dir} is not a directory")));
    }
    let ex = Excludes::new(exclude)?;
    let cas = g.open_unlocked()?;
    let walk_started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let (found, skipped, mut errors) = walk(&root, &ex);
    let mut cache = TreeCache::load(cas.path(), &root, &prefix);
    let keys: Vec<String> = found.iter().map(|f| key_for(&prefix, &f.rel)).collect();
    let heads = cas.single_heads(keys.iter().map(String::as_str))?;
    let mut changed = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let fresh = heads[i].is_some_and(|head| cache.is_fresh(&f.rel, &f.stamp, &head.0));
        if !fresh {
            changed.push(i);
        }
    }
    let bar = Bar::new(g, true, "put -r");
    ouroboros_db::Progress::set_total(&bar, changed.iter().map(|&i| found[i].stamp.size).sum());
    let items = changed.iter().map(|&i| PutItem {
        key: keys[i].clone(),
        reader: Box::new(LazyFile {
            path: found[i].path.clone(),
            file: None,
        }),
        size_hint: Some(found[i].stamp.size),
        parents: None,
        created: None,
        skip_if_unchanged: true,
    });
    let results = cas
        .put_many(items, &bar)
        .with_context(|| format!("storing {}", root.display()))?;
    bar.finish();
    let (mut stored, mut failed, mut new_bytes) = (0u64, 0usize, 0u64);
    for (&i, r) in changed.iter().zip(results) {
        match r {
            Ok(o) => {
                if heads[i] != Some(o.hash) {
                    stored += 1;
                    new_bytes += o.stored_bytes;
                }
                // A file that changed while it was read is not cached: the next run reads it.
                let now = std::fs::symlink_metadata(&found[i].path).map(|m| Stamp::of(&m));
                if now.is_ok_and(|s| s == found[i].stamp) {
                    cache
                        .entries
                        .insert(found[i].rel.clone(), (found[i].stamp, o.hash.0));
                } else {
                    cache.entries.remove(&found[i].rel);
                }
            }
            Err(e) => {
                failed += 1;
                cache.entries.remove(&found[i].rel);
                errors.push((found[i].path.display().to_string(), e.to_string()));
            }
        }
    }
    let live: std::collections::HashSet<&str> = found.iter().map(|f| f.rel.as_str()).collect();
    cache.entries.retain(|k, _| live.contains(k.as_str()));
    cache.save(walk_started)?;
    g.settle()?;
    let unchanged = found.len() - stored as usize - failed;
    if g.json {
        print_json(&json!({
            "files": found.len(),
            "stored": stored,
            "unchanged": unchanged,
            "new_bytes": new_bytes,
            "skipped": skipped.iter().map(|(p, r)| json!({"path": p, "reason": r})).collect::<Vec<_>>(),
            "errors": errors.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        }));
    } else {
        // A nightly cron run would repeat every symlink each time: list them only with -v.
        if g.verbose > 0 {
            for (p, r) in &skipped {
                eprintln!("ouro: skipped {p}: {r}");
            }
        }
        for (p, e) in &errors {
            eprintln!("ouro: error: {p}: {e}");
        }
        if !g.quiet {
            eprintln!(
                "{} files: {stored} stored ({} new), {unchanged} unchanged, {} skipped (symlinks, special files; -v lists them), {} errors",
                found.len(),
                human_bytes(new_bytes),
                skipped.len(),
                errors.len()
            );
        }
    }
    Ok(if errors.is_empty() {
        0
    } else {
        crate::exit::ERROR
    })
}

pub fn get_tree(g: &Global, prefix: &str, dir: Option<&Path>, at: Option<&str>) -> Result<i32> {
    // A
    let Some(dir) = dir else {
        bail!(Error::InvalidArgument(
            "get -r needs a key prefix and a directory: ouro get -r PREFIX DIR".into()
        ));
    };
    let prefix = prefix.trim_end_matches('/');
    if let Some(t) = at {
        if ouroboros_db::parse_time(t).is_none() {
            bail!(Error::InvalidArgument(format!(
                "--at {t:?} is not an RFC 3339 time (2026-11-24T10:15:03Z) or a date (2026-11-24)"
            )));
        }
    }
    let cas = g.open_unlocked()?;
    let under = format!("{prefix}/");
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page: Vec<String> = match at {
            Some(_) => cas.keys_ever(prefix, after.as_deref(), 1000)?,
            None => cas
                .list(prefix, after.as_deref(), 1000)?
                .into_iter()
                .map(|e| e.key)
                .collect(),
        };
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        keys.extend(
            page.into_iter()
                .filter(|k| prefix.is_empty() || k == prefix || k.starts_with(&under)),
        );
    }
    let bar = Bar::new(g, false, "get -r");
    ouroboros_db::Progress::set_total(&bar, keys.len() as u64);
    let (mut restored, mut bytes, mut errors) = (0u64, 0u64, Vec::new());
    for key in &keys {
        let rel = match key.strip_prefix(prefix).map(|r| r.trim_start_matches('/')) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => key.rsplit('/').next().unwrap_or(key).to_string(),
        };
        let reference = match at {
            Some(t) => format!("{key}@{t}"),
            None => format!("{key}@"),
        };
        match restore_one(&cas, &reference, &dir.join(&rel)) {
            Ok(n) => {
                restored += 1;
                bytes += n;
            }
            // The key did not exist (or was deleted) at that time: not part of that tree.
            Err(e)
                if at.is_some()
                    && e.chain().any(|c| {
                        matches!(
                            c.downcast_ref::<Error>(),
                            Some(Error::NotFound(_) | Error::KeyDeleted { .. })
                        )
                    }) => {}
            Err(e) => errors.push((key.clone(), format!("{e:#}"))),
        }
        ouroboros_db::Progress::advance(&bar, 1);
    }
    bar.finish();
    if g.json {
        print_json(&json!({
            "restored": restored,
            "bytes": bytes,
            "errors": errors.iter().map(|(k, e)| json!({"key": k, "error": e})).collect::<Vec<_>>(),
        }));
    } else {
        for (k, e) in &errors {
            eprintln!("ouro: error: {k}: {e}");
        }
        if !g.quiet {
            eprintln!(
                "restored {restored} files ({}) into {}, {} errors",
                human_bytes(bytes),
                dir.display(),
                errors.len()
            );
        }
    }
    Ok(if errors.is_empty() {
        0
    } else {
        crate::exit::ERROR
    })
}

/// Restores one version to `dest` atomically, with the version's time as mtime.
fn restore_one(cas: &ouroboros_db::Cas, reference: &str, dest: &Path) -> Result<u64> {
    // A
    let parent = dest.parent().context("destination has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let blob = get_into_file(
        cas,
        reference,
        dest,
        &ouroboros_db::NoProgress,
        Durability::VersionTime,
    )?;
    Ok(blob.size)
}
