//! Writes the seed corpus: a handful of small, valid encodings for every fuzz target, made
//! by the real encoders. Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (adds `fuzz/corpus/*/seed-*`).

use std::path::Path;

use base64::Engine;
use ouro_cluster::authenticator::{spki_der, NodeKey};
use ouro_cluster::bootstrapper::{TokenBody, TOKEN_PREFIX};
use ouro_cluster::fuzzing as cf;
use ouro_cluster::membership::{ClusterInfo, Invite, MemberRecord};
use ouro_cluster::message::{
    encode_frame, ClusterStatus, MemberStatus, NodeNews, Request, Response, Slice,
};
use ouroboros_db::cas::{InventoryEntry, ReplicaSeed, VersionRecord};
use ouroboros_db::chunk::ChunkingParams;
use ouroboros_db::codec;
use ouroboros_db::crypto::StoreKeys;
use ouroboros_db::fuzzing;
use ouroboros_db::model::{Blob, BlobKind, ChunkRecord, ChunkRef, SealedSlice};
use ouroboros_db::seal::{compress, erasure, seal_chunk, SealParams};
use ouroboros_db::store::deletion_wal::{Deletion, WalEntry, WAL_TAG};
use ouroboros_db::store::key_index::{WrappedKey, WRAPPED_TAG};
use ouroboros_db::store::local_sealed_slice_store::Bundle;
use ouroboros_db::store::meta::{StoreConfig, CONFIG_TAG, FORMAT_VERSION};
use ouroboros_db::store::removed::{Removal, REMOVED_TAG};
use ouroboros_db::store::version_index::{KeyState, StoredHead, StoredState, KEY_STATE_TAG};
use ouroboros_db::{Hash, Identity, Recipient};

type Seeds = Vec<Vec<u8>>;

/// Writes `seeds` to `fuzz/corpus/<target>/seed-<n>`.
fn write(target: &str, seeds: Seeds) {
    // A
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), s).expect("seed file");
    }
    println!("{target}: {} seeds", seeds.len());
}

/// Fixed key bundle, so seeds are reproducible where randomness allows.
fn keys() -> StoreKeys {
    // A
    StoreKeys {
        epoch: 0,
        chunk_id_key: [1; 32],
        data_key: [2; 32],
        cdc_seed: 3,
    }
}

/// Sample blobs: first version, child, merge, unicode key, empty content.
fn blobs() -> Vec<Blob> {
    // A
    let chunk = |b: u8, size| ChunkRef {
        id: Hash([b; 32]),
        size,
    };
    vec![
        Blob {
            key: "a".into(),
            parents: vec![],
            created: 0,
            kind: BlobKind::VersionVector,
            size: 0,
            chunks: vec![],
            meta: Default::default(),
        },
        Blob {
            key: "docs/report.txt".into(),
            parents: vec![Hash([7; 32])],
            created: 1_764_000_000_000_000_000,
            kind: BlobKind::Child,
            size: 5,
            chunks: vec![chunk(9, 5)],
            meta: Default::default(),
        },
        Blob {
            key: "ü/日本@2x.png".into(),
            parents: vec![Hash([1; 32]), Hash([2; 32])],
            created: -1,
            kind: BlobKind::Merger,
            size: (1 << 20) + 300,
            chunks: vec![chunk(3, 1 << 20), chunk(4, 300)],
            meta: Default::default(),
        },
    ]
}

/// A sealed chunk of `len` bytes with `k`+`m` slices.
fn sealed(len: usize, k: u8, m: u8) -> ouroboros_db::seal::SealedChunk {
    // A
    // Incompressible, so that the chunk keeps its k data slices.
    let data: Vec<u8> = (0..len as u32)
        .map(|i| blake3::hash(&i.to_le_bytes()).as_bytes()[0])
        .collect();
    let keys = keys();
    let id = keys.chunk_id(&data);
    let params = SealParams {
        k,
        m,
        zstd_level: 1,
    };
    seal_chunk(&keys, params, id, &data).expect("sealing")
}

/// A store configuration as `init` writes it.
fn config() -> StoreConfig {
    // A
    StoreConfig {
        format: FORMAT_VERSION,
        store_id: Hash([5; 32]),
        created: 1_764_000_000_000_000_000,
        k: 4,
        m: 2,
        zstd_level: 3,
        chunking: ChunkingParams::default(),
        current_epoch: 0,
    }
}

