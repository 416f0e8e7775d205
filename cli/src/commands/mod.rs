//! One function per verb. Each returns the exit code on success; errors carry context that
//! names the key, ref or file involved and are mapped to exit codes in `exit.rs`.

mod admin;
mod cluster;
mod content;
mod history;
mod mount;
mod recipients;
mod snapshots;
mod tree;

pub use mount::unmount;

use anyhow::Result;
use ouro_cli::cli::{Cli, ClusterAction, Command, NodeAction, RecipientAction, Settled};
use serde_json::Value;
use std::path::Path;

/// A committed change's JSON report with the `node` and `pending_chunks` fields of a
/// cluster node's store added.
fn with_settled(mut report: Value, settled: &Settled) -> Value {
    // A
    if let Value::Object(fields) = &mut report {
        for (k, v) in settled.json_fields() {
            fields.insert(k.to_string(), v);
        }
    }
    report
}

/// The exit code of a command whose change is committed: 11 when it stayed on this node
/// (its node is not running or stopped answering), else 0.
fn settled_exit(settled: &Settled) -> i32 {
    // A
    match settled.stayed_here() {
        true => crate::exit::NODE_DOWN,
        false => 0,
    }
}

/// A key given on the command line, which must be UTF-8 (`put -r` takes any directory
/// name in the same place, so the argument is parsed as raw bytes).
fn utf8_key(key: &std::ffi::OsStr) -> Result<&str> {
    // A
    key.to_str().ok_or_else(|| {
        anyhow::Error::new(ouroboros_db::Error::InvalidArgument(format!(
            "invalid key {}: a key must be UTF-8",
            key.to_string_lossy()
        )))
    })
}

/// Runs the parsed command.
pub fn run(cli: &Cli) -> Result<i32> {
    // A
    let g = &cli.global;
    match &cli.command {
        Command::Init {
            ec,
            recipients,
            zstd_level,
            chunk_size,
        } => admin::init(g, ec, recipients, *zstd_level, chunk_size),
        Command::Put {
            key,
            file,
            recursive: true,
            exclude,
            ..
        } => tree::put_tree(g, Path::new(key), file.as_deref(), exclude),
        Command::Put {
            key, file, parents, ..
        } => content::put(g, utf8_key(key)?, file.as_deref(), parents),
        Command::Get {
            reference,
            dir,
            recursive: true,
            at,
            delete,
            dry_run,
            include,
            exclude,
            numeric_owner,
            ..
        } => tree::get_tree(
            g,
            &tree::GetTree {
                reference,
                dir: dir.as_deref(),
                at: at.as_deref(),
                delete: *delete,
                dry_run: *dry_run,
                include,
                exclude,
                numeric_owner: *numeric_owner,
            },
        ),
        Command::Snapshots { prefix } => snapshots::list(g, prefix.as_deref().unwrap_or("")),
        Command::Diff { from, to } => snapshots::diff(g, from, to.as_deref()),
        Command::Forget {
            prefix,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            dry_run,
        } => {
            use ouroboros_db::snapshot::{KeepPolicy, KeepWithin};
            let policy = KeepPolicy {
                last: *keep_last,
                hourly: *keep_hourly,
                daily: *keep_daily,
                weekly: *keep_weekly,
                monthly: *keep_monthly,
                yearly: *keep_yearly,
                within: keep_within.as_deref().map(KeepWithin::parse).transpose()?,
            };
            snapshots::forget(g, prefix, &policy, *dry_run)
        }
        Command::Get {
            reference, output, ..
        } => content::get(g, reference, output.as_deref()),
        Command::Merge { key, pick, file } => {
            content::merge(g, key, pick.as_deref(), file.as_deref())
        }
        Command::Log {
            reference,
            max_count,
            oneline,
            graph,
        } => history::log(g, reference, *max_count, *oneline, *graph),
        Command::Heads { key } => history::heads(g, key),
        Command::Rm { reference } => history::rm(g, reference),
        Command::Ls { prefix, long } => history::ls(g, prefix.as_deref().unwrap_or(""), *long),
        Command::Verify { repair } => admin::verify(g, *repair),
        Command::Gc { compact } => admin::gc(g, *compact),
        Command::Stats => admin::stats(g),
        Command::Mount {
            mountpoint,
            read_only,
            foreground,
            allow_other,
        } => mount::mount(g, mountpoint, *read_only, *foreground, *allow_other),
        Command::Umount { mountpoint } => mount::umount(mountpoint),
        Command::Recipient { action } => match action {
            RecipientAction::Add { recipient } => recipients::add(g, recipient),
            RecipientAction::Ls => recipients::ls(g),
            RecipientAction::Rm { recipient } => recipients::rm(g, recipient),
        },
        Command::Cluster { action } => match action {
            ClusterAction::Init => cluster::init(g),
            ClusterAction::Invite { ttl } => cluster::invite(g, ttl),
            ClusterAction::Status => cluster::status(g),
            ClusterAction::Remove { node } => cluster::remove(g, node),
        },
        Command::Node { action } => match action {
            NodeAction::Run {
                listen,
                advertise,
                join,
                repair_after,
                repair_rate,
                tombstone_horizon,
                audit_every,
            } => cluster::run(
                g,
                listen,
                advertise.as_deref(),
                join.as_deref(),
                (*repair_after, *tombstone_horizon, *audit_every),
                *repair_rate,
            ),
            NodeAction::Backup { dest } => cluster::backup(g, dest),
            NodeAction::Restore { src } => cluster::restore(g, src),
        },
    }
}
