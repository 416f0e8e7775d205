//! snapshots, diff, forget: the runs of put -r.

use anyhow::{Context, Result};
use ouro_cli::cli::Global;
use ouroboros_db::format_time;
use serde_json::json;

use crate::output::{human_bytes, print_json};

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
        print_json(&json!(rows));
    } else {
        for s in &list {
            let m = &s.info.summary;
            println!(
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
            );
        }
    }
    Ok(0)
}

/// The --keep-* options of forget, as given.
pub struct KeepArgs<'a> {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<&'a str>,
}

pub fn diff(g: &Global, from: &str, to: Option<&str>) -> Result<i32> {
    // A
    let _ = (g, from, to);
    anyhow::bail!(ouroboros_db::Error::InvalidArgument("diff: not yet".into()))
}

pub fn forget(g: &Global, prefix: &str, keep: &KeepArgs, dry_run: bool) -> Result<i32> {
    // A
    let _ = (g, prefix, keep, dry_run);
    anyhow::bail!(ouroboros_db::Error::InvalidArgument(
        "forget: not yet".into()
    ))
}
