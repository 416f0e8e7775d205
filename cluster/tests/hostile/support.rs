//! Support for `hostile.rs`: a node under attack in a temp dir, member keys, raw streams,
//! and a snapshot of what an attacker could change in its store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ouro_cluster::authenticator::NodeKey;
use ouro_cluster::membership::{self, MemberRecord, OnlyKey};
use ouro_cluster::message::{self, NodeNews, Request, Response};
use ouro_cluster::{tunnel, Node, NodeOptions};
use ouroboros_db::{Cas, CreateOptions, Hash, Identity, PutOptions};
use rand::{RngCore, SeedableRng};

/// One test at a time: they measure the process's resident memory.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How long any single exchange may take before the test counts it as a hang.
pub const WAIT: Duration = Duration::from_secs(10);

/// A node under attack, an honest member connected to it, and the attacker's member key.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub node: Arc<Node>,
    pub honest: Peer,
    pub attacker: NodeKey,
}

/// A client connection as some key; the endpoint lives as long as the connection.
pub struct Peer {
    _ep: quinn::Endpoint,
    pub conn: quinn::Connection,
}

/// A running node whose store holds three versions, with two extra members admitted.
pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("node");
    let cas = Cas::create(&store, &CreateOptions::default(), &Identity::generate()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..3 {
        let mut data = vec![0u8; 200 << 10];
        rng.fill_bytes(&mut data);
        cas.put(&format!("k/{i}"), &data[..], &PutOptions::default())
            .unwrap();
    }
    ouro_cluster::admin::init(Arc::new(cas)).unwrap();
    let node = Node::start(&NodeOptions::new(store, "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    tokio::spawn(Arc::clone(&node).run(std::future::pending()));
    let honest_key = admit(&node);
    let attacker = admit(&node);
    let honest = connect(&node, &honest_key).await.unwrap();
    tokio::spawn(answer_heartbeats(honest.conn.clone()));
    Fixture {
        _dir: dir,
        node,
        honest,
        attacker,
    }
}

/// A fresh key, admitted with the admin's signature as `cluster invite` + join would.
pub fn admit(node: &Node) -> NodeKey {
    let key = NodeKey::generate().unwrap();
    let admin = membership::admin_key(node.store()).unwrap();
    let info = node.members().require_info().unwrap();
    let t = membership::now_nanos();
    let msg = membership::member_message(&info.cluster_id, &key.public(), t);
    let rec = MemberRecord {
        node: key.public(),
        admitted: t,
        sig: admin.sign(&msg).to_vec(),
        revoked: None,
    };
    node.members().merge_member(&info, &rec).unwrap();
    key
}

/// Connects to `node` presenting `key` (with the cluster's own TLS and QUIC settings).
pub async fn connect(node: &Node, key: &NodeKey) -> Result<Peer, String> {
    let ep = tunnel::endpoint(
        "127.0.0.1:0".parse().unwrap(),
        key,
        Arc::new(OnlyKey(node.id())),
    )
    .map_err(|e| e.to_string())?;
    let conn = tunnel::connect(&ep, node.addr().parse().unwrap())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Peer { _ep: ep, conn })
}

/// The honest member answers the node's heartbeats, as a node would.
pub async fn answer_heartbeats(conn: quinn::Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let resp = match message::read_frame::<Request>(&mut recv).await {
            Ok(Request::Hello(_)) => Response::Hello(NodeNews::default()),
            _ => Response::Error("test peer".into()),
        };
        let _ = message::write_frame(&mut send, &resp).await;
        let _ = send.finish();
    }
}

/// Sends raw bytes on a new stream, finishes it and reads the one answer frame.
pub async fn raw(conn: &quinn::Connection, bytes: &[u8]) -> Result<Response, String> {
    let work = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        // The node may stop reading early (a refused header): the answer still comes.
        let _ = send.write_all(bytes).await;
        let _ = send.finish();
        message::read_frame::<Response>(&mut recv)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(WAIT, work)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// Sends one well-formed request.
pub async fn ask(conn: &quinn::Connection, req: &Request) -> Result<Response, String> {
    raw(conn, &message::encode_frame(req).unwrap()).await
}

/// A frame header announcing `len` bytes.
pub fn header(version: u8, len: u32) -> Vec<u8> {
    let mut h = vec![message::MAGIC, version];
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// Asserts the node answered with an error containing `needle`.
#[track_caller]
pub fn refused(r: &Result<Response, String>, needle: &str) {
    match r {
        Ok(Response::Error(e)) => assert!(e.contains(needle), "{needle:?} not in {e:?}"),
        other => panic!("not refused with {needle:?}: {other:?}"),
    }
}

/// Asserts the honest member still gets the member list, and returns how long it took.
pub async fn serves(f: &Fixture) -> Duration {
    let t = Instant::now();
    match ask(&f.honest.conn, &Request::Members).await {
        Ok(Response::Members { members, .. }) => assert!(members.len() >= 3, "{members:?}"),
        other => panic!("the honest member got {other:?}"),
    }
    t.elapsed()
}

/// A chunk id, the slice indexes held, and the intact ones with a hash of their bytes.
pub type ChunkView = (Hash, Vec<u8>, Vec<(u8, Hash)>);

/// What an attacker could change in the store: versions, deletions, chunk records, the
/// slices held (with a hash of their bytes), member records, and the attacker's address.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub stats: ouroboros_db::Stats,
    pub versions: (Vec<Hash>, u64),
    pub deletions: u64,
    pub chunks: Vec<ChunkView>,
    pub members: Vec<MemberRecord>,
    pub attacker_addr: Option<String>,
}

pub fn snapshot(f: &Fixture) -> Snapshot {
    let cas = f.node.members().cas();
    let mut stats = cas.stats().unwrap();
    stats.file_bytes = 0;
    let all: Vec<u8> = (0..=255).collect();
    let chunks = cas
        .chunk_ids_after(None, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|c| {
            let held = cas.replica().local_slices_held(&c).unwrap();
            let intact = cas
                .replica()
                .local_slices(&c, &all)
                .unwrap()
                .into_iter()
                .map(|(i, b)| (i, Hash::of(&b)))
                .collect();
            (c, held, intact)
        })
        .collect();
    Snapshot {
        stats,
        versions: cas.replica().version_hashes_since(0, 1 << 20).unwrap(),
        deletions: cas.replica().deletions_since(0, 1 << 20).unwrap().1,
        chunks,
        members: f.node.members().members().unwrap(),
        attacker_addr: f.node.members().addr(&f.attacker.public()).unwrap(),
    }
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples the resident memory every 20 ms until dropped; keeps the peak.
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
}

impl PeakRss {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib()));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        PeakRss { stop, peak }
    }

    pub fn peak(&self) -> u64 {
        self.peak
            .fetch_max(rss_kib(), Ordering::Relaxed)
            .max(rss_kib())
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The first chunk the node holds, its record and all its slices: a valid `PutSlices`.
pub fn captured_put(f: &Fixture) -> Request {
    let cas = f.node.members().cas();
    let chunk = cas.chunk_ids_after(None, 1 << 20).unwrap()[0];
    let record = cas.replica().chunk_record(&chunk).unwrap().unwrap();
    let all: Vec<u8> = (0..record.slices.len() as u8).collect();
    let slices = message::to_wire(cas.replica().local_slices(&chunk, &all).unwrap());
    assert_eq!(slices.len(), record.slices.len());
    Request::PutSlices {
        chunk,
        record,
        slices,
        condemned: false,
    }
}
