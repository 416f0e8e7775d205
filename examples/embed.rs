//! Embedding the store in a program: create a store in a directory, keep versions of a key,
//! branch and merge, read any version back, check and compact the store. No daemon: the
//! store is an LMDB environment this process opens directly.
//!
//!     cargo run --example embed [DIR]     (default: a temporary directory)

use std::path::{Path, PathBuf};

use ouroboros_db::{Cas, CreateOptions, Identity, MergeSource, NoProgress, PutOptions};

fn main() -> ouroboros_db::Result<()> {
    // A
    let tmp = tempfile::tempdir().map_err(|e| ouroboros_db::Error::io("temp dir", e))?;
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("store"));
    run(&dir)
}

/// The walk through the API, on a new store in `dir`.
fn run(dir: &Path) -> ouroboros_db::Result<()> {
    // A
    // The identity unwraps the store's keys; keep it (`Identity::save`) to open the store
    // again later with `Cas::open` + `unlock`.
    let me = Identity::generate();
    let cas = Cas::create(dir, &CreateOptions::default(), &me)?;

    // Each put makes a version whose parent is the key's head.
    let v1 = cas.put("notes/todo.txt", &b"buy milk\n"[..], &PutOptions::default())?;
    let v2 = cas.put(
        "notes/todo.txt",
        &b"buy milk\nfix bike\n"[..],
        &PutOptions::default(),
    )?;
    println!("versions {} then {}", v1.hash.short(), v2.hash.short());

    // A second branch from v1 (as a concurrent writer elsewhere would make): two heads.
    let branch = PutOptions {
        parents: Some(vec![v1.hash]),
        ..PutOptions::default()
    };
    cas.put("notes/todo.txt", &b"buy oat milk\n"[..], &branch)?;
    println!("heads: {}", cas.heads("notes/todo.txt")?.len());

    // Merge them with new content: one head again, whose parents are both.
    let merged = cas.merge(
        "notes/todo.txt",
        MergeSource::Content(Box::new(&b"buy oat milk\nfix bike\n"[..])),
    )?;
    println!("merged into {}", merged.short());

    // Read the newest version, and an older one by hash prefix.
    let mut now = Vec::new();
    cas.get("notes/todo.txt", &mut now)?;
    let mut old = Vec::new();
    cas.get(
        &format!("notes/todo.txt@{}", &v1.hash.to_hex()[..12]),
        &mut old,
    )?;
    print!(
        "now:\n{}then:\n{}",
        String::from_utf8_lossy(&now),
        String::from_utf8_lossy(&old)
    );

    // History, newest first.
    for v in cas.log("notes/todo.txt", 10)? {
        println!(
            "{} {} bytes, {} parent(s)",
            v.hash.short(),
            v.size,
            v.parents.len()
        );
    }

    // Every slice, chunk and version record checked; then space of removed versions freed.
    let report = cas.verify(false, &NoProgress)?;
    println!(
        "verify: {} chunks, {} versions, healthy: {}",
        report.chunks,
        report.blobs,
        report.is_healthy()
    );
    cas.remove(&format!("notes/todo.txt@{}", v1.hash.to_hex()))?;
    let gc = cas.gc(&NoProgress)?;
    println!("gc released {} version(s)", gc.versions_released);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example (`test = true` in Cargo.toml), so it keeps working.
    #[test]
    fn runs_on_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        super::run(&dir.path().join("store")).unwrap();
    }
}
