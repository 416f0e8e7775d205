//! A node of another cluster is refused in the TLS handshake, before any message is read.

use std::sync::Arc;

use ouro_cluster::message::{Request, Response};
use ouro_cluster::{Node, NodeOptions};
use ouroboros_db::{Cas, CreateOptions, Identity};

async fn first_node(dir: &std::path::Path) -> Arc<Node> {
    let cas = Cas::create(dir, &CreateOptions::default(), &Identity::generate()).unwrap();
    ouro_cluster::admin::init(Arc::new(cas)).unwrap();
    let opts = NodeOptions::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    Node::start(&opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = first_node(&dir.path().join("ours")).await;
    let theirs = first_node(&dir.path().join("theirs")).await;
    tokio::spawn(Arc::clone(&ours).run(std::future::pending()));
    // The stranger trusts our key (its admin signs it in), learns our address and asks for
    // our member list: our side must refuse its key.
    let admin = ouro_cluster::membership::admin_key(&dir.path().join("theirs")).unwrap();
    let info = theirs.members().require_info().unwrap();
    let t = ouro_cluster::membership::now_nanos();
    let msg = ouro_cluster::membership::member_message(&info.cluster_id, &ours.id(), t);
    let rec = ouro_cluster::membership::MemberRecord {
        node: ours.id(),
        admitted: t,
        sig: admin.sign(&msg).to_vec(),
        revoked: None,
    };
    theirs.members().merge_member(&info, &rec).unwrap();
    theirs.remember_addr(&ours.id(), ours.addr()).unwrap();
    let r = theirs.request(&ours.id(), &Request::Members).await;
    eprintln!("stranger got: {r:?}");
    assert!(
        !matches!(r, Ok(Response::Members { .. })),
        "a stranger got an answer: {r:?}"
    );
    let text = format!("{r:?}");
    assert!(
        text.contains("connection lost")
            || text.contains("refused")
            || text.contains("certificate")
            || text.contains("closed"),
        "{text}"
    );
    assert!(!ours.members().is_member(&theirs.id()));
}

/// Member records travel through every peer: only the admin's signatures make them, an
/// unchanged one is taken without effect, and a revocation is never undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_records_need_the_admins_signature_and_revocations_stick() {
    use ouro_cluster::authenticator::NodeKey;
    use ouro_cluster::membership::{member_message, now_nanos, revoke_message, MemberRecord};
    let dir = tempfile::tempdir().unwrap();
    let ours = first_node(dir.path()).await;
    let members = ours.members();
    let info = members.require_info().unwrap();
    let admin = ouro_cluster::membership::admin_key(dir.path()).unwrap();
    let stranger = NodeKey::generate().unwrap();
    let node = NodeKey::generate().unwrap().public();
    let t = now_nanos();
    let msg = member_message(&info.cluster_id, &node, t);
    let forged = MemberRecord {
        node,
        admitted: t,
        sig: stranger.sign(&msg).to_vec(),
        revoked: None,
    };
    assert!(members.merge_member(&info, &forged).is_err());
    assert!(!members.is_member(&node));
    let genuine = MemberRecord {
        sig: admin.sign(&msg).to_vec(),
        ..forged.clone()
    };
    assert!(members.merge_member(&info, &genuine).unwrap());
    assert!(!members.merge_member(&info, &genuine).unwrap(), "unchanged");
    assert!(members.is_member(&node));
    let r = revoke_message(&info.cluster_id, &node, t + 1);
    let forged_revocation = MemberRecord {
        revoked: Some((t + 1, stranger.sign(&r).to_vec())),
        ..genuine.clone()
    };
    assert!(members.merge_member(&info, &forged_revocation).is_err());
    assert!(
        members.is_member(&node),
        "a forged revocation changes nothing"
    );
    let revoked = MemberRecord {
        revoked: Some((t + 1, admin.sign(&r).to_vec())),
        ..genuine.clone()
    };
    assert!(members.merge_member(&info, &revoked).unwrap());
    assert!(!members.is_member(&node));
    assert!(!members.merge_member(&info, &genuine).unwrap());
    assert!(!members.is_member(&node), "a revocation is never undone");
}
