//! Tombstones (DeletionWAL entries) are kept while a member has not applied them, compacted
//! once every member has, and a deletion stays effective after compaction: no node, not
//! even one joining later, brings the data back. A member away longer than the horizon is
//! refused and told to rejoin.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use common::cluster::{get, wait_until, Cluster};

fn tombstones(c: &Cluster, i: usize) -> Vec<Option<u64>> {
    c.status(i)["members"]
        .as_array()
        .map(|m| m.iter().map(|m| m["tombstones"].as_u64()).collect())
        .unwrap_or_default()
}

fn put(c: &Cluster, i: usize, key: &str, data: &[u8]) {
    let f = c.dir.path().join("input");
    std::fs::write(&f, data).unwrap();
    c.ok(&c.nodes[i].store, &["put", key, f.to_str().unwrap()]);
}

fn restart(c: &mut Cluster, i: usize) {
    let (store, port) = (c.nodes[i].store.clone(), c.nodes[i].port);
    c.nodes[i].child = Some(c.start(&store, port, None));
}

/// Exit code of `get key` on node `i` (3 not found, 4 deleted).
fn get_code(c: &Cluster, i: usize, key: &str) -> Option<i32> {
    c.run(&c.nodes[i].store, &["get", key]).status.code()
}

#[test]
fn tombstones_wait_for_every_member_then_compact_and_stay_effective() {
    let mut c = Cluster::new(3, "2+1", &[]);
    for i in 0..4 {
        put(&c, 0, &format!("d/{i}"), format!("doomed {i}").as_bytes());
    }
    put(&c, 0, "keep", b"v1");
    put(&c, 0, "keep", b"v2");
    wait_until("every node has every key", 10, || {
        (1..3).all(|n| get(&c, n, "d/3").is_some() && get(&c, n, "keep").as_deref() == Some(b"v2"))
    });
    // Node 3 goes away; deletions happen without it.
    c.kill(2);
    for i in 0..4 {
        c.ok(&c.nodes[0].store, &["rm", &format!("d/{i}")]);
    }
    let log: serde_json::Value =
        serde_json::from_str(&c.ok(&c.nodes[0].store, &["--json", "log", "keep"])).unwrap();
    let v1 = log[1]["hash"].as_str().unwrap().to_string();
    c.ok(&c.nodes[0].store, &["rm", &format!("keep@{}", &v1[..12])]);
    wait_until("nodes 1 and 2 hold the tombstones", 10, || {
        // Members are listed self first, then by key: count rather than index.
        tombstones(&c, 0).iter().filter(|t| **t == Some(5)).count() == 2
    });
    // Node 3 has not acknowledged them: they stay, through two more compaction rounds.
    let rounds = wal_rounds(&c, 0);
    wait_until("node 1 ran two more compaction rounds", 10, || {
        wal_rounds(&c, 0) >= rounds + 2
    });
    let t = tombstones(&c, 0);
    assert_eq!(
        t.iter().filter(|t| **t == Some(5)).count(),
        2,
        "kept for the absent member: {t:?}"
    );
    // Back, it applies them; then every node compacts its log.
    restart(&mut c, 2);
    wait_until("every node compacted every tombstone", 30, || {
        (0..3).all(|n| tombstones(&c, n) == vec![Some(0); 3])
    });
    for n in 0..3 {
        for i in 0..4 {
            let code = get_code(&c, n, &format!("d/{i}"));
            assert!(
                matches!(code, Some(3) | Some(4)),
                "d/{i} on node {}: {code:?}",
                n + 1
            );
        }
        assert_eq!(get(&c, n, "keep").as_deref(), Some(&b"v2"[..]));
        assert!(get(&c, n, &format!("keep@{}", &v1[..12])).is_none());
    }
    // A node joining now learns nothing of the deleted data.
    assert_eq!(c.add_node(), 3);
    wait_until("the new node reads keep", 30, || {
        get(&c, 3, "keep").as_deref() == Some(&b"v2"[..])
    });
    let ls = c.ok(&c.nodes[3].store, &["ls"]);
    assert_eq!(ls.trim(), "keep", "no deleted key came back");
    let log: serde_json::Value =
        serde_json::from_str(&c.ok(&c.nodes[3].store, &["--json", "log", "keep"])).unwrap();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|v| v["hash"] != v1.as_str()),
        "the removed version did not come back: {log}"
    );
    for n in 0..4 {
        let ls = c.ok(&c.nodes[n].store, &["ls"]);
        assert_eq!(ls.trim(), "keep", "node {}", n + 1);
    }
}

