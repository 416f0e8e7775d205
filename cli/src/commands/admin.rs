//! init, verify, gc and stats: the verbs that manage the store itself.

use anyhow::{Context, Result};
use ouroboros_db::{parse_ec, Cas, CreateOptions, Damage, Identity, Recipient};
use serde_json::json;

use crate::exit;
use crate::output::{committed, human_bytes, outln, print_json};
use crate::progress::Bar;
use ouro_cli::cli::Global;

/// Parses `1M`, `512K`, `65536` into bytes.
fn parse_size(s: &str) -> Result<u32> {
    // A
    let bad = || {
        ouroboros_db::Error::InvalidArgument(format!(
            "chunk size {s:?} must be a number of bytes with an optional K or M suffix (e.g. 1M)"
        ))
    };
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1024),
        Some('M' | 'm') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let n: u32 = num.parse().map_err(|_| bad())?;
    Ok(n.checked_mul(mult).ok_or_else(bad)?)
}

pub fn init(
    g: &Global,
    ec: &str,
    recipients: &[String],
    zstd_level: i32,
    chunk_size: &str,
) -> Result<i32> {
    // A
    let avg = parse_size(chunk_size)?;
    let chunking = ouroboros_db::chunk::ChunkingParams {
        min: avg / 2,
        avg,
        max: avg.saturating_mul(4),
    };
    chunking.validate()?;
    let (k, m) = parse_ec(ec)?;
    let recipients = recipients
        .iter()
        .map(|r| Recipient::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let store = g.store_dir()?;
    refuse_foreign_dir(&store)?;
    let id_path = g.identity_path()?;
    let mut created_identity = false;
    let identity = if id_path.exists() {
        Identity::load(&id_path)?
    } else {
        let id = Identity::generate();
        id.save_new(&id_path)?;
        created_identity = true;
        id
    };
    let opts = CreateOptions {
        k,
        m,
        zstd_level,
        recipients,
        chunking,
    };
    Cas::create(&store, &opts, &identity)
        .with_context(|| format!("creating store {}", store.display()))?;
    committed(if g.json {
        print_json(&json!({
            "store": store.display().to_string(),
            "identity": id_path.display().to_string(),
            "identity_created": created_identity,
            "recipient": identity.recipient().to_string(),
            "ec": format!("{k}+{m}"),
        }))
    } else if !g.quiet {
        print_init(
            &store,
            &format!("{k}+{m}"),
            created_identity.then_some(&id_path),
            &identity,
        )
    } else {
        Ok(())
    })?;
    Ok(0)
}

/// What `init` made, for people: the store, the identity when one was created, the
/// recipient.
fn print_init(
    store: &std::path::Path,
    ec: &str,
    created_identity: Option<&std::path::PathBuf>,
    identity: &Identity,
) -> Result<()> {
    // A
    outln!("initialised store {} (erasure code {ec})", store.display())?;
    if let Some(p) = created_identity {
        outln!(
            "created identity {} (back it up: without it the store cannot be read)",
            p.display()
        )?;
    }
    outln!("recipient {}", identity.recipient())
}

/// Refuses to create a store in a directory that already holds other files (a typo'd
/// `--store ~` would scatter the store's files among them); an existing store is left to
/// `Cas::create`, which says so (exit 8).
fn refuse_foreign_dir(store: &std::path::Path) -> Result<()> {
    // A
    if ouroboros_db::Cas::exists(store) {
        return Ok(());
    }
    let mut entries = match std::fs::read_dir(store) {
        Ok(e) => e,
        // Absent: init creates it. Not a directory, unreadable: create says why.
        Err(_) => return Ok(()),
    };
    if entries.next().is_some() {
        anyhow::bail!(ouroboros_db::Error::InvalidArgument(format!(
            "{} is not empty and holds no store: init needs a new or empty directory",
            store.display()
        )));
    }
    Ok(())
}

pub fn verify(g: &Global, repair: bool) -> Result<i32> {
    // A
    let mut cas = g.open()?;
    let unlocked = unlock_for_verify(g, &mut cas)?;
    let bar = Bar::new(g, false, "verify");
    let report = cas.verify(repair, &bar).context("verifying the store")?;
    bar.finish();
    let healthy = report.is_healthy();
    for d in report.damage.iter().filter(|_| !g.json) {
        eprintln!("{}", damage_line(d));
    }
    let printed = if g.json {
        let damage: Vec<_> = report.damage.iter().map(damage_json).collect();
        print_json(&json!({
            "ok": healthy,
            "chunks": report.chunks,
            "slices": report.slices,
            "packs": report.packs,
            "blobs": report.blobs,
            "decrypted": report.decrypted,
            "unreferenced_chunks": report.unreferenced_chunks,
            "damage": damage,
        }))
    } else if !g.quiet {
        outln!(
            "checked {} chunks ({} packs), {} slices, {} versions{}: {}",
            report.chunks,
            report.packs,
            report.slices,
            report.blobs,
            if unlocked {
                ", content decrypted"
            } else {
                " (no identity: content not decrypted)"
            },
            if healthy { "ok" } else { "DAMAGED" }
        )
    } else {
        Ok(())
    };
    // A repair is committed: its exit code must still say how the store is.
    if repair {
        committed(printed)?;
    } else {
        printed?;
    }
    Ok(if healthy { 0 } else { exit::CORRUPT })
}

/// Unlocks the store when an identity is there, so that verify decrypts end to end; hashes
/// and erasure rebuilds are checked either way. No identity at the default path means a
/// check without decryption; an identity named (`--identity`, `OURO_IDENTITY`) or present
/// that cannot be read or is no recipient is an error (exit 7), not a quieter check.
fn unlock_for_verify(g: &Global, cas: &mut Cas) -> Result<bool> {
    // A
    let id_path = g.identity_path()?;
    let absent = matches!(std::fs::symlink_metadata(&id_path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if absent && g.identity.is_none() {
        return Ok(false);
    }
    let id = Identity::load(&id_path)?;
    cas.unlock(&id)
        .with_context(|| format!("unlocking the store with {}", id_path.display()))?;
    Ok(true)
}

fn damage_json(d: &Damage) -> serde_json::Value {
    // A
    match d {
        Damage::Slices {
            chunk,
            missing,
            corrupt,
            repaired,
        } => json!({
            "type": "slices", "chunk": chunk.to_hex(), "missing": missing, "corrupt": corrupt, "repaired": repaired,
        }),
        Damage::Chunk { chunk, reason } => {
            json!({ "type": "chunk", "chunk": chunk.to_hex(), "reason": reason })
        }
        Damage::Index {
            key,
            reason,
            repaired,
        } => {
            json!({ "type": "index", "key": key, "reason": reason, "repaired": repaired })
        }
        Damage::Blob { hash, key, reason } => {
            json!({ "type": "version", "hash": hash.to_hex(), "key": key, "reason": reason })
        }
    }
}

fn damage_line(d: &Damage) -> String {
    // A
    match d {
        Damage::Slices {
            chunk,
            missing,
            corrupt,
            repaired,
        } => format!(
            "chunk {}: {} missing, {} corrupt slice(s){}",
            chunk.short(),
            missing.len(),
            corrupt.len(),
            if *repaired {
                " - repaired"
            } else {
                " - run `ouro verify --repair`"
            }
        ),
        Damage::Chunk { chunk, reason } => {
            format!("chunk {}: cannot be rebuilt: {reason}", chunk.short())
        }
        Damage::Index {
            key,
            reason,
            repaired,
        } => {
            let done = if *repaired { " - repaired" } else { "" };
            match key {
                Some(k) => format!("index damaged: {k:?}: {reason}{done}"),
                None => format!("index damaged: {reason}{done}"),
            }
        }
        Damage::Blob { reason, .. } => format!("version damaged: {reason}"),
    }
}

pub fn gc(g: &Global, compact: Option<u8>) -> Result<i32> {
    // A
    // With the identity, gc reads the snapshots' trees and frees exactly what none of them
    // lists; without it, it keeps every removed version under a snapshotted prefix.
    let cas = match g.identity_path().map(|p| p.exists()) {
        Ok(true) => g.open_unlocked()?,
        _ => g.open()?,
    };
    let bar = Bar::new(g, false, "gc");
    let r = cas.gc(&bar).context("collecting garbage")?;
    bar.finish();
    let reusable = cas
        .page_use()
        .map(|u| (u.reusable_bytes, u.used_bytes + u.reusable_bytes))
        .ok();
    // The store must be closed here before compaction can have it to itself.
    drop(cas);
    let least = compact.map(u64::from);
    let worth =
        |least: u64| reusable.is_none_or(|(free, file)| worth_compacting(free, file, least));
    let compacted = match least.is_some_and(worth) {
        true => {
            let dir = g.store_dir()?;
            let done = Cas::compact(&dir);
            Some(done.with_context(|| format!("gc done; compacting store {}", dir.display()))?)
        }
        false => None,
    };
    committed(if g.json {
        print_json(&json!({
            "versions_released": r.versions_released,
            "chunks_freed": r.chunks_freed,
            "packs_freed": r.packs_freed,
            "packs_rewritten": r.packs_rewritten,
            "slices_freed": r.slices_freed,
            "bytes_freed": r.bytes_freed,
            "chunks_condemned": r.chunks_condemned,
            "compacted": compacted.map(|c| json!({"file_bytes_before": c.before, "file_bytes_after": c.after})),
            "reusable_bytes": reusable.map(|(free, _)| free),
        }))
    } else if !g.quiet {
        print_gc(&r).and_then(|_| print_compaction(least, compacted, reusable))
    } else {
        Ok(())
    })?;
    Ok(0)
}

/// True when at least `percent` of a database file of `file` bytes is free (`free`): when
/// `gc --compact=PERCENT` rewrites it (copying a whole store to win back a few pages would
/// cost more than it gives).
fn worth_compacting(free: u64, file: u64, percent: u64) -> bool {
    // A
    free.saturating_mul(100) >= file.saturating_mul(percent)
}

/// What compaction did or, without it, how much of the file a compaction would return.
fn print_compaction(
    least: Option<u64>,
    compacted: Option<ouroboros_db::Compacted>,
    reusable: Option<(u64, u64)>,
) -> Result<()> {
    // A
    match (compacted, reusable, least) {
        (Some(c), _, _) => outln!(
            "compacted the database file: {} -> {}",
            human_bytes(c.before),
            human_bytes(c.after)
        ),
        (None, Some((free, file)), Some(least)) => outln!(
            "not compacted: {} of the {} database file is free, under {least}% (later writes reuse it)",
            human_bytes(free),
            human_bytes(file),
        ),
        // Worth a hint once a quarter of the file, and 64 MiB, is free.
        (None, Some((free, file)), None) if free >= 64 << 20 && worth_compacting(free, file, 25) => outln!(
            "{} of the {} database file is free (later writes reuse it); `ouro gc --compact` returns it to the filesystem",
            human_bytes(free),
            human_bytes(file)
        ),
        _ => Ok(()),
    }
}

/// What gc freed, for people.
fn print_gc(r: &ouroboros_db::GcReport) -> Result<()> {
    // A
    outln!(
        "released {} version(s), freed {} chunk(s), {} slice(s), {}",
        r.versions_released,
        r.chunks_freed,
        r.slices_freed,
        human_bytes(r.bytes_freed)
    )?;
    if r.packs_freed + r.packs_rewritten > 0 {
        outln!(
            "packs: {} freed, {} mostly empty rewritten",
            r.packs_freed,
            r.packs_rewritten
        )?;
    }
    if r.chunks_condemned > 0 {
        outln!(
            "condemned {} unreferenced chunk(s): every node frees its slices of them once all members have applied that (the nodes must be running)",
            r.chunks_condemned
        )?;
    }
    Ok(())
}

pub fn stats(g: &Global) -> Result<i32> {
    // A
    let cas = g.open()?;
    let s = cas.stats().context("computing statistics")?;
    let c = cas.config();
    if g.json {
        print_json(&json!({
            "keys": s.keys,
            "versions": s.versions,
            "live_versions": s.live_versions,
            "removed_versions": s.removed_versions,
            "logical_bytes": s.logical_bytes,
            "unique_bytes": s.unique_bytes,
            "stored_bytes": s.stored_bytes,
            "stored_with_parity_bytes": s.stored_with_parity_bytes,
            "file_bytes": s.file_bytes,
            "reusable_bytes": s.reusable_bytes,
            "compaction_leftover_bytes": s.compaction_leftover_bytes,
            "unfinished_bytes": s.unfinished_bytes,
            "chunks": s.chunks,
            "referenced_chunks": s.referenced_chunks,
            "slices": s.slices,
            "packs": s.packs,
            "deltas": s.deltas,
            "dead_pack_bytes": s.dead_pack_bytes,
            "unreferenced_chunks": s.unreferenced_chunks,
            "unreferenced_bytes": s.unreferenced_bytes,
            "dedup_ratio": s.dedup_ratio,
            "compression_ratio": s.compression_ratio,
            "ec": format!("{}+{}", c.k, c.m),
            // What may differ between cluster nodes holding the same data (README, "stats").
            "node_local": ouroboros_db::Stats::NODE_LOCAL,
        }))?;
    } else {
        print_stats(&s, &format!("{}+{}", c.k, c.m))?;
    }
    Ok(0)
}

/// The statistics, for people.
fn print_stats(s: &ouroboros_db::Stats, ec: &str) -> Result<()> {
    // A
    outln!("keys              {}", s.keys)?;
    // Removed versions' records stay until gc (or as history after `rm KEY@V`): counted
    // apart, since only the live count is the same on every node of a cluster.
    match s.removed_versions {
        0 => outln!("versions          {}", s.versions)?,
        n => outln!(
            "versions          {} ({} live, {n} removed: kept as history or until gc)",
            s.versions,
            s.live_versions
        )?,
    }
    outln!(
        "logical           {} ({} bytes)",
        human_bytes(s.logical_bytes),
        s.logical_bytes
    )?;
    outln!("after dedup       {}", human_bytes(s.unique_bytes))?;
    outln!(
        "stored            {} (data slices; {} with {ec} parity)",
        human_bytes(s.stored_bytes),
        human_bytes(s.stored_with_parity_bytes),
    )?;
    // The way to return free pages is worth a mention once `gc --compact` would act.
    let hint = match s.reusable_bytes > 0 && worth_compacting(s.reusable_bytes, s.file_bytes, 10) {
        true => "; `ouro gc --compact` returns it",
        false => "",
    };
    outln!(
        "database file     {} ({} of it free, reused by later writes{hint})",
        human_bytes(s.file_bytes),
        human_bytes(s.reusable_bytes)
    )?;
    outln!(
        "chunks / slices   {} / {} ({} packs of small chunks, {} chunks stored as deltas)",
        s.chunks,
        s.slices,
        s.packs,
        s.deltas
    )?;
    if s.dead_pack_bytes > 0 {
        outln!(
            "dead in packs     {} of the packs above hold frames no file uses: gc rewrites a pack once they are half of it",
            human_bytes(s.dead_pack_bytes)
        )?;
    }
    if s.compaction_leftover_bytes > 0 {
        outln!(
            "compact.partial   {} left by an interrupted compaction: `ouro gc` removes it",
            human_bytes(s.compaction_leftover_bytes)
        )?;
    }
    if s.unfinished_bytes > 0 {
        outln!(
            "unfinished        {} of slices not yet recorded (in the size with parity above): a running put's, or a killed put's, which `ouro gc` frees",
            human_bytes(s.unfinished_bytes)
        )?;
    }
    // An interrupted put leaves its chunks behind unreferenced (and the slices it had not
    // recorded yet, above): they count in the sizes above (and make dedup look poor) until
    // gc frees them.
    if s.unreferenced_chunks > 0 {
        outln!(
            "unreferenced      {} chunk(s), {} (counted above; an interrupted put leaves such chunks): run `ouro gc`",
            s.unreferenced_chunks,
            human_bytes(s.unreferenced_bytes)
        )?;
    }
    let ratio = |r: Option<f64>| r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into());
    outln!("dedup ratio       {}", ratio(s.dedup_ratio))?;
    outln!("compression ratio {}", ratio(s.compression_ratio))
}
