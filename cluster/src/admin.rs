//! What the admin does on the first node's store: create the cluster, invite nodes and
//! remove them. These work on the store directly (the node running on it, if any, sees
//! the records in the same database).

use std::sync::Arc;

use ouroboros_db::Cas;

use crate::authenticator::NodeKey;
use crate::error::{ClusterError, Result};
use crate::membership::{
    key_dir, member_message, now_nanos, revoke_message, short_id, write_key, ClusterInfo,
    MemberRecord, Membership, NodeId,
};

/// Makes `cas`'s store the first node of a new cluster: creates the admin key and this
/// node's key, and admits this node. Returns the cluster info and this node's id.
pub fn init(cas: Arc<Cas>) -> Result<(ClusterInfo, NodeId)> {
    // PA
    let members = Membership::new(Arc::clone(&cas));
    if members.info()?.is_some() {
        return Err(ClusterError::Invalid(format!(
            "{} already belongs to a cluster",
            cas.path().display()
        )));
    }
    // An init interrupted before it recorded the cluster (while it waited for running puts,
    // say) left its admin key: this one carries on with it.
    let path = key_dir(cas.path()).join("admin.key");
    let admin = match path.exists() {
        true => crate::membership::admin_key(cas.path())?,
        false => {
            let key = NodeKey::generate()?;
            write_key(&path, &key)?;
            key
        }
    };
    let node = crate::membership::node_key(cas.path())?;
    let info = ClusterInfo {
        cluster_id: rand::random(),
        admin: admin.public(),
        created: now_nanos(),
    };
    members.set_info(&info)?;
    let admitted = now_nanos();
    let rec = MemberRecord {
        node: node.public(),
        admitted,
        sig: admin
            .sign(&member_message(&info.cluster_id, &node.public(), admitted))
            .to_vec(),
        revoked: None,
    };
    members.merge_member(&info, &rec)?;
    Ok((info, node.public()))
}

/// A one-time join token valid for `ttl`.
pub fn invite(cas: Arc<Cas>, ttl: std::time::Duration) -> Result<String> {
    // PA
    Membership::new(Arc::clone(&cas)).require_info()?;
    let admin = crate::membership::admin_key(cas.path())?;
    let node = crate::membership::node_key(cas.path())?;
    crate::bootstrapper::invite(&Membership::new(cas), &admin, &node, ttl)
}

/// Revokes the member whose id starts with `prefix`; returns its full id.
pub fn remove(cas: Arc<Cas>, prefix: &str) -> Result<NodeId> {
    // PA
    let admin = crate::membership::admin_key(cas.path())?;
    let members = Membership::new(Arc::clone(&cas));
    let info = members.require_info()?;
    let prefix = prefix.trim().to_ascii_lowercase();
    let matching: Vec<MemberRecord> = members
        .members()?
        .into_iter()
        .filter(|m| {
            m.revoked.is_none() && !prefix.is_empty() && short_id(&m.node).starts_with(&prefix)
        })
        .collect();
    let rec = match matching.as_slice() {
        [one] => one.clone(),
        [] => return Err(ClusterError::UnknownNode(prefix)),
        _ => {
            return Err(ClusterError::Invalid(format!(
                "{prefix:?} matches {} members: give more of the id",
                matching.len()
            )))
        }
    };
    if rec.node == crate::membership::node_key(cas.path())?.public() {
        return Err(ClusterError::Invalid(
            "a node cannot remove itself: run `cluster remove` for it from another node holding the admin key, or stop it".into(),
        ));
    }
    let t = now_nanos();
    let sig = admin
        .sign(&revoke_message(&info.cluster_id, &rec.node, t))
        .to_vec();
    members.merge_member(
        &info,
        &MemberRecord {
            revoked: Some((t, sig)),
            ..rec.clone()
        },
    )?;
    Ok(rec.node)
}
