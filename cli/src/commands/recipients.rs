//! recipient add|ls|rm: who can read the store.

use anyhow::{Context, Result};
use ouro_cli::cli::Global;
use ouroboros_db::Recipient;
use serde_json::json;

use crate::output::{committed, outln, print_json};

pub fn add(g: &Global, recipient: &str) -> Result<i32> {
    // A
    let r = Recipient::parse(recipient)?;
    let cas = g.open_unlocked()?;
    cas.add_recipient(&r)
        .with_context(|| format!("adding recipient {recipient}"))?;
    if g.json {
        committed(print_json(&json!({ "added": r.to_string() })))?;
    } else if !g.quiet {
        eprintln!("{r} can now read the store");
    }
    Ok(0)
}

pub fn ls(g: &Global) -> Result<i32> {
    // A
    let cas = g.open()?;
    let list = cas.recipients().context("listing recipients")?;
    if g.json {
        print_json(&json!(list))?;
    } else {
        for r in list {
            outln!("{r}")?;
        }
    }
    Ok(0)
}

pub fn rm(g: &Global, recipient: &str) -> Result<i32> {
    // A
    let r = Recipient::parse(recipient)?;
    let mut cas = g.open_unlocked()?;
    cas.remove_recipient(&r)
        .with_context(|| format!("removing recipient {recipient}"))?;
    if g.json {
        committed(print_json(
            &json!({ "removed": r.to_string(), "key_epoch": cas.config().current_epoch }),
        ))?;
    } else if !g.quiet {
        eprintln!(
            "{r} removed; data written from now on uses key epoch {} (data written before is not re-encrypted)",
            cas.config().current_epoch
        );
    }
    Ok(0)
}
