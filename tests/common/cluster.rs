//! A cluster of `ouro node run` processes on loopback, for the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::ouro_bin;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
    /// Extra options of every `node run`.
    pub run_args: Vec<String>,
}

pub struct NodeProc {
    pub store: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    /// Listen IP (loopback unless the node runs in a network namespace).
    pub ip: String,
    /// Network namespace the node runs in, if any.
    pub netns: Option<String>,
}

pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    wait_until_ok(what, secs, || f().then_some(()).ok_or_else(String::new));
}

/// As `wait_until`, for a check that says why it failed: a timeout shows the last reason.
pub fn wait_until_ok(what: &str, secs: u64, mut f: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut why = String::new();
    while Instant::now() < end {
        match f() {
            Ok(()) => return,
            Err(e) => why = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {secs} s waiting until {what}: {why}");
}

impl Cluster {
    pub fn ouro(&self, store: &Path) -> Command {
        let mut c = Command::new(ouro_bin());
        c.arg("--store")
            .arg(store)
            .env("OURO_IDENTITY", self.dir.path().join("id.txt"))
            .env_remove("OURO_STORE");
        c
    }

    pub fn run(&self, store: &Path, args: &[&str]) -> Output {
        self.ouro(store).args(args).output().unwrap()
    }

    pub fn ok(&self, store: &Path, args: &[&str]) -> String {
        let out = self.run(store, args);
        assert!(
            out.status.success(),
            "ouro {args:?} on {}: {}",
            store.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn start(&self, store: &Path, port: u16, join: Option<&str>) -> Child {
        self.start_at(store, "127.0.0.1", port, join, None)
    }

    /// Starts a node listening on `ip:port`, inside network namespace `netns` when given.
    pub fn start_at(
        &self,
        store: &Path,
        ip: &str,
        port: u16,
        join: Option<&str>,
        netns: Option<&str>,
    ) -> Child {
        let log = std::fs::File::create(store.with_extension("log")).unwrap();
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(ouro_bin())
                    .arg("--store")
                    .arg(store)
                    .env("OURO_IDENTITY", self.dir.path().join("id.txt"))
                    .env_remove("OURO_STORE");
                c
            }
            None => self.ouro(store),
        };
        c.args(["node", "run", "--listen", &format!("{ip}:{port}")]);
        if let Some(t) = join {
            c.args(["--join", t]);
        }
        c.args(&self.run_args);
        c.stdout(Stdio::null()).stderr(log).spawn().unwrap()
    }

    pub fn status(&self, i: usize) -> serde_json::Value {
        let out = self.run(&self.nodes[i].store, &["--json", "cluster", "status"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    pub fn alive(&self, i: usize) -> usize {
        self.status(i)["members"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["state"] == "alive").count())
            .unwrap_or(0)
    }

    pub fn invite(&self) -> String {
        let out = self.ok(&self.nodes[0].store, &["cluster", "invite", "--ttl", "10m"]);
        out.lines().last().unwrap().to_string()
    }

    /// A cluster whose node `i` listens on `placement[i]` = (IP, network namespace):
    /// nodes in two namespaces joined by a veth pair can be partitioned.
    pub fn new_at(places: &[(&str, Option<&str>)], ec: &str, run_args: &[&str]) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
            run_args: run_args.iter().map(|s| s.to_string()).collect(),
        };
        for (i, (ip, ns)) in places.iter().enumerate() {
            let store = c.dir.path().join(format!("n{}", i + 1));
            let port = 20000 + (std::process::id() % 20000) as u16 + i as u16;
            let token = if i == 0 {
                c.ok(&store, &["init", "-q", "--ec", ec]);
                c.ok(&store, &["cluster", "init"]);
                None
            } else {
                Some(c.invite())
            };
            let child = c.start_at(&store, ip, port, token.as_deref(), *ns);
            c.nodes.push(NodeProc {
                store,
                port,
                child: Some(child),
                ip: ip.to_string(),
                netns: ns.map(str::to_string),
            });
            let n = i + 1;
            wait_until("the new node is alive for node 1", 30, || c.alive(0) == n);
        }
        let n = places.len();
        wait_until("every node sees every other alive", 60, || {
            (0..n).all(|i| c.alive(i) == n)
        });
        c
    }

    /// A cluster with no node yet: its directory, where the first node's store `n1` goes.
    pub fn empty(run_args: &[&str]) -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
            run_args: run_args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Makes the store `n1` (created already) a cluster's and starts it as the first node,
    /// on loopback; waits until it answers.
    pub fn start_first(&mut self) {
        let first = self.dir.path().join("n1");
        self.ok(&first, &["cluster", "init"]);
        let port = free_port();
        let child = self.start(&first, port, None);
        self.nodes.push(NodeProc {
            store: first,
            port,
            child: Some(child),
            ip: "127.0.0.1".into(),
            netns: None,
        });
        wait_until("the first node answers", 20, || self.alive(0) == 1);
    }

    /// A cluster of `n` nodes, every one seeing every other alive.
    pub fn new(n: usize, ec: &str, run_args: &[&str]) -> Cluster {
        let mut c = Cluster::empty(run_args);
        c.ok(&c.dir.path().join("n1"), &["init", "-q", "--ec", ec]);
        c.start_first();
        for i in 2..=n {
            let token = c.invite();
            let store = c.dir.path().join(format!("n{i}"));
            let port = free_port();
            let child = c.start(&store, port, Some(&token));
            c.nodes.push(NodeProc {
                store,
                port,
                child: Some(child),
                ip: "127.0.0.1".into(),
                netns: None,
            });
        }
        wait_until("every node sees every other alive", 60, || {
            (0..n).all(|i| c.alive(i) == n)
        });
        c
    }

    /// Invites and starts one more node on loopback (store `n<N>`); returns its index.
    pub fn add_node(&mut self) -> usize {
        let token = self.invite();
        let store = self.dir.path().join(format!("n{}", self.nodes.len() + 1));
        let port = free_port();
        let child = self.start(&store, port, Some(&token));
        self.nodes.push(NodeProc {
            store,
            port,
            child: Some(child),
            ip: "127.0.0.1".into(),
            netns: None,
        });
        self.nodes.len() - 1
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut ch) = self.nodes[i].child.take() {
            ch.kill().unwrap();
            ch.wait().unwrap();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            // OURO_TEST_KEEP=DIR keeps the failed cluster's stores and logs for a post-mortem.
            if let Some(keep) = std::env::var_os("OURO_TEST_KEEP") {
                let to = Path::new(&keep).join(format!("cluster-{}", std::process::id()));
                let _ = Command::new("cp")
                    .arg("-a")
                    .arg(self.dir.path())
                    .arg(&to)
                    .status();
                eprintln!("kept the cluster in {}", to.display());
            }
            for n in &self.nodes {
                let log =
                    std::fs::read_to_string(n.store.with_extension("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {} (port {}):", n.store.display(), n.port);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn get(c: &Cluster, i: usize, key: &str) -> Option<Vec<u8>> {
    get_or_err(c, i, key).ok()
}

/// `get` of `key` on node `i`, or its exit status and standard error.
pub fn get_or_err(c: &Cluster, i: usize, key: &str) -> Result<Vec<u8>, String> {
    let out = c.run(&c.nodes[i].store, &["get", key]);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
