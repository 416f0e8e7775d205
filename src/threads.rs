//! Named threads: `top -H`, `ps -L` and profilers show which stage of a pipeline is busy.

use std::thread::{Scope, ScopedJoinHandle};

use crate::error::{Error, Result};

/// Starts `f` on a thread of `scope` named `name` (at most 15 bytes are shown).
pub(crate) fn spawn_scoped<'scope, 'env, T: Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<ScopedJoinHandle<'scope, T>> {
    // A
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn_scoped(scope, f)
        .map_err(|e| Error::Internal(format!("cannot start the {name} thread: {e}")))
}
