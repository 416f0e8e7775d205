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

/// Largest secret file read, in bytes: an age identity is under 100 bytes and a node key file
/// a few hundred, so anything larger is not one (and must not fill memory, as reading
/// `/dev/zero` would).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Reads a secret file, refusing it ([`Error::Identity`]) when it is not a regular file,
/// when group or others can access it, or when it is larger than [`MAX_SECRET_BYTES`]; other
/// failures are [`Error::Io`] with the cause's kind (e.g. `NotFound`) kept.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    // PA
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let shown = path.display();
    // Non-blocking, so that opening a FIFO returns at once instead of waiting for a writer;
    // the type is then checked on the open file, which cannot be swapped any more.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;
    if !meta.is_file() {
        return Err(Error::Identity(format!(
            "{shown} is {}, not a file holding a key",
            kind_of(&meta.file_type())
        )));
    }
    let mode = meta.mode();
    if mode & 0o077 != 0 {
        return Err(Error::Identity(format!(
            "{shown} is accessible by group or others (mode {:o}; only its owner may have access): run `chmod 600 {shown}`",
            mode & 0o777
        )));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(Error::Identity(format!(
            "{shown} is {} bytes long: too large to be a key file (at most {MAX_SECRET_BYTES})",
            meta.len()
        )));
    }
    // Bounded even so: the file may grow between the check and the read.
    let mut out = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;
    if out.len() as u64 > MAX_SECRET_BYTES {
        return Err(Error::Identity(format!(
            "{shown} grew past {MAX_SECRET_BYTES} bytes while read: not a key file"
        )));
    }
    Ok(out)
}

/// What a file that is not a regular file is, for messages.
fn kind_of(t: &std::fs::FileType) -> &'static str {
    // A
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
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
        // 0602: others may write, not read; still refused, and said as it is.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o602)).unwrap();
        assert!(
            matches!(read(&p), Err(Error::Identity(m)) if m.contains("accessible by group or others (mode 602")),
        );
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory") && !e.contains("chmod"), "{e}");
        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(
            e.contains("character device") && !e.contains("chmod"),
            "{e}"
        );
        // A FIFO with no writer: refused at once instead of waiting for one.
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = read(&fifo).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        let big = dir.path().join("big");
        write_new(&big, &vec![b'#'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        let e = read(&big).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
    }
}
