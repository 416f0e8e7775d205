//! The findings of the packs review, each a test that failed on the code as first reviewed
//! (2026-12-05): reports of lost packs, forged member and pack records, members sealed again
//! after condemnation, and convergence of a third node.

use super::*;

/// FINDING 1 (wrong report): verify on a locked store checks a member only for its pack's
/// presence, so a pack that cannot be rebuilt is reported under the pack id alone: no version
/// using its members is reported damaged (a chunk sealed alone puts its versions in the
/// report).
#[test]
fn locked_verify_reports_the_versions_of_a_lost_pack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let fs = files(60, 0);
    {
        let cas = Cas::create(&path, &opts(), &Identity::generate()).unwrap();
        put_all(&cas, &fs);
        let p = packs(&cas)[0];
        for i in 0..3u8 {
            damage(&cas, &p, i, None);
        }
    }
    let locked = Cas::open(&path).unwrap();
    let report = locked.verify(false, &NoProgress).unwrap();
    assert!(!report.is_healthy());
    let blobs = report
        .damage
        .iter()
        .filter(|d| matches!(d, Damage::Blob { .. }))
        .count();
    assert!(
        blobs > 0,
        "a lost pack makes {} versions unreadable, locked verify names none: {:?}",
        fs.len(),
        report.damage
    );
}

/// A pack damaged beyond its parity is lost, but members whose data slices are intact still
/// read: unlocked verify (which opens every member) names as damaged exactly the versions
/// that cannot be read, not every version of the pack.
#[test]
fn unlocked_verify_names_exactly_the_unreadable_versions_of_a_lost_pack() {
    let (_d, cas) = new_store();
    let fs = files(200, 0);
    put_all(&cas, &fs);
    let p = packs(&cas)[0];
    // 4+2: data slice 0 and both parity slices gone, data slices 1-3 intact.
    for i in [0u8, 4, 5] {
        damage(&cas, &p, i, None);
    }
    let report = cas.verify(false, &NoProgress).unwrap();
    assert!(report
        .damage
        .iter()
        .any(|d| matches!(d, Damage::Chunk { chunk, .. } if *chunk == p)));
    let named: std::collections::HashSet<String> = report
        .damage
        .iter()
        .filter_map(|d| match d {
            Damage::Blob { key, .. } => key.clone(),
            _ => None,
        })
        .collect();
    let unreadable: std::collections::HashSet<String> = fs
        .iter()
        .filter(|(k, _)| get(&cas, k).is_err())
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !unreadable.is_empty() && unreadable.len() < fs.len(),
        "{}",
        unreadable.len()
    );
    assert_eq!(named, unreadable);
    for (k, d) in &fs {
        if !unreadable.contains(k) {
            assert!(get(&cas, k).unwrap() == *d, "{k} reads back whole");
        }
    }
}

/// FINDING 2 (data loss from one forged/damaged peer record): adopt_record applies the
/// one-sealing rule across kinds. A Member record sent under a pack's id that sorts first
/// replaces the pack's record and drops its slices: every member of the pack (up to 1,024
/// files) is lost, where SECURITY.md bounds a forged record to one chunk.
#[test]
fn a_member_record_under_a_pack_id_does_not_replace_the_pack() {
    let (_d, cas) = new_store();
    let fs = files(50, 0);
    put_all(&cas, &fs);
    let p = packs(&cas)[0];
    let prec = cas.replica().chunk_record(&p).unwrap().unwrap();
    let mut forged = None;
    for n in 0u32..10_000 {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&n.to_le_bytes());
        let f = ChunkRecord {
            size: 1,
            sealed_len: 17,
            key_epoch: 0,
            nonce,
            k: 0,
            m: 0,
            slices: Vec::new(),
            kind: ChunkKind::Member {
                pack: Hash([7; 32]),
                offset: 0,
                frame_size: 1,
                at: 0,
            },
        };
        if wins_over(&f, &prec).unwrap() {
            forged = Some(f);
            break;
        }
    }
    let adopted = cas
        .replica()
        .adopt_record(&p, &forged.unwrap(), false)
        .unwrap();
    let lost = fs.iter().filter(|(k, _)| get(&cas, k).is_err()).count();
    assert_eq!(
        lost,
        0,
        "adopt_record said {adopted:?}; {lost} of {} files lost",
        fs.len()
    );
}

