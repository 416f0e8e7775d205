//! `ouro mount` end to end: real FUSE mounts driven by ordinary tools (cat, cp, ls, find, stat,
//! diff, tar, rsync, shell redirection). Skips, saying why, where the machine cannot mount.

// The helpers are shared with the library's integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::host::{have as tool, is_mounted, is_root, require_fuse};
use common::{random_bytes, TestStore};

/// A store mounted in the background; unmounted on drop.
struct Mounted {
    t: TestStore,
    dir: PathBuf,
}

impl Mounted {
    fn new(t: TestStore, extra: &[&str]) -> Self {
        let dir = t.dir.path().join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["mount", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        t.ok(&args);
        assert!(is_mounted(&dir), "mounted after `ouro mount` returns");
        Mounted { t, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn sh(&self, script: &str) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    /// Unmounts and mounts the store again: what shows after it was stored.
    fn remount(&self) {
        let d = self.dir.to_str().unwrap();
        self.t.ok(&["umount", d]);
        assert!(!is_mounted(&self.dir));
        self.t.ok(&["mount", d]);
        assert!(is_mounted(&self.dir));
    }

    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = self.t.run(&["umount", self.dir.to_str().unwrap()]);
        }
    }
}

#[test]
fn ordinary_tools_read_the_tree() {
    require_fuse!();
    let t = TestStore::init("4+2");
    let src = t.dir.path().join("src");
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    let big = random_bytes(3 << 20, 7);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("docs/a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("docs/deep/b.txt"), b"beta\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    t.ok(&["put", "-r", src.to_str().unwrap(), "tree", "-q"]);
    let m = Mounted::new(t, &[]);
    assert_eq!(m.sh_ok("ls -A"), ".ouro\ntree\n");
    let src = src.to_str().unwrap();
    let tr = |script: &str| m.sh_ok(&format!("cd tree && {script}"));
    assert_eq!(std::fs::read(m.path("tree/big.bin")).unwrap(), big);
    assert_eq!(tr("cat docs/a.txt"), "alpha\n");
    assert_eq!(tr("ls -A"), "big.bin\ndocs\nempty\n");
    assert_eq!(
        tr("find docs -type f | sort"),
        "docs/a.txt\ndocs/deep/b.txt\n"
    );
    assert_eq!(tr("stat -c %s big.bin").trim(), (3 << 20).to_string());
    tr(&format!("diff -r {src} ."));
    tr("cp big.bin ../../copied.bin");
    assert_eq!(
        std::fs::read(m.t.dir.path().join("copied.bin")).unwrap(),
        big
    );
    tr("tar cf ../../all.tar . && tar tf ../../all.tar | grep -q docs/deep/b.txt");
    if tool("rsync") {
        tr("rsync -a ./ ../../synced/");
        tr(&format!("diff -r {src} ../../synced"));
    } else {
        eprintln!("rsync part SKIPPED: rsync is not installed (scripts/test installs it)");
    }
    // Random reads land in the right chunk.
    let out = tr("dd if=big.bin bs=4096 skip=500 count=1 status=none | od -An -tx1 | head -1");
    let want: String = big[500 * 4096..500 * 4096 + 16]
        .iter()
        .map(|b| format!(" {b:02x}"))
        .collect();
    assert_eq!(out.trim(), want.trim());
}

#[test]
fn writes_become_versions() {
    require_fuse!();
    let t = TestStore::init("2+1");
    t.put("notes", b"v1\n");
    let m = Mounted::new(t, &[]);
    m.sh_ok("echo v2 > notes");
    m.sh_ok("echo more >> notes");
    assert_eq!(m.t.get("notes"), b"v2\nmore\n");
    let log = String::from_utf8(m.t.ok(&["log", "notes", "--oneline"])).unwrap();
    assert_eq!(log.lines().count(), 3, "one version per close: {log}");
    let data = random_bytes(1 << 20, 3);
    let file = m.t.dir.path().join("in.bin");
    std::fs::write(&file, &data).unwrap();
    m.sh_ok(&format!(
        "mkdir -p sub && cp {} sub/copy.bin",
        file.display()
    ));
    assert_eq!(m.t.get("sub/copy.bin"), data);
    m.sh_ok("printf XY | dd of=sub/copy.bin bs=1 seek=10 conv=notrunc status=none");
    let mut want = data.clone();
    want[10..12].copy_from_slice(b"XY");
    assert_eq!(m.t.get("sub/copy.bin"), want, "random write");
    m.sh_ok("truncate -s 5 sub/copy.bin");
    assert_eq!(m.t.get("sub/copy.bin"), &want[..5]);
    m.sh_ok("mv sub/copy.bin moved.bin");
    assert_eq!(m.t.get("moved.bin"), &want[..5]);
    assert_eq!(
        m.t.run(&["get", "sub/copy.bin"]).status.code(),
        Some(4),
        "old name deleted"
    );
    m.sh_ok("rm moved.bin");
    assert!(!m.path("moved.bin").exists());
    m.sh_ok("mkdir emptydir && test -d emptydir && rmdir emptydir");
    // Hard links and special files are refused with a clear errno; symlinks are kept.
    assert!(!m.sh("ln notes hard").status.success());
    assert!(!m.sh("mkfifo pipe").status.success());
    m.sh_ok("ln -s notes soft");
    assert_eq!(m.sh_ok("cat soft"), "v2\nmore\n");
}

#[test]
fn versions_and_heads_are_visible_and_read_only() {
    require_fuse!();
    let t = TestStore::init("2+1");
    let v1 = t.put("k", b"one");
    t.ok(&["put", "k", "--parent", &v1, "-"]);
    let b = t.run_stdin(&["put", "k", "--parent", &v1], b"branch");
    assert!(b.status.success());
    t.put("single", b"S");
    let m = Mounted::new(t, &[]);
    let versions = m.sh_ok("ls .ouro/versions/k");
    assert_eq!(versions.lines().count(), 3, "{versions}");
    // Named `<UTC time>_<short hash>`, so that name order is time order (to the second).
    let first = versions.lines().find(|l| l.ends_with(&v1[..8])).unwrap();
    assert!(first.contains('T') && first.contains("Z_"), "{first}");
    assert_eq!(m.sh_ok(&format!("cat .ouro/versions/k/{first}/k")), "one");
    let heads = m.sh_ok("ls .ouro/heads/k");
    assert_eq!(
        heads.lines().count(),
        2,
        "a branch shows two heads: {heads}"
    );
    assert_eq!(m.sh_ok(&format!("cat .ouro/blobs/{v1}")), "one");
    let err = m.sh(&format!("echo x > .ouro/versions/k/{first}/k"));
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("Read-only"),
        "EROFS"
    );
    assert!(!m
        .sh(&format!("rm .ouro/versions/k/{first}/k"))
        .status
        .success());
    // The tree at a time: a lookup works for any time.
    assert_eq!(m.sh_ok("cat .ouro/at/2200-01-01/single"), "S");
    assert!(!m.path(".ouro/at/2000-01-01/single").exists());
}

#[test]
fn read_only_mount_refuses_changes_and_sees_other_commands() {
    require_fuse!();
    let t = TestStore::init("2+1");
    t.put("a", b"A");
    let m = Mounted::new(t, &["--read-only"]);
    let out = m.sh("echo x > a");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only"));
    assert_eq!(m.t.get("a"), b"A");
    // Changes made by other commands show up within the attribute TTL (1 s).
    m.t.put("b", b"B");
    common::cluster::wait_until("b shows in the mount", 10, || {
        std::fs::read(m.path("b")).is_ok_and(|b| b == b"B")
    });
}

#[test]
fn concurrent_readers_and_unmount_while_reading() {
    require_fuse!();
    let t = TestStore::init("4+2");
    let big = random_bytes(8 << 20, 11);
    t.put("big", &big);
    let m = Mounted::new(t, &[]);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let p = m.path("big");
            std::thread::spawn(move || std::fs::read(p).unwrap())
        })
        .collect();
    for r in readers {
        assert!(r.join().unwrap() == big, "every reader sees the same bytes");
    }
    // A reader holding the file open while the store is unmounted: umount succeeds at
    // once (lazily), nothing hangs.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg("exec 3< big; sleep 1; cat <&3 > /dev/null")
        .current_dir(&m.dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let fd3 = format!("/proc/{}/fd/3", holder.id());
    common::cluster::wait_until("the reader holds big open", 10, || {
        std::fs::read_link(&fd3).is_ok_and(|p| p.ends_with("big"))
    });
    m.t.ok(&["umount", m.dir.to_str().unwrap()]);
    assert!(!is_mounted(&m.dir));
    let start = Instant::now();
    let _ = holder.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn foreground_mount_unmounts_on_sigterm_and_errors_are_clear() {
    require_fuse!();
    let t = TestStore::init("2+1");
    t.put("a", b"A");
    let dir = t.dir.path().join("fg");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = mount_foreground(&t, &dir);
    // Busy mountpoint.
    let out = t.run(&["mount", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a mount point"));
    send_signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    assert!(!is_mounted(&dir));
    // Missing mountpoint.
    let out = t.run(&["mount", "/nonexistent/ouro-mnt"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist") && err.lines().count() == 1,
        "{err}"
    );
    // Nothing mounted.
    assert_eq!(
        t.run(&["umount", dir.to_str().unwrap()]).status.code(),
        Some(3)
    );
}

/// `ouro mount DIR --foreground` as a child process, once the mount is up.
fn mount_foreground(t: &TestStore, dir: &Path) -> std::process::Child {
    let child = t
        .cmd(&["mount", dir.to_str().unwrap(), "--foreground"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !is_mounted(dir) {
        assert!(start.elapsed() < Duration::from_secs(10), "mount came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn send_signal(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[test]
fn a_normal_user_mounts_through_fusermount3() {
    require_fuse!();
    use std::os::unix::fs::PermissionsExt;
    if !is_root() || !tool("setpriv") {
        eprintln!("SKIPPED: needs root (to switch to user nobody) and setpriv");
        return;
    }
    let mode = std::fs::metadata("/dev/fuse").unwrap().permissions().mode();
    if mode & 0o006 != 0o006 {
        eprintln!(
            "SKIPPED: /dev/fuse is mode {:o} here, so normal users cannot use FUSE at all (Debian makes it 0666)",
            mode & 0o777
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "{ouro} init -q && echo hi | {ouro} put a >/dev/null && mkdir m && {ouro} mount m -q && cat m/a && echo w > m/b && {ouro} get b && {ouro} umount m",
        ouro = common::ouro_bin().display()
    );
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            &script,
        ])
        .env("HOME", dir.path())
        .env("OURO_STORE", dir.path().join("s"))
        .env("OURO_IDENTITY", dir.path().join("id.txt"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nw\n");
}

#[test]
fn a_killed_mount_process_leaves_the_store_intact_and_umount_clears_it() {
    require_fuse!();
    let t = TestStore::init("2+1");
    t.put("a", b"A");
    let dir = t.dir.path().join("k");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = mount_foreground(&t, &dir);
    // A write in progress (open, not closed) when the process dies: no version appears.
    let mut writer = Command::new("python3")
        .arg("-c")
        .arg("import os, time; fd = os.open('a', os.O_WRONLY | os.O_TRUNC); os.write(fd, b'partial'); print('written', flush=True); time.sleep(5)")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the mount only once the write is in (else the test would prove nothing).
    let mut said = String::new();
    let out = writer.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut said).unwrap();
    assert_eq!(said.trim(), "written");
    send_signal(child.id(), "KILL");
    child.wait().unwrap();
    let _ = writer.kill();
    let _ = writer.wait();
    t.ok(&["verify"]);
    assert_eq!(t.get("a"), b"A", "the unclosed write stored nothing");
    // The dead mount is still in the mount table; umount clears it and a new mount works.
    assert!(is_mounted(&dir));
    t.ok(&["umount", dir.to_str().unwrap()]);
    assert!(!is_mounted(&dir));
    t.ok(&["mount", dir.to_str().unwrap()]);
    assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"A");
    t.ok(&["umount", dir.to_str().unwrap()]);
}

#[test]
fn mounting_again_right_after_umount_keeps_the_new_mount() {
    require_fuse!();
    let t = TestStore::init("2+1");
    t.put("a", b"A");
    let dir = t.dir.path().join("again");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    // The previous mount's process is still ending when the next mount comes up: it must
    // not take the new mount down with it (fuser unmounts by path when its session drops).
    for round in 0..6 {
        t.ok(&["mount", d]);
        t.ok(&["umount", d]);
        t.ok(&["mount", d]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            is_mounted(&dir),
            "round {round}: the new mount is still there"
        );
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"A");
        t.ok(&["umount", d]);
    }
}

#[test]
fn reopened_files_show_new_versions_and_sequential_reads_match() {
    require_fuse!();
    let t = TestStore::init("2+1");
    // Several chunks, so that reads run ahead, and the page cache is dropped behind them.
    let big = random_bytes(24 << 20, 11);
    let file = t.dir.path().join("big.bin");
    std::fs::write(&file, &big).unwrap();
    t.ok(&["put", "big", file.to_str().unwrap()]);
    t.put("same", b"one!");
    let m = Mounted::new(t, &[]);
    for _ in 0..2 {
        assert!(
            std::fs::read(m.path("big")).unwrap() == big,
            "sequential read"
        );
    }
    // Reads at scattered offsets, in two opens: the first streams with direct I/O, and
    // having been read at random, the file is opened through the page cache the second time.
    for _ in 0..2 {
        let f = std::fs::File::open(m.path("big")).unwrap();
        for i in 0..40u64 {
            let at = (i * 7_919_993) % (big.len() as u64 - 4096);
            let mut buf = vec![0u8; 4096];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, at).unwrap();
            assert!(buf == big[at as usize..at as usize + 4096], "read at {at}");
        }
    }
    // Memory maps of files work too (python's mmap is a shared mapping).
    if tool("python3") {
        let out = m.sh_ok(
            "python3 -c \"import mmap; f = open('big', 'rb'); \
             m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); print(m[1000:1008].hex())\"",
        );
        assert_eq!(out.trim(), hex(&big[1000..1008]));
    }
    assert_eq!(std::fs::read(m.path("same")).unwrap(), b"one!");
    // A new version of the same size from another command: a new open sees it, not the
    // pages the kernel cached for the old one.
    m.t.put("same", b"two!");
    common::cluster::wait_until("the new version shows in the mount", 10, || {
        std::fs::read(m.path("same")).is_ok_and(|b| b == b"two!")
    });
    // And one written through the mount.
    m.sh_ok("printf 'six!' > same");
    assert_eq!(std::fs::read(m.path("same")).unwrap(), b"six!");
    assert_eq!(m.t.get("same"), b"six!");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Unlinked files the mount process holds open in the store's `cache/`, with their sizes.
fn cache_files_held(store: &Path) -> Vec<u64> {
    let cache = store.join("cache").canonicalize().unwrap();
    let mut sizes = Vec::new();
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if t.starts_with(&*cache.to_string_lossy()) && t.ends_with(" (deleted)") {
                sizes.push(std::fs::metadata(fd.path()).map(|m| m.len()).unwrap_or(0));
            }
        }
    }
    sizes
}

#[test]
fn random_reads_of_a_file_larger_than_the_memory_cache_come_back_from_disk_and_match() {
    require_fuse!();
    let t = TestStore::init("2+1");
    // More chunks than the 32 MiB of decoded chunks kept in memory.
    let big = random_bytes(56 << 20, 29);
    let file = t.dir.path().join("big.bin");
    std::fs::write(&file, &big).unwrap();
    t.ok(&["put", "big", file.to_str().unwrap()]);
    let m = Mounted::new(t, &[]);
    let store = m.t.store();
    let f = std::fs::File::open(m.path("big")).unwrap();
    let offsets: Vec<u64> = (0..300u64)
        .map(|i| (i * 48_271 * 4096 + i * i * 977) % (big.len() as u64 - 4096))
        .collect();
    // The same scattered offsets twice in one open: the second pass finds every chunk the
    // first decoded, though most no longer fit in memory.
    for pass in 0..2 {
        for &at in &offsets {
            let mut buf = vec![0u8; 4096];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, at).unwrap();
            assert!(
                buf == big[at as usize..at as usize + 4096],
                "pass {pass}, read at {at}"
            );
        }
    }
    let held = cache_files_held(&store);
    assert!(
        held.iter().any(|&s| s > 32 << 20),
        "decoded chunks of random reads kept in an unlinked file in cache/: {held:?}"
    );
    // A sequential read of the same file after that still matches.
    assert!(std::fs::read(m.path("big")).unwrap() == big);
}

// Parts kept in files of their own, declared last so that they see the macros above.
#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "mount/programs.rs"]
mod programs;
