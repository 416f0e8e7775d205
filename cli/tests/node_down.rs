//! Commands on a cluster node's store whose node is dead (killed with SIGKILL: its
//! `node.sock` stays behind, stale) or dies during the command: a put says that its data
//! stays on this disk, with the count (exit 11, `node`/`pending_chunks` in --json); a get
//! says the node is not running instead of calling intact data corrupt; a put whose node
//! dies during the hand-over says the version is stored, so a script does not store it
//! twice. And `stats`: which counts agree between nodes and which are the node's own.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};

use common::cluster::{get, wait_until, Cluster};
use common::random_bytes;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), stderr(o)))
}

/// Sends `signal` (STOP, CONT) to node `i`'s process.
fn signal(c: &Cluster, i: usize, signal: &str) {
    let pid = c.nodes[i].child.as_ref().unwrap().id().to_string();
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Starts node `i` again on its store and port, and waits until every node sees it.
fn restart(c: &mut Cluster, i: usize) {
    let (store, port) = (c.nodes[i].store.clone(), c.nodes[i].port);
    c.nodes[i].child = Some(c.start(&store, port, None));
    let n = c.nodes.len();
    wait_until("the restarted node is alive for everyone", 30, || {
        (0..n).all(|j| c.alive(j) == n)
    });
}

#[test]
fn without_its_node_a_put_stays_here_and_says_so_and_a_get_says_unreachable() {
    // 2+1 over three nodes: each holds one slice of every chunk, so every read on a node
    // needs a slice from another.
    let mut c = Cluster::new(3, "2+1", &[]);
    let data = random_bytes(3 << 20, 17);
    let file = c.dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let tree = c.dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f.bin"), random_bytes(1 << 20, 16)).unwrap();
    let s1 = c.nodes[0].store.clone();
    let put = c.run(&s1, &["--json", "put", "big", file.to_str().unwrap()]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    let v = json(&put);
    assert_eq!(v["node"], "running", "{v}");
    assert_eq!(v["pending_chunks"], 0, "{v}");
    c.ok(&s1, &["put", "-r", tree.to_str().unwrap(), "t"]);
    wait_until("node 2 reads big", 20, || {
        get(&c, 1, "big").as_deref() == Some(&data[..])
    });

    // Node 1 dies; its socket file stays.
    c.kill(0);
    assert!(
        s1.join("node.sock").exists(),
        "a killed node leaves node.sock"
    );
    let started = std::time::Instant::now();
    let out = c.run(&s1, &["get", "big"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(out.status.code().is_some(), "no signal");
    assert!(
        err.contains("no node runs") && err.contains("ouro node run"),
        "says the node is not running: {err}"
    );
    assert!(
        !err.contains("corrupt"),
        "intact data is not corrupt: {err}"
    );
    // Asking a node that is not running again brings nothing: no retries.
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let dest = c.dir.path().join("restored");
    let out = c.run(&s1, &["get", "-r", "t", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(11), "get -r: {}", stderr(&out));
    assert!(!stderr(&out).contains("corrupt"), "{}", stderr(&out));
    // Metadata needs no other node.
    c.ok(&s1, &["ls"]);

    // A put without the node: committed here, said on stderr with the count, exit 11.
    let more = random_bytes(3 << 20, 18);
    std::fs::write(&file, &more).unwrap();
    let out = c.run(&s1, &["--json", "put", "more", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(11), "{err}");
    let v = json(&out);
    assert_eq!(v["node"], "not running", "{v}");
    let pending = v["pending_chunks"].as_u64().unwrap();
    assert!(
        pending >= v["new_chunks"].as_u64().unwrap() && pending > 0,
        "{v}"
    );
    assert!(
        err.contains("committed on this node only") && err.contains(&format!("{pending} chunk(s)")),
        "{err}"
    );
    // Without --json too, even with -q: the warning is the point.
    let out = c.run(&s1, &["-q", "put", "more2", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("chunk(s) keep all their slices on this disk"));
    // An rm stays here as well until the node runs.
    let out = c.run(&s1, &["rm", "more2"]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));

    // The node back: what was put meanwhile reaches the others, once.
    restart(&mut c, 0);
    wait_until(
        "node 3 reads what was put while node 1 was down",
        30,
        || get(&c, 2, "more").as_deref() == Some(&more[..]),
    );
    let heads = c.ok(&c.nodes[2].store, &["--json", "heads", "more"]);
    let heads: serde_json::Value = serde_json::from_str(&heads).unwrap();
    assert_eq!(heads.as_array().unwrap().len(), 1, "{heads}");
    assert_eq!(get(&c, 0, "big").as_deref(), Some(&data[..]));
    wait_until("the rm reached node 2", 20, || {
        c.run(&c.nodes[1].store, &["get", "more2"]).status.code() == Some(4)
    });
}

#[test]
fn a_put_whose_node_dies_during_the_hand_over_says_it_is_stored() {
    let mut c = Cluster::new(3, "2+1", &[]);
    let data = random_bytes(2 << 20, 19);
    let file = c.dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let s1 = c.nodes[0].store.clone();
    // The other nodes frozen: the hand-over waits on them (up to its call timeout), so
    // node 1 is surely killed while the put waits for it.
    signal(&c, 1, "STOP");
    signal(&c, 2, "STOP");
    let put = c
        .ouro(&s1)
        .args(["--json", "put", "k", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the put committed its version on node 1", 20, || {
        c.run(&s1, &["heads", "k"]).status.success()
    });
    c.kill(0);
    let out = put.wait_with_output().unwrap();
    let err = stderr(&out);
    signal(&c, 1, "CONT");
    signal(&c, 2, "CONT");
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(
        err.contains("handing it to the cluster failed") && err.contains("do not make it again"),
        "{err}"
    );
    let v = json(&out);
    assert_eq!(v["node"], "stopped", "{v}");
    assert!(v["pending_chunks"].as_u64() > Some(0), "{v}");
    let hash = v["hash"].as_str().unwrap().to_string();
    // Back, the node hands it over; it was stored once.
    restart(&mut c, 0);
    wait_until("node 2 reads the version", 30, || {
        get(&c, 1, "k").as_deref() == Some(&data[..])
    });
    let heads: serde_json::Value =
        serde_json::from_str(&c.ok(&c.nodes[1].store, &["--json", "heads", "k"])).unwrap();
    assert_eq!(heads.as_array().unwrap().len(), 1, "{heads}");
    assert_eq!(heads[0]["hash"], hash.as_str());
}

/// What `stats` counts on each node: keys, live versions, logical bytes and referenced
/// chunks agree once the nodes hold the same data; versions and chunks also count records
/// of the node's own history (a version removed with `rm KEY@V` stays as a hollow record
/// on the nodes that had it; a node that joins later never receives it).
#[test]
fn stats_says_which_counts_are_the_nodes_own_and_the_others_agree() {
    let mut c = Cluster::new(2, "1+1", &[]);
    let s1 = c.nodes[0].store.clone();
    let file = c.dir.path().join("v");
    let put = |c: &Cluster, key: &str, seed: u64| {
        std::fs::write(&file, random_bytes(300_000, seed)).unwrap();
        c.ok(&s1, &["put", key, file.to_str().unwrap()])
            .trim()
            .to_string()
    };
    let v1 = put(&c, "a", 1);
    put(&c, "a", 2);
    put(&c, "b", 3);
    wait_until("node 2 has both versions of a", 20, || {
        let out = c.run(&c.nodes[1].store, &["--json", "log", "a"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.len()))
            == Some(2)
    });
    c.ok(&s1, &["rm", &format!("a@{v1}")]);
    c.ok(&s1, &["gc"]);
    // A node that joins now never receives the removed version.
    c.add_node();
    let n = c.nodes.len();
    wait_until("every node sees every other", 30, || {
        (0..n).all(|i| c.alive(i) == n)
    });
    let stats = |c: &Cluster, i: usize| -> serde_json::Value {
        serde_json::from_str(&c.ok(&c.nodes[i].store, &["--json", "stats"])).unwrap()
    };
    let agreed = [
        "keys",
        "live_versions",
        "logical_bytes",
        "referenced_chunks",
    ];
    wait_until(
        "every node agrees on the counts that are not node-local",
        30,
        || {
            let all: Vec<_> = (0..n).map(|i| stats(&c, i)).collect();
            all.iter().all(|s| agreed.iter().all(|f| s[f] == all[0][f]))
                && all[0]["keys"] == 2
                && all[0]["live_versions"] == 2
        },
    );
    for i in 0..n {
        let s = stats(&c, i);
        let local: Vec<&str> = s["node_local"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for f in [
            "versions",
            "removed_versions",
            "chunks",
            "unreferenced_chunks",
        ] {
            assert!(local.contains(&f), "{f} is node-local: {s}");
        }
        for f in agreed {
            assert!(!local.contains(&f), "{f} agrees between nodes: {s}");
        }
        assert_eq!(
            s["versions"].as_u64().unwrap(),
            s["live_versions"].as_u64().unwrap() + s["removed_versions"].as_u64().unwrap(),
            "{s}"
        );
        assert_eq!(
            s["chunks"].as_u64().unwrap(),
            s["referenced_chunks"].as_u64().unwrap() + s["unreferenced_chunks"].as_u64().unwrap(),
            "{s}"
        );
        eprintln!("node {}: {s}", i + 1);
    }
    // The nodes that had the removed version keep its record as history (counted, but
    // apart); the node that joined later never received it.
    let s = stats(&c, 0);
    assert_eq!(s["removed_versions"], 1, "{s}");
    assert_eq!(s["versions"], 3, "{s}");
}
