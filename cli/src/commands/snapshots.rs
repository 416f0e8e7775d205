//! snapshots, diff, forget: the runs of put -r.

use anyhow::{Context, Result};
use ouro_cli::cli::Global;
use ouroboros_db::format_time;
use ouroboros_db::model::{EntryKind, Ref, Selector};
use ouroboros_db::snapshot::{ForgetDecision, ForgetReport, KeepPolicy};
use serde_json::json;

use crate::output::{committed, human_bytes, outln, print_json};

pub fn list(g: &Global, prefix: &str) -> Result<i32> {
    // A
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        ouroboros_db::model::validate_key(prefix)?;
    }
    let cas = g.open()?;
    let list = cas
        .snapshots(prefix)
        .with_context(|| format!("listing the snapshots of {prefix:?}"))?;
    if g.json {
        let rows: Vec<_> = list
            .iter()
            .map(|s| {
                let m = &s.info.summary;
                json!({
                    "hash": s.hash.to_hex(),
                    "prefix": s.prefix,
                    "time": format_time(s.time),
                    "time_ns": s.time,
                    "finished_ns": s.info.finished,
                    "host": s.info.host,
                    "path": String::from_utf8_lossy(&s.info.path),
                    "parents": s.parents.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                    "summary": {
                        "files_new": m.files_new, "files_changed": m.files_changed,
                        "files_unchanged": m.files_unchanged, "removed": m.removed,
                        "dirs": m.dirs, "entries": m.entries, "total_bytes": m.total_bytes,
                        "bytes_added": m.bytes_added, "errors": m.errors,
                    },
                    "errors": s.info.errors.iter().map(|(p, e)| json!({"path": String::from_utf8_lossy(p), "error": e})).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!(rows))?;
    } else {
        for s in &list {
            let m = &s.info.summary;
            outln!(
                "{}  {}  {}  {}:{}  {} files, {} dirs, {} ({} new, {} changed, {} removed, +{}{})",
                s.hash.short(),
                format_time(s.time),
                s.prefix,
                s.info.host,
                String::from_utf8_lossy(&s.info.path),
                m.files_new + m.files_changed + m.files_unchanged,
                m.dirs,
                human_bytes(m.total_bytes),
                m.files_new,
                m.files_changed,
                m.removed,
                human_bytes(m.bytes_added),
                if m.errors > 0 {
                    format!(", {} errors", m.errors)
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(0)
}

/// Compares two snapshots: FROM and TO, or with FROM alone the last two snapshots of the
/// prefix (`PREFIX`) or the one named (`PREFIX@REF`) against the newest.
pub fn diff(g: &Global, from: &str, to: Option<&str>) -> Result<i32> {
    // A
    let cas = g.open_unlocked()?;
    let (from, to) = match to {
        Some(t) => (Ref::parse(from)?, Ref::parse(t)?),
        None => {
            let r = Ref::parse(from)?;
            match r.selector {
                Selector::Head => cas.last_two_snapshots(&r.key)?,
                _ => (r.clone(), Ref::key(r.key)?),
            }
        }
    };
    let d = cas
        .snapshot_diff(&from, &to)
        .with_context(|| format!("comparing {from} with {to}"))?;
    if g.json {
        let changes: Vec<_> = d
            .changes
            .iter()
            .map(|c| {
                json!({
                    "path": String::from_utf8_lossy(&c.path),
                    "change": c.change.as_str(),
                    "kind": c.kind.as_str(),
                })
            })
            .collect();
        print_json(&json!({
            "from": d.from.to_hex(),
            "to": d.to.to_hex(),
            "changes": changes,
        }))?;
        return Ok(0);
    }
    for c in &d.changes {
        // A directory is marked with a trailing slash, as restic's diff does.
        let slash = if c.kind == EntryKind::Dir { "/" } else { "" };
        outln!(
            "{} {}{slash}",
            c.change.mark(),
            String::from_utf8_lossy(&c.path)
        )?;
    }
    if !g.quiet {
        eprintln!(
            "{} -> {}: {} change(s)",
            d.from.short(),
            d.to.short(),
            d.changes.len()
        );
    }
    Ok(0)
}

/// Forgets the snapshots of PREFIX that no --keep-* rule keeps and removes the file
/// versions only they used; `ouro gc` frees the space afterwards.
pub fn forget(g: &Global, prefix: &str, policy: &KeepPolicy, dry_run: bool) -> Result<i32> {
    // A
    let cas = std::sync::Arc::new(g.open_unlocked()?);
    let report = cas
        .forget(prefix, policy, dry_run)
        .with_context(|| format!("forgetting snapshots of {prefix:?}"))?;
    let mut settled = ouro_cli::cli::Settled::Standalone;
    if !dry_run && report.forgotten().next().is_some() {
        // Committed already: telling the node only spreads the removals sooner.
        match g.settle(&cas) {
            Ok(s) => settled = s,
            Err(e) => eprintln!("ouro: warning: {e:#}"),
        }
    }
    // Forgotten snapshots are removed already: a reader gone away is no failure then.
    let done = |printed: Result<()>| {
        if dry_run {
            printed
        } else {
            committed(printed)
        }
    };
    if g.json {
        done(print_json(&json!({
            "prefix": report.prefix,
            "dry_run": report.dry_run,
            "kept": report.kept().map(|d| json!({
                "hash": d.hash.to_hex(),
                "time": format_time(d.time),
                "host": d.host,
                "path": String::from_utf8_lossy(&d.path),
                "reasons": d.reasons,
            })).collect::<Vec<_>>(),
            "removed": report.forgotten().map(|d| d.hash.to_hex()).collect::<Vec<_>>(),
            "versions_removed": report.versions_removed,
        })))?;
        return Ok(super::settled_exit(&settled));
    }
    if !g.quiet {
        done(print_forget(&report))?;
    }
    Ok(super::settled_exit(&settled))
}

/// The restic-style listing of a forget: per host and path, the snapshots kept with their
/// reasons, then those removed; then a closing line.
fn print_forget(report: &ForgetReport) -> Result<()> {
    // A
    let mut groups: Vec<(&str, &[u8])> = Vec::new();
    for d in &report.snapshots {
        let g = (d.host.as_str(), d.path.as_slice());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let line = |d: &ForgetDecision| format!("  {}  {}", d.hash.short(), format_time(d.time));
    for (host, path) in groups {
        let of_group = |d: &&ForgetDecision| d.host == host && d.path == path;
        outln!("snapshots of {host}:{}", String::from_utf8_lossy(path))?;
        let kept: Vec<_> = report.kept().filter(of_group).collect();
        outln!("keep {} snapshot(s):", kept.len())?;
        for d in kept {
            outln!("{}  {}", line(d), d.reasons.join(", "))?;
        }
        let gone: Vec<_> = report.forgotten().filter(of_group).collect();
        if !gone.is_empty() {
            let verb = if report.dry_run {
                "would remove"
            } else {
                "remove"
            };
            outln!("{verb} {} snapshot(s):", gone.len())?;
            for d in gone {
                outln!("{}", line(d))?;
            }
        }
        outln!()?;
    }
    let n = report.forgotten().count();
    let (verb, tail) = match (report.dry_run, n) {
        (true, _) => ("would remove", ""),
        (false, 0) => ("removed", ""),
        (false, _) => ("removed", "; run `ouro gc` to free their space"),
    };
    outln!(
        "{verb} {n} snapshot(s) and {} file version(s) only they used{tail}",
        report.versions_removed
    )
}
