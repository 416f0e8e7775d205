//! A few MiB of disk kept in reserve (`STORE/reserve`, real blocks), so that `rm` and `gc`
//! can still commit when something else filled the disk: they give the reserve back and try
//! once more, and gc takes it again once it has freed space.

use std::io::Write;
use std::path::Path;

/// Bytes kept in reserve: far more than an `rm` or a gc step needs to commit.
pub const RESERVE_BYTES: usize = 2 << 20;
const NAME: &str = "reserve";

/// Writes the reserve file when it is missing (best effort: a full disk just has none).
pub fn ensure(store: &Path) {
    // A
    let path = store.join(NAME);
    if path
        .metadata()
        .is_ok_and(|m| m.len() == RESERVE_BYTES as u64)
    {
        return;
    }
    let tmp = store.join(format!("{NAME}.tmp"));
    // Written, not allocated sparsely: the blocks must really be held.
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&vec![0u8; RESERVE_BYTES])
                .and_then(|_| f.sync_all())
        })
        .and_then(|_| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Gives the reserve back to the file system; true when there was one to give.
pub fn release(store: &Path) -> bool {
    // PA
    std::fs::remove_file(store.join(NAME)).is_ok()
}
