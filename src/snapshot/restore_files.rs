//! The file-writing half of a restore: regular files' content, written by a few worker
//! threads at once (a tree of small files is bound by per-file system calls and decoding,
//! which overlap well), each through a temp name beside its target and a rename.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::cas::{Cas, ChunkReader};
use crate::error::{Error, Result};
use crate::model::Entry;
use crate::progress::Progress;
use crate::snapshot::fsmeta::{apply_meta, OwnerPolicy};
use crate::snapshot::names::display;
use crate::snapshot::owners::Owners;

/// Files written at once: enough to overlap decoding with the file system's work.
const WORKERS: usize = 4;

/// One regular file to write, with the metadata to give it afterwards.
pub(crate) struct FileJob {
    /// Its entry (content = the file version).
    pub entry: Entry,
    /// Where it goes.
    pub path: PathBuf,
    /// Relative path, for messages.
    pub rel: Vec<u8>,
    /// Something else stands at `path` (a directory, or a file a link replaces): removed
    /// once the content is written, just before the rename.
    pub clear: bool,
}

/// What the workers did: bytes written, errors by path (the target's, and files whose
/// content the store has lost: damage beyond repair, a version gone), and how many were
/// lost. Other errors of the store (a lock, a node out of reach) stop the restore and are
/// returned as `Err`.
#[derive(Default)]
pub(crate) struct Written {
    pub bytes: u64,
    pub errors: Vec<(String, String)>,
    pub lost: u64,
    /// The jobs (by index) whose file was not written.
    pub failed: Vec<usize>,
}

/// How files are written.
pub(crate) struct Writer<'a> {
    pub cas: &'a Cas,
    pub owners: &'a Owners,
    pub policy: OwnerPolicy,
    pub progress: &'a dyn Progress,
}

impl Writer<'_> {
    /// Writes every job, a few at a time, and sets each file's metadata.
    pub(crate) fn write_all(&self, jobs: &[FileJob]) -> Result<Written> {
        // PA
        let next = AtomicUsize::new(0);
        let seq = AtomicU64::new(0);
        let out = Mutex::new(Written::default());
        let fatal: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..WORKERS.min(jobs.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    if fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let result = self.write_one(job, n);
                    let Ok(mut o) = out.lock() else { return };
                    match result {
                        Ok((bytes, problems)) => {
                            o.bytes += bytes;
                            o.errors
                                .extend(problems.into_iter().map(|p| (display(&job.rel), p)));
                        }
                        Err(e @ (Error::Io { .. } | Error::Input(_))) => {
                            o.failed.push(i);
                            o.errors.push((display(&job.rel), e.to_string()))
                        }
                        // One file's content lost: the others are restored all the same.
                        Err(e) if is_loss(&e) => {
                            o.lost += 1;
                            o.failed.push(i);
                            o.errors.push((display(&job.rel), e.to_string()))
                        }
                        Err(e) => {
                            if let Ok(mut f) = fatal.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = fatal.into_inner().ok().flatten() {
            return Err(e);
        }
        out.into_inner()
            .map_err(|_| Error::Internal("a restore worker failed".into()))
    }

    /// Writes one file to a temp name beside its target, holes as holes, renames it into
    /// place, then sets its metadata. Returns its size and what metadata could not be set.
    fn write_one(&self, job: &FileJob, seq: u64) -> Result<(u64, Vec<String>)> {
        // PA
        let version = job
            .entry
            .content
            .ok_or_else(|| Error::malformed("tree record", "file without content"))?;
        let blob = self.cas.blob(&version)?;
        let path = &job.path;
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let mut tmp_name = format!(".ouro-restore-{}-{seq}-", std::process::id()).into_bytes();
        tmp_name.extend_from_slice(&name[..name.len().min(100)]);
        let tmp = path.with_file_name(OsStr::from_bytes(&tmp_name));
        let io = |what: &'static str, p: &std::path::Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| Error::io(format!("{what} {p}"), e)
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        let mut out = SparseWriter {
            file: &file,
            pos: 0,
        };
        let written = match blob.chunks.as_slice() {
            // Most files of a tree are one chunk: decode it on this thread, no pipeline.
            [one] => self.cas.read_chunk(&one.id).and_then(|data| {
                self.progress.advance(data.len() as u64);
                out.write_all(&data).map_err(io("writing", &tmp))
            }),
            chunks => self.cas.write_chunks(chunks, &mut out, self.progress),
        }
        .and_then(|_| file.set_len(blob.size).map_err(io("writing", &tmp)))
        .and_then(|_| if job.clear { remove_any(path) } else { Ok(()) })
        .and_then(|_| std::fs::rename(&tmp, path).map_err(io("renaming into", path)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        let problems = apply_meta(path, &job.entry, self.owners, self.policy);
        Ok((blob.size, problems))
    }
}

/// Writes at increasing offsets, skipping 4 KiB blocks of zeros (aligned to the file's
/// offsets) so they stay holes, and writing each run of other blocks in one call; the
/// caller sets the final length.
pub(crate) struct SparseWriter<'f> {
    pub file: &'f std::fs::File,
    pub pos: u64,
}

const BLOCK: usize = 4096;

impl Write for SparseWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A
        let base = self.pos;
        let mut done = 0;
        // Start of the run of data not yet written (an index into `buf`).
        let mut run: Option<usize> = None;
        while done < buf.len() {
            let at = base + done as u64;
            let n = (BLOCK - (at % BLOCK as u64) as usize).min(buf.len() - done);
            let hole = n == BLOCK && buf[done..done + n].iter().all(|&b| b == 0);
            match (hole, run) {
                (true, Some(start)) => {
                    self.file
                        .write_all_at(&buf[start..done], base + start as u64)?;
                    run = None;
                }
                (false, None) => run = Some(done),
                _ => {}
            }
            done += n;
        }
        if let Some(start) = run {
            self.file.write_all_at(&buf[start..], base + start as u64)?;
        }
        self.pos = base + buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A
        Ok(())
    }
}

/// True for an error that says the store lost a file's version or content (damage beyond
/// repair): that file is not restored, the others are.
pub(crate) fn is_loss(e: &Error) -> bool {
    // A
    matches!(
        e,
        Error::Corrupt(_) | Error::NotFound(_) | Error::Malformed { .. }
    )
}

/// Removes a file, symlink or whole directory.
pub(crate) fn remove_any(path: &std::path::Path) -> Result<()> {
    // PA
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(|e| Error::io(format!("removing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    proptest! {
        /// Whatever the pieces, the file reads back as the input, and whole zero blocks are
        /// not written.
        #[test]
        fn sparse_writes_read_back(parts in prop::collection::vec((0u8..3, 1usize..9000), 1..8)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file = std::fs::File::create(&path).unwrap();
            let mut expect = Vec::new();
            let mut w = SparseWriter { file: &file, pos: 0 };
            for (kind, len) in parts {
                let piece: Vec<u8> = match kind {
                    0 => vec![0; len],
                    1 => (0..len).map(|i| (i % 251) as u8 + 1).collect(),
                    _ => (0..len).map(|i| if i % 5000 == 0 { 7 } else { 0 }).collect(),
                };
                w.write_all(&piece).unwrap();
                expect.extend(piece);
            }
            file.set_len(expect.len() as u64).unwrap();
            let mut got = Vec::new();
            std::fs::File::open(&path).unwrap().read_to_end(&mut got).unwrap();
            prop_assert_eq!(got, expect);
        }
    }
}
