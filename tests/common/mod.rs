//! Helpers shared by the integration tests: the real `ouro` binary on temp stores.
#![allow(dead_code)]

pub mod cluster;
pub mod host;
pub mod packs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `ouro` binary: cargo builds it before the tests of the `ouro-cli` package
/// that declares these test targets.
pub fn ouro_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_ouro") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("test exe path");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .join("ouro")
        }
    }
}

/// A temp store plus identity, and a way to run `ouro` on it.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    /// A new initialised store (erasure code `ec`).
    pub fn init(ec: &str) -> Self {
        let t = TestStore {
            dir: tempfile::tempdir().unwrap(),
        };
        t.ok(&["init", "--ec", ec, "-q"]);
        t
    }

    /// A directory with no store yet.
    pub fn empty() -> Self {
        TestStore {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("identity.txt")
    }

    /// A command with the store and identity set through the environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ouro_bin());
        c.args(args)
            .env("OURO_STORE", self.store())
            .env("OURO_IDENTITY", self.identity())
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path());
        c
    }

    /// Runs and returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_input(self.cmd(args), input)
    }

    /// Runs, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ouro {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Puts bytes under a key; returns the version hash.
    pub fn put(&self, key: &str, data: &[u8]) -> String {
        let out = self.run_stdin(&["put", key], data);
        assert!(
            out.status.success(),
            "put {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Gets a ref's content.
    pub fn get(&self, r: &str) -> Vec<u8> {
        self.ok(&["get", r])
    }

    /// Parses `--json` output.
    /// Starts `ouro put KEY -` with its input a pipe left to the caller (output discarded).
    pub fn spawn_put(&self, key: &str) -> (std::process::Child, std::process::ChildStdin) {
        let mut child = self
            .cmd(&["put", key, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        (child, stdin)
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_slice(&self.ok(&a)).expect("valid JSON")
    }
}

/// Runs `cmd` with `input` on stdin (fed from a thread, so a command that stops reading
/// early, or writes much output first, never deadlocks) and collects its output.
pub fn run_with_input(cmd: Command, input: &[u8]) -> Output {
    run_with_input_to(cmd, input, std::process::Stdio::piped())
}

/// [`run_with_input`] with stdout going to `stdout` (collected only when piped).
pub fn run_with_input_to(mut cmd: Command, input: &[u8], stdout: std::process::Stdio) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Deterministic pseudo-random bytes (xorshift): incompressible test data.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The lines of `rsync -n -aHAX --numeric-ids -c --itemize-changes --delete FROM/ TO/`:
/// what rsync would change in TO to make it FROM. Empty = identical (content, types,
/// modes, owners, times, hard links, ACLs, xattrs).
pub fn rsync_diff(from: &Path, to: &Path) -> Vec<String> {
    let out = Command::new("rsync")
        .args([
            "-n",
            "-aHAX",
            "--numeric-ids",
            "-c",
            "--itemize-changes",
            "--delete",
        ])
        .arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Replaces (`Some`, e.g. a truncated copy) or drops (`None`) slice `index` of `chunk` (or
/// pack) in an open store, as damage would.
pub fn damage_slice(
    cas: &ouroboros_db::Cas,
    chunk: &ouroboros_db::Hash,
    index: u8,
    bytes: Option<&[u8]>,
) {
    let mut txn = cas.replica().lmdb().write().unwrap();
    cas.replica()
        .lmdb()
        .slices
        .damage_for_tests(&mut txn, chunk, index, bytes)
        .unwrap();
    txn.commit().unwrap();
}

/// The content of `key` (or any reference `get` takes) read through the library.
pub fn read(cas: &ouroboros_db::Cas, reference: &str) -> Vec<u8> {
    let mut out = Vec::new();
    cas.get(reference, &mut out).unwrap();
    out
}
