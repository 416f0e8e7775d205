//! Files that hold secrets (the age identity, cluster node and admin keys): created with
//! mode 0600, never over an existing file, and refused on read when group or others can
//! read them, as ssh does.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to a new file with mode 0600 (creating its directory), synced to disk;
/// fails if the file exists.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    // PA
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Reads a secret file, refusing it ([`Error::Identity`]) when group or others can read it;
/// other failures are [`Error::Io`] with the cause's kind (e.g. `NotFound`) kept.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    // PA
    let shown = path.display();
    let mut file =
        std::fs::File::open(path).map_err(|e| Error::io(format!("reading {shown}"), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;
    let mode = std::os::unix::fs::MetadataExt::mode(&meta);
    if mode & 0o077 != 0 {
        return Err(Error::Identity(format!(
            "{shown} is readable by others (mode {:o}): run `chmod 600 {shown}`",
            mode & 0o777
        )));
    }
    let mut out = Vec::new();
    file.read_to_end(&mut out)
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_never_overwritten_and_refused_when_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/key");
        write_new(&p, b"secret").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            write_new(&p, b"other").is_err(),
            "never over an existing file"
        );
        assert_eq!(read(&p).unwrap(), b"secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(read(&p), Err(Error::Identity(m)) if m.contains("chmod 600")));
        assert!(matches!(
            read(&dir.path().join("none")),
            Err(Error::Io { .. })
        ));
    }
}
