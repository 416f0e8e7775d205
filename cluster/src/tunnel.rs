//! MessageTunnel, transport part: QUIC endpoints whose TLS 1.3 handshake pins raw Ed25519 keys.
//!
//! The TLS side lives in [`crate::authenticator`]; this module wraps it into quinn endpoints with
//! the transport settings of the cluster and connects with a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::CertificateDer;

use crate::authenticator::{client_crypto, key_from_spki, server_crypto, NodeKey, PinSet};

/// The ALPN protocol both sides must offer: version 1 of the ouro cluster protocol.
pub const ALPN: &[u8] = b"ouro/1";

/// The TLS server name sent when connecting; it is ignored because keys are pinned.
const SERVER_NAME: &str = "ouro";

/// How long a connection attempt (QUIC and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong while setting up keys, endpoints or connections.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A node key that cannot be read, generated or used.
    #[error("node key: {0}")]
    Key(String),
    /// The TLS or QUIC configuration cannot be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address to bind.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A connection could not be established (unreachable, refused, or a key that is not pinned).
    #[error("connection to {addr} failed: {reason}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// Why it failed.
        reason: String,
    },
    /// The handshake did not complete in time.
    #[error("connection to {0} timed out after 5 s: is a node running there?")]
    Timeout(SocketAddr),
    /// A socket operation failed.
    #[error("network I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A QUIC endpoint on `bind` that accepts nodes `pins` allows and connects as `key` by default.
/// Must be called inside a tokio runtime.
pub fn endpoint(
    bind: SocketAddr,
    key: &NodeKey,
    pins: Arc<dyn PinSet>,
) -> Result<quinn::Endpoint, TransportError> {
    // PA
    let tls = QuicServerConfig::try_from(server_crypto(key, pins.clone())?)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls));
    server.transport_config(transport());
    let bound = |source| TransportError::Bind { addr: bind, source };
    let socket = std::net::UdpSocket::bind(bind).map_err(bound)?;
    grow_buffers(&socket);
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bound)?;
    ep.set_default_client_config(client_config(key, pins)?);
    Ok(ep)
}

/// A client configuration presenting `key` and accepting servers `pins` allows: for connecting
/// as another key than the endpoint's (e.g. a one-time invite key) with [`connect_with`].
pub fn client_config(
    key: &NodeKey,
    pins: Arc<dyn PinSet>,
) -> Result<quinn::ClientConfig, TransportError> {
    // PA
    let tls = QuicClientConfig::try_from(client_crypto(key, pins)?)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(tls));
    config.transport_config(transport());
    Ok(config)
}

/// Connects to the node at `addr` with the endpoint's own key; fails if the handshake (including
/// both key checks) does not complete within 5 s.
pub async fn connect(
    ep: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<quinn::Connection, TransportError> {
    // A
    let connecting = ep
        .connect(addr, SERVER_NAME)
        .map_err(|e| connect_error(addr, e))?;
    finish(connecting, addr).await
}

/// Connects to the node at `addr` with another client configuration (see [`client_config`]),
/// with the same 5 s timeout as [`connect`].
pub async fn connect_with(
    ep: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<quinn::Connection, TransportError> {
    // A
    let connecting = ep
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| connect_error(addr, e))?;
    finish(connecting, addr).await
}

/// The peer's Ed25519 public key, as verified against the pin set during the handshake.
pub fn peer_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
    // PA
    // With raw public keys, rustls reports the peer's SubjectPublicKeyInfo as its only
    // "certificate"; quinn hands that out as a boxed Vec<CertificateDer>.
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    key_from_spki(certs.first()?.as_ref())
}

/// Waits for a handshake to finish, at most [`CONNECT_TIMEOUT`].
async fn finish(
    connecting: quinn::Connecting,
    addr: SocketAddr,
) -> Result<quinn::Connection, TransportError> {
    // A
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_error(addr, e)),
        Err(_) => Err(TransportError::Timeout(addr)),
    }
}

/// Turns a quinn error into a [`TransportError::Connect`] for `addr`.
fn connect_error(addr: SocketAddr, e: impl std::fmt::Display) -> TransportError {
    // A
    TransportError::Connect {
        addr,
        reason: e.to_string(),
    }
}

