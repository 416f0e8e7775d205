//! Who belongs to the cluster: its identity (id and admin key), admitted members with the
//! admin's signature, revocations, pending one-time invitations and the addresses last seen.
//! Kept in the store's `cluster` database, so the node and `ouro` commands on the same store
//! see one state; member records travel between nodes and are checked against the admin key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ouroboros_db::Cas;
use serde::{Deserialize, Serialize};

use crate::authenticator::{verify, NodeKey, PinSet};
use crate::error::{ClusterError, Result};

/// A node's public key: its identity in the cluster.
pub type NodeId = [u8; 32];

const INFO: &[u8] = ouroboros_db::cas::CLUSTER_INFO_KEY;
const MEMBER: &[u8] = b"m/";
const INVITE: &[u8] = b"i/";
const ADDR: &[u8] = b"a/";
const SELF_ADDR: &[u8] = b"self/addr";
pub(crate) const TAG_INFO: u8 = b'C';
pub(crate) const TAG_MEMBER: u8 = b'N';
pub(crate) const TAG_INVITE: u8 = b'V';

/// The cluster a store belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Random id of the cluster.
    pub cluster_id: [u8; 32],
    /// The admin public key: every member record carries its signature.
    pub admin: [u8; 32],
    /// When `cluster init` ran (ns since the epoch).
    pub created: i64,
}

/// An admitted node, signed by the admin key; `revoked` once `cluster remove` ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The node's public key.
    pub node: NodeId,
    /// When it was admitted (ns).
    pub admitted: i64,
    /// Admin signature over `member_message`.
    pub sig: Vec<u8>,
    /// Set by `cluster remove`: time and admin signature over `revoke_message`.
    pub revoked: Option<(i64, Vec<u8>)>,
}

/// A one-time invitation: the public half of the key carried in a join token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Expiry (ns since the epoch).
    pub expires: i64,
    /// True once a node joined with it.
    pub used: bool,
}

/// The bytes the admin signs to admit `node`.
pub fn member_message(cluster: &[u8; 32], node: &NodeId, admitted: i64) -> Vec<u8> {
    // PA
    let mut m = b"ouro-member-v1".to_vec();
    m.extend_from_slice(cluster);
    m.extend_from_slice(node);
    m.extend_from_slice(&admitted.to_le_bytes());
    m
}

/// The bytes the admin signs to revoke `node`.
pub fn revoke_message(cluster: &[u8; 32], node: &NodeId, time: i64) -> Vec<u8> {
    // PA
    let mut m = b"ouro-revoke-v1".to_vec();
    m.extend_from_slice(cluster);
    m.extend_from_slice(node);
    m.extend_from_slice(&time.to_le_bytes());
    m
}

