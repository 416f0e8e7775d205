//! log, heads, rm and ls: the verbs that read and edit history.

use anyhow::{Context, Result};
use ouroboros_db::format_time;
use ouroboros_db::model::key::clip;
use serde_json::{json, Value};

use crate::output::{
    committed, human_bytes, outln, print_json, version_block, version_json, version_line, JsonArray,
};
use ouro_cli::cli::Global;

pub fn log(g: &Global, reference: &str, n: usize, oneline: bool, graph: bool) -> Result<i32> {
    // A
    let cas = g.open()?;
    let versions = cas
        .log(reference, n)
        .with_context(|| format!("reading the history of {}", clip(reference)))?;
    if g.json {
        print_json(&Value::Array(versions.iter().map(version_json).collect()))?;
        return Ok(0);
    }
    for v in &versions {
        let mark = if graph {
            if v.parents.len() > 1 {
                "*-. "
            } else {
                "* "
            }
        } else {
            ""
        };
        if oneline {
            outln!("{mark}{}", version_line(v))?;
        } else {
            let block = version_block(v);
            for (i, line) in block.lines().enumerate() {
                let pre = if !graph {
                    ""
                } else if i == 0 {
                    mark
                } else {
                    "| "
                };
                outln!("{pre}{line}")?;
            }
            outln!("{}", if graph { "|" } else { "" })?;
        }
    }
    Ok(0)
}

pub fn heads(g: &Global, key: &str) -> Result<i32> {
    // A
    let cas = g.open()?;
    let context = || format!("reading the heads of {:?}", clip(key));
    let heads = cas.heads(key).with_context(context)?;
    if heads.is_empty() {
        // No heads left: the key was deleted (or lost its last version). Resolving it gives
        // the error get and log give (exit 4), instead of an empty list and exit 0. The
        // trailing '@' makes the whole text the key.
        cas.resolve(&format!("{key}@")).with_context(context)?;
    }
    if g.json {
        print_json(&Value::Array(heads.iter().map(version_json).collect()))?;
    } else {
        for h in &heads {
            outln!("{}", version_line(h))?;
        }
    }
    Ok(0)
}

pub fn rm(g: &Global, reference: &str) -> Result<i32> {
    // A
    let cas = std::sync::Arc::new(g.open()?);
    let out = cas
        .remove(reference)
        .with_context(|| format!("removing {}", clip(reference)))?;
    // The removal is committed here; telling the node only makes the peers hear of it at
    // once rather than with the next heartbeat, so a failure to is no failure of the rm.
    let settled = g.settle(&cas).unwrap_or_else(|e| {
        eprintln!("ouro: warning: {e:#}");
        ouro_cli::cli::Settled::Standalone
    });
    if g.json {
        let report = json!({
            "key": out.key,
            "whole_key": out.whole_key,
            "removed": out.versions.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        });
        committed(print_json(&super::with_settled(report, &settled)))?;
    } else if !g.quiet {
        let what = if out.whole_key {
            format!("key {:?}", out.key)
        } else {
            format!(
                "version {} of {:?}",
                out.versions.first().map(|h| h.short()).unwrap_or_default(),
                out.key
            )
        };
        eprintln!(
            "removed {what} ({} version(s)); run `ouro gc` to reclaim space",
            out.versions.len()
        );
    }
    Ok(super::settled_exit(&settled))
}

/// `ls` without details: the names alone, which need no version record.
fn ls_names(cas: &ouroboros_db::Cas, prefix: &str) -> Result<i32> {
    // A
    let mut after: Option<String> = None;
    loop {
        let page = cas
            .list_names(prefix, after.as_deref(), 1000)
            .with_context(|| format!("listing {:?}", clip(prefix)))?;
        for key in &page {
            outln!("{key}")?;
        }
        match page.into_iter().last() {
            Some(last) => after = Some(last),
            None => return Ok(0),
        }
    }
}

pub fn ls(g: &Global, prefix: &str, long: bool) -> Result<i32> {
    // A
    let cas = g.open()?;
    if !long && !g.json {
        return ls_names(&cas, prefix);
    }
    let mut items = JsonArray::default();
    let mut after: Option<String> = None;
    loop {
        let page = cas
            .list(prefix, after.as_deref(), 1000)
            .with_context(|| format!("listing {:?}", clip(prefix)))?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for e in page {
            if g.json {
                items.item(&json!({
                    "key": e.key,
                    "size": e.size,
                    "modified": format_time(e.created),
                    "heads": e.heads.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                }))?;
            } else if long {
                let heads = if e.heads.len() > 1 {
                    format!(" ({} heads)", e.heads.len())
                } else {
                    String::new()
                };
                outln!(
                    "{:>10} {} {}{heads}",
                    human_bytes(e.size),
                    format_time(e.created),
                    e.key
                )?;
            } else {
                outln!("{}", e.key)?;
            }
        }
    }
    if g.json {
        items.end()?;
    }
    Ok(0)
}
