//! The library's read side: the key space as directories, typed refs, `VersionReader` over
//! any range and after damage or removal, times, exact refs, reads while commits release the
//! map, and compaction.

use super::*;

#[test]
fn the_key_space_browses_as_directories() {
    use ouroboros_db::TreeEntry;
    let (_d, cas) = new_store(2, 1);
    for k in ["a", "a/b", "a/c/d", "a/c/e", "a-z", "b/x", "gone/y"] {
        cas.put(k, k.as_bytes(), &PutOptions::default()).unwrap();
    }
    cas.remove("gone/y").unwrap();
    let names = |dir: &str| -> Vec<String> {
        cas.children(dir, 10_000)
            .unwrap()
            .iter()
            .map(|e| match e {
                TreeEntry::Key { name, heads } => {
                    assert_eq!(heads.len(), 1);
                    name.to_string()
                }
                TreeEntry::Dir(n) => format!("{n}/"),
            })
            .collect()
    };
    // Key order; deleted keys and their directories are gone; a key and a directory of the
    // same name are both listed.
    assert_eq!(names(""), ["a", "a-z", "a/", "b/"]);
    assert_eq!(names("a"), ["b", "c/"]);
    assert_eq!(names("a/c"), ["d", "e"]);
    assert!(cas.is_dir("a/c").unwrap() && !cas.is_dir("gone").unwrap());
    // A rename shares every chunk: no content I/O, same bytes.
    let (h, head) = cas.newest_head_of("a/b").unwrap().unwrap();
    let size = head.size;
    assert_eq!(size, 3);
    let copy = cas.copy_version(&h, "moved").unwrap();
    assert_ne!(copy, h);
    assert_eq!(read(&cas, "moved"), b"a/b");
    assert_eq!(cas.versions_of("moved").unwrap().len(), 1);
    assert_eq!(
        cas.blob(&copy).unwrap().chunks,
        cas.blob(&h).unwrap().chunks
    );
    // Paging: more keys than one page of the listing.
    for i in 0..1500 {
        cas.put(&format!("many/k{i:05}"), &b"x"[..], &PutOptions::default())
            .unwrap();
    }
    assert_eq!(names("many").len(), 1500);
    assert_eq!(cas.children("", 2).unwrap().len(), 2);
}

/// Typed refs name keys and versions without parsing: a key with '@' in it, an exact
/// version (refused under another key), N back; text refs keep working beside them.
#[test]
fn typed_refs_name_keys_and_versions() {
    use ouroboros_db::model::Ref;
    let (_d, cas) = new_store(2, 1);
    let p = PutOptions::default();
    let icon = cas.put("icon@2x.png", &b"png"[..], &p).unwrap();
    let v1 = cas.put("notes", &b"one"[..], &p).unwrap();
    let v2 = cas.put("notes", &b"two"[..], &p).unwrap();
    let mut out = Vec::new();
    cas.get(&Ref::version("notes", v1.hash).unwrap(), &mut out)
        .unwrap();
    assert_eq!(out, b"one");
    assert_eq!(
        cas.resolve(&Ref::back("notes", 1).unwrap()).unwrap(),
        v1.hash
    );
    assert_eq!(cas.resolve(&Ref::key("notes").unwrap()).unwrap(), v2.hash);
    assert_eq!(cas.log(&Ref::key("notes").unwrap(), 10).unwrap().len(), 2);
    let e = cas
        .resolve(&Ref::version("icon@2x.png", v1.hash).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    // Removing one exact version leaves the other; removing the key by a typed ref takes
    // the key whose name has an '@'.
    let rm = cas
        .remove(&Ref::version("notes", v2.hash).unwrap())
        .unwrap();
    assert!(!rm.whole_key);
    assert_eq!(read(&cas, "notes"), b"one");
    let rm = cas.remove(&Ref::key("icon@2x.png").unwrap()).unwrap();
    assert!(rm.whole_key);
    assert_eq!(rm.versions, vec![icon.hash]);
    assert!(matches!(
        cas.get("icon@2x.png", Vec::new()),
        Err(Error::KeyDeleted { .. })
    ));
}

/// `open_version` reads any range of a version of many chunks, as the original bytes.
#[test]
fn version_reader_reads_any_range() {
    use std::io::{Read, Seek, SeekFrom};
    let (_d, cas) = new_store(4, 2);
    let data = random_bytes(9 << 20, 21);
    let put = cas.put("big", &data[..], &PutOptions::default()).unwrap();
    assert!(put.chunks > 3, "{} chunks", put.chunks);
    let mut r = cas.open_version("big").unwrap();
    assert_eq!(r.size(), data.len() as u64);
    let mut x = 7u64;
    for _ in 0..40 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = (x >> 20) % data.len() as u64;
        let len = ((x >> 8) % (3 << 20)) as usize;
        r.seek(SeekFrom::Start(at)).unwrap();
        let mut got = vec![0; len];
        let n = r.read(&mut got).unwrap();
        assert!(n > 0);
        let end = (at as usize + len).min(data.len());
        let mut rest = Vec::new();
        r.seek(SeekFrom::Start(at)).unwrap();
        (&mut r).take(len as u64).read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[at as usize..end], "at {at} len {len}");
        assert_eq!(&got[..n], &data[at as usize..at as usize + n]);
    }
    assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), data.len() as u64);
    assert_eq!(r.read(&mut [0; 10]).unwrap(), 0);
    assert!(r.seek(SeekFrom::Current(-(data.len() as i64) - 1)).is_err());
    // A removed version cannot be opened.
    cas.remove("big").unwrap();
    assert!(cas.open_version("big").is_err());
}

