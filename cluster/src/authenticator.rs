//! MessageAuthenticator: node keys and the TLS 1.3 configurations that pin them.
//!
//! Every node is identified by an Ed25519 key. Both sides of a connection present that key as
//! an RFC 7250 raw public key (a bare SubjectPublicKeyInfo, no X.509 certificate), and each side
//! accepts the other only if its [`PinSet`] allows the key. A key that is not pinned fails the
//! TLS handshake, so no application data is ever read from it.
//!
//! Key exchange: the ring crypto provider of rustls 0.23.46 offers only X25519, secp256r1 and
//! secp384r1 (`rustls::crypto::ring::ALL_KX_GROUPS`). The post-quantum hybrid X25519MLKEM768
//! exists only in the aws-lc-rs provider (`rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768`),
//! so it is not available here; X25519 is the first (preferred) group.
//!
//! Session resumption is disabled on both sides: a resumed TLS 1.3 session skips the certificate
//! verifiers, which would let a key that was removed from the pin set back in.

use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme,
};

use crate::tunnel::{TransportError, ALPN};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 },
/// BIT STRING (0 unused bits) }, followed by the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Decides which node keys may connect (admitted members, pending one-time invites).
pub trait PinSet: Send + Sync + std::fmt::Debug {
    /// True when the node with this Ed25519 public key may complete a handshake with us.
    fn allows(&self, key: &[u8; 32]) -> bool;
}

/// Our own node key: an Ed25519 key pair, kept with its PKCS#8 v2 encoding so it can be stored.
pub struct NodeKey {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
    public: [u8; 32],
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        // Never print the private key.
        let hex: String = self.public.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("NodeKey").field("public", &hex).finish()
    }
}

impl NodeKey {
    /// Reads a key pair from PKCS#8 v2 bytes (as written by [`NodeKey::pkcs8`]); the embedded
    /// public key is checked against the private key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<NodeKey, TransportError> {
        // PA
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| TransportError::Key(format!("not an Ed25519 PKCS#8 v2 key: {e}")))?;
        let public = <[u8; 32]>::try_from(pair.public_key().as_ref())
            .map_err(|_| TransportError::Key("Ed25519 public key is not 32 bytes".into()))?;
        Ok(NodeKey {
            pkcs8: pkcs8.to_vec(),
            pair,
            public,
        })
    }

    /// Creates a fresh random key pair from the system's secure random source.
    pub fn generate() -> Result<NodeKey, TransportError> {
        // PA
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| TransportError::Key("cannot generate an Ed25519 key".into()))?;
        NodeKey::from_pkcs8(doc.as_ref())
    }

    /// The 32-byte Ed25519 public key: the node's identity in the cluster.
    pub fn public(&self) -> [u8; 32] {
        // A
        self.public
    }

    /// The PKCS#8 v2 encoding of the key pair, for storing it (it is secret).
    pub fn pkcs8(&self) -> &[u8] {
        // A
        &self.pkcs8
    }

    /// Signs `msg` with the private key (Ed25519), for messages outside the TLS channel.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        // PA
        let sig = self.pair.sign(msg);
        let mut out = [0u8; 64];
        // An Ed25519 signature is always 64 bytes; zip avoids a panicking slice copy.
        out.iter_mut().zip(sig.as_ref()).for_each(|(o, s)| *o = *s);
        out
    }

    /// The rustls view of this key: a signing key with its raw public key as the "certificate".
    fn certified(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TransportError> {
        // PA
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()));
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| TransportError::Key(format!("rustls rejects the node key: {e}")))?;
        let spki = spki_der(&self.public);
        // CertifiedKey::from_der would try to parse the SPKI as an X.509 certificate, so compare
        // the public keys here instead.
        match signing.public_key() {
            Some(k) if k.as_ref() == spki.as_slice() => {}
            _ => {
                return Err(TransportError::Key(
                    "rustls derives another public key".into(),
                ))
            }
        }
        Ok(Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(spki)],
            signing,
        )))
    }
}

/// Checks an Ed25519 signature made by [`NodeKey::sign`]; false for any bad key or signature.
pub fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    // PA
    UnparsedPublicKey::new(&ED25519, public)
        .verify(msg, sig)
        .is_ok()
}

/// The SubjectPublicKeyInfo DER of an Ed25519 key: what TLS carries as a raw public key.
pub fn spki_der(public: &[u8; 32]) -> Vec<u8> {
    // A
    let mut der = Vec::with_capacity(SPKI_PREFIX.len() + public.len());
    der.extend_from_slice(&SPKI_PREFIX);
    der.extend_from_slice(public);
    der
}

/// The Ed25519 key inside a SubjectPublicKeyInfo DER, or None if it is anything else.
pub fn key_from_spki(der: &[u8]) -> Option<[u8; 32]> {
    // A
    let key = der.strip_prefix(SPKI_PREFIX.as_slice())?;
    <[u8; 32]>::try_from(key).ok()
}

