//! Command-line definitions (clap derive). Names here are the interface scripts rely on.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ouroboros_db::{Cas, Identity};

/// ouro: a content-addressed, versioned, encrypted and erasure-coded blob store.
#[derive(Parser, Debug)]
#[command(name = "ouro", version, about, long_about = None, after_help = EXIT_CODES, after_long_help = AFTER_LONG_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug)]
pub struct Global {
    /// Store directory [default: $XDG_DATA_HOME/ouro]
    #[arg(long, global = true, env = "OURO_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]
    #[arg(long, global = true, env = "OURO_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or informational messages
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output on stderr (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The exit codes, once, for `-h` and `--help` (and so the man page).
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  error (I/O, database, anything else; put -r/get -r: some files failed, the rest is done)
  2  usage error: bad option, key, ref or argument; ambiguous ref; get -o into the store;
     init into a directory that holds other files
  3  not found: key, ref or version
  4  the key was deleted (get, log, heads)
  5  the key has several heads where one was needed (merge, or name a version)
  6  data corrupt beyond repair, a damaged store configuration, or a damaged store file
     (data.mdb shorter than LMDB's pages in use: restore it from a backup); get -r: files
     whose content the store lost are named, every other file is restored
  7  identity missing, unreadable, too open, not a regular file, or not a recipient of the
     store (verify too, when an identity is given or present)
  8  no store at the given path (run `ouro init`), or one already exists for init; cluster
     status of a store outside any cluster
  9  no space left on the device (the store's, or the output's for get)
  10 a race with gc on another cluster node: nothing was stored, run the command again;
     gc --compact while another process (a node, a mount, a put) has the store open
  11 the store belongs to a cluster and its node is not running (or stopped answering
     during the command). put, put -r, merge, rm, forget: the change IS committed on this
     node (do not make it again) but no other node knows of it yet, and its chunks keep
     all their slices on this disk (stderr says how many; --json: node, pending_chunks)
     until `ouro node run` runs on the store again; put -r with failed files exits 1.
     get, get -r, mount reads: slices held by other nodes are out of reach; nothing is
     known to be damaged
  130 interrupted (Ctrl-C); the store stays consistent
  141 the reader of stdout went away (`ouro ls | head -1`), quietly. A command that changed
     the store (put, merge, rm, gc, forget, recipient add/rm, init, verify --repair, cluster
     init/remove, node backup/restore) exits as it would have (0, or 11) once its change
     is committed, even when its output could not be written"
    };
}

pub const EXIT_CODES: &str = exit_codes!();

/// Exit codes and the JSON schemas, for `--help` and the man page.
pub const AFTER_LONG_HELP: &str = concat!(
    exit_codes!(),
    "

JSON output (--json): one document on stdout. Fields are only ever added, never renamed.
  put      {hash, key, size, chunks, new_chunks, stored_bytes}
  put -r   {snapshot, files, stored, unchanged, new_files, changed, removed, dirs, entries,
            new_bytes, skipped: [{path, reason}], warnings: [{path, reason}], errors: [{path, error}]}
           put, put -r, merge, rm, forget on a cluster node's store add node (running,
           not running, stopped) and pending_chunks (chunks whose slices wait on this
           node for their nodes; null when they could not be counted)
  get -o   {key, hash, size}
  get -r   {snapshot, entries, restored, bytes, dry_run, changes: [{path, change}], errors: [{path, error}],
            lost (files whose content the store lost; each is in errors)}
  snapshots  [{hash, prefix, time, time_ns, host, path, parents, summary: {...}, errors}]
  diff     {from, to, changes: [{path, change: added|removed|content|metadata|type, kind}]}
  forget   {prefix, dry_run, kept: [{hash, time, reasons}], removed: [hash], versions_removed}
  log, heads  [{hash, key, parents, created (RFC 3339), created_ns, size, kind, removed}]
  ls       [{key, size, modified, heads}]
  merge    {hash, key};  rm {key, whole_key, removed: [hash]}
  verify   {ok, chunks, slices, packs, blobs, decrypted, unreferenced_chunks, damage: [...]}
  gc       {versions_released, chunks_freed, packs_freed, packs_rewritten, slices_freed, bytes_freed,
            chunks_condemned, compacted: null | {file_bytes_before, file_bytes_after}, reusable_bytes}
  stats    {keys, versions, live_versions, removed_versions, logical_bytes, unique_bytes,
            stored_bytes, stored_with_parity_bytes, file_bytes, reusable_bytes, compaction_leftover_bytes, unfinished_bytes, chunks, referenced_chunks,
            slices, packs, deltas, dead_pack_bytes, unreferenced_chunks, unreferenced_bytes, dedup_ratio, compression_ratio,
            ec, node_local: [names of the fields that may differ between cluster nodes]}
  recipient ls  [recipient]

Environment: OURO_STORE, OURO_IDENTITY, RUST_LOG (log filter, e.g. ouroboros_db=debug)."
);

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a store in a new or empty directory (and an identity when none exists)
    Init {
        /// Erasure code: K data + M parity slices per chunk
        #[arg(long, default_value = "4+2", value_name = "K+M")]
        ec: String,
        /// Extra age recipient who can read the store (repeatable)
        #[arg(long = "recipient", value_name = "AGE_RECIPIENT")]
        recipients: Vec<String>,
        /// zstd level for new chunks (1-19)
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        zstd_level: i32,
        /// Average chunk size (K/M suffix); min is half, max four times it. Smaller chunks
        /// deduplicate small edits better at more metadata (README, "Chunk size")
        #[arg(long, default_value = "1M", value_name = "SIZE")]
        chunk_size: String,
    },
    /// Store FILE (or stdin) as a new version of KEY; with -r, store directory DIR under PREFIX
    #[command(
        override_usage = "ouro put [OPTIONS] KEY [FILE|-]\n       ouro put -r [--exclude GLOB]... DIR PREFIX"
    )]
    Put {
        /// The key (with -r: the directory to store). Refused when the text after its last
        /// '@' reads as a version (x@~1, x@beef, x@2026-01-01): `get` would take it for one.
        /// Keys are compared byte for byte: NFC and NFD spellings are two keys
        #[arg(value_name = "KEY")]
        key: std::ffi::OsString,
        /// Input file; `-` or absent for stdin (with -r: the key prefix)
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Parent version (repeatable): branch from it instead of the head
        #[arg(long = "parent", value_name = "HASH", conflicts_with = "recursive")]
        parents: Vec<String>,
        /// Store a directory tree, one key per regular file; unchanged files are skipped
        #[arg(short, long)]
        recursive: bool,
        /// With -r: skip paths matching this glob (repeatable; `*.tmp`, `cache/**`)
        #[arg(long, value_name = "GLOB", requires = "recursive")]
        exclude: Vec<String>,
    },
    /// Write a version's content to stdout or a file; with -r, restore PREFIX into DIR
    #[command(
        override_usage = "ouro get [OPTIONS] REF [-o FILE]\n       ouro get -r [--delete] [--dry-run] [--include GLOB]... [--exclude GLOB]... PREFIX[@REF] DIR"
    )]
    Get {
        /// KEY, KEY@HASH, KEY@~N or KEY@TIME (with -r: PREFIX, the newest snapshot, or
        /// PREFIX@HASH, PREFIX@~N, PREFIX@TIME). A trailing '@' makes all before it the key:
        /// `a@~1@` is the head of a key named `a@~1`
        reference: String,
        /// With -r: the directory to restore into
        #[arg(value_name = "DIR", requires = "recursive")]
        dir: Option<PathBuf>,
        /// Output file instead of stdout: a regular file is replaced atomically (through a
        /// symlink, its target); a device or fifo (`/dev/null`) is written in place; a path
        /// inside the store's directory is refused
        #[arg(short, long, value_name = "FILE", conflicts_with = "recursive")]
        output: Option<PathBuf>,
        /// Restore a snapshot of PREFIX (made by put -r) into DIR, with its metadata
        #[arg(short, long)]
        recursive: bool,
        /// With -r: the snapshot current at this RFC 3339 time or date (= PREFIX@TIME)
        #[arg(long, value_name = "TIME", requires = "recursive")]
        at: Option<String>,
        /// With -r: remove what the snapshot lacks from DIR, so it ends up identical
        #[arg(long, requires = "recursive")]
        delete: bool,
        /// With -r: only list what would change
        #[arg(long, requires = "recursive")]
        dry_run: bool,
        /// With -r: restore only paths matching this glob (repeatable) and what is under them
        #[arg(long, value_name = "GLOB", requires = "recursive")]
        include: Vec<String>,
        /// With -r: leave out paths matching this glob (repeatable)
        #[arg(long, value_name = "GLOB", requires = "recursive")]
        exclude: Vec<String>,
        /// With -r as root: restore owners by the recorded ids, not by user and group name
        #[arg(long, requires = "recursive")]
        numeric_owner: bool,
    },
    /// List snapshots (runs of put -r), oldest first
    Snapshots {
        /// Only snapshots of this prefix
        prefix: Option<String>,
    },
    /// Show what changed between two snapshots (default: the last two of the prefix)
    Diff {
        /// PREFIX[@REF]: the older snapshot (PREFIX alone with no second ref: the last two)
        from: String,
        /// PREFIX[@REF]: the newer snapshot
        to: Option<String>,
    },
    /// Remove snapshots of PREFIX that no --keep rule keeps (then `ouro gc` frees their data)
    Forget {
        /// The key prefix whose snapshots to thin out
        prefix: String,
        /// Keep the N newest snapshots
        #[arg(long, value_name = "N")]
        keep_last: Option<u32>,
        /// Keep the newest snapshot of each of the last N hours that have one
        #[arg(long, value_name = "N")]
        keep_hourly: Option<u32>,
        /// Keep the newest snapshot of each of the last N days that have one
        #[arg(long, value_name = "N")]
        keep_daily: Option<u32>,
        /// Keep the newest snapshot of each of the last N ISO weeks that have one
        #[arg(long, value_name = "N")]
        keep_weekly: Option<u32>,
        /// Keep the newest snapshot of each of the last N months that have one
        #[arg(long, value_name = "N")]
        keep_monthly: Option<u32>,
        /// Keep the newest snapshot of each of the last N years that have one
        #[arg(long, value_name = "N")]
        keep_yearly: Option<u32>,
        /// Keep every snapshot this recent, counted back from the newest (1y2m3d4h)
        #[arg(long, value_name = "DURATION")]
        keep_within: Option<String>,
        /// Only list what would be removed and why each kept snapshot is kept
        #[arg(long)]
        dry_run: bool,
    },
    /// Show history, newest first
    Log {
        /// KEY or any ref
        reference: String,
        /// At most N versions
        #[arg(short = 'n', long, default_value_t = usize::MAX, hide_default_value = true)]
        max_count: usize,
        /// One line per version
        #[arg(long)]
        oneline: bool,
        /// Draw parent links
        #[arg(long)]
        graph: bool,
    },
    /// List the current heads of KEY
    Heads { key: String },
    /// Resolve several heads into one version
    Merge {
        key: String,
        /// Take the content of this version
        #[arg(
            long,
            value_name = "HASH",
            conflicts_with = "file",
            required_unless_present = "file"
        )]
        pick: Option<String>,
        /// Take the content of this file (`-` for stdin)
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Remove a key (all versions) or one version (KEY@HASH)
    Rm { reference: String },
    /// List keys
    Ls {
        /// Only keys starting with this prefix
        prefix: Option<String>,
        /// Long format: size, time, heads
        #[arg(short, long)]
        long: bool,
    },
    /// Check every slice, chunk and version; with an identity, decrypt the content too
    Verify {
        /// Rebuild missing or damaged slices; remove index rows that name lost versions, a
        /// parent the child does not name, or a version already listed under its own key, and
        /// give a key whose head is lost the heads `rm KEY@V` would leave (else its newest
        /// live version)
        #[arg(long)]
        repair: bool,
    },
    /// Reclaim space of removed versions and unreferenced chunks
    ///
    /// Freed space stays inside the store's database file, for later writes to reuse: the
    /// file never shrinks by itself (`ouro stats` shows how much of it is free). --compact
    /// then rewrites the file without its free pages, returning them to the filesystem
    Gc {
        /// Then rewrite the database file without its free pages, when at least PERCENT of it
        /// is free (10 when not given; 0: always). Needs the store to itself (stop its node and
        /// mounts first; puts started meanwhile wait) and free disk space for the copy (the
        /// size of the data it holds)
        #[arg(long, value_name = "PERCENT", num_args = 0..=1, default_missing_value = "10",
              value_parser = clap::value_parser!(u8).range(0..=100), require_equals = true)]
        compact: Option<u8>,
    },
    /// Show sizes and ratios, and what an interrupted put left until gc (chunks no version
    /// uses, slices not yet recorded)
    ///
    /// On a cluster, nodes with the same data agree on keys, live versions, logical bytes and
    /// referenced chunks. The other counts are the node's own (`node_local` in --json): they
    /// include removed versions whose record stays here (until gc, or as history after `rm
    /// KEY@V`; a node that learned of the key later never got it) and chunk records no
    /// version uses (an interrupted put's, which reach only the nodes that took its slices;
    /// condemned sealings each node frees in its own round)
    Stats,
    /// Mount the store with FUSE: keys as files, versions under .ouro/ (see ouro-mount(1))
    Mount {
        /// An existing, empty directory
        mountpoint: PathBuf,
        /// Refuse every change (EROFS)
        #[arg(long)]
        read_only: bool,
        /// Stay in the foreground until unmounted or interrupted (logs to stderr)
        #[arg(long)]
        foreground: bool,
        /// Let other users enter the mount, with each file's mode checked by the kernel (a
        /// normal user needs `user_allow_other` in /etc/fuse.conf)
        #[arg(long)]
        allow_other: bool,
    },
    /// Unmount a store mounted with `ouro mount` (lazily: open files stay readable until closed)
    Umount { mountpoint: PathBuf },
    /// Manage who can read the store (age recipients)
    Recipient {
        #[command(subcommand)]
        action: RecipientAction,
    },
    /// Create a cluster, invite or remove nodes, show its status
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Run this store's cluster node
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Make this store the first node of a new cluster (creates the admin key)
    Init,
    /// Print a one-time join token for a new node (its last line of output)
    Invite {
        /// How long the token stays valid (90s, 30m, 2h, 1d)
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        ttl: String,
    },
    /// Show members, their state, and chunks not fully on live nodes
    Status,
    /// Revoke a node: its connections are cut and it is never accepted again
    Remove {
        /// Node id (or a unique prefix of it), as `cluster status` shows
        node: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeAction {
    /// Run the node in the foreground (logs to stderr; stops cleanly on SIGTERM)
    Run {
        /// UDP address to listen on
        #[arg(long, default_value = "0.0.0.0:7700", value_name = "ADDR")]
        listen: String,
        /// Address other nodes should use (default: the listen address)
        #[arg(long, value_name = "ADDR")]
        advertise: Option<String>,
        /// Join a cluster with a token from `ouro cluster invite` (creates the store); the
        /// environment variable keeps the token out of the process list
        #[arg(
            long,
            value_name = "TOKEN",
            env = "OURO_JOIN_TOKEN",
            hide_env_values = true
        )]
        join: Option<String>,
        /// Seconds a member may be silent before its slices are rebuilt on the others
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        repair_after: u64,
        /// MiB per second of slices this node may fetch to rebuild lost ones
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        repair_rate: u64,
        /// Seconds a silent member holds back the compaction of tombstones (rm records);
        /// a member away longer must be wiped and rejoin
        #[arg(long, default_value_t = 604_800, value_name = "SECONDS")]
        tombstone_horizon: u64,
        /// Seconds between two audits of a peer's slices against placement (a Merkle
        /// comparison whose traffic follows the difference; one peer in turn)
        #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        audit_every: u64,
    },
    /// Write a consistent copy of this store (and its node keys) into DEST, even while it runs
    Backup {
        /// A new directory
        dest: PathBuf,
    },
    /// Make --store (which must not exist) a store again from a backup; then `node run`
    Restore {
        /// A directory written by `ouro node backup`
        src: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum RecipientAction {
    /// Let another age recipient read the whole store (no data is re-encrypted)
    Add {
        /// age1... recipient
        recipient: String,
    },
    /// List the recipients
    Ls,
    /// Stop a recipient from reading data written from now on (starts a new key epoch)
    Rm {
        /// age1... recipient
        recipient: String,
    },
}

/// `$XDG_DATA_HOME/ouro` or `~/.local/share/ouro`.
fn default_store() -> Result<PathBuf> {
    // A
    xdg_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("ouro"))
}

