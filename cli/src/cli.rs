//! Command-line definitions (clap derive). Names here are the interface scripts rely on.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// ouro: a content-addressed, versioned, encrypted and erasure-coded blob store.
#[derive(Parser, Debug)]
#[command(name = "ouro", version, about, long_about = None, after_help = EXIT_CODES)]
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

pub const EXIT_CODES: &str = "Exit codes:
  0  success
  1  error (I/O, database, anything else)
  2  usage error: bad option, key, ref or argument; ambiguous ref
  3  not found: key, ref or version
  4  the key was deleted
  5  the key has several heads where one was needed (merge, or name a version)
  6  data corrupt beyond repair
  7  identity missing, unreadable, too open, or not a recipient of the store
  8  no store at the given path (run `ouro init`), or one already exists for init
  9  no space left on the device
  130 interrupted";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a store (and an identity when none exists)
    Init {
        /// Erasure code: K data + M parity slices per chunk
        #[arg(long, default_value = "4+2", value_name = "K+M")]
        ec: String,
        /// Extra age recipient who can read the store (repeatable)
        #[arg(long = "recipient", value_name = "AGE_RECIPIENT")]
        recipients: Vec<String>,
        /// zstd level for new chunks (1-19)
        #[arg(long, default_value_t = 3)]
        zstd_level: i32,
        /// Average chunk size (K/M suffix); min is half, max four times it. Smaller chunks
        /// deduplicate small edits better at more metadata (README, "Chunk size")
        #[arg(long, default_value = "1M", value_name = "SIZE")]
        chunk_size: String,
    },
    /// Store FILE (or stdin) as a new version of KEY
    Put {
        /// The key (or, with -r, the key prefix)
        key: String,
        /// Input file; `-` or absent for stdin (with -r: the directory)
        file: Option<PathBuf>,
        /// Parent version (repeatable): branch from it instead of the head
        #[arg(long = "parent", value_name = "HASH")]
        parents: Vec<String>,
    },
    /// Write a version's content to stdout or a file
    Get {
        /// KEY, KEY@HASH, KEY@~N or KEY@TIME
        reference: String,
        /// Output file (written atomically) instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
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
    /// Check every slice, chunk and version
    Verify {
        /// Rebuild missing or damaged slices
        #[arg(long)]
        repair: bool,
    },
    /// Reclaim space of removed versions and unreferenced chunks
    Gc,
    /// Show sizes and ratios
    Stats,
}
