//! BackupManager: a consistent copy of a store taken while it is in use (every record copied
//! from one read snapshot, so writers go on and the copy is a committed state), and bringing
//! such a copy back as a store. The cluster keys in `cluster/` travel with it, so a restored
//! node rejoins with its identity and catches up from its peers.

use std::path::Path;

use crate::cas::Cas;
use crate::error::{Error, Result};

/// Files of the store directory copied besides the database (node and admin keys).
const KEY_DIR: &str = "cluster";

impl Cas {
    /// Writes a consistent, compacted copy of the store (and its cluster keys) into `dest`,
    /// which must not exist yet. Returns the bytes of the copied database.
    pub fn backup(&self, dest: &Path) -> Result<u64> {
        // PA
        if dest.exists() {
            return Err(Error::InvalidArgument(format!(
                "backup destination {} exists: give a new directory",
                dest.display()
            )));
        }
        let tmp = dest.with_extension("partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let file = self.lmdb.copy_into(&tmp)?;
        // A backup is the data file alone; the lock file belongs to whoever opens it.
        let _ = std::fs::remove_file(tmp.join("lock.mdb"));
        copy_keys(self.path(), &tmp)?;
        std::fs::rename(&tmp, dest)
            .map_err(|e| Error::io(format!("moving the backup into {}", dest.display()), e))?;
        Ok(file)
    }

    /// Makes `dest` (which must not hold a store) a store again from a backup in `src`,
    /// checking that the copy opens. Returns the restored store, locked.
    pub fn restore(src: &Path, dest: &Path) -> Result<Cas> {
        // PA
        if !crate::store::Lmdb::exists(src) {
            return Err(Error::NotFound(format!(
                "no backup at {} (data.mdb missing)",
                src.display()
            )));
        }
        if crate::store::Lmdb::exists(dest) {
            return Err(Error::AlreadyInitialised(format!(
                "{} (restore refuses to overwrite a store: give an empty --store)",
                dest.display()
            )));
        }
        std::fs::create_dir_all(dest)
            .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        let tmp = dest.join("data.mdb.partial");
        std::fs::copy(src.join("data.mdb"), &tmp)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .map_err(|e| Error::io(format!("copying {}", src.display()), e))?;
        copy_keys(src, dest)?;
        std::fs::rename(&tmp, dest.join("data.mdb"))
            .map_err(|e| Error::io(format!("restoring into {}", dest.display()), e))?;
        let cas = Cas::open(dest)?;
        // The logs restart from the backup's state, so their sequence numbers will repeat:
        // a new log id tells peers to start their cursors into them over.
        let mut txn = cas.lmdb.write()?;
        cas.lmdb
            .meta
            .put_log_id(&mut txn, &crate::hash::Hash(rand::random()))?;
        cas.lmdb.commit(txn)?;
        Ok(cas)
    }
}

/// Copies the cluster key files (mode 0600 kept) from `from` to `to`, when there are any.
fn copy_keys(from: &Path, to: &Path) -> Result<()> {
    // PA
    let dir = from.join(KEY_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let out = to.join(KEY_DIR);
    std::fs::create_dir_all(&out)
        .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let target = out.join(e.file_name());
            std::fs::copy(e.path(), &target)
                .map_err(|err| Error::io(format!("copying {}", e.path().display()), err))?;
        }
    }
    Ok(())
}