/// Times go in and come out as SystemTime, to the nanosecond, and name versions.
#[test]
fn times_as_system_time() {
    use ouroboros_db::model::Ref;
    use std::time::{Duration, UNIX_EPOCH};
    let (_d, cas) = new_store(2, 1);
    let t1 = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let t2 = t1 + Duration::from_secs(3600);
    let opts = PutOptions::default().created_at(t1).unwrap();
    cas.put("k", &b"one"[..], &opts).unwrap();
    let opts = PutOptions::default().created_at(t2).unwrap();
    cas.put("k", &b"two"[..], &opts).unwrap();
    let log = cas.log("k", 10).unwrap();
    assert_eq!(log[0].created_at(), t2);
    assert_eq!(log[1].created_at(), t1);
    let at = Ref::at_time("k", t1 + Duration::from_secs(60)).unwrap();
    assert_eq!(cas.resolve(&at).unwrap(), log[1].hash);
    let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400);
    assert!(PutOptions::default().created_at(far).is_err());
}

/// Seeks to every extreme: before the start is an error that leaves the position alone,
/// past the end (even u64::MAX) reads nothing, and an empty version reads nothing anywhere.
#[test]
fn version_reader_seeks_to_extremes() {
    use std::io::{Read, Seek, SeekFrom};
    let (_d, cas) = new_store(2, 1);
    cas.put("empty", &b""[..], &PutOptions::default()).unwrap();
    let mut r = cas.open_version("empty").unwrap();
    assert_eq!(r.size(), 0);
    assert_eq!(r.read(&mut [0; 8]).unwrap(), 0);
    assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), 0);
    assert!(r.seek(SeekFrom::End(-1)).is_err());
    assert!(r.seek(SeekFrom::End(i64::MIN)).is_err());
    assert!(r.seek(SeekFrom::Current(i64::MIN)).is_err());
    assert_eq!(r.stream_position().unwrap(), 0);
    assert_eq!(r.seek(SeekFrom::End(i64::MAX)).unwrap(), i64::MAX as u64);
    assert_eq!(r.read(&mut [0; 8]).unwrap(), 0);
    let mut all = Vec::new();
    assert_eq!(r.read_to_end(&mut all).unwrap(), 0);

    let data = random_bytes(3 << 20, 77);
    cas.put("big", &data[..], &PutOptions::default()).unwrap();
    let mut r = cas.open_version("big").unwrap();
    assert_eq!(r.seek(SeekFrom::Start(u64::MAX)).unwrap(), u64::MAX);
    assert_eq!(r.read(&mut [0; 8]).unwrap(), 0);
    // Past u64::MAX: an error, and the position stays where it was.
    assert!(r.seek(SeekFrom::Current(1)).is_err());
    assert!(r.seek(SeekFrom::Current(i64::MAX)).is_err());
    assert_eq!(r.stream_position().unwrap(), u64::MAX);
    assert_eq!(r.seek(SeekFrom::End(-1)).unwrap(), data.len() as u64 - 1);
    let mut last = [0u8; 4];
    assert_eq!(r.read(&mut last).unwrap(), 1);
    assert_eq!(last[0], data[data.len() - 1]);
    assert!(r.seek(SeekFrom::End(i64::MIN)).is_err());
    assert_eq!(r.stream_position().unwrap(), data.len() as u64);
    assert_eq!(r.read(&mut []).unwrap(), 0);
    r.seek(SeekFrom::Start(1)).unwrap();
    assert_eq!(r.read(&mut []).unwrap(), 0);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, &data[1..]);
}