/// `$XDG_CONFIG_HOME/ouro/identity.txt` or `~/.config/ouro/identity.txt`.
fn default_identity() -> Result<PathBuf> {
    // A
    xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("ouro").join("identity.txt"))
}

fn xdg_dir(var: &str, fallback: &str) -> Result<PathBuf> {
    // A
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context(
        "HOME is not set: pass --store and --identity (or OURO_STORE and OURO_IDENTITY)",
    )?;
    Ok(PathBuf::from(home).join(fallback))
}

impl Global {
    /// The store directory in use.
    pub fn store_dir(&self) -> Result<PathBuf> {
        // A
        match &self.store {
            Some(s) => Ok(s.clone()),
            None => default_store(),
        }
    }

    /// The identity file in use.
    pub fn identity_path(&self) -> Result<PathBuf> {
        // A
        match &self.identity {
            Some(s) => Ok(s.clone()),
            None => default_identity(),
        }
    }

    /// Opens the store without keys (metadata commands). When a cluster node runs on the
    /// store, slices other nodes hold are fetched through it.
    pub fn open(&self) -> Result<Cas> {
        // A
        let dir = self.store_dir()?;
        let mut cas =
            Cas::open(&dir).with_context(|| format!("opening store {}", dir.display()))?;
        match ouro_cluster::ControlClient::connect(cas.path()) {
            Some(node) => cas.set_remote(std::sync::Arc::new(node)),
            // A cluster node's store without its node: reads short of slices here say the
            // node is not running instead of calling intact data corrupt.
            None if cas.in_cluster()? => cas.set_remote(std::sync::Arc::new(
                ouroboros_db::route::remote::NodeNotRunning::new(cas.path()),
            )),
            None => {}
        }
        Ok(cas)
    }

