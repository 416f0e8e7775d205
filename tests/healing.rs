//! Self-healing: when a node stays dead longer than `--repair-after`, the others rebuild
//! its slices where placement now puts them, so the cluster again survives m more losses.

mod common;

use common::cluster::{get, wait_until, Cluster};
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
        assert_eq!(
            get(&c, i, "big").as_deref(),
            Some(&data[..]),
            "node {}",
            i + 1
        );
        assert!(get(&c, i, "small").is_some(), "node {}", i + 1);
    }
}
