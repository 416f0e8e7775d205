//! put, get and merge: the verbs that move content.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use ouroboros_db::model::key::clip;
use ouroboros_db::{Hash, MergeSource, PutOptions};
use serde_json::json;

use crate::output::{committed, outln, output_error, print_json};
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

/// Resolves a (possibly abbreviated) version hash of `key` (`--parent`, `--pick`).
fn version_of(cas: &ouroboros_db::Cas, key: &str, hash: &str) -> Result<Hash> {
    // A
    // Checked here: `KEY@zz` is no hash ref, so it would read as a key named `KEY@zz` and
    // fail as "no key" (exit 3) when the mistake is the argument (exit 2).
    let min = ouroboros_db::model::reference::MIN_PREFIX;
    if !(min..=64).contains(&hash.len()) || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!(ouroboros_db::Error::InvalidArgument(format!(
            "{:?} is not a version hash: give {min} to 64 hex digits of one (see `ouro log {}`)",
            clip(hash),
            clip(key)
        )));
    }
    let r = format!("{key}@{hash}");
    cas.resolve(&r)
        .with_context(|| format!("resolving version {hash} of {:?}", clip(key)))
}

pub fn put(g: &Global, key: &str, file: Option<&Path>, parents: &[String]) -> Result<i32> {
    // A
    // A key that `get KEY` would read as a version of another key (`x@~1`) is refused
    // before anything is stored.
    ouroboros_db::model::reference::check_key_names_itself(key)?;
    let cas = Arc::new(g.open_unlocked()?);
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
        .with_context(|| format!("storing {:?}", clip(key)))?;
    bar.finish();
    let settled = g.settle(&cas)?;
    committed(if g.json {
        let report = json!({
            "hash": out.hash.to_hex(),
            "key": key,
            "size": out.size,
            "chunks": out.chunks,
            "new_chunks": out.new_chunks,
            "stored_bytes": out.stored_bytes,
        });
        print_json(&super::with_settled(report, &settled))
    } else {
        outln!("{}", out.hash)
    })?;
    Ok(super::settled_exit(&settled))
}

pub fn get(g: &Global, reference: &str, output: Option<&Path>) -> Result<i32> {
    // A
    let cas = g.open_unlocked()?;
    if let Some(path) = output {
        refuse_inside_store(&cas, path)?;
    }
    let bar = Bar::new(g, true, "get");
    let blob = match output {
        None => stream(&cas, reference, std::io::stdout().lock(), "to stdout", &bar)?,
        Some(path) => get_into_file(&cas, reference, path, &bar)?,
    };
    bar.finish();
    if g.json && output.is_some() {
        print_json(&json!({ "key": blob.key, "hash": blob.hash()?.to_hex(), "size": blob.size }))?;
    }
    Ok(0)
}

/// Refuses an output file inside the store's directory: replacing `data.mdb` (or anything
/// beside it) with a version's content would destroy the store.
fn refuse_inside_store(cas: &ouroboros_db::Cas, dest: &Path) -> Result<()> {
    // A
    let store = std::fs::canonicalize(cas.path())
        .with_context(|| format!("resolving {}", cas.path().display()))?;
    // The file a symlink names is what gets written; a new file goes into its parent.
    let target = match std::fs::canonicalize(dest) {
        Ok(t) => t,
        Err(_) => {
            let parent = dest
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match (std::fs::canonicalize(parent), dest.file_name()) {
                (Ok(p), Some(name)) => p.join(name),
                _ => return Ok(()),
            }
        }
    };
    if target.starts_with(&store) {
        anyhow::bail!(ouroboros_db::Error::InvalidArgument(format!(
            "{} is inside the store {}: writing there would destroy it; choose a file outside",
            dest.display(),
            store.display()
        )));
    }
    Ok(())
}

pub fn merge(g: &Global, key: &str, pick: Option<&str>, file: Option<&Path>) -> Result<i32> {
    // A
    let cas = Arc::new(g.open_unlocked()?);
    let source = match (pick, file) {
        (Some(h), _) => MergeSource::Pick(version_of(&cas, key, h)?),
        (None, f) => MergeSource::Content(open_input(f)?.0),
    };
    let hash = cas
        .merge(key, source)
        .with_context(|| format!("merging the heads of {:?}", clip(key)))?;
    let settled = g.settle(&cas)?;
    committed(if g.json {
        let report = json!({ "hash": hash.to_hex(), "key": key });
        print_json(&super::with_settled(report, &settled))
    } else {
        outln!("{hash}")
    })?;
    Ok(super::settled_exit(&settled))
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
    stream(cas, reference, file, &dest.display().to_string(), progress)
}

/// Writes a version into `out` (named `what` in errors), buffered. A failure of the output
/// is reported as one ([`output_error`]: a full disk names the output, not the store; a
/// reader gone away is [`crate::output::PipeClosed`]), a failure to read as one naming the ref.
fn stream(
    cas: &ouroboros_db::Cas,
    reference: &str,
    out: impl Write,
    what: &str,
    progress: &dyn ouroboros_db::Progress,
) -> Result<ouroboros_db::model::Blob> {
    // A
    let mut w = BufWriter::with_capacity(
        1 << 20,
        Tracked {
            inner: out,
            error: None,
        },
    );
    let read = cas.get_with_progress(reference, &mut w, progress);
    let flushed = match read {
        Ok(_) => w.flush(),
        Err(_) => Ok(()),
    };
    if let Some(e) = w.get_mut().error.take() {
        return Err(output_error(e, what));
    }
    flushed.map_err(|e| output_error(e, what))?;
    read.with_context(|| format!("reading {}", clip(reference)))
}

/// A writer that keeps the first error of the writer below, so that a failure of the
/// output is told apart from a failure to read the store (the library sees only an I/O
/// error, and would call a full output disk a full store).
struct Tracked<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W> Tracked<W> {
    /// Keeps `e` and hands the library an error of the same kind.
    fn keep(&mut self, e: std::io::Error) -> std::io::Error {
        // A
        if e.kind() == std::io::ErrorKind::Interrupted {
            return e;
        }
        let copy = std::io::Error::from(e.kind());
        self.error.get_or_insert(e);
        copy
    }
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A
        self.inner.write(buf).map_err(|e| self.keep(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A
        self.inner.flush().map_err(|e| self.keep(e))
    }
}
