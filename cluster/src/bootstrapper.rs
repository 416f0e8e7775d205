//! BootStrapper: one-time join tokens. `cluster invite` on the admin node makes a fresh
//! invitation key, records its public half as an open invitation, and prints a token with
//! the private half, the inviter's address and key, and the cluster's identity, signed by
//! the admin key. A new node presents the invitation key in the TLS handshake, so the
//! inviter admits it and nothing else; the invitation is then marked used.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::authenticator::{verify, NodeKey};
use crate::error::{ClusterError, Result};
use crate::membership::{now_nanos, ClusterInfo, Invite, Membership, NodeId};

/// Printed before the encoded token, so a token is recognisable and versioned.
pub const TOKEN_PREFIX: &str = "ouro-join-1.";
pub(crate) const TAG_TOKEN: u8 = b'J';

/// What a token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBody {
    /// The cluster to join.
    pub cluster: ClusterInfo,
    /// The node that issued the invitation, and where it listens.
    pub inviter: NodeId,
    /// The inviter's address (`host:port`).
    pub addr: String,
    /// The one-time invitation key (PKCS#8): its holder may join once.
    pub invite_key: Vec<u8>,
    /// Expiry (ns since the epoch).
    pub expires: i64,
}

/// Makes an invitation valid for `ttl` and returns its token; needs the admin key.
pub fn invite(
    members: &Membership,
    admin: &NodeKey,
    inviter: &NodeKey,
    ttl: std::time::Duration,
) -> Result<String> {
    // PA
    let cluster = members.require_info()?;
    if admin.public() != cluster.admin {
        return Err(ClusterError::NotAdmin);
    }
    let addr = members
        .self_addr()?
        .ok_or_else(|| {
            ClusterError::Invalid(format!(
                "a token carries the address of this store's node, which has never run: start it first (ouro --store {} node run --listen HOST:PORT)",
                members.cas().path().display()
            ))
        })?;
    let key = NodeKey::generate()?;
    let expires = now_nanos().saturating_add(ttl.as_nanos().min(i64::MAX as u128) as i64);
    members.put_invite(
        &key.public(),
        &Invite {
            expires,
            used: false,
        },
    )?;
    let body = TokenBody {
        cluster,
        inviter: inviter.public(),
        addr,
        invite_key: key.pkcs8().to_vec(),
        expires,
    };
    let mut bytes = ouroboros_db::codec::encode(TAG_TOKEN, &body)?;
    let sig = admin.sign(&bytes);
    bytes.extend_from_slice(&sig);
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Decodes a token and checks its signature and expiry (the inviter checks again, and
/// refuses a used one).
pub fn parse(token: &str) -> Result<TokenBody> {
    // PA
    let bad = || {
        ClusterError::Token(
            "damaged or forged: copy the whole last line `ouro cluster invite` printed".into(),
        )
    };
    let b64 = token.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| bad())?;
    if bytes.len() < 64 {
        return Err(bad());
    }
    let (signed, sig) = bytes.split_at(bytes.len() - 64);
    let body: TokenBody =
        ouroboros_db::codec::decode("join token", TAG_TOKEN, signed).map_err(|_| bad())?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| bad())?;
    if !verify(&body.cluster.admin, signed, &sig) {
        return Err(bad());
    }
    if body.expires <= now_nanos() {
        return Err(ClusterError::Token(
            "expired: ask for a new one (ouro cluster invite)".into(),
        ));
    }
    Ok(body)
}