/// Records of the local indexes, a `key_to_hash` row and a `version_index` value.
fn index_records() -> Seeds {
    // A
    let wal = |deletion| WalEntry {
        time: 1_764_000_000_000_000_000,
        deletion,
    };
    let row = fuzzing::key_to_hash_row(5, 42, 6);
    vec![
        codec::encode(KEY_STATE_TAG, &KeyState::default()),
        codec::encode(
            KEY_STATE_TAG,
            &KeyState {
                heads: vec![Hash([1; 32]), Hash([2; 32])],
                deleted: Some(77),
            },
        ),
        codec::encode(
            REMOVED_TAG,
            &Removal {
                time: 5,
                whole_key: true,
                released: false,
            },
        ),
        codec::encode(WAL_TAG, &wal(Deletion::Key { key: "k".into() })),
        codec::encode(
            WAL_TAG,
            &wal(Deletion::Version {
                key: "k".into(),
                hash: Hash([8; 32]),
            }),
        ),
        codec::encode(WAL_TAG, &wal(Deletion::Chunk { id: Hash([9; 32]) })),
        codec::encode(
            WAL_TAG,
            &wal(Deletion::Resealed {
                id: Hash([6; 32]),
                record: member_record(),
                pack: None,
            }),
        ),
        codec::encode(
            WRAPPED_TAG,
            &WrappedKey {
                recipient: ouro_fuzz::RECIPIENT.into(),
                wrapped: b"age-encryption.org/v1".to_vec(),
            },
        ),
        codec::encode(CONFIG_TAG, &config()),
        fuzzing::store_keys_encode(&keys()),
        Ok(row),
        fuzzing::version_index_value(
            3,
            &StoredState {
                heads: vec![StoredHead::Seq(9), StoredHead::Hash(Hash([1; 32]))],
                deleted: None,
            },
        ),
    ]
    .into_iter()
    .map(|r| r.expect("index record"))
    .collect()
}

/// Chunk payload inputs: `[k][m][sealed_len u16][size u32][mask u32][shards]`.
fn chunk_payloads() -> Seeds {
    // A
    let mut out = Vec::new();
    for (text, k, m, mask) in [
        (&b"hello hello hello hello hello hello"[..], 1u8, 0u8, 1u32),
        (&b"abcabcabcabcabcabcabcabcabcabcabcabcabc"[..], 2, 1, 0b101),
        (&b"\x00\x01\x02\x03\x04\x05\x06\x07\x08"[..], 3, 2, 0b11010),
    ] {
        let mut payload = Vec::new();
        compress::compress_into(&text.repeat(20), 1, &mut payload).expect("compress");
        let shards = erasure::encode(&payload, k, m).expect("erasure");
        let mut input = vec![k, m];
        input.extend((payload.len() as u16).to_le_bytes());
        input.extend((text.len() as u32 * 20).to_le_bytes());
        input.extend(mask.to_le_bytes());
        for (i, s) in shards.iter().enumerate() {
            if mask >> i & 1 == 1 {
                input.extend(s);
            }
        }
        out.push(input);
    }
    out
}

