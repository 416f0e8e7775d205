//! Self-healing: when a node stays dead longer than `--repair-after`, the others rebuild
//! its slices where placement now puts them, so the cluster again survives m more losses.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use common::cluster::{get, get_or_err, wait_until, wait_until_ok, Cluster};
use common::random_bytes;

fn under_replicated(c: &Cluster, i: usize) -> Option<u64> {
    c.status(i)["under_replicated_chunks"].as_u64()
}

#[test]
fn a_dead_nodes_slices_are_rebuilt_and_two_more_can_go() {
    let mut c = Cluster::new(7, "4+2", &["--repair-after", "3"]);
    let file = c.dir.path().join("data.bin");
    let data = random_bytes(4 << 20, 7);
    std::fs::write(&file, &data).unwrap();
    c.ok(&c.nodes[0].store, &["put", "big", file.to_str().unwrap()]);
    c.ok(&c.nodes[0].store, &["put", "small", "-"]);
    wait_until("every node knows both keys", 10, || {
        (1..7).all(|i| get(&c, i, "big").as_deref() == Some(&data[..]))
    });
    wait_until("nothing under-replicated", 20, || {
        under_replicated(&c, 0) == Some(0)
    });

    c.kill(6);
    wait_until("node 1 sees node 7 dead", 20, || {
        c.status(0)["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["state"] == "dead"))
    });
    wait_until("the slices node 7 held are rebuilt", 60, || {
        (0..6).all(|i| under_replicated(&c, i) == Some(0))
    });

    let repaired = c.status(0)["repaired_slices"].as_u64().unwrap();
    assert!(repaired > 0, "nothing was repaired");

    // Full redundancy is back: two more nodes can go.
    c.kill(5);
    c.kill(4);
    for i in 0..4 {
        assert!(
            get(&c, i, "big").as_deref() == Some(&data[..]),
            "node {}",
            i + 1
        );
        assert!(get(&c, i, "small").is_some(), "node {}", i + 1);
    }

    // A node that joins now takes over its share of the slices.
    assert_eq!(c.add_node(), 7);
    wait_until("the new node holds slices", 60, || {
        c.status(7)["members"]
            .as_array()
            .and_then(|m| m.first().map(|me| me["chunks_held"].as_u64() > Some(0)))
            .unwrap_or(false)
    });
    // 60 s as for its slices: under load (other tenants) 20 s ran out once in CI-like runs.
    wait_until_ok("the new node reads every key", 60, || {
        let got = get_or_err(&c, 7, "big")?;
        (got == data).then_some(()).ok_or("read other bytes".into())
    });
}

#[test]
fn a_wiped_node_comes_back_from_its_backup_and_is_refilled() {
    let mut c = Cluster::new(3, "2+1", &["--repair-after", "600"]);
    let a = random_bytes(1 << 20, 1);
    let b = random_bytes(1 << 20, 2);
    let put = |c: &Cluster, key: &str, data: &[u8]| {
        let f = c.dir.path().join(key);
        std::fs::write(&f, data).unwrap();
        c.ok(&c.nodes[0].store, &["put", key, f.to_str().unwrap()]);
    };
    put(&c, "a", &a);
    // A hot backup of node 3 while it runs, then more writes it will have to catch up on.
    let backup = c.dir.path().join("n3-backup");
    c.ok(
        &c.nodes[2].store,
        &["node", "backup", backup.to_str().unwrap()],
    );
    put(&c, "b", &b);
    c.kill(2);
    let store = c.nodes[2].store.clone();
    std::fs::remove_dir_all(&store).unwrap();
    let out = c.run(&store, &["node", "restore", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = c.nodes[2].port;
    c.nodes[2].child = Some(c.start(&store, port, None));
    wait_until("the restored node is back for everyone", 20, || {
        (0..3).all(|i| c.alive(i) == 3)
    });
    wait_until("it caught up on b", 10, || {
        get(&c, 2, "b").as_deref() == Some(&b[..])
    });
    wait_until("it holds its share again", 30, || {
        c.status(2)["repaired_slices"].as_u64() > Some(0)
            && (0..3).all(|i| under_replicated(&c, i) == Some(0))
    });
    // Its logs restarted from the backup: what it writes now still reaches the others.
    let c3 = random_bytes(4096, 3);
    let f = c.dir.path().join("c3");
    std::fs::write(&f, &c3).unwrap();
    c.ok(&c.nodes[2].store, &["put", "c", f.to_str().unwrap()]);
    for i in [0, 1] {
        wait_until(
            &format!("node {} reads what the restored node wrote", i + 1),
            10,
            || get(&c, i, "c").as_deref() == Some(&c3[..]),
        );
    }
    // With its slices back, any one node may go.
    c.kill(0);
    for (i, key, want) in [(1, "a", &a), (2, "b", &b), (2, "a", &a), (1, "b", &b)] {
        let out = c.run(&c.nodes[i].store, &["get", key]);
        assert!(
            out.status.success() && out.stdout == *want,
            "get {key} on node {}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // gc on a cluster node releases a removed version but keeps its chunks: another node
    // may not have applied the removal yet.
    c.ok(&c.nodes[1].store, &["rm", "a"]);
    let gc: serde_json::Value =
        serde_json::from_str(&c.ok(&c.nodes[1].store, &["--json", "gc"])).unwrap();
    assert_eq!(gc["versions_released"], 1, "{gc}");
    assert_eq!(gc["chunks_freed"], 0, "{gc}");
    assert!(gc["chunks_condemned"].as_u64() > Some(0), "{gc}");
}

#[test]
fn slices_a_node_lost_without_knowing_are_found_by_a_peers_audit_and_rebuilt() {
    let c = Cluster::new(4, "2+1", &["--audit-every", "1"]);
    let file = c.dir.path().join("data.bin");
    let data = random_bytes(6 << 20, 5);
    std::fs::write(&file, &data).unwrap();
    c.ok(&c.nodes[0].store, &["put", "big", file.to_str().unwrap()]);
    // A chunk too small to split in two has 2 slices, not 3: whichever node placement puts
    // at index 2 owes nothing, and nothing stays under-replicated on its account.
    let tiny = c.dir.path().join("tiny.txt");
    std::fs::write(&tiny, b"a few bytes").unwrap();
    c.ok(&c.nodes[0].store, &["put", "tiny", tiny.to_str().unwrap()]);
    wait_until("every node reads both keys", 20, || {
        (0..4).all(|i| {
            get(&c, i, "big").as_deref() == Some(&data[..])
                && get(&c, i, "tiny").as_deref() == Some(&b"a few bytes"[..])
        })
    });
    wait_until("nothing under-replicated on any node", 30, || {
        (0..4).all(|i| under_replicated(&c, i) == Some(0))
    });
    wait_until("audits find every node holding its share", 30, || {
        (0..4).all(|i| {
            let s = c.status(i);
            s["inventory_audits"].as_u64() >= Some(2) && s["audit_lacking_slices"] == 0
        })
    });

    // Node 2 loses one slice of every chunk it holds, behind its back (its node keeps
    // running and its next full sweep is minutes away).
    let victim = &c.nodes[1].store;
    let lost = {
        let cas = ouroboros_db::Cas::open(victim).unwrap();
        let held = cas.replica().held_slices_after(None, 10_000).unwrap();
        assert!(!held.is_empty(), "node 2 holds slices");
        let mut txn = cas.replica().lmdb().write().unwrap();
        for (_, chunk, indexes) in &held {
            cas.replica()
                .lmdb()
                .slices
                .damage_for_tests(&mut txn, chunk, indexes[0], None)
                .unwrap();
        }
        txn.commit().unwrap();
        held.len() as u64
    };
    // Usually 0 here. About one run in five, nodes used to repair the small chunk's slices
    // around the cluster's start: its bundle reused a sequence number the writer's
    // hand-over walk had passed (fixed: `next_bundle_seq`). Other start-up races may remain
    // (a node's share can still be arriving), so only the increase is asserted.
    let repaired_before = c.status(1)["repaired_slices"].as_u64().unwrap_or(0);
    wait_until("node 2 rebuilt what it lost", 40, || {
        let s = c.status(1);
        s["repaired_slices"].as_u64().unwrap_or(0) >= repaired_before + lost
    });
    wait_until("audits agree again", 30, || {
        (0..4).all(|i| c.status(i)["audit_lacking_slices"] == 0)
    });
    for i in 0..4 {
        assert!(get(&c, i, "big").as_deref() == Some(&data[..]));
    }
}

/// Whether node `i`'s placement spreads slices over the member with short id `id`.
fn placed(c: &Cluster, i: usize, id: &str) -> Option<bool> {
    c.status(i)["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)?["placed"]
        .as_bool()
}

#[test]
fn a_restarted_node_leaves_long_departed_members_out_of_placement_at_once() {
    // The others leave node 4 out of placement 20 s after it died. Node 3, restarted after
    // that, never heard from node 4: it must follow them as soon as it hears from them, not
    // place slices on node 4 for 20 s of its own (against everyone else's placement).
    let mut c = Cluster::new(4, "2+1", &["--repair-after", "20"]);
    let gone = c.status(3)["node"].as_str().unwrap().to_string();
    c.kill(3);
    wait_until("the others leave node 4 out of placement", 60, || {
        (0..3).all(|i| placed(&c, i, &gone) == Some(false))
    });
    c.kill(2);
    let port = c.nodes[2].port;
    let store = c.nodes[2].store.clone();
    c.nodes[2].child = Some(c.start(&store, port, None));
    wait_until("the restarted node leaves node 4 out too", 10, || {
        placed(&c, 2, &gone) == Some(false)
    });
    assert_eq!(placed(&c, 0, &gone), Some(false));
}
