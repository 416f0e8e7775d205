//! Typed errors of the library: every failure a caller can act on has its own variant.

use crate::hash::Hash;

/// Every error the library returns. Variants are grouped so that the CLI can map them to
/// distinct exit codes (not found, deleted, several heads, corrupt, identity, usage).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key does not satisfy the key rules; `rule` says which one.
    #[error("invalid key {:?}: {rule}", crate::model::key::clip(.key))]
    InvalidKey {
        /// The key as given.
        key: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A ref (`KEY@...`) could not be parsed.
    #[error("invalid ref {:?}: {reason}", crate::model::key::clip(.reference))]
    InvalidRef {
        /// The ref as given.
        reference: String,
        /// Why it is not valid.
        reason: String,
    },
    /// Nothing is stored under the key, or the ref names no version.
    #[error("not found: {0}")]
    NotFound(String),
    /// A broken invariant or a failed thread inside the library: a bug, not damaged data.
    #[error("internal error: {0}")]
    Internal(String),
    /// The key was removed with `rm`; older versions are gone once gc ran.
    #[error("key {key:?} was deleted")]
    KeyDeleted {
        /// The deleted key.
        key: String,
    },
    /// A hash prefix matches more than one version.
    #[error("ref {reference:?} is ambiguous: matches {}", fmt_hashes(.candidates))]
    AmbiguousRef {
        /// The ref as given.
        reference: String,
        /// Every version it matches.
        candidates: Vec<Hash>,
    },
    /// The key has several heads where one was needed; merge them or name one version.
    #[error("key {key:?} has {} heads ({}): merge them or name one version with KEY@HASH", .heads.len(), fmt_hashes(.heads))]
    MultipleHeads {
        /// The key.
        key: String,
        /// Its current heads.
        heads: Vec<Hash>,
    },
    /// Stored data failed verification and could not be rebuilt.
    #[error("data corrupt beyond repair: {0}")]
    Corrupt(String),
    /// The store's files are damaged below the records (LMDB's data file cut short): no
    /// command can use the store safely; it has to be restored.
    #[error("store damaged: {0}")]
    Damaged(String),
    /// Slices this read needs are held by other cluster nodes, and the node that fetches
    /// them (the one running on this store) is not running or stopped answering. Nothing is
    /// known to be damaged.
    #[error("slices held by other nodes are out of reach: {0}")]
    Unreachable(String),
    /// The identity is missing, unreadable, or cannot unwrap this store's keys.
    #[error("identity: {0}")]
    Identity(String),
    /// The operation needs the store's keys but the store was not unlocked.
    #[error("this operation needs an identity that can decrypt the store; none was given")]
    Locked,
    /// No store exists at the path (run `ouro init`).
    #[error("no ouro store at {0} (create one with `ouro init`)")]
    NotInitialised(String),
    /// A store already exists where one was to be created.
    #[error("a store already exists at {0}")]
    AlreadyInitialised(String),
    /// The store was written by an incompatible format version.
    #[error("unsupported store format version {found} (this build reads version {supported}); restore the data with the ouro release that wrote the store and put it into a new one")]
    UnsupportedFormat {
        /// Version found on disk.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// A record could not be decoded: a damaged store or a foreign file.
    #[error("malformed {what} record: {reason}")]
    Malformed {
        /// Which record type.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// An option or argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A disk (the store's, or where a restore or `get -o` writes) or the store's map is
    /// full; nothing partial was committed. The message names the file or store.
    #[error("no space left: {0}")]
    NoSpace(String),
    /// A race with another node's gc: nothing was stored, and running the same command
    /// again succeeds.
    #[error("{0}: run the command again")]
    Retry(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the input of a put failed (unreadable file, broken pipe): only that version
    /// is affected, never the store.
    #[error("reading input: {0}")]
    Input(#[source] std::io::Error),
    /// An LMDB error not covered by a more specific variant.
    #[error("store database: {0}")]
    Lmdb(String),
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn fmt_hashes(hashes: &[Hash]) -> String {
    // A
    hashes
        .iter()
        .map(|h| h.short())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// Wraps an I/O error with what was being done, mapping ENOSPC to [`Error::NoSpace`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        // A
        let context = context.into();
        if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull {
            return Error::NoSpace(context);
        }
        Error::Io { context, source }
    }

    /// An I/O error for what this user may not do (`context` says what, and where).
    pub fn denied(context: impl Into<String>) -> Self {
        // A
        Error::io(
            context,
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        )
    }

    /// Builds a [`Error::Malformed`] for a record type.
    pub fn malformed(what: &'static str, reason: impl ToString) -> Self {
        // A
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

impl From<heed::Error> for Error {
    fn from(e: heed::Error) -> Self {
        // A
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => {
                Error::NoSpace("the store reached its size limit (LMDB's 1 TiB map)".into())
            }
            heed::Error::Io(io) => Error::io("the store's database", io),
            heed::Error::Mdb(m)
                if matches!(m, heed::MdbError::Corrupted | heed::MdbError::PageNotFound) =>
            {
                Error::Corrupt(format!("LMDB reports a damaged database page ({m})"))
            }
            heed::Error::Mdb(heed::MdbError::Other(28)) => {
                Error::NoSpace("the disk holding the store is full".into())
            }
            other => Error::Lmdb(other.to_string()),
        }
    }
}