/// Frames and bare bodies of requests and responses.
fn wire_messages() -> Seeds {
    // A
    let s = sealed(3000, 2, 1);
    let slices: Vec<Slice> = s
        .slices
        .iter()
        .enumerate()
        .map(|(i, (_, b))| Slice {
            index: i as u8,
            bytes: b[..b.len().min(64)].to_vec(),
        })
        .collect();
    let info = ClusterInfo {
        cluster_id: [1; 32],
        admin: [2; 32],
        created: 3,
    };
    let member = MemberRecord {
        node: [4; 32],
        admitted: 5,
        sig: vec![6; 64],
        revoked: None,
    };
    let requests = vec![
        Request::Join {
            node: [1; 32],
            addr: "127.0.0.1:7000".into(),
        },
        Request::Hello(NodeNews {
            addr: "[::1]:7000".into(),
            chunks_held: 10,
            free_bytes: 1 << 40,
            ..NodeNews::default()
        }),
        Request::Changes { blobs: 3, wal: 4 },
        Request::Members,
        Request::PutSlices {
            chunk: s.id,
            record: s.record.clone(),
            slices: slices.clone(),
            condemned: true,
        },
        Request::GetSlices {
            chunk: s.id,
            wanted: vec![0, 2],
        },
        Request::Fetch {
            chunk: s.id,
            wanted: vec![1],
            need: 1,
        },
        Request::Flush,
        Request::Status,
        Request::Versions {
            hashes: vec![Hash([3; 32])],
        },
        Request::SyncTree { prefix: vec![7] },
        Request::InventoryTree { prefix: vec![7, 8] },
        Request::CheckChunks {
            chunks: vec![Hash([4; 32])],
        },
    ];
    let mut responses = vec![
        Response::Hello(NodeNews::default()),
        Response::Changes {
            hashes: vec![Hash([1; 32])],
            blobs: 9,
            entries: vec![WalEntry {
                time: 1,
                deletion: Deletion::Key { key: "x".into() },
            }, WalEntry {
                time: 2,
                deletion: Deletion::Condemned { id: s.id, sealing: Hash([5; 32]) },
            }],
            wal: 2,
            log: Hash([3; 32]),
        },
        Response::Members {
            members: vec![member.clone()],
            addrs: vec![([4; 32], "10.0.0.1:7000".into())],
        },
        Response::Stored,
        Response::Slices(slices),
        Response::Flushed { pending_chunks: 2 },
        Response::Status(ClusterStatus {
            node: "0102030405060708".into(),
            k: 4,
            m: 2,
            members: vec![MemberStatus {
                id: "0102030405060708".into(),
                addr: "127.0.0.1:7000".into(),
                state: "alive".into(),
                last_seen_secs: 0.5,
                chunks_held: 3,
                free_bytes: 4,
                tombstones: 5,
                pulls: 6,
                placed: true,
            }],
            under_replicated_chunks: 1,
            repaired_slices: 2,
            repair_bytes: 3,
            replication_bytes: 4,
            placement: String::new(),
            repair_chunks_checked: 6,
            condemned_chunks: 7,
            freed_chunks: 8,
            inventory_audits: 9,
            audit_lacking_slices: 10,
            audit_extra_slices: 11,
            audit_bytes: 12,
            repair_sweeps: 13,
            wal_rounds: 14,
        }),
        Response::Error("refused".into()),
        Response::Versions(vec![VersionRecord {
            blob: blobs()[1].clone(),
            chunks: vec![(s.id, s.record.clone())],
            condemned: vec![s.id],
        }]),
        Response::SyncDigests(vec![Hash([1; 32]); 2]),
        Response::SyncLeaf(vec![Hash([2; 32])]),
        Response::Superseded(s.record.clone(), true),
        Response::InventoryLeaf(vec![InventoryEntry {
            chunk: Hash([3; 32]),
            slices: vec![0, 4],
        }]),
        Response::Noted,
    ];
    responses.push(Response::Joined {
        seed: ReplicaSeed {
            config: config(),
            keys: vec![(
                0,
                WrappedKey {
                    recipient: ouro_fuzz::RECIPIENT.into(),
                    wrapped: vec![1, 2, 3],
                },
            )],
        },
        info,
        members: vec![member],
        addrs: vec![],
    });
    let mut out = Vec::new();
    for r in &requests {
        out.push(encode_frame(r).expect("frame"));
    }
    for r in &responses {
        out.push(encode_frame(r).expect("frame"));
    }
    // A few bare bodies too: decode_body is fuzzed on the whole input.
    for f in out.clone().iter().step_by(4) {
        out.push(f[6..].to_vec());
    }
    out
}

/// A real token signed by a fresh admin key, its body, keys, and lifetimes.
fn join_tokens() -> Seeds {
    // A
    let admin = NodeKey::generate().expect("key");
    let invite = NodeKey::generate().expect("key");
    let body = TokenBody {
        cluster: ClusterInfo {
            cluster_id: [1; 32],
            admin: admin.public(),
            created: 2,
        },
        inviter: [3; 32],
        addr: "127.0.0.1:7000".into(),
        invite_key: invite.pkcs8().to_vec(),
        expires: i64::MAX,
    };
    let signed = cf::encode_token_body(&body).expect("token body");
    let mut bytes = signed.clone();
    bytes.extend_from_slice(&admin.sign(&signed));
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    vec![
        token.into_bytes(),
        signed,
        invite.pkcs8().to_vec(),
        spki_der(&invite.public()),
        b"90".to_vec(),
        b"30m".to_vec(),
        b"2h".to_vec(),
        b"1d".to_vec(),
    ]
}