/// Parses a duration such as `30m`, `2h`, `1d` or `90s` (plain numbers are seconds).
pub fn parse_ttl(s: &str) -> Result<std::time::Duration> {
    // A
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| {
        ClusterError::Token(format!("duration {s:?} must look like 90s, 30m, 2h or 1d"))
    })?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => {
            return Err(ClusterError::Token(format!(
                "duration {s:?} must look like 90s, 30m, 2h or 1d"
            )))
        }
    };
    if secs == 0 {
        return Err(ClusterError::Token(
            "a token must live longer than 0 s".into(),
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Joins the cluster a token names: connects to the inviter with the invitation key
/// (trusting only the inviter's key), sends this node's key, and creates the store as a
/// replica from the answer. Returns the new store.
pub async fn join(
    store: &std::path::Path,
    token: &str,
    key: &NodeKey,
    addr: &std::net::SocketAddr,
) -> Result<std::sync::Arc<ouroboros_db::Cas>> {
    // PA
    let body = parse(token)?;
    if addr.port() == 0 {
        return Err(ClusterError::Token(
            "joining needs a fixed port: pass --listen HOST:PORT".into(),
        ));
    }
    let invite = NodeKey::from_pkcs8(&body.invite_key)?;
    let inviter: std::net::SocketAddr = body
        .addr
        .parse()
        .map_err(|_| ClusterError::Token(format!("bad inviter address {:?}", body.addr)))?;
    let pins: std::sync::Arc<dyn crate::authenticator::PinSet> =
        std::sync::Arc::new(crate::membership::OnlyKey(body.inviter));
    let bind: std::net::SocketAddr = if inviter.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| ClusterError::Token("address".into()))?;
    let ep = crate::tunnel::endpoint(bind, &invite, std::sync::Arc::clone(&pins))?;
    let conn = crate::tunnel::connect(&ep, inviter).await.map_err(|e| {
        ClusterError::Token(format!(
            "the inviter at {inviter} refused it (already used, expired or revoked?): {e}"
        ))
    })?;
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| {
            ClusterError::Token(format!("refused by the inviter (already used?): {e}"))
        })?;
        crate::message::write_frame(
            &mut send,
            &crate::message::Request::Join {
                node: key.public(),
                addr: addr.to_string(),
            },
        )
        .await?;
        let _ = send.finish();
        crate::message::read_frame::<crate::message::Response>(&mut recv).await
    };
    let resp = tokio::time::timeout(crate::context::CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| ClusterError::Token("the inviter did not answer".into()))?
        .map_err(|e| ClusterError::Token(format!("refused by the inviter (already used?): {e}")))?;
    conn.close(0u32.into(), b"joined");
    ep.close(0u32.into(), b"joined");
    let (seed, info, members, addrs) = match resp {
        crate::message::Response::Joined {
            seed,
            info,
            members,
            addrs,
        } => (seed, info, members, addrs),
        crate::message::Response::Error(e) => {
            return Err(ClusterError::Token(format!("refused: {e}")))
        }
        _ => return Err(ClusterError::Protocol("unexpected answer to join".into())),
    };
    if info != body.cluster {
        return Err(ClusterError::Token(
            "the inviter belongs to another cluster".into(),
        ));
    }
    let cas = std::sync::Arc::new(ouroboros_db::Cas::create_replica(store, &seed)?);
    let m = Membership::new(std::sync::Arc::clone(&cas));
    m.set_info(&info)?;
    for rec in &members {
        m.merge_member(&info, rec)?;
    }
    for (n, a) in addrs {
        m.set_addr(&n, &a)?;
    }
    Ok(cas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn admin_store() -> (tempfile::TempDir, Membership) {
        let dir = tempfile::tempdir().unwrap();
        let cas = ouroboros_db::Cas::create(
            dir.path(),
            &ouroboros_db::CreateOptions::default(),
            &ouroboros_db::Identity::generate(),
        )
        .unwrap();
        let cas = Arc::new(cas);
        crate::admin::init(Arc::clone(&cas)).unwrap();
        let m = Membership::new(cas);
        m.set_self_addr("127.0.0.1:7700").unwrap();
        (dir, m)
    }

    #[test]
    fn tokens_verify_and_expire_and_tampering_is_caught() {
        let (dir, m) = admin_store();
        let token =
            crate::admin::invite(Arc::clone(m.cas()), std::time::Duration::from_secs(1)).unwrap();
        let body = parse(&token).unwrap();
        assert_eq!(body.addr, "127.0.0.1:7700");
        assert!(m.is_open_invite(&NodeKey::from_pkcs8(&body.invite_key).unwrap().public()));
        // Any changed character is caught by the signature (or the encoding).
        for pos in [TOKEN_PREFIX.len() + 3, token.len() / 2, token.len() - 2] {
            let mut t = token.clone().into_bytes();
            t[pos] = if t[pos] == b'A' { b'B' } else { b'A' };
            assert!(
                parse(&String::from_utf8(t).unwrap()).is_err(),
                "tampered at {pos}"
            );
        }
        assert!(parse("ouro-join-1.").is_err());
        assert!(parse("hello").is_err());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(matches!(parse(&token), Err(ClusterError::Token(t)) if t.contains("expired")));
        drop(dir);
    }

    #[test]
    fn an_invitation_admits_once() {
        let (_dir, m) = admin_store();
        let token =
            crate::admin::invite(Arc::clone(m.cas()), std::time::Duration::from_secs(60)).unwrap();
        let key = NodeKey::from_pkcs8(&parse(&token).unwrap().invite_key)
            .unwrap()
            .public();
        assert!(m.claim_invite(&key).unwrap());
        assert!(!m.claim_invite(&key).unwrap(), "a token admits one node");
        assert!(!m.is_open_invite(&key));
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_ttl("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_ttl("1d").unwrap().as_secs(), 86400);
        for bad in ["", "0", "5x", "h", "-1m"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