/// Socket buffer asked for each way. Slices arrive in bursts from several peers at once;
/// a datagram that finds the receive buffer full is lost, and every loss shrinks the
/// sender's congestion window (with Linux's default of 208 KiB, one 512 MiB read on a
/// 6-node loopback cluster lost about 1,000 datagrams; with 8 MiB, none). The kernel caps
/// the size at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 8 << 20;

/// Asks for [`SOCKET_BUFFER`] bytes of socket buffer each way; says when the kernel
/// gives less (a node still works, but loses more datagrams under load).
fn grow_buffers(socket: &std::net::UdpSocket) {
    // A
    let Ok(state) = quinn::udp::UdpSocketState::new(socket.into()) else {
        return;
    };
    let _ = state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER);
    let _ = state.set_send_buffer_size(socket.into(), SOCKET_BUFFER);
    let got = state.recv_buffer_size(socket.into()).unwrap_or(0);
    if got < SOCKET_BUFFER {
        tracing::warn!(
            asked = SOCKET_BUFFER,
            got,
            "the kernel limits UDP receive buffers (raise net.core.rmem_max and wmem_max to 8388608 for fewer losses under load)"
        );
    }
}

/// The cluster's QUIC transport settings: keep-alive 2 s, idle timeout 10 s, 256 concurrent
/// bidirectional streams, windows large enough for multi-MiB messages. MTU discovery keeps
/// quinn's bounds (up to 1452 bytes, what peers accept by default): 8952-byte jumbo
/// packets made no difference to a loopback cluster's CPU time per byte here.
fn transport() -> Arc<TransportConfig> {
    // A
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(2)))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(10_000))))
        .max_concurrent_bidi_streams(VarInt::from_u32(256))
        .max_concurrent_uni_streams(VarInt::from_u32(16))
        .stream_receive_window(VarInt::from_u32(16 << 20))
        .receive_window(VarInt::from_u32(64 << 20))
        .send_window(64 << 20);
    Arc::new(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed set of pinned keys.
    #[derive(Debug)]
    struct Pins(Vec<[u8; 32]>);

    impl PinSet for Pins {
        fn allows(&self, key: &[u8; 32]) -> bool {
            self.0.contains(key)
        }
    }

    fn pins(keys: &[&NodeKey]) -> Arc<dyn PinSet> {
        Arc::new(Pins(keys.iter().map(|k| k.public()).collect()))
    }

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Accepts one connection and echoes one stream with a "pong: " prefix. Returns the peer key
    /// and the bytes read, or the error of the handshake; `None` if nothing arrived in time.
    async fn serve_once(
        ep: quinn::Endpoint,
    ) -> Option<Result<([u8; 32], Vec<u8>), quinn::ConnectionError>> {
        let work = async {
            let incoming = ep.accept().await?;
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            let key = peer_key(&conn).unwrap();
            let (mut send, mut recv) = match conn.accept_bi().await {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let data = recv.read_to_end(1 << 20).await.unwrap();
            let mut reply = b"pong: ".to_vec();
            reply.extend_from_slice(&data);
            send.write_all(&reply).await.unwrap();
            send.finish().unwrap();
            conn.closed().await;
            Some(Ok((key, data)))
        };
        tokio::time::timeout(Duration::from_secs(8), work)
            .await
            .ok()
            .flatten()
    }

    /// Opens a stream, sends `msg` and reads the whole answer.
    async fn ping(conn: &quinn::Connection, msg: &[u8]) -> Result<Vec<u8>, String> {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(msg).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn pinned_nodes_talk() {
        let a = NodeKey::generate().unwrap();
        let b = NodeKey::generate().unwrap();
        let ep_a = endpoint(local(), &a, pins(&[&b])).unwrap();
        let ep_b = endpoint(local(), &b, pins(&[&a])).unwrap();
        let addr_a = ep_a.local_addr().unwrap();
        let server = tokio::spawn(serve_once(ep_a.clone()));

        let conn = connect(&ep_b, addr_a).await.unwrap();
        assert_eq!(peer_key(&conn), Some(a.public()));
        assert_eq!(
            conn.handshake_data()
                .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|h| h.protocol),
            Some(ALPN.to_vec())
        );
        let answer = ping(&conn, b"ping").await.unwrap();
        assert_eq!(answer, b"pong: ping");
        conn.close(VarInt::from_u32(0), b"done");

        let (key, data) = server.await.unwrap().unwrap().unwrap();
        assert_eq!(key, b.public());
        assert_eq!(data, b"ping");
    }

    #[tokio::test]
    async fn invite_key_via_client_config() {
        let a = NodeKey::generate().unwrap();
        let b = NodeKey::generate().unwrap();
        let invite = NodeKey::generate().unwrap();
        // A pins only the invite key, not B's own key.
        let ep_a = endpoint(local(), &a, pins(&[&invite])).unwrap();
        let ep_b = endpoint(local(), &b, pins(&[&a])).unwrap();
        let addr_a = ep_a.local_addr().unwrap();
        let server = tokio::spawn(serve_once(ep_a.clone()));

        let cfg = client_config(&invite, pins(&[&a])).unwrap();
        let conn = connect_with(&ep_b, cfg, addr_a).await.unwrap();
        assert_eq!(peer_key(&conn), Some(a.public()));
        assert_eq!(ping(&conn, b"join").await.unwrap(), b"pong: join");
        conn.close(VarInt::from_u32(0), b"done");

        let (key, data) = server.await.unwrap().unwrap().unwrap();
        assert_eq!(key, invite.public());
        assert_eq!(data, b"join");
    }

    #[tokio::test]
    async fn server_refuses_unpinned_client() {
        let a = NodeKey::generate().unwrap();
        let b = NodeKey::generate().unwrap();
        let stranger = NodeKey::generate().unwrap();
        // A pins someone else; B trusts A.
        let ep_a = endpoint(local(), &a, pins(&[&stranger])).unwrap();
        let ep_b = endpoint(local(), &b, pins(&[&a])).unwrap();
        let addr_a = ep_a.local_addr().unwrap();
        let server = tokio::spawn(serve_once(ep_a.clone()));

        // In TLS 1.3 the client may consider its side of the handshake done before the server
        // has checked the client's key, so either the connect or the first stream fails.
        let client = match connect(&ep_b, addr_a).await {
            Ok(conn) => ping(&conn, b"secret").await,
            Err(e) => Err(e.to_string()),
        };
        let err = client.unwrap_err();
        assert!(!err.is_empty());

        // The server never got a connection, so it never read application data.
        match server.await.unwrap() {
            Some(Err(_)) => {}
            other => panic!("server accepted an unpinned client: {other:?}"),
        }
    }

    #[tokio::test]
    async fn client_refuses_unpinned_server() {
        let a = NodeKey::generate().unwrap();
        let b = NodeKey::generate().unwrap();
        let stranger = NodeKey::generate().unwrap();
        // A trusts B, but B pins someone else.
        let ep_a = endpoint(local(), &a, pins(&[&b])).unwrap();
        let ep_b = endpoint(local(), &b, pins(&[&stranger])).unwrap();
        let addr_a = ep_a.local_addr().unwrap();
        let server = tokio::spawn(serve_once(ep_a.clone()));

        let err = connect(&ep_b, addr_a).await.unwrap_err();
        assert!(
            matches!(&err, TransportError::Connect { addr, .. } if *addr == addr_a),
            "{err}"
        );

        match server.await.unwrap() {
            Some(Err(_)) => {}
            other => panic!("server got a connection from a refusing client: {other:?}"),
        }
    }

    #[tokio::test]
    async fn connect_times_out_without_a_node() {
        let b = NodeKey::generate().unwrap();
        let ep_b = endpoint(local(), &b, pins(&[])).unwrap();
        // A bound but silent UDP socket: no QUIC node answers there.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let err = connect(&ep_b, addr).await.unwrap_err();
        assert!(
            matches!(err, TransportError::Timeout(a) if a == addr),
            "{err}"
        );
    }
}
