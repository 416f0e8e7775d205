//! MessageTunnel framing: every request travels on its own QUIC stream as one frame and
//! gets one response frame. A frame is `[b'O'][version u8][length u32 LE][postcard body]`;
//! frames above [`MAX_FRAME`] or of another version are refused before they are read
//! (nothing of the announced length is allocated), with a [`FrameError`].

use ouroboros_db::cas::WalEntry;
use ouroboros_db::cas::{InventoryEntry, ReplicaSeed, VersionRecord};
use ouroboros_db::model::ChunkRecord;
use ouroboros_db::Hash;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{ClusterError, Result};
use crate::membership::{ClusterInfo, MemberRecord, NodeId};

/// First byte of every frame.
pub const MAGIC: u8 = b'O';
/// Protocol version of this build.
pub const VERSION: u8 = 11;
/// Largest frame accepted (a request with a chunk's slices fits many times over).
pub const MAX_FRAME: u32 = 64 << 20;

/// Why a frame was refused; the peer gets the message as a `Response::Error`.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first byte is not [`MAGIC`].
    #[error("not an ouro frame (first byte {0:#04x})")]
    NotOuro(u8),
    /// Another protocol version than [`VERSION`].
    #[error("peer speaks protocol version {0}, this build {VERSION}: upgrade the older node")]
    Version(u8),
    /// The header announces more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(u32),
    /// The stream failed or ended before the whole frame arrived (a truncated frame).
    #[error("reading a frame: {0}")]
    Read(std::io::Error),
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    /// The whole request did not arrive in the time allowed (a stalled stream).
    #[error("no complete request within {0:?}")]
    Timeout(std::time::Duration),
}

/// A request from one node to another (or from `ouro` to its node, on the control socket).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// From a new node holding an invitation: admit my key.
    Join {
        /// The new node's key.
        node: NodeId,
        /// Where it listens.
        addr: String,
    },
    /// Heartbeat with a little news about the sender.
    Hello(NodeNews),
    /// Hashes of the versions in the receiver's blob log, and the deletions in its
    /// DeletionWAL, after the sender's cursors.
    Changes {
        /// Blob log cursor.
        blobs: u64,
        /// DeletionWAL cursor.
        wal: u64,
    },
    /// The receiver's member records and known addresses.
    Members,
    /// Store these slices (placement names the receiver).
    PutSlices {
        /// Chunk id.
        chunk: Hash,
        /// Its record.
        record: ChunkRecord,
        /// The slices.
        slices: Vec<Slice>,
        /// The sender marks this sealing condemned (`src/cas/condemn.rs`).
        condemned: bool,
    },
    /// Send the intact slices among `wanted` of a chunk.
    GetSlices {
        /// Chunk id.
        chunk: Hash,
        /// Slice indexes.
        wanted: Vec<u8>,
    },
    /// Control socket: fetch slices of a chunk from the cluster.
    Fetch {
        /// Chunk id.
        chunk: Hash,
        /// Slice indexes.
        wanted: Vec<u8>,
        /// How many the reader needs: the answer comes once that many arrived.
        need: u8,
    },
    /// Control socket: hand every slice written so far to its nodes, then answer.
    Flush,
    /// Control socket: the cluster as this node sees it.
    Status,
    /// The records of these versions (those a `Changes` answer named that the sender lacks).
    Versions {
        /// Blob hashes.
        hashes: Vec<Hash>,
    },
    /// SyncIndexTree: the 256 child digests under a 0- or 1-byte prefix, or the version
    /// hashes of a 2-byte leaf.
    SyncTree {
        /// Hash prefix.
        prefix: Vec<u8>,
    },
    /// SyncIndexTree over the receiver's slice inventory: the 256 child digests under a 0- or
    /// 1-byte chunk id prefix, or the entries of a 2-byte leaf.
    InventoryTree {
        /// Chunk id prefix.
        prefix: Vec<u8>,
    },
    /// An inventory audit found that the receiver lacks slices of these chunks that placement
    /// gives it: its repair sweep checks them now rather than at its next full sweep.
    CheckChunks {
        /// Chunk ids (at most 4,096).
        chunks: Vec<Hash>,
    },
    /// `GetSlices` for several chunks (at most [`MAX_ITEMS`]) in one exchange.
    GetSlicesMany {
        /// The chunks, each with the slice indexes wanted.
        items: Vec<SliceWant>,
    },
    /// Control socket: `Fetch` for several chunks (at most [`MAX_ITEMS`]) at once.
    FetchMany {
        /// The chunks, each with the slice indexes wanted and how many are needed.
        items: Vec<FetchWant>,
    },
}

