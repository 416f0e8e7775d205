//! What this machine offers the tests: root, programs on PATH, FUSE mounts.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// True when the tests run as root (/proc/self belongs to the effective user).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// True when `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(cmd)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    })
}

/// Why mounting is impossible here, if it is.
pub fn cannot_mount() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse on this machine".into());
    }
    if !is_root() && Command::new("fusermount3").arg("-V").output().is_err() {
        return Some("not root and fusermount3 is not installed (apt-get install fuse3)".into());
    }
    None
}

/// True when `dir` is a mount point in this process's mount table.
pub fn is_mounted(dir: &Path) -> bool {
    let want = dir.canonicalize().unwrap_or(dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*want.to_string_lossy()))
}

/// Returns from the calling test, saying why, where FUSE mounts are impossible.
#[allow(unused_macros)]
macro_rules! require_fuse {
    () => {
        if let Some(why) = $crate::common::host::cannot_mount() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_fuse;
