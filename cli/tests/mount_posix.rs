//! `ouro mount` and POSIX: renames, unlinks of open files, directory renames,
//! renameat2 flags, sparse files, name and size limits, and the programs that depend on
//! them (git, sed -i, SQLite, tar, rsync, cp -a, editors that save by rename), on real FUSE
//! mounts. Negative checks wait for a condition first (the mount process has let go of
//! every file written), never for a fixed time.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::host::{have as tool, is_mounted, require_fuse};
use common::TestStore;

/// Unlinked files any process holds open in `store/cache/`: the mount's temp files of
/// files being written, and its disk cache.
fn cache_files_held(store: &Path) -> usize {
    let cache = store.join("cache").canonicalize().unwrap();
    let cache = cache.to_string_lossy();
    let mut n = 0;
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                let t = t.to_string_lossy();
                n += usize::from(t.starts_with(&*cache) && t.ends_with(" (deleted)"));
            }
        }
    }
    n
}

/// A store mounted in the background; unmounted on drop.
struct Mounted {
    t: TestStore,
    dir: PathBuf,
    /// Temp files the mount holds while nothing is being written (its disk cache).
    idle_files: usize,
}

impl Mounted {
    fn new(t: TestStore) -> Self {
        let dir = t.dir.path().join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        t.ok(&["mount", dir.to_str().unwrap()]);
        assert!(is_mounted(&dir), "mounted after `ouro mount` returns");
        let idle_files = cache_files_held(&t.store());
        Mounted { t, dir, idle_files }
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

    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a python3 program in the mount; its stdout.
    fn py(&self, code: &str) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(code)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the mount process has let go of every file written through it (their
    /// releases, and the kernel's forgets of unlinked ones, were handled): whatever those
    /// would store is stored by then.
    fn settle(&self) {
        let store = self.t.store();
        let start = Instant::now();
        while cache_files_held(&store) > self.idle_files {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the mount still holds files being written"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Unmounts (after `settle`) and mounts the store again: what shows is what was stored.
    fn remount(&self) {
        self.settle();
        let d = self.dir.to_str().unwrap();
        self.t.ok(&["umount", d]);
        assert!(!is_mounted(&self.dir));
        self.t.ok(&["mount", d]);
        assert!(is_mounted(&self.dir));
    }

    /// Live keys of the store (`ouro ls`) but directory markers, sorted.
    fn keys(&self) -> Vec<String> {
        let out = self.t.json(&["ls"]);
        let mut keys: Vec<String> = out
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_string())
            .filter(|k| k != ".ouro" && !k.ends_with("/.ouro"))
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = self.t.run(&["umount", self.dir.to_str().unwrap()]);
        }
    }
}

fn has_python() -> bool {
    if tool("python3") {
        return true;
    }
    eprintln!("SKIPPED: python3 is not installed");
    false
}

#[test]
fn a_renamed_file_opens_at_once_under_its_new_name() {
    require_fuse!();
    if !has_python() {
        return;
    }
    let m = Mounted::new(TestStore::init("2+1"));
    // Written, renamed and read back in one process, with no pause: the release of the
    // write races the rename and the open.
    let out = m.py("import os\n\
         for i in range(40):\n\
         \x20   open(f'a{i}', 'w').write(f'x{i}')\n\
         \x20   os.rename(f'a{i}', f'b{i}')\n\
         \x20   assert open(f'b{i}').read() == f'x{i}', i\n\
         \x20   os.stat(f'b{i}')\n\
         \x20   open(f'e{i}', 'w').close()\n\
         \x20   os.rename(f'e{i}', f'f{i}')\n\
         \x20   assert os.stat(f'f{i}').st_size == 0\n\
         # A chain: the kernel keeps the first inode through every name.\n\
         open('c0', 'w').write('chain')\n\
         for i in range(10):\n\
         \x20   os.rename(f'c{i}', f'c{i+1}')\n\
         \x20   assert open(f'c{i+1}').read() == 'chain', i\n\
         # git's lock files: a new file renamed over the old one, again and again.\n\
         for i in range(10):\n\
         \x20   open('config.lock', 'w').write(f'v{i}')\n\
         \x20   os.rename('config.lock', 'config')\n\
         \x20   assert open('config').read() == f'v{i}', i\n\
         print('ok')");
    assert_eq!(out.trim(), "ok");
    m.sh_ok(": > e; mv e f && test -f f && ! test -e e");
    m.sh_ok("echo x > a; mv a b; cat b");
    m.sh_ok("printf 'a\\n' > s; for i in $(seq 1 12); do sed -i \"s/a/a$i/\" s || exit 1; done");
    assert_eq!(m.sh_ok("cat s"), "a121110987654321\n");
    m.remount();
    assert_eq!(m.sh_ok("cat b19 c10 config f0"), "x19chainv9");
    assert!(!m.path("a0").exists() && !m.path("config.lock").exists());
}

#[test]
fn a_deleted_file_stays_deleted() {
    require_fuse!();
    if !has_python() {
        return;
    }
    let m = Mounted::new(TestStore::init("2+1"));
    m.py("import os\n\
         for i in range(30):\n\
         \x20   open(f'e{i}', 'w').close()\n\
         \x20   os.unlink(f'e{i}')\n\
         # Deleted while open for writing, written after, then closed.\n\
         f = open('w', 'w'); f.write('abc'); f.flush()\n\
         os.unlink('w'); f.write('more'); f.close()\n\
         # Two descriptors on one file: both share it; closing them stores nothing.\n\
         a = open('two', 'w'); b = open('two', 'r+'); a.write('A'); a.flush()\n\
         assert b.read() == 'A'\n\
         os.unlink('two'); b.write('B'); b.close(); a.close()");
    // rmdir of a directory holding a file just created: ENOTEMPTY, every time.
    for i in 0..10 {
        let out = m.sh(&format!("mkdir E{i} && : > E{i}/e && rmdir E{i}"));
        assert!(!out.status.success(), "rmdir of a non-empty directory");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not empty"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    m.settle();
    let keys = m.keys();
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with('e') || k == "w" || k == "two"),
        "{keys:?}"
    );
    m.remount();
    assert_eq!(
        m.sh_ok("ls"),
        (0..10).map(|i| format!("E{i}\n")).collect::<String>()
    );
    assert_eq!(m.sh_ok("ls E3"), "e\n");
}

#[test]
fn an_unlinked_open_file_keeps_its_attributes() {
    require_fuse!();
    if !has_python() {
        return;
    }
    let m = Mounted::new(TestStore::init("2+1"));
    m.sh_ok("printf 'read me' > r");
    let out = m.py("import os\n\
         f = open('u', 'w'); f.write('abc'); f.flush()\n\
         os.unlink('u')\n\
         s = os.fstat(f.fileno()); print(s.st_size, s.st_nlink)\n\
         f.write('defg'); f.flush()\n\
         print(os.fstat(f.fileno()).st_size)\n\
         os.ftruncate(f.fileno(), 2); print(os.fstat(f.fileno()).st_size)\n\
         f.close()\n\
         g = open('r'); os.unlink('r')\n\
         s = os.fstat(g.fileno()); print(s.st_size, s.st_nlink, g.read())");
    assert_eq!(out, "3 0\n7\n2\n7 0 read me\n");
    m.settle();
    assert_eq!(m.keys(), Vec::<String>::new());
}

#[test]
fn directories_rename_whole_in_one_step() {
    require_fuse!();
    if !has_python() {
        return;
    }
    let m = Mounted::new(TestStore::init("2+1"));
    m.sh_ok("mkdir A && echo 1 > A/x && mkdir -p A/s/t && echo 2 > A/s/y && chmod 700 A/s");
    // os.rename raises on EXDEV: this is one rename, not a copy by `mv`.
    m.py("import os; os.rename('A', 'B')");
    assert_eq!(m.sh_ok("cat B/x B/s/y"), "1\n2\n");
    assert!(!m.path("A").exists());
    assert_eq!(m.sh_ok("stat -c %a B/s").trim(), "700");
    assert_eq!(m.sh_ok("ls -d B/s/t"), "B/s/t\n");
    // Onto a non-empty directory: ENOTEMPTY, nothing moves; onto an empty one: it works.
    m.sh_ok("mkdir C && echo z > C/z");
    let out = m.sh("mv -T B C");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(m.sh_ok("cat B/x C/z"), "1\nz\n");
    m.sh_ok("mkdir D && mv -T B D && cat D/x D/s/y");
    // A file open for writing inside moves with its directory and is stored there.
    let out = m.py("import os\n\
         os.mkdir('P'); f = open('P/f', 'w'); f.write('one '); f.flush()\n\
         os.rename('P', 'Q'); f.write('two'); f.close()\n\
         print(open('Q/f').read(), os.path.exists('P'))");
    assert_eq!(out, "one two False\n");
    // Renamed again and again: the kernel's inodes follow each time.
    m.sh_ok("for i in 1 2 3 4; do mv D D$i && cat D$i/x >/dev/null && mv D$i D || exit 1; done");
    m.remount();
    assert_eq!(m.sh_ok("ls"), "C\nD\nQ\n");
    assert_eq!(m.sh_ok("cat D/x D/s/y Q/f"), "1\n2\none two");
    assert_eq!(
        m.keys(),
        ["C/z", "D/s/y", "D/x", "Q/f"].map(String::from).to_vec()
    );
}

#[test]
fn renameat2_exchanges_files_and_refuses_whiteout() {
    require_fuse!();
    if !has_python() {
        return;
    }
    let m = Mounted::new(TestStore::init("2+1"));
    let out = m.py("import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def r2(a, b, flags):\n\
         \x20   r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)\n\
         \x20   return 0 if r == 0 else ctypes.get_errno()\n\
         open('a', 'w').write('A'); open('b', 'w').write('BB')\n\
         print(r2('a', 'b', 2), open('a').read(), open('b').read())\n\
         print(r2('a', 'c', 4) == 22)\n\
         print(r2('a', 'b', 1) == 17)\n\
         os.mkdir('d1'); os.mkdir('d2')\n\
         print(r2('d1', 'd2', 2) == 22)");
    assert_eq!(out, "0 BB A\nTrue\nTrue\nTrue\n");
    m.remount();
    assert_eq!(m.sh_ok("cat a; echo; cat b"), "BB\nA");
    assert!(!m.path("c").exists());
}

#[test]
fn a_write_at_one_tib_is_quick_and_files_stay_sparse() {
    require_fuse!();
    let m = Mounted::new(TestStore::init("2+1"));
    // Past the largest file (1 TiB): EFBIG at once.
    let start = Instant::now();
    let out = m.sh("dd if=/dev/zero of=x bs=1 count=1 seek=1099511627776 status=none");
    let took = start.elapsed();
    assert!(String::from_utf8_lossy(&out.stderr).contains("File too large"));
    // dd truncated the file to 1 TiB before writing: that empty 1 TiB is stored too.
    let limit = Duration::from_secs(if cfg!(debug_assertions) { 10 } else { 3 });
    assert!(took < limit, "{took:?}");
    // The last byte of 1 TiB.
    let start = Instant::now();
    m.sh_ok("printf Z | dd of=y bs=1 seek=1099511627775 status=none");
    assert!(start.elapsed() < limit, "{:?}", start.elapsed());
    // The mount answers meanwhile and after.
    let start = Instant::now();
    m.sh_ok("echo small > s && cat s && ls >/dev/null");
    assert!(start.elapsed() < limit, "{:?}", start.elapsed());
    assert_eq!(
        m.sh_ok("stat -c %s x y").trim(),
        "1099511627776\n1099511627776"
    );
    assert_eq!(m.sh_ok("tail -c 1 y"), "Z");
    assert_eq!(
        m.sh_ok("dd if=y bs=1M skip=524288 count=1 status=none | tr -d '\\0' | wc -c")
            .trim(),
        "0",
        "holes read as zeros"
    );
    // Holes are not stored: the store holds little besides one chunk of zeros.
    let stats = m.t.json(&["stats"]);
    assert!(stats["file_bytes"].as_u64().unwrap() < 256 << 20, "{stats}");
    assert_eq!(
        m.sh("truncate -s 999999999999999 s").status.code(),
        Some(1),
        "EFBIG"
    );
    assert!(String::from_utf8_lossy(&m.sh("truncate -s 2T s").stderr).contains("too large"));
}

#[test]
fn names_links_and_sizes_at_their_limits() {
    require_fuse!();
    let m = Mounted::new(TestStore::init("2+1"));
    let n255 = "n".repeat(255);
    m.sh_ok(&format!("touch {n255} && test -f {n255}"));
    let err = m.sh(&format!("touch {n255}x"));
    assert!(String::from_utf8_lossy(&err.stderr).contains("File name too long"));
    // A path over the 400-byte key limit, each name short enough.
    // 391 bytes: its marker key (`/.ouro`) still fits.
    let deep = format!("{}/{}", "d".repeat(200), "e".repeat(190));
    m.sh_ok(&format!("mkdir -p {deep}"));
    let err = m.sh(&format!("touch {deep}/{}", "f".repeat(10)));
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("File name too long"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    assert_eq!(m.sh_ok("stat -f -c %l .").trim(), "255");
    // fallocate (mode 0) extends the file; other modes are EOPNOTSUPP.
    m.sh_ok("fallocate -l 1000000 fa && test $(stat -c %s fa) = 1000000");
    assert!(!m.sh("fallocate -p -o 0 -l 10 fa").status.success());
    // Directories count their subdirectories.
    m.sh_ok("mkdir -p L/a L/b L/c && touch L/f");
    assert_eq!(m.sh_ok("stat -c %h L L/a").trim(), "5\n2");
    if has_python() {
        // O_TMPFILE is not offered: programs fall back to a named temp file.
        let out = m.py("import os, errno\n\
             try:\n\
             \x20   os.open('.', os.O_TMPFILE | os.O_RDWR); print('opened')\n\
             except OSError as e:\n\
             \x20   print(e.errno == errno.EOPNOTSUPP)");
        assert_eq!(out.trim(), "True", "EOPNOTSUPP");
    }
}

/// A small tree of every kind of entry tar, rsync and cp -a copy.
fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deep")).unwrap();
    std::fs::write(dir.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(dir.join("sub/b.bin"), common::random_bytes(300 << 10, 5)).unwrap();
    std::fs::write(dir.join("sub/deep/c"), b"").unwrap();
    std::fs::write(dir.join("run.sh"), b"echo hi\n").unwrap();
    let sh = Command::new("sh")
        .arg("-c")
        .arg("chmod 755 run.sh && chmod 600 a.txt && ln -s a.txt link && touch -d 2001-02-03 sub/b.bin")
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(sh.success());
}

const GIT: &str = "export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t \
                   GIT_COMMITTER_EMAIL=t@example.com; git() { command git -c init.defaultBranch=main \"$@\"; }";

/// git init, add, commit, clone (into the mount and out of it), fsck.
fn git_workload(m: &Mounted, origin: &Path) {
    let origin = origin.display();
    m.sh_ok(&format!(
        "{GIT}; set -e; mkdir -p {origin} && cd {origin} && git init -q . && echo one > f \
         && git add f && git commit -qm one"
    ));
    m.sh_ok(&format!(
        "{GIT}; set -e; git clone -q {origin} clone && cd clone && for i in 1 2 3 4 5; do \
         echo $i >> f; echo $i > n$i; git add -A; git commit -qm c$i; done; git gc -q; \
         git fsck --no-progress --strict"
    ));
    m.sh_ok(&format!(
        "{GIT}; set -e; mkdir repo && cd repo && git init -q . && cp -a ../clone/f . \
         && git add f && git commit -qm first && git mv f g && git commit -qm moved \
         && git fsck --no-progress && git clone -q . {origin}-out && test -f {origin}-out/g"
    ));
}

/// SQLite in rollback-journal and WAL mode: tables made, rows added over several opens,
/// read back.
fn sqlite_workload(m: &Mounted) {
    let run = |db: &str, mode: &str| {
        m.py(&format!(
            "import sqlite3\n\
             c = sqlite3.connect('{db}'); c.execute('pragma journal_mode={mode}')\n\
             c.execute('create table t(a integer, b text)'); c.commit(); c.close()\n\
             for i in range(12):\n\
             \x20   c = sqlite3.connect('{db}')\n\
             \x20   c.execute('insert into t values (?, ?)', (i, 'x' * (i * 500))); c.commit()\n\
             \x20   c.execute('update t set b = b || ? where a = 0', ('y',)); c.commit(); c.close()\n\
             c = sqlite3.connect('{db}')\n\
             print(c.execute('select count(*), sum(a) from t').fetchone(),\n\
             \x20     c.execute('pragma integrity_check').fetchone()[0])"
        ))
    };
    assert_eq!(run("roll.db", "delete").trim(), "(12, 66) ok");
    assert_eq!(run("wal.db", "wal").trim(), "(12, 66) ok");
    if tool("sqlite3") {
        m.sh_ok("sqlite3 cli.db 'pragma journal_mode=wal; create table t(a); insert into t values (7);'");
        assert_eq!(m.sh_ok("sqlite3 cli.db 'select a from t'"), "7\n");
    } else {
        eprintln!("sqlite3 CLI part SKIPPED: sqlite3 is not installed");
    }
}

#[test]
fn everyday_programs_work_in_the_mount() {
    require_fuse!();
    let t = TestStore::init("2+1");
    let src = t.dir.path().join("src");
    make_tree(&src);
    let tarball = t.dir.path().join("src.tar");
    let origin = t.dir.path().join("origin");
    let m = Mounted::new(t);
    let s = src.display();
    m.sh_ok(&format!("tar cf {} -C {s} .", tarball.display()));
    m.sh_ok(&format!(
        "mkdir untar && tar xpf {} -C untar",
        tarball.display()
    ));
    if tool("rsync") {
        m.sh_ok(&format!("rsync -a {s}/ rs/ && rsync -a {s}/ rs/"));
    } else {
        eprintln!("rsync part SKIPPED: rsync is not installed");
        m.sh_ok(&format!("cp -a {s} rs"));
    }
    m.sh_ok(&format!(
        "cp -a {s} cpa && mv cpa cpb && mkdir nest && mv cpb nest/"
    ));
    // An editor saving by rename: a temp file written, synced, renamed over the file.
    m.py("import os\n\
         for i in range(8):\n\
         \x20   with open('.notes.swp', 'w') as f:\n\
         \x20       f.write(f'draft {i}\\n'); f.flush(); os.fsync(f.fileno())\n\
         \x20   os.rename('.notes.swp', 'notes')\n\
         \x20   assert open('notes').read() == f'draft {i}\\n'");
    m.sh_ok("echo 0 > count && for i in $(seq 1 25); do sed -i \"s/.*/$i/\" count || exit 1; done");
    if tool("git") {
        git_workload(&m, &origin);
    } else {
        eprintln!("git part SKIPPED: git is not installed (apt-get install git)");
    }
    sqlite_workload(&m);
    let check = |m: &Mounted| {
        for d in ["untar", "rs", "nest/cpb"] {
            m.sh_ok(&format!("diff -r --no-dereference {s} {d}"));
            assert_eq!(
                m.sh_ok(&format!("stat -c %a {d}/run.sh {d}/a.txt")),
                "755\n600\n"
            );
        }
        assert_eq!(m.sh_ok("cat notes count"), "draft 7\n25\n");
        if tool("git") {
            m.sh_ok(&format!("{GIT}; cd clone && git fsck --no-progress && test -z \"$(git status --porcelain)\""));
            m.sh_ok(&format!("{GIT}; cd repo && git fsck --no-progress && git log --oneline | wc -l | grep -qx 2"));
        }
        let rows = m.py("import sqlite3\n\
             for db in ('roll.db', 'wal.db'):\n\
             \x20   print(sqlite3.connect(db).execute('select count(*) from t').fetchone()[0])");
        assert_eq!(rows, "12\n12\n");
    };
    check(&m);
    m.remount();
    check(&m);
    m.settle();
    // Nothing the programs deleted came back: no journals, no temp files.
    let keys = m.keys();
    let leftovers: Vec<&String> = keys
        .iter()
        .filter(|k| {
            k.ends_with("-wal")
                || k.ends_with("-shm")
                || k.ends_with("-journal")
                || k.ends_with(".lock")
                || k.ends_with(".swp")
                || k.contains("/sed")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        !keys.iter().any(|k| k.starts_with("cpa/")),
        "cpa moved away"
    );
    // Every version those programs left reads back.
    m.sh_ok("find .ouro/versions -type f -exec cat {} + > /dev/null");
    m.t.ok(&["verify"]);
}

#[test]
fn rewrites_in_a_row_make_one_version_each() {
    require_fuse!();
    let m = Mounted::new(TestStore::init("2+1"));
    // Each `>` may open the file while the previous close's release is still coming: the
    // two descriptors share one handle, and only what each close stored is a version.
    m.sh_ok(
        "for i in $(seq 1 30); do echo $i > k; done; for i in $(seq 1 10); do echo $i >> k; done",
    );
    m.settle();
    let log = m.t.json(&["log", "k"]);
    assert_eq!(log.as_array().unwrap().len(), 40, "{log}");
    assert_eq!(m.sh_ok("head -1 k; wc -l < k").trim(), "30\n11");
}