    /// Opens the store and unlocks it with the identity.
    pub fn open_unlocked(&self) -> Result<Cas> {
        // A
        let mut cas = self.open()?;
        let path = self.identity_path()?;
        let id = Identity::load(&path)?;
        cas.unlock(&id)
            .with_context(|| format!("unlocking the store with {}", path.display()))?;
        Ok(cas)
    }

    /// After a command committed a change: when a cluster node runs on the store, tells it
    /// (its heartbeats then carry the news to the peers at once) and waits until the slices
    /// just written are on the nodes placement names (the durability a put reports); warns
    /// about those kept here because their node is unreachable. When the store belongs to a
    /// cluster but its node is not running, or stops answering now, says on stderr that the
    /// change stays on this node, and how many chunks keep their slices here. Never fails
    /// for the node: the change is committed whatever becomes of the hand-over.
    pub fn settle(&self, cas: &Arc<Cas>) -> Result<Settled> {
        // PA
        let dir = cas.path();
        let Some(node) = ouro_cluster::ControlClient::connect(dir) else {
            if !cas.in_cluster()? {
                return Ok(Settled::Standalone);
            }
            let pending = ouro_cluster::control::pending_without_node(cas).ok();
            eprintln!(
                "ouro: committed on this node only: no node runs on {} (nothing answers on {}), so the other nodes do not know of this change yet{}; start `ouro node run` on this store to spread it",
                dir.display(),
                dir.join("node.sock").display(),
                chunks(pending, " and ", " keep all their slices on this disk")
            );
            return Ok(Settled::NotRunning { pending });
        };
        match node.flush() {
            Ok(pending) => {
                if pending > 0 && !self.quiet {
                    eprintln!("ouro: {pending} chunk(s) keep slices on this node until their nodes are reachable again");
                }
                Ok(Settled::Spread { pending })
            }
            Err(e) => {
                let pending = ouro_cluster::control::pending_without_node(cas).ok();
                eprintln!(
                    "ouro: committed on this node, but handing it to the cluster failed ({e}){}: the node on {} spreads it once it runs again; the change is stored, do not make it again",
                    chunks(pending, "; ", " keep their slices on this disk"),
                    dir.display()
                );
                Ok(Settled::Stopped { pending })
            }
        }
    }
}

