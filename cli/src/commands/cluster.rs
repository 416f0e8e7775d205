//! `ouro cluster ...` and `ouro node run`: create a cluster, invite and remove nodes, show
//! its status, and run this store's node.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use ouro_cli::cli::Global;
use ouro_cluster::{ClusterError, ControlClient, NodeOptions};
use serde_json::json;

use crate::output::{committed, outln, print_json};

/// Keeps library errors visible to the exit-code mapping.
pub fn lift(e: ClusterError) -> anyhow::Error {
    // A
    match e {
        ClusterError::Store(e) => e.into(),
        other => other.into(),
    }
}

/// `ouro cluster init`.
pub fn init(g: &Global) -> Result<i32> {
    // PA
    let cas = Arc::new(g.open()?);
    let (info, node) = ouro_cluster::admin::init(cas).map_err(lift)?;
    let id = ouro_cluster::membership::short_id(&node);
    let cluster: String = info.cluster_id[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    committed(if g.json {
        print_json(&json!({ "cluster": cluster, "node": id }))
    } else if !g.quiet {
        outln!("created cluster {cluster}; this store is node {id}").and_then(|_| {
            outln!("next: `ouro node run --listen HOST:PORT`, then `ouro cluster invite` for each new node")
        })
    } else {
        Ok(())
    })?;
    Ok(0)
}

/// `ouro cluster invite`: the token is the last line of output.
pub fn invite(g: &Global, ttl: &str) -> Result<i32> {
    // PA
    let ttl = ouro_cluster::bootstrapper::parse_ttl(ttl).map_err(lift)?;
    let cas = Arc::new(g.open()?);
    let token = ouro_cluster::admin::invite(cas, ttl).map_err(lift)?;
    // The token is what invite is for: if it could not be written, nobody has it, so a
    // reader gone away stays exit 141 here (the unused invitation expires).
    if g.json {
        print_json(&json!({ "token": token, "ttl_secs": ttl.as_secs() }))?;
    } else {
        if !g.quiet {
            eprintln!(
                "one-time join token, valid for {} s; on the new node run: ouro node run --listen HOST:PORT --join TOKEN",
                ttl.as_secs()
            );
        }
        outln!("{token}")?;
    }
    Ok(0)
}

/// `ouro cluster remove NODE`.
pub fn remove(g: &Global, node: &str) -> Result<i32> {
    // PA
    let cas = Arc::new(g.open()?);
    let gone = ouro_cluster::admin::remove(cas, node).map_err(lift)?;
    let id = ouro_cluster::membership::short_id(&gone);
    committed(if g.json {
        print_json(&json!({ "removed": id }))
    } else if !g.quiet {
        outln!("removed node {id}: its connections are cut and it is never accepted again")
    } else {
        Ok(())
    })?;
    Ok(0)
}

/// `ouro cluster status`.
pub fn status(g: &Global) -> Result<i32> {
    // A
    let dir = g.store_dir()?;
    let Some(client) = ControlClient::connect(&dir) else {
        // No node: say whether one could run here at all (exit 8 outside a cluster).
        let cas = g.open()?;
        let why = match cas.in_cluster()? {
            true => ClusterError::NoNode(dir.display().to_string()),
            false => ClusterError::NotInCluster(dir.display().to_string()),
        };
        return Err(lift(why));
    };
    let s = client.status().map_err(lift)?;
    if g.json {
        let members: Vec<_> = s
            .members
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "addr": m.addr,
                    "state": m.state,
                    "last_seen_secs": m.last_seen_secs,
                    "chunks_held": m.chunks_held,
                    "free_bytes": m.free_bytes,
                    "tombstones": m.tombstones,
                    "pulls": m.pulls,
                    "placed": m.placed,
                })
            })
            .collect();
        print_json(&json!({
            "node": s.node,
            "k": s.k,
            "m": s.m,
            "members": members,
            "under_replicated_chunks": s.under_replicated_chunks,
            "repaired_slices": s.repaired_slices,
            "repair_bytes": s.repair_bytes,
            "replication_bytes": s.replication_bytes,
            "placement": s.placement,
            "repair_chunks_checked": s.repair_chunks_checked,
            "condemned_chunks": s.condemned_chunks,
            "freed_chunks": s.freed_chunks,
            "inventory_audits": s.inventory_audits,
            "audit_lacking_slices": s.audit_lacking_slices,
            "audit_extra_slices": s.audit_extra_slices,
            "audit_bytes": s.audit_bytes,
            "repair_sweeps": s.repair_sweeps,
            "wal_rounds": s.wal_rounds,
        }))?;
        return Ok(0);
    }
    print_status(&s)?;
    Ok(0)
}

