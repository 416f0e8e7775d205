//! The 32-byte BLAKE3 digest that addresses every object, with hex forms for humans.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A BLAKE3 digest: the address of a blob, chunk or sealed slice.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Hash(pub [u8; 32]);

/// Number of hex digits shown in short forms (`log --oneline`, mount version names).
pub const SHORT_HEX: usize = 8;

impl Hash {
    /// Hashes bytes with plain (unkeyed) BLAKE3.
    pub fn of(bytes: &[u8]) -> Self {
        // A
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// The full lowercase hex form (64 digits).
    pub fn to_hex(&self) -> String {
        // A
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }

    /// The first [`SHORT_HEX`] hex digits, as `log --oneline` prints them.
    pub fn short(&self) -> String {
        // A
        let mut s = self.to_hex();
        s.truncate(SHORT_HEX);
        s
    }

    /// Parses a full 64-digit hex hash; `None` if it is not one.
    pub fn from_hex(s: &str) -> Option<Self> {
        // A
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Hash(out))
    }

    /// The first 16 bytes as a number: a fingerprint for in-memory sets of many hashes at
    /// half the memory (two distinct digests share one only by a 128-bit collision).
    pub fn print(&self) -> u128 {
        // A
        let mut first = [0u8; 16];
        first.copy_from_slice(&self.0[..16]);
        u128::from_le_bytes(first)
    }

    /// True when the hex form starts with `prefix` (lowercase hex digits).
    pub fn has_hex_prefix(&self, prefix: &str) -> bool {
        // A
        self.to_hex().starts_with(prefix)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A
        write!(f, "Hash({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let h = Hash(bytes);
            prop_assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
            prop_assert!(h.has_hex_prefix(&h.short()));
        }
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!(Hash::from_hex("zz"), None);
        assert_eq!(Hash::from_hex(&"g".repeat(64)), None);
    }
}
