//! The same content put on two nodes at once is sealed twice (two records for one chunk
//! id, each with its own nonce): the cluster must settle on one sealing, so that every
//! node reads both keys, with the redundancy the erasure code promises.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use common::cluster::{get, wait_until, Cluster};
use common::random_bytes;

#[test]
fn one_content_sealed_on_two_nodes_at_once_converges_to_one_sealing() {
    let mut c = Cluster::new(4, "2+1", &["--repair-after", "3"]);
    let file = c.dir.path().join("same.bin");
    let data = random_bytes(6 << 20, 11);
    std::fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();
    let mut puts: Vec<_> = [(0, "from-n1"), (1, "from-n2")]
        .iter()
        .map(|(i, key)| {
            c.ouro(&c.nodes[*i].store)
                .args(["put", "-q", key, f])
                .spawn()
                .unwrap()
        })
        .collect();
    for p in &mut puts {
        assert!(p.wait().unwrap().success());
    }
    wait_until("every node reads both keys", 30, || {
        (0..4).all(|i| {
            get(&c, i, "from-n1").as_deref() == Some(&data[..])
                && get(&c, i, "from-n2").as_deref() == Some(&data[..])
        })
    });
    wait_until("nothing under-replicated", 30, || {
        (0..4).all(|i| c.status(i)["under_replicated_chunks"].as_u64() == Some(0))
    });
    // Settled and idle: sweeps (every 2 s) no longer check chunk records one by one. The
    // first sweep after the writes may still check the last ones: count from the next.
    let checked = || c.status(0)["repair_chunks_checked"].as_u64().unwrap();
    let sweeps = || c.status(0)["repair_sweeps"].as_u64().unwrap();
    let start = sweeps();
    wait_until("node 1 swept once more", 20, || sweeps() > start);
    let (before, from) = (checked(), sweeps());
    wait_until("node 1 swept twice more", 20, || sweeps() >= from + 2);
    assert_eq!(checked(), before, "an idle node re-checked chunk records");
    // Full redundancy: any one node can go.
    c.kill(3);
    for i in 0..3 {
        for key in ["from-n1", "from-n2"] {
            assert!(
                get(&c, i, key).as_deref() == Some(&data[..]),
                "node {} reads {key}",
                i + 1
            );
        }
    }
}