#[test]
fn a_member_away_past_the_horizon_no_longer_holds_tombstones_and_is_refused() {
    let mut c = Cluster::new(2, "1+1", &["--tombstone-horizon", "3"]);
    let node2 = c.status(1)["node"].as_str().unwrap().to_string();
    put(&c, 0, "gone", b"data");
    wait_until("node 2 has it", 10, || get(&c, 1, "gone").is_some());
    c.kill(1);
    c.ok(&c.nodes[0].store, &["rm", "gone"]);
    wait_until("node 1 holds the tombstone", 10, || {
        tombstones(&c, 0).first() == Some(&Some(1))
    });
    // Past the horizon, node 2 no longer holds it back.
    wait_until("compacted without node 2", 20, || {
        tombstones(&c, 0).first() == Some(&Some(0))
    });
    restart(&mut c, 1);
    let log = c.nodes[1].store.with_extension("log");
    let told = || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("tombstone horizon"));
    let start = std::time::Instant::now();
    while !told() {
        // Its log says why when it is not (it failed once in CI, never since).
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "node 2 was not told to rejoin within 20 s; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Node 1 keeps the deletion: what node 2 still holds does not come back, through two
    // more of node 1's pulls from node 2.
    let pulled = pulls(&c, 0, &node2);
    wait_until("node 1 pulled from node 2 twice more", 20, || {
        pulls(&c, 0, &node2) >= pulled + 2
    });
    assert!(matches!(get_code(&c, 0, "gone"), Some(3) | Some(4)));
}

/// Pulls node `i` made from the member with short id `peer` (`cluster status --json`).
fn pulls(c: &Cluster, i: usize, peer: &str) -> u64 {
    let s = c.status(i);
    s["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == peer))
        .and_then(|m| m["pulls"].as_u64())
        .unwrap_or(0)
}

/// Compaction and freeing rounds node `i` completed (`cluster status --json`).
fn wal_rounds(c: &Cluster, i: usize) -> u64 {
    c.status(i)["wal_rounds"].as_u64().unwrap()
}

fn stat(c: &Cluster, i: usize, field: &str) -> u64 {
    let s: serde_json::Value =
        serde_json::from_str(&c.ok(&c.nodes[i].store, &["--json", "stats"])).unwrap();
    s[field].as_u64().unwrap()
}

#[test]
fn gc_frees_removed_content_on_every_node_once_every_member_applied_it() {
    let mut c = Cluster::new(3, "2+1", &[]);
    let gone = common::random_bytes(3 << 20, 11);
    let kept = common::random_bytes(1 << 20, 12);
    put(&c, 0, "gone", &gone);
    put(&c, 0, "kept", &kept);
    wait_until("every node reads both", 20, || {
        (1..3).all(|n| get(&c, n, "gone").is_some() && get(&c, n, "kept").is_some())
    });
    let all = stat(&c, 0, "chunks");
    // Node 3 is away: it may still hold versions using these chunks, so nothing is freed.
    c.kill(2);
    c.ok(&c.nodes[0].store, &["rm", "gone"]);
    let gc: serde_json::Value =
        serde_json::from_str(&c.ok(&c.nodes[0].store, &["--json", "gc"])).unwrap();
    assert_eq!(gc["chunks_freed"], 0, "{gc}");
    let condemned = gc["chunks_condemned"].as_u64().unwrap();
    assert!(condemned > 0, "{gc}");
    wait_until("node 2 marked them", 10, || {
        c.status(1)["condemned_chunks"].as_u64() == Some(condemned)
    });
    // Two more freeing rounds on each: none may free anything while node 3 is away.
    let rounds: Vec<u64> = (0..2).map(|n| wal_rounds(&c, n)).collect();
    wait_until("nodes 1 and 2 ran two more freeing rounds", 10, || {
        (0..2).all(|n| wal_rounds(&c, n) >= rounds[n] + 2)
    });
    for n in 0..2 {
        assert_eq!(
            c.status(n)["freed_chunks"],
            0,
            "node {} waits for node 3",
            n + 1
        );
        assert_eq!(stat(&c, n, "chunks"), all);
    }
    // Back, node 3 applies the condemnation; then every node frees its slices.
    restart(&mut c, 2);
    wait_until("every node freed them", 40, || {
        (0..3).all(|n| {
            let s = c.status(n);
            s["condemned_chunks"] == 0 && s["freed_chunks"].as_u64() == Some(condemned)
        })
    });
    for n in 0..3 {
        assert_eq!(stat(&c, n, "chunks"), all - condemned, "node {}", n + 1);
        assert_eq!(
            get(&c, n, "kept").as_deref(),
            Some(&kept[..]),
            "node {}",
            n + 1
        );
    }
    // The same content stored again is sealed anew and reads everywhere.
    put(&c, 1, "again", &gone);
    for n in [0, 2] {
        wait_until(&format!("node {} reads it", n + 1), 20, || {
            get(&c, n, "again").as_deref() == Some(&gone[..])
        });
    }
}
