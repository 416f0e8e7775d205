//! put -r and get -r: a directory tree as one snapshot, and a snapshot back as a tree.

use std::path::Path;

use anyhow::{bail, Context, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use ouro_cli::cli::Global;
use ouroboros_db::snapshot::{BackupOptions, BackupReport, OwnerPolicy, RestoreOptions};
use ouroboros_db::Error;
use serde_json::json;

use crate::output::{committed, human_bytes, outln, print_json};
use crate::progress::Bar;

/// Glob patterns: matched against the path relative to the tree's root, and patterns
/// without a `/` also against the file or directory name (`*.tmp`, `node_modules`).
pub struct Globs {
    paths: GlobSet,
    names: GlobSet,
    empty: bool,
    patterns: Vec<String>,
}

impl Globs {
    pub fn new(patterns: &[String], what: &str) -> Result<Self> {
        // A
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        for p in patterns {
            let g = Glob::new(p.trim_end_matches('/'))
                .map_err(|e| Error::InvalidArgument(format!("bad {what} pattern {p:?}: {e}")))?;
            if p.trim_end_matches('/').contains('/') {
                paths.add(g);
            } else {
                names.add(g);
            }
        }
        Ok(Globs {
            paths: paths.build()?,
            names: names.build()?,
            empty: patterns.is_empty(),
            patterns: patterns.to_vec(),
        })
    }

    /// True when the relative path (raw bytes) matches.
    pub fn matches(&self, rel: &[u8]) -> bool {
        // A
        let rel = String::from_utf8_lossy(rel);
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        self.paths.is_match(rel.as_ref()) || self.names.is_match(name)
    }

    /// True when the path or one of its parent directories matches.
    fn matches_or_under(&self, rel: &[u8]) -> bool {
        // A
        let mut end = rel.len();
        loop {
            if self.matches(&rel[..end]) {
                return true;
            }
            match rel[..end].iter().rposition(|&b| b == b'/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }
}

pub fn put_tree(g: &Global, dir: &Path, prefix: Option<&Path>, exclude: &[String]) -> Result<i32> {
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
    if prefix.is_empty() {
        bail!(Error::InvalidArgument(
            "put -r needs a non-empty key prefix: its snapshots are kept under it".into()
        ));
    }
    // `get -r PREFIX` must name this prefix, not a snapshot of a shorter one (`x@~1`).
    ouroboros_db::model::reference::check_key_names_itself(&prefix)?;
    let ex = Globs::new(exclude, "--exclude")?;
    let cas = std::sync::Arc::new(g.open_unlocked()?);
    let bar = Bar::new(g, true, "put -r");
    let report = cas
        .put_tree(&BackupOptions {
            source: dir.into(),
            prefix: prefix.clone(),
            exclude: &|rel, _| ex.matches(rel),
            host: None,
            progress: &bar,
        })
        .with_context(|| format!("storing {} under {prefix}", dir.display()))?;
    bar.finish();
    let settled = g.settle(&cas)?;
    // The snapshot is committed: a reader gone away does not make it a failure.
    committed(print_put_tree(g, &prefix, &report, &settled))?;
    // Files that failed are the bigger news: exit 1 then, whatever became of the rest.
    Ok(if report.errors.is_empty() {
        super::settled_exit(&settled)
    } else {
        crate::exit::ERROR
    })
}

/// The report of a `put -r`: JSON, or warnings and errors on stderr, a summary (unless
/// quiet) and the snapshot's hash on stdout.
fn print_put_tree(
    g: &Global,
    prefix: &str,
    report: &BackupReport,
    settled: &ouro_cli::cli::Settled,
) -> Result<()> {
    // A
    let s = &report.info.summary;
    let files = s.files_new + s.files_changed + s.files_unchanged;
    if g.json {
        let list = |v: &[(String, String)], k: &str| {
            v.iter()
                .map(|(p, r)| json!({"path": p, k: r}))
                .collect::<Vec<_>>()
        };
        let skipped: Vec<_> = report
            .warnings
            .iter()
            .filter(|(_, w)| w.contains("not kept"))
            .map(|(p, r)| json!({"path": p, "reason": r}))
            .collect();
        let json = json!({
            "snapshot": report.snapshot.to_hex(),
            "files": files,
            "stored": s.files_new + s.files_changed,
            "new_files": s.files_new,
            "changed": s.files_changed,
            "unchanged": s.files_unchanged,
            "removed": s.removed,
            "dirs": s.dirs,
            "entries": s.entries,
            "new_bytes": s.bytes_added,
            "skipped": skipped,
            "warnings": list(&report.warnings, "reason"),
            "errors": list(&report.errors, "error"),
        });
        return print_json(&super::with_settled(json, settled));
    }
    for (p, w) in &report.warnings {
        if g.verbose > 0 || !w.contains("not kept") {
            eprintln!("ouro: warning: {p}: {w}");
        }
    }
    for (p, e) in &report.errors {
        eprintln!("ouro: error: {p}: {e}");
    }
    if !g.quiet {
        eprintln!(
            "snapshot {} of {prefix}: {files} files ({} new, {} changed, {} unchanged), {} removed, {} dirs, {} added, {} errors",
            report.snapshot.short(),
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.removed,
            s.dirs,
            human_bytes(s.bytes_added),
            report.errors.len()
        );
    }
    outln!("{}", report.snapshot.to_hex())
}

/// What `get -r` was asked.
pub struct GetTree<'a> {
    pub reference: &'a str,
    pub dir: Option<&'a Path>,
    pub at: Option<&'a str>,
    pub delete: bool,
    pub dry_run: bool,
    pub include: &'a [String],
    pub exclude: &'a [String],
    pub numeric_owner: bool,
}

pub fn get_tree(g: &Global, a: &GetTree) -> Result<i32> {
    // A
    let Some(dir) = a.dir else {
        bail!(Error::InvalidArgument(
            "get -r needs a snapshot and a directory: ouro get -r PREFIX[@REF] DIR".into()
        ));
    };
    let reference = match a.at {
        Some(_) if a.reference.contains('@') => bail!(Error::InvalidArgument(
            "give either PREFIX@REF or --at TIME, not both".into()
        )),
        Some(t) => {
            if ouroboros_db::parse_time(t).is_none() {
                bail!(Error::InvalidArgument(format!(
                    "--at {t:?} is not an RFC 3339 time (2026-11-24T10:15:03Z) or a date (2026-11-24)"
                )));
            }
            format!("{}@{t}", a.reference.trim_end_matches('/'))
        }
        None => a.reference.trim_end_matches('/').to_string(),
    };
    let include = Globs::new(a.include, "--include")?;
    let exclude = Globs::new(a.exclude, "--exclude")?;
    let filter = |rel: &[u8], is_dir: bool| {
        if exclude.matches(rel) {
            return false;
        }
        // A directory on the way to an included path is walked (but only what matches is
        // restored below it).
        include.empty || include.matches_or_under(rel) || (is_dir && include_below(&include, rel))
    };
    let cas = g.open_unlocked()?;
    let bar = Bar::new(g, true, "get -r");
    let report = cas
        .restore_snapshot(
            &reference,
            dir,
            &RestoreOptions {
                delete: a.delete,
                dry_run: a.dry_run,
                filter: &filter,
                owners: a.numeric_owner.then_some(OwnerPolicy::Numeric),
                progress: &bar,
            },
        )
        .with_context(|| format!("restoring {reference} into {}", dir.display()))?;
    bar.finish();
    if g.json {
        print_json(&json!({
            "snapshot": report.snapshot.to_hex(),
            "entries": report.entries,
            "restored": report.changes.len(),
            "bytes": report.bytes,
            "dry_run": a.dry_run,
            "changes": report.changes.iter().map(|(p, c)| json!({"path": p, "change": c.as_str()})).collect::<Vec<_>>(),
            "errors": report.errors.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "lost": report.lost,
        }))?;
    } else {
        if a.dry_run || g.verbose > 0 {
            for (p, c) in &report.changes {
                outln!("{:<8} {p}", c.as_str())?;
            }
        }
        for (p, e) in &report.errors {
            eprintln!("ouro: error: {p}: {e}");
        }
        if !g.quiet {
            eprintln!(
                "{} snapshot {} into {}: {} entries, {} changes, {} written, {} errors",
                if a.dry_run {
                    "would restore"
                } else {
                    "restored"
                },
                report.snapshot.short(),
                dir.display(),
                report.entries,
                report.changes.len(),
                human_bytes(report.bytes),
                report.errors.len()
            );
        }
    }
    Ok(if report.lost > 0 {
        crate::exit::CORRUPT
    } else if report.errors.is_empty() {
        0
    } else {
        crate::exit::ERROR
    })
}

/// True when an include pattern names something below directory `rel` (`a/b/*.txt` for
/// `a`): the directory must be walked to reach it.
fn include_below(include: &Globs, rel: &[u8]) -> bool {
    // A
    // A pattern without '/' may match a name at any depth; a path pattern only below the
    // directories its literal start names.
    let rel = String::from_utf8_lossy(rel);
    include.patterns.iter().any(|p| {
        let p = p.trim_end_matches('/');
        if !p.contains('/') {
            return true;
        }
        let literal: String = p.chars().take_while(|c| !"*?[{".contains(*c)).collect();
        let dir = format!("{rel}/");
        literal.starts_with(&dir) || dir.starts_with(&literal)
    })
}
