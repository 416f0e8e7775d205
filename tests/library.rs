//! Library-level integration tests on real LMDB stores in temp dirs.

mod common;

use common::{random_bytes, read};
use ouroboros_db::{Cas, CreateOptions, Error, Identity, MergeSource, NoProgress, PutOptions};

fn new_store(k: u8, m: u8) -> (tempfile::TempDir, Cas) {
    let dir = tempfile::tempdir().unwrap();
    let opts = CreateOptions {
        k,
        m,
        ..CreateOptions::default()
    };
    let cas = Cas::create(&dir.path().join("s"), &opts, &Identity::generate()).unwrap();
    (dir, cas)
}

#[test]
fn dedup_across_keys_and_versions() {
    let (_d, cas) = new_store(4, 2);
    let data = random_bytes(6 << 20, 1);
    let a = cas.put("a", &data[..], &PutOptions::default()).unwrap();
    assert!(a.new_chunks > 1);
    let b = cas.put("dir/b", &data[..], &PutOptions::default()).unwrap();
    assert_eq!(
        b.new_chunks, 0,
        "identical content under another key stores nothing new"
    );
    assert_eq!(b.stored_bytes, 0);
    let mut edited = data.clone();
    edited[3 << 20] ^= 0xff;
    let c = cas.put("a", &edited[..], &PutOptions::default()).unwrap();
    assert!(
        c.new_chunks <= 2,
        "a one-byte edit rewrites at most two chunks, wrote {}",
        c.new_chunks
    );
    let s = cas.stats().unwrap();
    // Cut points depend on the store's random seed, so bound what holds for every seed:
    // three versions of 6 MiB, stored as one copy plus the chunks the edit touched.
    assert_eq!(s.logical_bytes, 3 * data.len() as u64, "{s:?}");
    assert!(s.unique_bytes < 2 * data.len() as u64, "{s:?}");
    assert_eq!(read(&cas, "a"), edited);
    assert_eq!(read(&cas, "a@~1"), data);
    assert_eq!(read(&cas, "dir/b"), data);
}

#[test]
fn small_objects_cost_little() {
    let (_d, cas) = new_store(4, 2);
    let before = cas.stats().unwrap();
    cas.put("tiny", &[7u8; 100][..], &PutOptions::default())
        .unwrap();
    let s = cas.stats().unwrap();
    let overhead = s.stored_with_parity_bytes - before.stored_with_parity_bytes;
    assert!(
        overhead < 600,
        "a 100-byte object used {overhead} bytes of slices"
    );
    assert_eq!(
        s.slices, 3,
        "small chunks use k=1: one data slice and m parity"
    );
    assert_eq!(read(&cas, "tiny"), vec![7u8; 100]);
}

#[test]
fn branches_heads_and_merge() {
    let (_d, cas) = new_store(2, 1);
    let v1 = cas
        .put("k", &b"one"[..], &PutOptions::default())
        .unwrap()
        .hash;
    let v2 = cas
        .put("k", &b"two"[..], &PutOptions::default())
        .unwrap()
        .hash;
    let opts = PutOptions {
        parents: Some(vec![v1]),
        ..PutOptions::default()
    };
    let v3 = cas.put("k", &b"three"[..], &opts).unwrap().hash;
    assert_eq!(cas.heads("k").unwrap().len(), 2);
    assert!(matches!(
        cas.get("k", &mut Vec::new()),
        Err(Error::MultipleHeads { .. })
    ));
    assert!(matches!(
        cas.put("k", &b"x"[..], &PutOptions::default()),
        Err(Error::MultipleHeads { .. })
    ));
    let m = cas.merge("k", MergeSource::Pick(v3)).unwrap();
    let heads = cas.heads("k").unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].hash, m);
    assert_eq!(heads[0].parents.len(), 2);
    assert_eq!(read(&cas, "k"), b"three");
    let log: Vec<_> = cas
        .log("k", 10)
        .unwrap()
        .into_iter()
        .map(|v| v.hash)
        .collect();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0], m);
    assert!(log.contains(&v2) && log.contains(&v1));
    assert_eq!(*log.last().unwrap(), v1, "oldest last");
    let prefix = &v2.to_hex()[..10];
    assert_eq!(read(&cas, &format!("k@{prefix}")), b"two");
    let n = cas.merge("k", MergeSource::Content(Box::new(&b"z"[..])));
    assert!(
        matches!(n, Err(Error::InvalidArgument(_))),
        "one head: nothing to merge"
    );
}