/// FINDING 2b (same): a Pack record under a pack id that sorts first replaces the stored
/// one (honest copies of a pack record are identical: the id derives from the payload, k and
/// m from the store's configuration), dropping the slices of every member.
#[test]
fn a_stored_pack_record_is_never_replaced() {
    let (_d, cas) = new_store();
    let fs = files(50, 0);
    put_all(&cas, &fs);
    let p = packs(&cas)[0];
    let prec = cas.replica().chunk_record(&p).unwrap().unwrap();
    let mut forged = None;
    for n in 0u8..=255 {
        let mut f = prec.clone();
        f.slices[0] = Hash([n; 32]);
        if wins_over(&f, &prec).unwrap() {
            forged = Some(f);
            break;
        }
    }
    let adopted = cas
        .replica()
        .adopt_record(&p, &forged.unwrap(), false)
        .unwrap();
    assert!(matches!(adopted, Adopted::Kept(_)), "{adopted:?}");
}

/// FINDING 3 (cluster: dedup churn): sealing.rs promises "a chunk sealed again after its
/// condemnation must not be pulled back to it", but a member is condemned through its pack,
/// and wins_here only looks at marks on the member's own sealing. The old member record
/// (naming the condemned pack), offered by a peer, wins by hash half of the time, and the
/// chunk is back in the condemned pack: not deduplicable, sealed again by every put. Fails
/// now (once the old record sorts first, which the loop waits for).
#[test]
fn a_member_sealed_again_after_its_pack_was_condemned_is_not_pulled_back() {
    let data = random_bytes(5000, 42);
    for _attempt in 0..24 {
        let (_d, a) = new_store();
        mark_cluster(&a);
        a.put("f", &data[..], &PutOptions::default()).unwrap();
        let (x, old, p, prec) = only_chunk(&a, "f");
        a.replica()
            .import_deletions(&[WalEntry {
                time: 1,
                deletion: Deletion::Condemned {
                    id: p,
                    sealing: sealing_id(&prec).unwrap(),
                },
            }])
            .unwrap();
        let again = a.put("g", &data[..], &PutOptions::default()).unwrap();
        assert_eq!(again.new_chunks, 1, "the pack is condemned: sealed again");
        let new = a.replica().chunk_record(&x).unwrap().unwrap();
        assert_ne!(new.pack().unwrap().0, p);
        if !wins_over(&old, &new).unwrap() {
            continue;
        }
        // A peer that has not seen the new sealing yet ships the old record, and its
        // pack marked condemned (versions_by_hash).
        a.replica().adopt_record(&p, &prec, true).unwrap();
        let adopted = a.replica().adopt_record(&x, &old, false).unwrap();
        let now = a.replica().chunk_record(&x).unwrap().unwrap();
        assert_eq!(
            now.pack().unwrap().0,
            new.pack().unwrap().0,
            "adopt said {adopted:?}: the member went back into its condemned pack"
        );
        return;
    }
    panic!("the old record never sorted first");
}

