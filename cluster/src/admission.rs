//! BootStrapper, the inviter's side, as a service: admits a node that presents an open
//! invitation (once), and gives members the member list with known addresses.

use std::sync::Arc;

use crate::context::Context;
use crate::error::{ClusterError, Result};
use crate::handler::blocking;
use crate::membership::{now_nanos, short_id, MemberRecord, NodeId};
use crate::message::{Request, Response};
use crate::service::{message, Claim, Service};

/// Answers `Join` and `Members`.
pub(crate) struct Admission {
    cx: Arc<Context>,
}

impl Admission {
    /// The service of the node with context `cx`.
    pub fn new(cx: Arc<Context>) -> Self {
        // A
        Admission { cx }
    }

    /// Admits a node that presented an open invitation, once.
    async fn admit(self: Arc<Self>, invite: NodeId, new: NodeId, addr: String) -> Result<Response> {
        // PA
        let cx = &self.cx;
        let admin = cx.admin().ok_or(ClusterError::NotAdmin)?;
        check_addr(&addr)?;
        if !cx.members().claim_invite(&invite)? {
            return Err(ClusterError::Token("already used or expired".into()));
        }
        let admitted = now_nanos();
        let msg = crate::membership::member_message(&cx.info().cluster_id, &new, admitted);
        let rec = MemberRecord {
            node: new,
            admitted,
            sig: admin.sign(&msg).to_vec(),
            revoked: None,
        };
        cx.members().merge_member(cx.info(), &rec)?;
        cx.members().set_addr(&new, &addr)?;
        tracing::info!(node = %short_id(&new), %addr, "admitted a new node");
        let cas = Arc::clone(cx.cas());
        let seed = blocking(move || Ok(cas.replica().replica_seed()?)).await?;
        let Response::Members { members, addrs } = members_response(cx)? else {
            return Err(ClusterError::Protocol("members".into()));
        };
        Ok(Response::Joined {
            seed,
            info: cx.info().clone(),
            members,
            addrs,
        })
    }
}

impl Service for Admission {
    fn name(&self) -> &'static str {
        // A
        "admission"
    }

    fn answer(self: Arc<Self>, peer: NodeId, req: Request) -> Claim {
        // A
        match req {
            Request::Join { node, addr } => Claim::Mine(message(self.admit(peer, node, addr))),
            Request::Members => {
                let r = members_response(&self.cx);
                Claim::Mine(message(async move { r }))
            }
            other => Claim::Theirs(other),
        }
    }
}

/// Member records and known addresses.
fn members_response(cx: &Context) -> Result<Response> {
    // A
    let members = cx.members().members()?;
    let addrs = members
        .iter()
        .filter_map(|m| {
            cx.members()
                .addr(&m.node)
                .ok()
                .flatten()
                .map(|a| (m.node, a))
        })
        .collect();
    Ok(Response::Members { members, addrs })
}

/// Refuses an address a peer announces that is no `ip:port` socket address.
pub(crate) fn check_addr(addr: &str) -> Result<()> {
    // A
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| {
            ClusterError::Protocol(format!(
                "announced address {:?} is not a socket address",
                addr.chars().take(64).collect::<String>()
            ))
        })
}
