//! AES-256-GCM over a chunk's flagged body, under the chunk's own derived key.
//!
//! Every chunk id has its own key, and every sealing draws a random 96-bit nonce (stored in
//! the chunk record): a chunk sealed twice with different compressed bytes never reuses a
//! (key, nonce) pair.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::error::{Error, Result};

/// Authentication tag length appended to every sealed payload.
pub const TAG_LEN: usize = 16;
const AAD: &[u8] = b"ouro chunk v1";

fn key(k: &[u8; 32]) -> Result<LessSafeKey> {
    // PA
    UnboundKey::new(&AES_256_GCM, k)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Internal("cannot build the AES key".into()))
}

/// Encrypts `buf` in place under `nonce` and appends the tag.
pub fn seal_in_place(k: &[u8; 32], nonce: [u8; 12], buf: &mut Vec<u8>) -> Result<()> {
    // PA
    seal_tail(k, nonce, buf, 0)
}

/// Encrypts `buf[start..]` in place and appends its tag: a pack seals each member after the
/// ones before it in one buffer.
pub fn seal_tail(k: &[u8; 32], nonce: [u8; 12], buf: &mut Vec<u8>, start: usize) -> Result<()> {
    // PA
    let tail = buf
        .get_mut(start..)
        .ok_or_else(|| Error::Internal("encryption past the end of the buffer".into()))?;
    let tag = key(k)?
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), tail)
        .map_err(|_| Error::Internal("encryption failed".into()))?;
    buf.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Decrypts and authenticates `buf` in place; returns the plaintext length.
pub fn open_in_place(k: &[u8; 32], nonce: [u8; 12], buf: &mut [u8]) -> Result<usize> {
    // PA
    key(k)?
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), buf)
        .map(|p| p.len())
        .map_err(|_| Error::Corrupt("chunk fails authentication (wrong key or damaged)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip_and_tamper(data in prop::collection::vec(any::<u8>(), 0..2000), flip in any::<usize>()) {
            let k = [5u8; 32];
            let mut buf = data.clone();
            seal_in_place(&k, [1; 12], &mut buf).unwrap();
            prop_assert_eq!(buf.len(), data.len() + TAG_LEN);
            let mut bad = buf.clone();
            let i = flip % bad.len();
            bad[i] ^= 1;
            prop_assert!(open_in_place(&k, [1; 12], &mut bad).is_err());
            prop_assert!(open_in_place(&[6u8; 32], [1; 12], &mut buf.clone()).is_err(), "wrong key must fail");
            prop_assert!(open_in_place(&k, [2; 12], &mut buf.clone()).is_err(), "wrong nonce must fail");
            let n = open_in_place(&k, [1; 12], &mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &data[..]);
        }
    }
}