/// Most chunks one `GetSlicesMany` or `FetchMany` may name.
pub const MAX_ITEMS: usize = 64;

/// One chunk of a `GetSlicesMany`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceWant {
    /// Chunk id.
    pub chunk: Hash,
    /// Slice indexes.
    pub wanted: Vec<u8>,
}

/// One chunk of a `FetchMany`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchWant {
    /// Chunk id.
    pub chunk: Hash,
    /// Slice indexes.
    pub wanted: Vec<u8>,
    /// How many the reader needs.
    pub need: u8,
}

/// One encoded SealedSlice with its index. The bytes are encoded as one length-prefixed
/// run (serde_bytes), not element by element, which would dominate a node's CPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// Slice index within its chunk.
    pub index: u8,
    /// The encoded SealedSlice.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Converts the library's `(index, bytes)` pairs for the wire.
pub fn to_wire(slices: Vec<(u8, Vec<u8>)>) -> Vec<Slice> {
    // A
    slices
        .into_iter()
        .map(|(index, bytes)| Slice { index, bytes })
        .collect()
}

/// Converts slices from the wire to the library's `(index, bytes)` pairs.
pub fn from_wire(slices: Vec<Slice>) -> Vec<(u8, Vec<u8>)> {
    // A
    slices.into_iter().map(|s| (s.index, s.bytes)).collect()
}

/// What a node tells its peers with each heartbeat.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeNews {
    /// Where it listens.
    pub addr: String,
    /// Chunks it holds slices of (one slice each when there are k+m nodes or more).
    pub chunks_held: u64,
    /// Free bytes on its store's filesystem.
    pub free_bytes: u64,
    /// Chunks with slices it holds for other nodes, not yet delivered.
    pub pending_chunks: u64,
    /// Chunks lacking slices that placement gives it, found by its last repair sweep.
    pub repair_backlog: u64,
    /// Slices it has repaired since it started.
    pub repaired_slices: u64,
    /// Bytes of slices it fetched for repairs since it started.
    pub repair_bytes: u64,
    /// Bytes of versions and deletions it pulled from peers since it started.
    pub replication_bytes: u64,
    /// Tombstones (DeletionWAL entries) it holds: they are compacted once every member
    /// has them.
    pub tombstones: u64,
    /// Digest of the placement its last repair sweep checked against (0 before the first):
    /// until it matches the current placement's, its `repair_backlog` says nothing about it.
    pub swept_over: u64,
    /// Where its logs end: news that they moved makes a peer pull at once.
    pub logs: LogEnds,
    /// Members it has not heard from for at least [`crate::availability::DEAD_AFTER`], each
    /// with the seconds of that silence (for one never heard from, since the sender started).
    /// A node that has not heard from a member since it started leaves it out of placement
    /// when a live peer reports it silent for this node's own `repair_after`, rather than
    /// waiting that long itself (its placement would disagree with everyone else's).
    pub silent: Vec<(NodeId, u64)>,
}

/// The end of a node's blob log and DeletionWAL: the cursors a peer holds once it has
/// pulled everything (`Changes` answers name the same positions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEnds {
    /// The log id (new when the store's logs were restarted, e.g. from a backup).
    pub log: Hash,
    /// Last sequence number in the blob log (0 when empty).
    pub blobs: u64,
    /// Last sequence number in the DeletionWAL, or its compaction floor when higher.
    pub wal: u64,
}

