//! put, get and merge: the verbs that move content.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use ouroboros_db::{Hash, MergeSource, PutOptions};
use serde_json::json;

use crate::output::print_json;
use crate::progress::Bar;
use ouro_cli::cli::Global;

/// Opens `file`, or stdin for `-` / none.
fn open_input(file: Option<&Path>) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    // A
    match file {
        None => Ok((Box::new(std::io::stdin()), None)),
        Some(p) if p.as_os_str() == "-" => Ok((Box::new(std::io::stdin()), None)),
        Some(p) => {
            let f =
                File::open(p).with_context(|| format!("cannot open input file {}", p.display()))?;
            let meta = f
                .metadata()
                .with_context(|| format!("cannot stat {}", p.display()))?;
            if meta.is_dir() {
                anyhow::bail!(ouroboros_db::Error::InvalidArgument(format!(
                    "{} is a directory (use `ouro put -r DIR PREFIX`)",
                    p.display()
                )));
            }
            Ok((
                Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
                Some(meta.len()),
            ))
        }
    }
}

/// Resolves a (possibly abbreviated) version hash of `key`.
fn version_of(cas: &ouroboros_db::Cas, key: &str, hash: &str) -> Result<Hash> {
    // A
    let r = format!("{key}@{hash}");
    cas.resolve(&r)
        .with_context(|| format!("resolving version {hash} of {key:?}"))
}

pub fn put(g: &Global, key: &str, file: Option<&Path>, parents: &[String]) -> Result<i32> {
    // A
    let cas = g.open_unlocked()?;
    let parents = if parents.is_empty() {
        None
    } else {
        Some(
            parents
                .iter()
                .map(|p| version_of(&cas, key, p))
                .collect::<Result<Vec<_>>>()?,
        )
    };
    let (input, len) = open_input(file)?;
    let bar = Bar::new(g, true, "put");
    if let Some(l) = len {
        ouroboros_db::Progress::set_total(&bar, l);
    }
    let opts = PutOptions {
        parents,
        created: None,
        progress: Some(&bar),
        meta: Default::default(),
    };
    let out = cas
        .put(key, input, &opts)
        .with_context(|| format!("storing {key:?}"))?;
    bar.finish();
    g.settle()?;
    if g.json {
        print_json(&json!({
            "hash": out.hash.to_hex(),
            "key": key,
            "size": out.size,
            "chunks": out.chunks,
            "new_chunks": out.new_chunks,
            "stored_bytes": out.stored_bytes,
        }));
    } else {
        println!("{}", out.hash);
    }
    Ok(0)
}

pub fn get(g: &Global, reference: &str, output: Option<&Path>) -> Result<i32> {
    // A
    let cas = g.open_unlocked()?;
    let bar = Bar::new(g, true, "get");
    let blob = match output {
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            let b = cas
                .get_with_progress(reference, &mut w, &bar)
                .with_context(|| format!("reading {reference}"))?;
            w.flush().context("writing to stdout")?;
            b
        }
        Some(path) => get_into_file(&cas, reference, path, &bar)?,
    };
    bar.finish();
    if g.json && output.is_some() {
        print_json(&json!({ "key": blob.key, "hash": blob.hash().to_hex(), "size": blob.size }));
    }
    Ok(0)
}

pub fn merge(g: &Global, key: &str, pick: Option<&str>, file: Option<&Path>) -> Result<i32> {
    // A
    let cas = g.open_unlocked()?;
    let source = match (pick, file) {
        (Some(h), _) => MergeSource::Pick(version_of(&cas, key, h)?),
        (None, f) => MergeSource::Content(open_input(f)?.0),
    };
    let hash = cas
        .merge(key, source)
        .with_context(|| format!("merging the heads of {key:?}"))?;
    g.settle()?;
    if g.json {
        print_json(&json!({ "hash": hash.to_hex(), "key": key }));
    } else {
        println!("{hash}");
    }
    Ok(0)
}

/// Writes a version to `dest` through a temp file beside it and a rename, so a failed or
/// interrupted get never leaves a partial file.
fn get_into_file(
    cas: &ouroboros_db::Cas,
    reference: &str,
    dest: &Path,
    progress: &dyn ouroboros_db::Progress,
) -> Result<ouroboros_db::model::Blob> {
    // A
    // A device, fifo or socket (`-o /dev/null`, `-o /dev/stdout`) is written in place: renaming
    // a file over it would replace the node itself, for every program on the machine.
    let dest = match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => anyhow::bail!(ouroboros_db::Error::InvalidArgument(format!(
            "{} is a directory (use `ouro get -r PREFIX DIR` for a tree)",
            dest.display()
        ))),
        Ok(m) if !m.is_file() => return get_into_special(cas, reference, dest, progress),
        // Through a symlink, the file it names gets the new content and the link stays.
        Ok(_) => {
            std::fs::canonicalize(dest).with_context(|| format!("resolving {}", dest.display()))?
        }
        Err(_) => dest.to_path_buf(),
    };
    let dest = dest.as_path();
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ouro-get-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let _guard = crate::interrupt::TempGuard::new(tmp.path().to_path_buf());
    let blob = write_version(cas, reference, tmp.as_file_mut(), dest, progress)?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", dest.display()))?;
    tmp.persist(dest)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(blob)
}

/// Streams a version into an existing device, fifo or socket, which has no directory entry to
/// replace atomically and nothing to fsync.
fn get_into_special(
    cas: &ouroboros_db::Cas,
    reference: &str,
    dest: &Path,
    progress: &dyn ouroboros_db::Progress,
) -> Result<ouroboros_db::model::Blob> {
    // A
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(dest)
        .with_context(|| format!("opening {}", dest.display()))?;
    write_version(cas, reference, &mut file, dest, progress)
}

/// Streams a version into `file` (which stands for `dest` in errors), buffered.
fn write_version(
    cas: &ouroboros_db::Cas,
    reference: &str,
    file: &mut File,
    dest: &Path,
    progress: &dyn ouroboros_db::Progress,
) -> Result<ouroboros_db::model::Blob> {
    // A
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let blob = cas
        .get_with_progress(reference, &mut w, progress)
        .with_context(|| format!("reading {reference}"))?;
    w.flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(blob)
}
