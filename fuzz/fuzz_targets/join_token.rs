//! Join tokens (`ouro_cluster::bootstrapper::parse`: prefix, base64, signed body, admin
//! signature, expiry), token lifetimes (`parse_ttl`), and the keys a token and a TLS
//! handshake carry (`NodeKey::from_pkcs8`, `authenticator::key_from_spki`). The token body
//! decoder is also fuzzed directly, since a random signature never verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouro_cluster::authenticator::{key_from_spki, spki_der, NodeKey};
use ouro_cluster::bootstrapper::{parse, parse_ttl};
use ouro_cluster::fuzzing::{decode_token_body, encode_token_body};

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(text) = std::str::from_utf8(data) {
        // Only tokens signed by their cluster's admin key parse (the seed corpus has one;
        // mutations of it must fail the signature).
        if let Ok(body) = parse(text) {
            let again = encode_token_body(&body).unwrap();
            assert_eq!(decode_token_body(&again).ok(), Some(body));
        }
        if let Ok(d) = parse_ttl(text) {
            assert!(d.as_secs() > 0);
        }
    }
    // A token's signed part is `[b'J'][1][postcard TokenBody]`: decode it with the
    // signature already stripped.
    if let Ok(body) = decode_token_body(data) {
        assert_eq!(
            encode_token_body(&body).unwrap(),
            data,
            "non-canonical token body accepted"
        );
        let _ = NodeKey::from_pkcs8(&body.invite_key);
    }
    if let Ok(k) = NodeKey::from_pkcs8(data) {
        assert_eq!(k.pkcs8(), data);
        assert_eq!(key_from_spki(&spki_der(&k.public())), Some(k.public()));
    }
    if let Some(k) = key_from_spki(data) {
        assert_eq!(spki_der(&k), data);
    }
});