/// One member as `cluster status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Short id.
    pub id: String,
    /// Last known address.
    pub addr: String,
    /// `alive`, `suspect` or `dead` (`self` is always alive).
    pub state: String,
    /// Seconds since last heard from (0 for self).
    pub last_seen_secs: f64,
    /// Chunks it holds slices of.
    pub chunks_held: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// Tombstones it holds, not yet acknowledged by every member.
    pub tombstones: u64,
    /// Pulls of its versions and deletions that reached the end of its logs, made by the
    /// answering node since it started (0 for self).
    pub pulls: u64,
    /// Whether the answering node's placement spreads slices over it.
    pub placed: bool,
}

/// The cluster as one node sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Short id of the node answering.
    pub node: String,
    /// Erasure code of the store.
    pub k: u8,
    /// Parity slices.
    pub m: u8,
    /// Members, self first.
    pub members: Vec<MemberStatus>,
    /// Chunks that do not have all their slices on live nodes named by placement.
    pub under_replicated_chunks: u64,
    /// Repair progress: slices rebuilt or copied by live nodes since they started.
    pub repaired_slices: u64,
    /// Bytes of slices live nodes fetched for repairs since they started.
    pub repair_bytes: u64,
    /// Bytes of metadata live nodes pulled from each other since they started.
    pub replication_bytes: u64,
    /// A warning when there are fewer nodes than slices per chunk.
    pub placement: String,
    /// Chunk records the answering node's repair sweeps have checked since it started
    /// (they check all of them only when placement changes, and every 10 minutes).
    pub repair_chunks_checked: u64,
    /// Condemned chunk sealings marked here, waiting to be freed (or still used).
    pub condemned_chunks: u64,
    /// Condemned chunks this node freed since it started.
    pub freed_chunks: u64,
    /// Inventory audits (SyncIndexTree over a peer's slices) the answering node made.
    pub inventory_audits: u64,
    /// Slices the last audit found a peer lacking, against placement.
    pub audit_lacking_slices: u64,
    /// Slices the last audit found a peer holding that placement gives to others.
    pub audit_extra_slices: u64,
    /// Bytes of tree answers received by the last audit.
    pub audit_bytes: u64,
    /// Repair sweeps the answering node completed since it started: a test (or a user)
    /// waits for two more before concluding that a sweep did not do something.
    pub repair_sweeps: u64,
    /// Rounds of tombstone compaction and condemned-chunk freeing the answering node
    /// completed since it started, for the same kind of wait.
    pub wal_rounds: u64,
}

/// A response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// Admitted: everything needed to become a replica.
    Joined {
        /// Store configuration and wrapped keys.
        seed: ReplicaSeed,
        /// The cluster.
        info: ClusterInfo,
        /// Its members.
        members: Vec<MemberRecord>,
        /// Known addresses.
        addrs: Vec<(NodeId, String)>,
    },
    /// Heartbeat answer.
    Hello(NodeNews),
    /// Version hashes and deletions, and the cursors to resume from.
    Changes {
        /// Hashes of the versions logged.
        hashes: Vec<Hash>,
        /// Next blob log cursor.
        blobs: u64,
        /// Deletions.
        entries: Vec<WalEntry>,
        /// Next DeletionWAL cursor.
        wal: u64,
        /// Names this store's logs; new after a restore from backup (sequences repeat then).
        log: Hash,
    },
    /// Member records and addresses.
    Members {
        /// Records.
        members: Vec<MemberRecord>,
        /// Addresses.
        addrs: Vec<(NodeId, String)>,
    },
    /// Slices stored.
    Stored,
    /// Slices found.
    Slices(Vec<Slice>),
    /// Flush done: how many chunks still wait for an unreachable node.
    Flushed {
        /// Chunks kept here until their nodes come back.
        pending_chunks: u64,
    },
    /// Cluster status.
    Status(ClusterStatus),
    /// The request was refused.
    Error(String),
    /// Version records.
    Versions(Vec<VersionRecord>),
    /// SyncIndexTree child digests.
    SyncDigests(Vec<Hash>),
    /// SyncIndexTree leaf: live version hashes.
    SyncLeaf(Vec<Hash>),
    /// `PutSlices` refused: this node keeps another sealing of the chunk, which wins (see
    /// `src/cas/sealing.rs`); the sender adopts it. The flag: this node marks it condemned.
    Superseded(ChunkRecord, bool),
    /// Slice inventory tree leaf: which slices of each chunk the answering node holds.
    InventoryLeaf(Vec<InventoryEntry>),
    /// `CheckChunks` taken: the chunks are queued for the repair sweep.
    Noted,
    /// Answer to `GetSlicesMany` and `FetchMany`: the slices found for each chunk, in the
    /// order asked.
    SlicesMany(Vec<Vec<Slice>>),
}

