//! `ouro mount` and `ouro umount`: serve the store with FUSE, in the foreground or from a
//! background process that the command starts and waits for until the mount is ready.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ouro_cli::cli::Global;
use ouroboros_db::Error;

use crate::interrupt;

use crate::malloc::ARENAS;
/// glibc's tuning for the mount process, read when a process starts: one heap arena (each
/// server thread would otherwise get its own, where freed chunk buffers linger), and decoded
/// chunks (up to 16 MiB) from the heap, which keeps up to 64 MiB free instead of handing it
/// back: pages given back are faulted in again for the next chunk, and faults cost more than
/// decoding on virtual machines.
const MALLOC_TUNING: [(&str, &str); 3] = [
    (ARENAS, "1"),
    ("MALLOC_MMAP_THRESHOLD_", "16777217"),
    ("MALLOC_TRIM_THRESHOLD_", "67108864"),
];
/// Size past which the mount log is moved to `mount.log.old` when a mount starts.
const LOG_LIMIT: u64 = 1 << 20;

/// Mounts the store at `dir`.
pub fn mount(
    g: &Global,
    dir: &Path,
    read_only: bool,
    foreground: bool,
    allow_other: bool,
) -> Result<i32> {
    // A
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "mountpoint {} does not exist or is not a directory: create it with mkdir",
            dir.display()
        ))
        .into());
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving mountpoint {}", dir.display()))?;
    if is_mounted(&dir)? {
        bail!(
            "{} is already a mount point: unmount it first (ouro umount {})",
            dir.display(),
            dir.display()
        );
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("cannot mount: /dev/fuse is missing (load the fuse kernel module, or give the container --device /dev/fuse)");
    }
    if !rustix::process::geteuid().is_root() && which("fusermount3").is_none() {
        bail!("mounting as a normal user needs fusermount3: install the fuse3 package");
    }
    // Open the store and identity here, so their errors reach the user in both modes.
    let cas = Arc::new(g.open_unlocked()?);
    if foreground && crate::malloc::untuned() {
        // One arena keeps the mount's memory at about half (see MALLOC_TUNING).
        drop(cas);
        let err = crate::malloc::restart_with(&MALLOC_TUNING);
        return Err(err).context("restarting ouro mount");
    }
    if foreground {
        serve(g, cas, &dir, read_only, allow_other)
    } else {
        drop(cas);
        start_background(g, &dir)
    }
}

/// Serves the mount until it is unmounted (`ouro umount`, `fusermount3 -u`) or a signal.
fn serve(
    g: &Global,
    cas: Arc<ouroboros_db::Cas>,
    dir: &Path,
    read_only: bool,
    allow_other: bool,
) -> Result<i32> {
    // A
    let store = cas.path().display().to_string();
    let opts = ouro_fuse::MountOptions {
        read_only,
        allow_other,
        ..Default::default()
    };
    let session = ouro_fuse::spawn(cas, dir, opts)
        .with_context(|| format!("mounting {store} at {}", dir.display()))?;
    interrupt::set_mounted(Some(dir.to_path_buf()));
    if !g.quiet {
        eprintln!("ouro: mounted {store} at {}", dir.display());
    }
    while !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    interrupt::set_mounted(None);
    // The session ends only once the kernel has dropped the mount. Dropping fuser's session
    // (0.18) would then unmount the mountpoint *by path*, because it takes the closed
    // device's POLLERR for "still mounted": a mount made there since, by another `ouro
    // mount`, would vanish. The process exits next, which releases the device anyway.
    std::mem::forget(session);
    Ok(0)
}

/// Starts `ouro mount --foreground` in its own process group and waits until the mount
/// appears (or the process fails, whose message is then shown).
fn start_background(g: &Global, dir: &Path) -> Result<i32> {
    // A
    let cache = g.store_dir()?.join("cache");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let log = cache.join("mount.log");
    if std::fs::metadata(&log).is_ok_and(|m| m.len() > LOG_LIMIT) {
        let _ = std::fs::rename(&log, cache.join("mount.log.old"));
    }
    // Appended to, not truncated: a mount process that is still ending writes to it too.
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening the mount log {}", log.display()))?;
    let log_start = log_file
        .metadata()
        .with_context(|| format!("reading the mount log {}", log.display()))?
        .len();
    let exe = std::env::current_exe().context("finding the ouro executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .envs(MALLOC_TUNING)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting the mount process")?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("waiting for the mount process")? {
            let text = std::fs::read(&log).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(log_start as usize..).unwrap_or_default());
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let msg = last.strip_prefix("ouro: error: ").unwrap_or(last);
            eprintln!("ouro: error: {msg}");
            return Ok(status.code().unwrap_or(1).max(1));
        }
        if is_mounted(dir)? {
            if !g.quiet {
                eprintln!(
                    "ouro: mounted at {} (process {}; logs in {}; unmount with: ouro umount {})",
                    dir.display(),
                    child.id(),
                    log.display(),
                    dir.display()
                );
            }
            return Ok(0);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("the mount at {} did not come up within 30 s", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ouro umount DIR`.
pub fn umount(dir: &Path) -> Result<i32> {
    // A
    let dir = dir
        .canonicalize()
        .map_err(|_| Error::NotFound(format!("mountpoint {} does not exist", dir.display())))?;
    if !is_mounted(&dir)? {
        return Err(Error::NotFound(format!("nothing is mounted at {}", dir.display())).into());
    }
    unmount(&dir)?;
    Ok(0)
}

/// Detaches the mount at `dir` (lazily: files open in it keep working until closed): as root
/// directly, else through `fusermount3 -uz`.
pub fn unmount(dir: &Path) -> Result<()> {
    // A
    if rustix::process::geteuid().is_root() {
        rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH)
            .with_context(|| format!("unmounting {}", dir.display()))?;
        return Ok(());
    }
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(dir)
        .status()
        .context("running fusermount3 (install the fuse3 package)")?;
    if !status.success() {
        bail!("fusermount3 -uz {} failed", dir.display());
    }
    Ok(())
}

/// True when `dir` (canonical) is a mount point, from /proc/self/mountinfo.
fn is_mounted(dir: &Path) -> Result<bool> {
    // A
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let want = dir.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape(m) == want))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    // A
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of an executable found on PATH.
fn which(name: &str) -> Option<PathBuf> {
    // A
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}