/// The TLS configuration a node accepts connections with: TLS 1.3, raw public keys, client keys
/// required and accepted only when `pins` allows them.
pub fn server_crypto(
    key: &NodeKey,
    pins: Arc<dyn PinSet>,
) -> Result<rustls::ServerConfig, TransportError> {
    // PA
    let provider = Arc::new(provider());
    let certified = key.certified(&provider)?;
    let verifier = Arc::new(PinnedKeyVerifier::new(pins, &provider));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(certified)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every connection runs the verifier against the current pin set.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The TLS configuration a node connects with: TLS 1.3, raw public keys, our key presented, the
/// server's key accepted only when `pins` allows it (the server name is ignored).
pub fn client_crypto(
    key: &NodeKey,
    pins: Arc<dyn PinSet>,
) -> Result<rustls::ClientConfig, TransportError> {
    // PA
    let provider = Arc::new(provider());
    let certified = key.certified(&provider)?;
    let verifier = Arc::new(PinnedKeyVerifier::new(pins, &provider));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(certified)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every connection runs the verifier against the current pin set.
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

/// The ring provider, built explicitly (no process-wide default). ring has no X25519MLKEM768,
/// so the groups are ring's own, X25519 first.
fn provider() -> CryptoProvider {
    // PA
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![
        rustls::crypto::ring::kx_group::X25519,
        rustls::crypto::ring::kx_group::SECP256R1,
        rustls::crypto::ring::kx_group::SECP384R1,
    ];
    provider
}

/// Verifies the peer's raw Ed25519 public key against a pin set, on either side of a handshake.
#[derive(Debug)]
struct PinnedKeyVerifier {
    pins: Arc<dyn PinSet>,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedKeyVerifier {
    /// A verifier that checks signatures with the provider's algorithms and keys with `pins`.
    fn new(pins: Arc<dyn PinSet>, provider: &CryptoProvider) -> Self {
        // PA
        PinnedKeyVerifier {
            pins,
            algs: provider.signature_verification_algorithms,
        }
    }

    /// Accepts exactly one raw Ed25519 public key that the pin set allows.
    fn check_key(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), TlsError> {
        // PA
        if !intermediates.is_empty() {
            return Err(TlsError::InvalidCertificate(CertificateError::BadEncoding));
        }
        let key = key_from_spki(end_entity.as_ref())
            .ok_or(TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.pins.allows(&key) {
            Ok(())
        } else {
            Err(TlsError::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    /// Checks a TLS 1.3 handshake signature made with the peer's raw Ed25519 key.
    fn check_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // PA
        if dss.scheme != SignatureScheme::ED25519 || key_from_spki(cert.as_ref()).is_none() {
            return Err(TlsError::InvalidCertificate(CertificateError::BadEncoding));
        }
        let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
        verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
    }
}

impl ServerCertVerifier for PinnedKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        // PA
        // The server name is ignored: the key itself is pinned.
        self.check_key(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // PA
        Err(TlsError::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // PA
        self.check_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // PA
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        // PA
        true
    }
}

impl ClientCertVerifier for PinnedKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        // PA
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // PA
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // PA
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        // PA
        self.check_key(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // PA
        Err(TlsError::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // PA
        self.check_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // PA
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        // PA
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn spki_round_trip(key in any::<[u8; 32]>()) {
            let der = spki_der(&key);
            prop_assert_eq!(der.len(), 44);
            prop_assert_eq!(key_from_spki(&der), Some(key));
            // Anything else is refused: truncated, extended, or another algorithm.
            prop_assert_eq!(key_from_spki(&der[..43]), None);
            let mut longer = der.clone();
            longer.push(0);
            prop_assert_eq!(key_from_spki(&longer), None);
            let mut other = der.clone();
            other[8] = 0x71; // Ed448's OID ends in 113
            prop_assert_eq!(key_from_spki(&other), None);
        }
    }

    #[test]
    fn spki_matches_ring_and_rustls() {
        let key = NodeKey::generate().unwrap();
        let provider = provider();
        let certified = key.certified(&provider).unwrap();
        assert_eq!(
            certified.cert[0].as_ref(),
            spki_der(&key.public()).as_slice()
        );
    }

    #[test]
    fn pkcs8_round_trip_and_signatures() {
        let key = NodeKey::generate().unwrap();
        let again = NodeKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(key.public(), again.public());
        let sig = key.sign(b"hello");
        assert!(verify(&key.public(), b"hello", &sig));
        assert!(!verify(&key.public(), b"hellO", &sig));
        let other = NodeKey::generate().unwrap();
        assert!(!verify(&other.public(), b"hello", &sig));
        assert!(NodeKey::from_pkcs8(b"not a key").is_err());
    }

    #[test]
    fn ring_has_no_post_quantum_group() {
        let names: Vec<_> = rustls::crypto::ring::ALL_KX_GROUPS
            .iter()
            .map(|g| g.name())
            .collect();
        assert!(!names.contains(&rustls::NamedGroup::X25519MLKEM768));
        assert_eq!(provider().kx_groups[0].name(), rustls::NamedGroup::X25519);
    }
}