/// FINDING 4 (cluster: a live version unreadable, its pack freed everywhere else): member
/// records travel only with versions (a member has no slices, so hand-offs never meet a
/// conflicting sealing of it), and a node that already has a version never takes records
/// from it again. Node C learned X's losing member record from the loser's version; the
/// winner's version was removed before C pulled it, so nothing ever brings C the winning
/// record. The other nodes count no member in the losing pack, condemn it and free their
/// slices of it, while C's live version still reads X through it.
#[test]
fn a_third_node_converges_on_the_winning_member_record() {
    let data = random_bytes(5000, 7);
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate();
    let n0 = Cas::create(&dir.path().join("n0"), &opts(), &me).unwrap();
    let seed = n0.replica().replica_seed().unwrap();
    let mut n1 = Cas::create_replica(&dir.path().join("n1"), &seed).unwrap();
    let mut c = Cas::create_replica(&dir.path().join("c"), &seed).unwrap();
    n1.unlock(&me).unwrap();
    c.unlock(&me).unwrap();
    for s in [&n0, &n1, &c] {
        mark_cluster(s);
    }
    // The same small file put on two nodes at once: two sealings of X in two packs.
    n0.put("f0", &data[..], &PutOptions::default()).unwrap();
    n1.put("f1", &data[..], &PutOptions::default()).unwrap();
    let (x, r0, p0, pr0) = only_chunk(&n0, "f0");
    let (x1, r1, p1, pr1) = only_chunk(&n1, "f1");
    assert_eq!(x, x1);
    // w: the node whose sealing wins; l: the other.
    let ((w, wkey, pw), (l, lkey, pl, prl)) = if wins_over(&r0, &r1).unwrap() {
        ((n0, "f0", p0), (n1, "f1", p1, pr1))
    } else {
        ((n1, "f1", p1), (n0, "f0", p0, pr0))
    };
    let _ = pw;
    // Placement: w also holds the slices of l's pack.
    let all: Vec<u8> = (0..prl.slices.len() as u8).collect();
    let sl = l.replica().local_slices(&pl, &all).unwrap();
    assert!(w
        .replica()
        .accept_slices(&pl, &prl, false, &sl)
        .unwrap()
        .is_none());
    // c pulls l's version first; then w and l exchange theirs and settle on w's record.
    sync(&l, &c);
    sync(&w, &l);
    sync(&l, &w);
    assert_eq!(
        l.replica().chunk_record(&x).unwrap(),
        w.replica().chunk_record(&x).unwrap(),
        "w and l agree"
    );
    // c can read l's file now (l's pack's slices are on w and l); in another thread, so this
    // thread's frame cache holds nothing of it.
    let w = Arc::new(w);
    let l = Arc::new(l);
    c.set_remote(Arc::new(Peers(vec![Arc::clone(&w), Arc::clone(&l)])));
    let c = Arc::new(c);
    let read_l = |c: &Arc<Cas>| {
        let c = Arc::clone(c);
        let key = lkey.to_string();
        std::thread::spawn(move || get(&c, &key).ok())
            .join()
            .unwrap()
    };
    assert!(read_l(&c) == Some(data.clone()), "readable on c before");
    // w's version is removed before c pulls it; c pulls everything else.
    w.remove(wkey).unwrap();
    for (from, to) in [(&w, &l), (&l, &w), (&w, &c), (&l, &c), (&c, &w), (&c, &l)] {
        sync(from, to);
    }
    let on_c = c.replica().chunk_record(&x).unwrap().unwrap();
    let on_w = w.replica().chunk_record(&x).unwrap().unwrap();
    // gc on every node, the condemnations exchanged, and every node frees what it may.
    for s in [&w, &l, &c] {
        s.gc(&NoProgress).unwrap();
    }
    for _ in 0..2 {
        for (from, to) in [(&w, &l), (&l, &w), (&w, &c), (&c, &w), (&l, &c), (&c, &l)] {
            sync(from, to);
        }
    }
    for s in [&w, &l, &c] {
        s.replica().free_condemned(u64::MAX, DAY).unwrap();
    }
    let after = read_l(&c);
    assert!(
        after == Some(data.clone()),
        "{lkey} (live) is unreadable on c: c's record of X names pack {}, w's names {}; \
         slices of {} left: w {} l {}",
        on_c.pack().unwrap().0.short(),
        on_w.pack().unwrap().0.short(),
        pl.short(),
        w.replica().local_slices(&pl, &all).unwrap().len(),
        l.replica().local_slices(&pl, &all).unwrap().len(),
    );
}