/// Cluster identity, member records (plain and revoked) and an invitation.
fn cluster_records() -> Seeds {
    // A
    let member = |revoked| MemberRecord {
        node: [4; 32],
        admitted: 5,
        sig: vec![6; 64],
        revoked,
    };
    vec![
        cf::encode_cluster_info(&ClusterInfo {
            cluster_id: [1; 32],
            admin: [2; 32],
            created: 3,
        }),
        cf::encode_member(&member(None)),
        cf::encode_member(&member(Some((9, vec![7; 64])))),
        cf::encode_invite(&Invite {
            expires: 1_764_000_000_000_000_000,
            used: false,
        }),
    ]
    .into_iter()
    .map(|r| r.expect("cluster record"))
    .collect()
}

/// Refs, times, keys, erasure specs, hashes, an identity and a recipient.
fn refs_and_keys() -> Seeds {
    // A
    [
        "a/b",
        "notes.txt@~2",
        "a/b@3f2a9c",
        "a@2026-11-24T10:15:03Z",
        "a@2026-11-24",
        "2026-11-24T10:15:03.123+01:00",
        "mail@beef@",
        "icon@2x.png",
        ".ouro/x",
        "4+2",
        "c4328fe9d89fbfccc1519868adcb47c862ce49fb26236c89e8746dd22283791f",
        ouro_fuzz::IDENTITY,
        ouro_fuzz::RECIPIENT,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// A WrappedKey record holding a real age file for the fixed identity, and the file alone.
fn wrapped_keys() -> Seeds {
    // A
    let id = Identity::parse(ouro_fuzz::IDENTITY).expect("identity");
    let r: Recipient = id.recipient();
    let file = fuzzing::wrap_key(&r, &fuzzing::store_keys_encode(&keys()).expect("keys")).expect("wrap");
    let record = codec::encode(
        WRAPPED_TAG,
        &WrappedKey {
            recipient: r.to_string(),
            wrapped: file.clone(),
        },
    );
    vec![record.expect("record"), file]
}

fn main() {
    // A
    write("blob", blobs().iter().map(|b| b.encode().expect("blob")).collect());
    let small = sealed(100, 1, 0);
    let big = sealed(5000, 4, 2);
    write(
        "chunk_record",
        vec![
            small.record.encode().expect("record"),
            big.record.encode().expect("record"),
            ChunkRecord {
                size: 0,
                sealed_len: 17,
                key_epoch: 1,
                nonce: [0; 12],
                k: 1,
                m: 1,
                slices: vec![Hash([1; 32]), Hash([2; 32])],
                kind: ouroboros_db::model::ChunkKind::Sliced,
            }
            .encode()
            .expect("record"),
            member_record().encode().expect("record"),
        ],
    );
    let slice = |b: &[u8]| {
        SealedSlice::decode(b)
            .expect("own slice")
            .encode()
            .expect("slice")
    };
    write(
        "sealed_slice",
        vec![
            slice(&small.slices[0].1),
            slice(&big.slices[big.slices.len() - 1].1),
        ],
    );
    let bundle = |c: &ouroboros_db::seal::SealedChunk, skip: usize| {
        Bundle {
            chunk: c.id,
            slices: c
                .slices
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(i, (_, b))| (i as u8, b.as_slice()))
                .collect(),
        }
        .encode()
    };
    write(
        "slice_bundle",
        vec![
            bundle(&small, 9),
            bundle(&big, 1),
            Bundle::default().encode(),
        ],
    );
    write("index_records", index_records());
    write("chunk_payload", chunk_payloads());
    write("wire_message", wire_messages());
    write("join_token", join_tokens());
    write("cluster_records", cluster_records());
    write("refs_and_keys", refs_and_keys());
    write("wrapped_key", wrapped_keys());
}

/// A pack member's record (a small chunk sealed in a frame of a pack).
fn member_record() -> ChunkRecord {
    // A
    ChunkRecord {
        size: 3,
        sealed_len: 32,
        key_epoch: 1,
        nonce: [5; 12],
        k: 0,
        m: 0,
        slices: Vec::new(),
        kind: ouroboros_db::model::ChunkKind::Member {
            pack: Hash([3; 32]),
            offset: 64,
            frame_size: 40,
            at: 30,
        },
    }
}
