//! Secrets never leave their files: the age identity, node keys and the admin key appear in
//! no output, error, `--json` document or node log, even at the most verbose log level.

// The helpers are shared with the library's integration tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use common::cluster::Cluster;

/// The forms a 32-byte secret could take in text: hex, base64 (standard and URL-safe).
fn encodings(secret: &[u8]) -> Vec<String> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = |alphabet: &[u8; 64]| -> String {
        // Only whole 3-byte groups: a fragment of the base64 text is enough to search for.
        secret[..30]
            .chunks(3)
            .flat_map(|c| {
                let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
                (0..4).map(move |i| alphabet[(n >> (18 - 6 * i)) as usize & 63] as char)
            })
            .collect()
    };
    vec![
        hex.clone(),
        hex.to_uppercase(),
        b64(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
        b64(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
    ]
}

/// The 32-byte Ed25519 seed inside a PKCS#8 v2 key file (after its 16-byte prefix).
fn pkcs8_seed(path: &std::path::Path) -> Vec<u8> {
    let der = std::fs::read(path).unwrap();
    assert!(der.len() >= 48, "{} is a PKCS#8 document", path.display());
    der[16..48].to_vec()
}

#[test]
fn secrets_never_appear_in_output_errors_json_or_logs() {
    let c = Cluster::new(2, "2+1", &["-vv"]);
    let s1 = c.nodes[0].store.clone();
    let id = c.dir.path().join("id.txt");
    let age_secret = std::fs::read_to_string(&id)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let mut secrets = vec![age_secret.clone(), age_secret.to_lowercase()];
    for key in [
        s1.join("cluster/node.key"),
        s1.join("cluster/admin.key"),
        c.nodes[1].store.join("cluster/node.key"),
    ] {
        secrets.extend(encodings(&pkcs8_seed(&key)));
    }

    let file = c.dir.path().join("f.bin");
    std::fs::write(&file, common::random_bytes(300_000, 1)).unwrap();
    let f = file.to_str().unwrap();
    let mut outputs = Vec::new();
    let runs: Vec<Vec<&str>> = vec![
        vec!["-vv", "put", "k", f],
        vec!["-vv", "--json", "put", "k2", f],
        vec!["-vv", "get", "k", "-o", "/dev/null"],
        vec!["-vv", "--json", "log", "k"],
        vec!["-vv", "--json", "stats"],
        vec!["-vv", "--json", "verify"],
        vec!["-vv", "--json", "recipient", "ls"],
        vec!["-vv", "--json", "cluster", "status"],
        vec!["-vv", "cluster", "invite"],
        vec!["-vv", "get", "nope"],
    ];
    for args in &runs {
        let o = c
            .ouro(&s1)
            .args(args)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        outputs.push((format!("{args:?}"), o.stdout, o.stderr));
    }
    // Errors about the identity itself: wrong identity, readable by others.
    let wrong = c.dir.path().join("wrong.txt");
    let o = c
        .ouro(&s1)
        .args(["init", "--store"])
        .arg(c.dir.path().join("other"))
        .env("OURO_IDENTITY", &wrong)
        .output()
        .unwrap();
    outputs.push(("init other".into(), o.stdout, o.stderr));
    let made = std::fs::read_to_string(&wrong).unwrap();
    secrets.extend(
        made.lines()
            .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
            .map(str::to_string),
    );
    assert_eq!(
        secrets.len(),
        15,
        "the new identity's secret is searched for too"
    );
    let o = c
        .ouro(&s1)
        .args(["get", "k"])
        .env("OURO_IDENTITY", &wrong)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a foreign identity cannot read");
    outputs.push(("get with a foreign identity".into(), o.stdout, o.stderr));
    let open = c.dir.path().join("open.txt");
    std::fs::copy(&id, &open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = c
        .ouro(&s1)
        .args(["get", "k"])
        .env("OURO_IDENTITY", &open)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "an identity others can read is refused"
    );
    outputs.push(("get with a 0644 identity".into(), o.stdout, o.stderr));
    // Node keys readable by others are refused too, without printing them.
    let key = s1.join("cluster/node.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = c.ouro(&s1).args(["cluster", "invite"]).output().unwrap();
    assert!(!o.status.success(), "a node key others can read is refused");
    outputs.push(("invite with a 0644 node key".into(), o.stdout, o.stderr));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for n in &c.nodes {
        let log = std::fs::read(n.store.with_extension("log")).unwrap();
        assert!(!log.is_empty(), "the node logged at -vv");
        outputs.push((format!("log of {}", n.store.display()), Vec::new(), log));
    }
    for (what, out, err) in &outputs {
        let text = String::from_utf8_lossy(out).into_owned() + &String::from_utf8_lossy(err);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secret appears in {what}");
        }
    }
}