/// Encodes a value as one frame. The body is written once, into a buffer of its exact
/// size: frames carry slices, and growing a buffer while encoding copied them again.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // A
    let encoding = |e| ClusterError::Protocol(format!("encoding a message: {e}"));
    let size = postcard::serialize_with_flavor::<T, _, usize>(
        value,
        postcard::ser_flavors::Size::default(),
    )
    .map_err(encoding)?;
    let len = u32::try_from(size)
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| ClusterError::Protocol(format!("message of {size} bytes is too large")))?;
    let mut out = Vec::with_capacity(6 + size);
    out.extend_from_slice(&[MAGIC, VERSION]);
    out.extend_from_slice(&len.to_le_bytes());
    // Through `io::Write`, byte strings go in as one copy each (postcard's `Extend` flavor
    // pushed them byte by byte).
    postcard::to_io(value, &mut out).map_err(encoding)?;
    Ok(out)
}

/// Checks a frame header; returns the body length.
pub fn check_header(h: &[u8; 6]) -> Result<usize> {
    // A
    if h[0] != MAGIC {
        return Err(FrameError::NotOuro(h[0]).into());
    }
    if h[1] != VERSION {
        return Err(FrameError::Version(h[1]).into());
    }
    let len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len).into());
    }
    Ok(len as usize)
}

/// Decodes a frame body.
pub fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    // A
    Ok(postcard::from_bytes(body).map_err(FrameError::Malformed)?)
}

/// Reads one frame.
pub async fn read_frame<T: serde::de::DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<T> {
    // A
    read_frame_within(r, &[]).await
}

/// Reads one frame, first taking as many bytes as its body has from each of `budgets`
/// (units of 1 KiB), so requests being read stay within bounds: a slow or hostile peer
/// waits instead of making this node allocate without limit. The header is checked before
/// any budget is taken or any body byte is allocated.
pub async fn read_frame_within<T: serde::de::DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
    budgets: &[&tokio::sync::Semaphore],
) -> Result<T> {
    // A
    let mut h = [0u8; 6];
    r.read_exact(&mut h).await.map_err(FrameError::Read)?;
    let len = check_header(&h)?;
    let kib = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX).max(1);
    let mut permits = Vec::with_capacity(budgets.len());
    for b in budgets {
        permits.push(
            b.acquire_many(kib)
                .await
                .map_err(|_| ClusterError::Protocol("closing".into()))?,
        );
    }
    decode_body(&read_exactly(r, len).await?)
}

/// Reads one frame's body, undecoded (for answers only: requests are read within budgets).
pub async fn read_body(r: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>> {
    // A
    let mut h = [0u8; 6];
    r.read_exact(&mut h).await.map_err(FrameError::Read)?;
    let len = check_header(&h)?;
    read_exactly(r, len).await
}

/// Reads `len` bytes, into the buffer's spare capacity: zeroing it first would be one more
/// pass.
async fn read_exactly(r: &mut (impl AsyncRead + Unpin), len: usize) -> Result<Vec<u8>> {
    // A
    let mut body = Vec::with_capacity(len);
    (&mut *r)
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(FrameError::Read)?;
    if body.len() < len {
        return Err(FrameError::Read(std::io::ErrorKind::UnexpectedEof.into()).into());
    }
    Ok(body)
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(w: &mut (impl AsyncWrite + Unpin), value: &T) -> Result<()> {
    // A
    let bytes = encode_frame(value)?;
    w.write_all(&bytes)
        .await
        .map_err(|e| ClusterError::Protocol(format!("writing a frame: {e}")))
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