/// Short printable id of a node (first 8 bytes of its key, hex).
pub fn short_id(node: &NodeId) -> String {
    // A
    node[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Current time in ns since the epoch.
pub fn now_nanos() -> i64 {
    // A
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Where a store keeps its node key and, on the first node, the admin key.
pub fn key_dir(store: &Path) -> PathBuf {
    // A
    store.join("cluster")
}

/// Reads a key file, refusing one that others can read (as ssh does).
pub fn read_key(path: &Path) -> Result<NodeKey> {
    // PA
    Ok(NodeKey::from_pkcs8(
        &ouroboros_db::crypto::secret_file::read(path)?,
    )?)
}

/// Writes a new key file with mode 0600 (never over an existing one).
pub fn write_key(path: &Path, key: &NodeKey) -> Result<()> {
    // PA
    Ok(ouroboros_db::crypto::secret_file::write_new(
        path,
        key.pkcs8(),
    )?)
}

/// The node key of a store, created on first use.
pub fn node_key(store: &Path) -> Result<NodeKey> {
    // PA
    let path = key_dir(store).join("node.key");
    if path.exists() {
        return read_key(&path);
    }
    let key = NodeKey::generate()?;
    write_key(&path, &key)?;
    Ok(key)
}

/// The admin key, present only on the node where `cluster init` ran.
pub fn admin_key(store: &Path) -> Result<NodeKey> {
    // PA
    let path = key_dir(store).join("admin.key");
    if !path.exists() {
        return Err(ClusterError::NotAdmin);
    }
    read_key(&path)
}

/// The cluster view of one store.
#[derive(Clone)]
pub struct Membership {
    cas: Arc<Cas>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        write!(f, "Membership({})", self.cas.path().display())
    }
}

impl Membership {
    /// The membership records of `cas`.
    pub fn new(cas: Arc<Cas>) -> Self {
        // A
        Membership { cas }
    }

    /// The store.
    pub fn cas(&self) -> &Arc<Cas> {
        // A
        &self.cas
    }

    fn get<T: serde::de::DeserializeOwned + Serialize>(
        &self,
        key: &[u8],
        tag: u8,
        what: &'static str,
    ) -> Result<Option<T>> {
        // A
        Ok(self
            .cas
            .replica()
            .cluster_record(key)?
            .map(|b| ouroboros_db::codec::decode(what, tag, &b))
            .transpose()?)
    }

    fn put<T: Serialize>(&self, key: &[u8], tag: u8, value: &T) -> Result<()> {
        // PA
        let bytes = ouroboros_db::codec::encode(tag, value)?;
        Ok(self.cas.replica().put_cluster_record(key, &bytes)?)
    }

    /// The cluster this store belongs to, if any.
    pub fn info(&self) -> Result<Option<ClusterInfo>> {
        // A
        self.get(INFO, TAG_INFO, "cluster info")
    }

    /// The cluster, or an error saying how to make one.
    pub fn require_info(&self) -> Result<ClusterInfo> {
        // A
        self.info()?
            .ok_or_else(|| ClusterError::NotInCluster(self.cas.path().display().to_string()))
    }

    /// Records the cluster this store belongs to (once no put runs: see
    /// `Replica::put_cluster_info`).
    pub fn set_info(&self, info: &ClusterInfo) -> Result<()> {
        // PA
        let bytes = ouroboros_db::codec::encode(TAG_INFO, info)?;
        Ok(self.cas.replica().put_cluster_info(&bytes)?)
    }

    /// Every member record (revoked ones included).
    pub fn members(&self) -> Result<Vec<MemberRecord>> {
        // A
        let mut out = Vec::new();
        for (_, v) in self.cas.replica().cluster_records(MEMBER)? {
            out.push(ouroboros_db::codec::decode("member", TAG_MEMBER, &v)?);
        }
        Ok(out)
    }

    /// Members that are admitted and not revoked, in key order: the nodes placement uses.
    pub fn active(&self) -> Result<Vec<NodeId>> {
        // A
        Ok(self
            .members()?
            .into_iter()
            .filter(|m| m.revoked.is_none())
            .map(|m| m.node)
            .collect())
    }

    /// The record of one member.
    pub fn member(&self, node: &NodeId) -> Result<Option<MemberRecord>> {
        // A
        self.get(&[MEMBER, node.as_slice()].concat(), TAG_MEMBER, "member")
    }

    /// Stores a member record after checking the admin's signatures; a record never loses
    /// a revocation. Returns true when it changed something. A record equal to the one
    /// held (checked when it was stored) or for a revoked member changes nothing and is not
    /// checked again: members' lists are pulled every few seconds from every peer.
    pub fn merge_member(&self, info: &ClusterInfo, rec: &MemberRecord) -> Result<bool> {
        // PA
        let old = self.member(&rec.node)?;
        if old
            .as_ref()
            .is_some_and(|o| o.revoked.is_some() || *o == *rec)
        {
            return Ok(false);
        }
        let sig_ok = |sig: &[u8], msg: &[u8]| {
            <[u8; 64]>::try_from(sig).is_ok_and(|s| verify(&info.admin, msg, &s))
        };
        if !sig_ok(
            &rec.sig,
            &member_message(&info.cluster_id, &rec.node, rec.admitted),
        ) {
            return Err(ClusterError::Protocol(format!(
                "member record of {} is not signed by the cluster's admin key",
                short_id(&rec.node)
            )));
        }
        if let Some((t, sig)) = &rec.revoked {
            if !sig_ok(sig, &revoke_message(&info.cluster_id, &rec.node, *t)) {
                return Err(ClusterError::Protocol(format!(
                    "revocation of {} is not signed by the cluster's admin key",
                    short_id(&rec.node)
                )));
            }
        }
        self.put(&[MEMBER, rec.node.as_slice()].concat(), TAG_MEMBER, rec)?;
        Ok(true)
    }

    /// A pending invitation.
    pub fn invite(&self, key: &NodeId) -> Result<Option<Invite>> {
        // A
        self.get(&[INVITE, key.as_slice()].concat(), TAG_INVITE, "invite")
    }

    /// Records an invitation (new, or marked used).
    pub fn put_invite(&self, key: &NodeId, inv: &Invite) -> Result<()> {
        // PA
        self.put(&[INVITE, key.as_slice()].concat(), TAG_INVITE, inv)
    }

    /// The address a node was last seen listening on.
    pub fn addr(&self, node: &NodeId) -> Result<Option<String>> {
        // A
        Ok(self
            .cas
            .replica()
            .cluster_record(&[ADDR, node.as_slice()].concat())?
            .and_then(|b| String::from_utf8(b).ok()))
    }

    /// Remembers where a node listens (written only when it changed).
    pub fn set_addr(&self, node: &NodeId, addr: &str) -> Result<()> {
        // A
        if self.addr(node)?.as_deref() == Some(addr) {
            return Ok(());
        }
        let key = [ADDR, node.as_slice()].concat();
        Ok(self
            .cas
            .replica()
            .put_cluster_record(&key, addr.as_bytes())?)
    }

    /// Where this store's own node listens (written by `node run`, read by `invite`).
    pub fn self_addr(&self) -> Result<Option<String>> {
        // A
        Ok(self
            .cas
            .replica()
            .cluster_record(SELF_ADDR)?
            .and_then(|b| String::from_utf8(b).ok()))
    }

    /// Records where this store's node listens.
    pub fn set_self_addr(&self, addr: &str) -> Result<()> {
        // A
        Ok(self
            .cas
            .replica()
            .put_cluster_record(SELF_ADDR, addr.as_bytes())?)
    }

    /// True when `key` is an admitted, unrevoked member.
    pub fn is_member(&self, key: &NodeId) -> bool {
        // PA
        matches!(self.member(key), Ok(Some(m)) if m.revoked.is_none())
    }

    /// True when `key` is an invitation that is neither used nor expired.
    pub fn is_open_invite(&self, key: &NodeId) -> bool {
        // PA
        matches!(self.invite(key), Ok(Some(i)) if !i.used && i.expires > now_nanos())
    }
}

/// The pin set of a node: members, and open invitations (which may only ask to join).
impl PinSet for Membership {
    fn allows(&self, key: &[u8; 32]) -> bool {
        // PA
        self.is_member(key) || self.is_open_invite(key)
    }
}

/// Pins exactly one key: how a joining node trusts only the node that invited it.
#[derive(Debug)]
pub struct OnlyKey(pub NodeId);

impl PinSet for OnlyKey {
    fn allows(&self, key: &[u8; 32]) -> bool {
        // PA
        *key == self.0
    }
}

impl Membership {
    /// Marks an open invitation used, in one transaction; false when it was not open
    /// (unknown, used or expired), so each token admits one node at most.
    pub fn claim_invite(&self, key: &NodeId) -> Result<bool> {
        // PA
        let k = [INVITE, key.as_slice()].concat();
        self.cas.replica().update_cluster_record(&k, |old| {
            let inv: Option<Invite> = old
                .map(|b| ouroboros_db::codec::decode("invite", TAG_INVITE, b))
                .transpose()?;
            let Some(mut inv) = inv.filter(|i| !i.used && i.expires > now_nanos()) else {
                return Ok(None);
            };
            inv.used = true;
            Ok::<_, ClusterError>(Some(ouroboros_db::codec::encode(TAG_INVITE, &inv)?))
        })
    }
}
