//! Maps errors to the documented exit codes (see `ouro --help`).

use ouroboros_db::Error;

pub const ERROR: i32 = 1;
pub const USAGE: i32 = 2;
pub const NOT_FOUND: i32 = 3;
pub const DELETED: i32 = 4;
pub const MULTIPLE_HEADS: i32 = 5;
pub const CORRUPT: i32 = 6;
pub const IDENTITY: i32 = 7;
pub const NO_STORE: i32 = 8;
pub const NO_SPACE: i32 = 9;
pub const RETRY: i32 = 10;
/// The store belongs to a cluster and its node is not running (or stopped during the
/// command): a change was committed here only, or a read could not reach other nodes.
pub const NODE_DOWN: i32 = 11;
/// The reader of stdout went away (128 + SIGPIPE, what a shell shows for a program that
/// SIGPIPE stopped).
pub const PIPE_CLOSED: i32 = 141;

/// The exit code for an error chain: the first library error in it decides.
pub fn code(err: &anyhow::Error) -> i32 {
    // A
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::InvalidKey { .. }
                | Error::InvalidRef { .. }
                | Error::AmbiguousRef { .. }
                | Error::InvalidArgument(_) => USAGE,
                Error::NotFound(_) => NOT_FOUND,
                Error::KeyDeleted { .. } => DELETED,
                Error::MultipleHeads { .. } => MULTIPLE_HEADS,
                Error::Corrupt(_) | Error::Damaged(_) | Error::Malformed { .. } => CORRUPT,
                Error::Unreachable(_) => NODE_DOWN,
                Error::Identity(_) | Error::Locked => IDENTITY,
                Error::NotInitialised(_)
                | Error::AlreadyInitialised(_)
                | Error::UnsupportedFormat { .. } => NO_STORE,
                Error::NoSpace(_) => NO_SPACE,
                Error::Retry(_) => RETRY,
                // A full disk where the output goes is no full store, but still no space.
                Error::Io { source, .. } if source.raw_os_error() == Some(28) => NO_SPACE,
                Error::Io { .. } | Error::Lmdb(_) | Error::Input(_) | Error::Internal(_) => ERROR,
                // A variant added to the library later: a plain error until it gets a code.
                _ => ERROR,
            };
        }
        if let Some(e) = cause.downcast_ref::<ouro_cluster::ClusterError>() {
            use ouro_cluster::ClusterError as C;
            return match e {
                C::Token(_) | C::Invalid(_) => USAGE,
                C::UnknownNode(_) => NOT_FOUND,
                C::NotInCluster(_) => NO_STORE,
                C::Credentials(_) => IDENTITY,
                C::Store(_)
                | C::Transport(_)
                | C::NotAdmin
                | C::NoNode(_)
                | C::Protocol(_)
                | C::Frame(_)
                | C::Io { .. } => ERROR,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            // Missing files are plain errors: NOT_FOUND is for keys, refs and versions.
            if io.raw_os_error() == Some(28) {
                return NO_SPACE;
            }
        }
    }
    ERROR
}
