//! Ctrl-C (SIGINT) and SIGTERM: the store needs nothing (an uncommitted LMDB transaction
//! simply vanishes), but temp files of a `get -o` in progress are removed before exiting 130.

use std::path::PathBuf;
use std::sync::Mutex;

static TEMP_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// A mount served by this process: unmounted before exiting on a signal.
static MOUNTED: Mutex<Option<PathBuf>> = Mutex::new(None);
/// A node run by this process: told to stop (it then leaves cleanly) instead of exiting.
static NODE: Mutex<Option<tokio::sync::oneshot::Sender<()>>> = Mutex::new(None);

/// Exit code after an interruption (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

/// Installs the handler once at start.
pub fn install() {
    // A
    let _ = ctrlc::set_handler(|| {
        if let Some(stop) = NODE.lock().ok().and_then(|mut n| n.take()) {
            let _ = stop.send(());
            return;
        }
        if let Some(dir) = MOUNTED.lock().ok().and_then(|mut m| m.take()) {
            let code = match crate::commands::unmount(&dir) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("ouro: error: unmounting {}: {e:#}", dir.display());
                    1
                }
            };
            std::process::exit(code);
        }
        if let Ok(files) = TEMP_FILES.lock() {
            for f in files.iter() {
                let _ = std::fs::remove_file(f);
            }
        }
        // What was committed stays (a put -r's earlier files); nothing half-done is visible.
        eprintln!(
            "\nouro: interrupted; nothing half-done is in the store (`ouro gc` frees what the operation had written)"
        );
        std::process::exit(INTERRUPTED);
    });
}

/// Registers a temp file to remove if interrupted; unregisters on drop.
pub struct TempGuard(PathBuf);

impl TempGuard {
    /// Tracks `path` until the guard is dropped.
    pub fn new(path: PathBuf) -> Self {
        // A
        if let Ok(mut files) = TEMP_FILES.lock() {
            files.push(path.clone());
        }
        TempGuard(path)
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        // A
        if let Ok(mut files) = TEMP_FILES.lock() {
            files.retain(|f| f != &self.0);
        }
    }
}

/// Marks `dir` as mounted by this process (SIGINT and SIGTERM then unmount it and exit 0),
/// or with `None`, no longer.
pub fn set_mounted(dir: Option<PathBuf>) {
    // A
    if let Ok(mut m) = MOUNTED.lock() {
        *m = dir;
    }
}

/// Makes SIGINT and SIGTERM stop the node run by this process: the returned receiver
/// completes on the first signal.
pub fn node_stopper() -> tokio::sync::oneshot::Receiver<()> {
    // A
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Ok(mut n) = NODE.lock() {
        *n = Some(tx);
    }
    rx
}
