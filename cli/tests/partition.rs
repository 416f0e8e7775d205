//! Network partitions, made with Linux network namespaces joined by a veth pair and cut
//! with blackhole routes: writes on both sides become two heads everywhere after healing,
//! and a key removed on one side during the partition does not come back.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::cluster::{wait_until, Cluster};

/// Two network namespaces, `A` (10.201.0.1) and `B` (10.201.0.2), joined by a veth pair.
struct Net {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

impl Net {
    fn new() -> Option<Net> {
        let id = std::process::id() % 100000;
        let (a, b) = (format!("ouroA{id}"), format!("ouroB{id}"));
        if !ip(&["netns", "add", &a]) {
            return None;
        }
        let net = Net { a, b };
        let (va, vb) = (format!("oa{id}"), format!("ob{id}"));
        let ok = ip(&["netns", "add", &net.b])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", &net.a])
            && ip(&["link", "set", &vb, "netns", &net.b])
            && ip(&["-n", &net.a, "addr", "add", "10.201.0.1/24", "dev", &va])
            && ip(&["-n", &net.b, "addr", "add", "10.201.0.2/24", "dev", &vb])
            && ip(&["-n", &net.a, "link", "set", &va, "up"])
            && ip(&["-n", &net.b, "link", "set", &vb, "up"])
            && ip(&["-n", &net.a, "link", "set", "lo", "up"])
            && ip(&["-n", &net.b, "link", "set", "lo", "up"]);
        ok.then_some(net)
    }

    fn partition(&self) {
        assert!(ip(&[
            "-n",
            &self.a,
            "route",
            "add",
            "blackhole",
            "10.201.0.2/32"
        ]));
        assert!(ip(&[
            "-n",
            &self.b,
            "route",
            "add",
            "blackhole",
            "10.201.0.1/32"
        ]));
    }

    fn heal(&self) {
        assert!(ip(&[
            "-n",
            &self.a,
            "route",
            "del",
            "blackhole",
            "10.201.0.2/32"
        ]));
        assert!(ip(&[
            "-n",
            &self.b,
            "route",
            "del",
            "blackhole",
            "10.201.0.1/32"
        ]));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

fn heads(c: &Cluster, i: usize, key: &str) -> Option<usize> {
    let out = c.run(&c.nodes[i].store, &["--json", "heads", key]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()?
        .as_array()
        .map(|a| a.len())
}

fn put(c: &Cluster, i: usize, key: &str, text: &str) {
    let f = c
        .dir
        .path()
        .join(format!("in-{i}-{}", key.replace('/', "_")));
    std::fs::write(&f, text).unwrap();
    c.ok(&c.nodes[i].store, &["put", "-q", key, f.to_str().unwrap()]);
}

#[test]
fn partitions_heal_into_two_heads_and_removals_stay_removed() {
    let Some(net) = Net::new() else {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and `ip netns`)");
        return;
    };
    let (a, b) = (Some(net.a.as_str()), Some(net.b.as_str()));
    let mut c = Cluster::new_at(
        &[
            ("10.201.0.1", a),
            ("10.201.0.1", a),
            ("10.201.0.2", b),
            ("10.201.0.2", b),
        ],
        "2+1",
        &[],
    );
    put(&c, 0, "shared", "before");
    put(&c, 0, "doomed", "to be removed");
    wait_until("side B knows both keys", 10, || {
        heads(&c, 2, "shared") == Some(1) && heads(&c, 3, "doomed") == Some(1)
    });

    net.partition();
    wait_until("each side sees the other dead", 30, || {
        [0, 2].iter().all(|i| {
            c.status(*i)["members"]
                .as_array()
                .is_some_and(|m| m.iter().filter(|m| m["state"] == "dead").count() == 2)
        })
    });
    // Writes on both sides, and an rm on side A.
    put(&c, 1, "shared", "written on side A");
    put(&c, 3, "shared", "written on side B");
    c.ok(&c.nodes[0].store, &["rm", "doomed"]);
    for i in 0..4 {
        let side_heads = heads(&c, i, "shared");
        wait_until(&format!("node {} has its side's head", i + 1), 10, || {
            heads(&c, i, "shared") == Some(1)
        });
        let _ = side_heads;
    }

    net.heal();
    for i in 0..4 {
        wait_until(
            &format!("node {} sees both heads after healing", i + 1),
            30,
            || heads(&c, i, "shared") == Some(2),
        );
        wait_until(&format!("node {} sees doomed removed", i + 1), 30, || {
            let out = c.run(&c.nodes[i].store, &["get", "doomed"]);
            out.status.code() == Some(4)
        });
    }
    // A merge on one node resolves the conflict everywhere.
    c.ok(&c.nodes[2].store, &["merge", "shared", "--file", "-"]);
    for i in 0..4 {
        wait_until(&format!("node {} sees the merge", i + 1), 10, || {
            heads(&c, i, "shared") == Some(1)
        });
    }
    c.kill(0);
}