#[test]
fn refs_by_time_and_errors() {
    let (_d, cas) = new_store(2, 1);
    let t0 = 1_700_000_000_000_000_000i64;
    for (i, text) in ["a", "b", "c"].iter().enumerate() {
        let o = PutOptions {
            created: Some(t0 + i as i64 * 1_000_000_000),
            ..PutOptions::default()
        };
        cas.put("f", text.as_bytes(), &o).unwrap();
    }
    assert_eq!(read(&cas, "f@2023-11-14T22:13:21Z"), b"b");
    assert_eq!(read(&cas, "f@2030-01-01"), b"c");
    assert!(matches!(
        cas.get("f@2001-01-01", &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        cas.get("f@~3", &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        cas.get("g", &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        cas.get("f@ffffffff", &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        cas.get("/f", &mut Vec::new()),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        cas.get(".ouro/x", &mut Vec::new()),
        Err(Error::InvalidKey { .. })
    ));
}

#[test]
fn gc_never_frees_a_shared_chunk() {
    let (_d, cas) = new_store(4, 2);
    let shared = random_bytes(3 << 20, 9);
    let only = random_bytes(2 << 20, 10);
    cas.put("keep", &shared[..], &PutOptions::default())
        .unwrap();
    let mut both = shared.clone();
    both.extend_from_slice(&only);
    cas.put("drop", &both[..], &PutOptions::default()).unwrap();
    cas.remove("drop").unwrap();
    assert!(matches!(
        cas.get("drop", &mut Vec::new()),
        Err(Error::KeyDeleted { .. })
    ));
    let r = cas.gc(&NoProgress).unwrap();
    assert_eq!(r.versions_released, 1);
    assert!(
        r.chunks_freed >= 1 && r.bytes_freed > (2 << 20) / 2,
        "{r:?}"
    );
    assert_eq!(read(&cas, "keep"), shared);
    assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
    let again = cas.gc(&NoProgress).unwrap();
    assert_eq!(again.chunks_freed, 0);
    cas.put("drop", &b"reborn"[..], &PutOptions::default())
        .unwrap();
    assert_eq!(read(&cas, "drop"), b"reborn");
}

#[test]
fn remove_one_version_restores_parent_as_head() {
    let (_d, cas) = new_store(2, 1);
    cas.put("k", &b"v1"[..], &PutOptions::default()).unwrap();
    let v2 = cas
        .put("k", &b"v2"[..], &PutOptions::default())
        .unwrap()
        .hash;
    cas.remove(&format!("k@{}", &v2.to_hex()[..8])).unwrap();
    assert_eq!(read(&cas, "k"), b"v1");
    cas.gc(&NoProgress).unwrap();
    let log = cas.log(&format!("k@{}", &v2.to_hex()[..8]), 5).unwrap();
    assert!(log[0].removed, "history keeps the removed version, hollow");
    assert!(matches!(
        cas.get(&format!("k@{}", &v2.to_hex()[..8]), &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn damaged_slices_are_detected_and_repaired() {
    let (_d, cas) = new_store(4, 2);
    let data = random_bytes(3 << 20, 3);
    cas.put("x", &data[..], &PutOptions::default()).unwrap();
    // Damage two slices of every chunk: one flipped, one deleted.
    let chunks = {
        let txn = cas.replica().lmdb().read().unwrap();
        cas.replica()
            .lmdb()
            .chunks
            .page(&txn, None, 1000)
            .unwrap()
            .into_iter()
            .map(|(id, r)| (id, r.unwrap()))
            // A tail under 64 KiB is a pack member: its pack holds the slices.
            .filter(|(_, r)| !r.slices.is_empty())
            .collect::<Vec<_>>()
    };
    {
        let mut txn = cas.replica().lmdb().write().unwrap();
        for (id, _) in &chunks {
            cas.replica()
                .lmdb()
                .slices
                .damage_for_tests(&mut txn, id, 0, Some(b"rot"))
                .unwrap();
            cas.replica()
                .lmdb()
                .slices
                .damage_for_tests(&mut txn, id, 3, None)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(read(&cas, "x"), data, "reads survive m damaged slices");
    let r = cas.verify(false, &NoProgress).unwrap();
    assert!(!r.is_healthy());
    assert_eq!(r.damage.len(), chunks.len());
    let r = cas.verify(true, &NoProgress).unwrap();
    assert!(r.is_healthy(), "{r:?}");
    let r = cas.verify(false, &NoProgress).unwrap();
    assert!(r.damage.is_empty(), "repair restored every slice: {r:?}");
    // Beyond m: a clear error naming the key and version.
    {
        let mut txn = cas.replica().lmdb().write().unwrap();
        for i in 0..3 {
            cas.replica()
                .lmdb()
                .slices
                .damage_for_tests(&mut txn, &chunks[0].0, i, None)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let e = cas.get("x", &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("x@") && e.contains("slices are intact"), "{e}");
    let r = cas.verify(true, &NoProgress).unwrap();
    assert!(
        r.unrecoverable().count() >= 2,
        "chunk and version reported: {r:?}"
    );
}

#[test]
fn locked_store_and_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let friend = Identity::generate();
    let p = dir.path().join("s");
    let cas = Cas::create(&p, &CreateOptions::default(), &me).unwrap();
    cas.put("a", &b"secret"[..], &PutOptions::default())
        .unwrap();
    cas.add_recipient(&friend.recipient()).unwrap();
    drop(cas);
    let mut locked = Cas::open(&p).unwrap();
    assert!(matches!(
        locked.get("a", &mut Vec::new()),
        Err(Error::Locked)
    ));
    assert_eq!(
        locked.log("a", 5).unwrap().len(),
        1,
        "metadata needs no identity"
    );
    assert!(matches!(
        locked.unlock(&Identity::generate()),
        Err(Error::Identity(_))
    ));
    locked.unlock(&friend).unwrap();
    assert_eq!(read(&locked, "a"), b"secret");
    locked.remove_recipient(&friend.recipient()).unwrap();
    locked
        .put("b", &b"new"[..], &PutOptions::default())
        .unwrap();
    drop(locked);
    let mut again = Cas::open(&p).unwrap();
    assert!(
        again.unlock(&friend).is_err(),
        "a removed recipient cannot unlock the new epoch"
    );
    again.unlock(&me).unwrap();
    assert_eq!(read(&again, "b"), b"new");
    assert_eq!(read(&again, "a"), b"secret");
}

#[test]
fn stored_bytes_never_contain_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let cas = Cas::create(&p, &CreateOptions::default(), &Identity::generate()).unwrap();
    let marker = b"PLAINTEXT-MARKER-0123456789-".repeat(2000);
    cas.put("m", &marker[..], &PutOptions::default()).unwrap();
    drop(cas);
    let raw = std::fs::read(p.join("data.mdb")).unwrap();
    assert!(!raw.windows(16).any(|w| w == b"PLAINTEXT-MARKER"));
}

#[test]
fn removing_consecutive_versions_exposes_the_nearest_live_ancestor() {
    let (_d, cas) = new_store(2, 1);
    let v1 = cas
        .put("k", &b"v1"[..], &PutOptions::default())
        .unwrap()
        .hash;
    let v2 = cas
        .put("k", &b"v2"[..], &PutOptions::default())
        .unwrap()
        .hash;
    let v3 = cas
        .put("k", &b"v3"[..], &PutOptions::default())
        .unwrap()
        .hash;
    cas.remove(&format!("k@{}", &v2.to_hex()[..10])).unwrap();
    assert_eq!(
        cas.heads("k").unwrap()[0].hash,
        v3,
        "v3 still descends live"
    );
    cas.remove(&format!("k@{}", &v3.to_hex()[..10])).unwrap();
    let heads = cas.heads("k").unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].hash, v1, "v1 is the nearest live ancestor");
    assert_eq!(read(&cas, "k"), b"v1");
    // The whole key can still be removed, and gc drops every record of it.
    cas.gc(&NoProgress).unwrap();
    cas.remove("k").unwrap();
    assert!(matches!(cas.remove("k"), Err(Error::KeyDeleted { .. })));
    cas.gc(&NoProgress).unwrap();
    assert_eq!(
        cas.stats().unwrap().versions,
        0,
        "no hollow records left behind"
    );
    assert_eq!(cas.stats().unwrap().chunks, 0);
}

#[test]
fn the_same_version_put_again_after_removal_is_restored() {
    let (_d, cas) = new_store(2, 1);
    let opts = PutOptions {
        created: Some(1_700_000_000_000_000_000),
        ..PutOptions::default()
    };
    let v = cas.put("k", &b"same"[..], &opts).unwrap().hash;
    cas.remove("k").unwrap();
    let again = cas.put("k", &b"same"[..], &opts).unwrap().hash;
    assert_eq!(again, v);
    cas.gc(&NoProgress).unwrap();
    assert_eq!(read(&cas, "k"), b"same");
    assert!(cas.verify(false, &NoProgress).unwrap().damage.is_empty());
}

#[test]
fn opening_a_store_twice_in_one_process_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let _cas = Cas::create(&p, &CreateOptions::default(), &Identity::generate()).unwrap();
    let e = Cas::open(&p).err().unwrap().to_string();
    assert!(e.contains("already open in this process"), "{e}");
}

#[test]
fn one_batch_with_the_same_key_twice_makes_a_chain_not_a_fork() {
    use ouroboros_db::PutItem;
    let (_d, cas) = new_store(2, 1);
    let item = |data: &'static [u8]| PutItem {
        key: "k".into(),
        reader: Box::new(data),
        size_hint: Some(data.len() as u64),
        parents: None,
        created: None,
        skip_if_unchanged: false,
        meta: Default::default(),
    };
    let out = cas
        .put_many(
            vec![item(b"one"), item(b"two"), item(b"three")].into_iter(),
            &NoProgress,
        )
        .unwrap();
    let hash = |i: usize| out[i].as_ref().unwrap().hash;
    let heads = cas.heads("k").unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].hash, hash(2));
    assert_eq!(heads[0].parents, vec![hash(1)]);
    let log = cas.log("k", 10).unwrap();
    let second = log.iter().find(|v| v.hash == hash(1)).unwrap();
    assert_eq!(second.parents, vec![hash(0)]);
}

#[test]
fn re_putting_an_identical_version_never_adds_a_head() {
    let (_d, cas) = new_store(2, 1);
    let v1 = cas
        .put("k", &b"v1"[..], &PutOptions::default())
        .unwrap()
        .hash;
    let opts = PutOptions {
        parents: Some(vec![v1]),
        created: Some(1_800_000_000_000_000_000),
        ..PutOptions::default()
    };
    let v2 = cas.put("k", &b"v2"[..], &opts).unwrap().hash;
    // Idempotent import: the same version again changes nothing.
    assert_eq!(cas.put("k", &b"v2"[..], &opts).unwrap().hash, v2);
    assert_eq!(cas.heads("k").unwrap().len(), 1);
    let o3 = PutOptions {
        parents: Some(vec![v2]),
        ..PutOptions::default()
    };
    let v3 = cas.put("k", &b"v3"[..], &o3).unwrap().hash;
    // Restoring a removed middle version does not fork against its own descendant.
    cas.remove(&format!("k@{}", &v2.to_hex()[..10])).unwrap();
    cas.put("k", &b"v2"[..], &opts).unwrap();
    let heads: Vec<_> = cas
        .heads("k")
        .unwrap()
        .into_iter()
        .map(|h| h.hash)
        .collect();
    assert_eq!(heads, vec![v3]);
}

/// A hybrid post-quantum recipient (ML-KEM-768 + P-256, `age1tagpq1...`, from age's own test
/// vector) mixes with X25519 recipients: each recipient gets its own wrapped copy of the keys.
#[test]
fn post_quantum_recipients_mix_with_x25519() {
    const TAGPQ: &str = "age1tagpq1m3e4wvp6hzcrn9exhy0ae3xfx2sjymp594k3tg7j4dpmj922we65vtnmrt2pyallax8669zqkr2pmfchptr4n38kug2xmcmp3adk2lnjqu00x5kxz5pvhmrltvfh9wuq973pcx35cnq8syn9qd3tzpehgztl4xpzr3tpd67g8af9trnjpc05gh7wu536aq4qt2y8zhsm4tvrfpsfl36qs5fpzysnk3sp9w77qzeg49357xex40v4s2lvt620swyys7u8yxdcnu4rkkwxdmt55gsuc3h5c5swahnegjgqwc60hn085ec3sjztwm45l44y3j2at9t6v9zra4ek3kek6waecqm98yaxl37w0d2zra626nz63jdm5sg59w7lyptw83zm6fntd8d0x03a9z6h9prfgpygzar6zrxjcrt4cdctk2mhf95s4a6v4zklfd49xhpsaeujm57thx2x3e3hwzc86ftfhmq5mkxxz3d6r8ws24xj4qfn73eyezg2wy094e3why592pghz27ruq3vkyegrv80eftnw9wqzwgvnwyseaus0yt84fylzrpzp6x2fguxuqjmgudr8xd33qm30evdpxd3jvjg8qh4q60kyq80jgff369k7nrepdc38grd2dava520excqp0ey0x39khx8ry03yffcatgv84fsx5j49djpapedsy693zute5xv5g2ewzrlj5se7akvkc4g4vmzhputpq8eyj9wz5dz6qtn7g3cfpd95nahw4ytspan0feyye04dcylv24ege7zkaj004gjwcxqxfqu2quawa83sx452jqjn8t48czp0xspwgnmvjyhttzzy6nhq8xzkdwnvsfefkwva6asrqc93zjn4rly5gnlv93xy3uzmr39szvjnf63426qzyeyvguc4vdcquwgsxgq236afcpqz866ny4tn7ckc0umefj242rt5vtvwqzzrvfev2mpvqcufp9pqvefyv4ftyuhgausfzuaadsczeykmft5wv3frzgrcp9ztr93h478ke4t86spp2uhyjkj73mp9g92ddk2fpv7v3njzsqgwhq3789sqrgkskehn0zjscckhwftyq4vet7vrlx2hs5kd9cwnq6t0djffhh3zquh4j3p0yaj9z2rc9wykg0usqw7983rrgur9jg8rnnqypwcz2lyclnnc705fc5g3an93ps60q6mxqp85u0ewtxdjlqcks84yduft0a0g6e7naew3v9u2d08knarvajn8q3gq9pgxde3s7nx94lus48wwvw2xjm7k82tvylec2393jdsuvch2xpe77w8hpv9nvsxfsrs270njpmfvpmgyk2cffl9tjp3qqcc4dfkf5rme2dg0x7ew8g39www5smm705q5da4eqvnqwrkavtq6xje9ss38hnkglz4eddz8f5qruvqmq2ff9l22gwkv8h432rdkysy0grkul8e2fedvkyyapfxt760udcgu92m54wl9yavmj4ga3ph9r5n99cjrq6wj5v33x33fe5vkjvfwnnt40wuv2hyexc9f4ylyqv9ldqq9epd4yuv8vrsfx2qy2kqz08kqhnzspy6s0x8fa5c2xkg5y2q0rvz4vnk7rp0acg6eksc3t7cxnn8y7glkjsqja3p56uz6vvhcw55d3ysad0hvsqxpjnc7svenf2gc5xn5kyr0et2vvyruxlnpqcdpqh9pzplumy5yzjxftyzh9ujfw0jq7ee60zx2x23p0jzyh9dvmly8p9h9ysptlqu7kwnejd65dnr75a0np2fvke8xen38r57w6z3wz3mycjmmn267wwxndfh9jdps7uxtct2wwfgamkpa5ap8s96lhfjztpwcm6fguhphu38yunu2v4vz3syzrvgwtqpemkewzp766nyu6texxvjlaemnhyyqutkcy6a42vqfsz49rw5wr4gt70r4vdaasehqjg46fnyts4sthrxadfllha3avu49wsj2c4jx";
    let r = ouroboros_db::Recipient::parse(TAGPQ).unwrap();
    assert_eq!(r.to_string(), TAGPQ);
    let (_d, cas) = new_store(2, 1);
    cas.add_recipient(&r).unwrap();
    let listed = cas.recipients().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|l| l == TAGPQ));
    cas.put(
        "k",
        &b"still readable by the X25519 identity"[..],
        &PutOptions::default(),
    )
    .unwrap();
    assert_eq!(read(&cas, "k"), b"still readable by the X25519 identity");
}

// Parts kept in files of their own, declared last so that they see the macros above.
#[path = "library/reading.rs"]
mod reading;