/// Chunks damaged beyond repair, or freed by gc after the reader was opened, are an
/// io::Error from read (never a panic), and the chunks that are intact still read.
#[test]
fn version_reader_errors_on_damage_and_on_removal_after_opening() {
    use std::io::{Read, Seek, SeekFrom};
    let (_d, cas) = new_store(4, 2);
    let data = random_bytes(4 << 20, 78);
    cas.put("x", &data[..], &PutOptions::default()).unwrap();
    let blob = cas.open_version("x").unwrap().blob().clone();
    assert!(blob.chunks.len() > 1);
    let first = blob.chunks[0].id;
    for i in 0..3 {
        common::damage_slice(&cas, &first, i, None);
    }
    let mut r = cas.open_version("x").unwrap();
    let e = r.read(&mut [0; 16]).unwrap_err();
    assert!(!e.to_string().is_empty());
    let e = r.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(!e.to_string().is_empty());
    // The second chunk is intact.
    let at = u64::from(blob.chunks[0].size);
    r.seek(SeekFrom::Start(at)).unwrap();
    let mut got = vec![0; 1000];
    r.read_exact(&mut got).unwrap();
    assert_eq!(got, &data[at as usize..at as usize + 1000]);

    let other = random_bytes(2 << 20, 79);
    cas.put("y", &other[..], &PutOptions::default()).unwrap();
    let mut r = cas.open_version("y").unwrap();
    cas.remove("y").unwrap();
    cas.gc(&NoProgress).unwrap();
    let e = r.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(!e.to_string().is_empty());
}

/// An exact version is refused under another key by every call that takes a ref, and a
/// removed exact version cannot be opened.
#[test]
fn exact_refs_are_refused_under_another_key_everywhere() {
    use ouroboros_db::model::Ref;
    let (_d, cas) = new_store(2, 1);
    let p = PutOptions::default();
    let a = cas.put("a", &b"alpha"[..], &p).unwrap();
    let b1 = cas.put("b", &b"beta1"[..], &p).unwrap();
    cas.put("b", &b"beta2"[..], &p).unwrap();
    let wrong = Ref::version("b", a.hash).unwrap();
    assert!(cas.resolve(&wrong).is_err());
    assert!(cas.get(&wrong, Vec::new()).is_err());
    assert!(cas.open_version(&wrong).is_err());
    assert!(cas.log(&wrong, 10).is_err());
    assert!(cas.remove(&wrong).is_err());
    // Nothing was removed by the refused call.
    assert_eq!(read(&cas, "a"), b"alpha");
    // The text form of an exact ref names the same version.
    let right = Ref::version("b", b1.hash).unwrap();
    assert_eq!(cas.resolve(right.to_string().as_str()).unwrap(), b1.hash);
    // A hash that is no version at all.
    let none = Ref::version("a", ouroboros_db::Hash([0xab; 32])).unwrap();
    assert!(matches!(cas.resolve(&none), Err(Error::NotFound(_))));
    cas.remove(&right).unwrap();
    assert!(cas.open_version(&right).is_err());
    assert!(cas.get(&right, Vec::new()).is_err());
    assert_eq!(read(&cas, "b"), b"beta2");
}

/// Readers in other threads read correct bytes while commits (each of which releases the
/// map with MADV_DONTNEED) and periodic releases run, through the same handle.
#[test]
fn reads_stay_correct_while_commits_release_the_map() {
    use std::io::Read;
    let (_d, cas) = new_store(2, 1);
    let data: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(3 << 20, 90 + i)).collect();
    for (i, d) in data.iter().enumerate() {
        cas.put(&format!("k{i}"), &d[..], &PutOptions::default())
            .unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (cas, data, stop) = (&cas, &data, &stop);
            s.spawn(move || {
                let mut rounds = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds < 3 {
                    let i = (rounds + t) % data.len();
                    let mut r = cas.open_version(format!("k{i}").as_str()).unwrap();
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).unwrap();
                    assert!(got == data[i], "k{i} read wrong bytes in round {rounds}");
                    rounds += 1;
                }
            });
        }
        for n in 0..40u64 {
            cas.put(
                &format!("w{n}"),
                &random_bytes(200_000, 1000 + n)[..],
                &PutOptions::default(),
            )
            .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(cas.verify(false, &NoProgress).unwrap().is_healthy());
}

/// An embedder's own open handle counts as another user of the store: compaction refuses
/// it (`Error::Retry`), and runs once the handle is dropped; the versions read back after.
#[test]
fn compaction_needs_every_handle_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let id = Identity::generate();
    let cas = Cas::create(&path, &CreateOptions::default(), &id).unwrap();
    let keep = random_bytes(1 << 20, 7);
    cas.put("keep", &keep[..], &PutOptions::default()).unwrap();
    for i in 0..4 {
        let key = format!("gone/{i}");
        cas.put(&key, &random_bytes(2 << 20, i)[..], &PutOptions::default())
            .unwrap();
        cas.remove(&key).unwrap();
    }
    cas.gc(&NoProgress).unwrap();
    let free = cas.page_use().unwrap().reusable_bytes;
    assert!(free > 4 << 20, "{free}");
    assert!(matches!(Cas::compact(&path), Err(Error::Retry(_))));
    drop(cas);
    let done = Cas::compact(&path).unwrap();
    assert!(
        done.after + free <= done.before + (64 << 10),
        "{done:?}, {free} were free"
    );
    let mut cas = Cas::open(&path).unwrap();
    cas.unlock(&id).unwrap();
    assert!(read(&cas, "keep") == keep);
    assert!(cas.page_use().unwrap().reusable_bytes < 64 << 10);
}