/// `cluster status` for people.
fn print_status(s: &ouro_cluster::message::ClusterStatus) -> Result<()> {
    // A
    outln!("node {} (erasure code {}+{})", s.node, s.k, s.m)?;
    outln!(
        "{:<16}  {:<21}  {:<7}  {:>9}  {:>11}  {:>10}",
        "ID",
        "ADDRESS",
        "STATE",
        "LAST SEEN",
        "CHUNKS HELD",
        "FREE"
    )?;
    for m in &s.members {
        outln!(
            "{:<16}  {:<21}  {:<7}  {:>8.1}s  {:>11}  {:>9.1}G",
            m.id,
            m.addr,
            m.state,
            m.last_seen_secs,
            m.chunks_held,
            m.free_bytes as f64 / 1e9
        )?;
    }
    outln!(
        "under-replicated chunks: {} (slices repaired so far: {})",
        s.under_replicated_chunks,
        s.repaired_slices
    )?;
    outln!("placement: {}", s.placement)?;
    let out: Vec<&str> = s
        .members
        .iter()
        .filter(|m| !m.placed)
        .map(|m| m.id.as_str())
        .collect();
    if !out.is_empty() {
        outln!(
            "left out of placement (silent too long; their slices are rebuilt elsewhere): {}",
            out.join(", ")
        )?;
    }
    if s.inventory_audits > 0 {
        outln!(
            "last inventory audit of a peer: {} slices lacking, {} held beyond placement ({} bytes of tree)",
            s.audit_lacking_slices, s.audit_extra_slices, s.audit_bytes
        )?;
    }
    Ok(())
}

/// `ouro node run`: runs in the foreground until SIGTERM or SIGINT.
pub fn run(
    g: &Global,
    listen: &str,
    advertise: Option<&str>,
    join: Option<&str>,
    (repair_after, tombstone_horizon, audit_every): (u64, u64, u64),
    repair_rate_mib: u64,
) -> Result<i32> {
    // A
    let parse = |s: &str| -> Result<SocketAddr> {
        s.parse().map_err(|_| {
            ouroboros_db::Error::InvalidArgument(format!(
                "address {s:?} must be IP:PORT (e.g. 0.0.0.0:7700)"
            ))
            .into()
        })
    };
    let opts = NodeOptions {
        store: g.store_dir()?,
        listen: parse(listen)?,
        advertise: advertise.map(parse).transpose()?,
        join: join.map(str::to_string),
        repair_after: std::time::Duration::from_secs(repair_after),
        repair_rate: repair_rate_mib.saturating_mul(1 << 20),
        tombstone_horizon: std::time::Duration::from_secs(tombstone_horizon),
        audit_every: std::time::Duration::from_secs(audit_every),
    };
    if let Some(t) = &opts.join {
        // A bad token is reported before anything is created.
        ouro_cluster::bootstrapper::parse(t).map_err(lift)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the node's runtime")?;
    rt.block_on(async {
        let node = ouro_cluster::Node::start(&opts).await.map_err(lift)?;
        if !g.quiet {
            eprintln!(
                "ouro: node {} of store {} listening on {}",
                ouro_cluster::membership::short_id(&node.id()),
                node.store().display(),
                node.addr()
            );
        }
        let stop = crate::interrupt::node_stopper();
        node.run(async {
            let _ = stop.await;
        })
        .await
        .map_err(lift)
    })?;
    Ok(0)
}

/// `ouro node backup DEST`.
pub fn backup(g: &Global, dest: &std::path::Path) -> Result<i32> {
    // PA
    let cas = g.open()?;
    let bytes = cas.backup(dest).with_context(|| {
        format!(
            "backing up {} into {}",
            cas.path().display(),
            dest.display()
        )
    })?;
    committed(if g.json {
        print_json(&json!({ "backup": dest.display().to_string(), "bytes": bytes }))
    } else if !g.quiet {
        outln!(
            "wrote a consistent copy of {} ({bytes} bytes) to {}",
            cas.path().display(),
            dest.display()
        )
    } else {
        Ok(())
    })?;
    Ok(0)
}

/// `ouro node restore SRC`.
pub fn restore(g: &Global, src: &std::path::Path) -> Result<i32> {
    // PA
    let dest = g.store_dir()?;
    if ControlClient::connect(&dest).is_some() {
        anyhow::bail!("a node is running on {}: stop it first", dest.display());
    }
    let cas = ouroboros_db::Cas::restore(src, &dest)
        .with_context(|| format!("restoring {} from {}", dest.display(), src.display()))?;
    committed(if g.json {
        print_json(&json!({ "restored": dest.display().to_string() }))
    } else if !g.quiet {
        // Only a cluster member has peers to catch up from.
        let hint = match cas.in_cluster() {
            Ok(true) => "; start it with `ouro node run`: it catches up from its peers",
            _ => "",
        };
        outln!("restored {} from {}{hint}", dest.display(), src.display())
    } else {
        Ok(())
    })?;
    Ok(0)
}