/// "{before}N chunk(s){after}" for a message, nothing when no chunk waits (an rm), an
/// unknown number when they could not be counted.
fn chunks(pending: Option<u64>, before: &str, after: &str) -> String {
    // A
    match pending {
        Some(0) => String::new(),
        Some(n) => format!("{before}{n} chunk(s){after}"),
        None => format!("{before}an unknown number of chunks{after}"),
    }
}

/// What became of a committed change on the cluster ([`Global::settle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The store belongs to no cluster.
    Standalone,
    /// The node took the change; `pending` chunks keep slices here for unreachable nodes.
    Spread {
        /// Chunks waiting for unreachable nodes.
        pending: u64,
    },
    /// No node runs on the store: the change stays here until one does.
    NotRunning {
        /// Chunks with slices placement gives elsewhere (`None`: could not be counted).
        pending: Option<u64>,
    },
    /// The node stopped answering (or failed) during the hand-over: the change is stored
    /// here, the hand-over waits for the node.
    Stopped {
        /// As for [`Settled::NotRunning`].
        pending: Option<u64>,
    },
}

impl Settled {
    /// True when the change stayed on this node only (exit 11).
    pub fn stayed_here(&self) -> bool {
        // A
        matches!(self, Settled::NotRunning { .. } | Settled::Stopped { .. })
    }

    /// The `node` and `pending_chunks` fields of a command's JSON report (none outside a
    /// cluster).
    pub fn json_fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        // A
        let (node, pending) = match *self {
            Settled::Standalone => return Vec::new(),
            Settled::Spread { pending } => ("running", Some(pending)),
            Settled::NotRunning { pending } => ("not running", pending),
            Settled::Stopped { pending } => ("stopped", pending),
        };
        vec![("node", node.into()), ("pending_chunks", pending.into())]
    }
}
