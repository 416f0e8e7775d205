//! age identities (who can read a store) and recipients (who a store's keys are wrapped for).
//!
//! Each recipient gets its own small age file holding the epoch's secret bundle, so recipient
//! kinds that age refuses to mix in one file (X25519 and post-quantum `tagpq`) can coexist.

use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;

use crate::error::{Error, Result};

/// A secret age identity able to unwrap a store's keys.
pub struct Identity {
    inner: age::x25519::Identity,
}

/// A public age recipient the store's keys are wrapped for.
#[derive(Clone)]
pub enum Recipient {
    /// Classic X25519 recipient (`age1...`).
    X25519(age::x25519::Recipient),
    /// Hybrid post-quantum ML-KEM-768 + P-256 recipient (`age1tagpq1...`, e.g. hardware keys).
    TagPq(Box<age::tagpq::Recipient>),
}

impl Identity {
    /// Generates a fresh X25519 identity.
    pub fn generate() -> Self {
        // PA
        Identity {
            inner: age::x25519::Identity::generate(),
        }
    }

    /// Parses identity file text: comments (`#`) and blank lines are skipped; the first
    /// `AGE-SECRET-KEY-1...` line is the identity.
    pub fn parse(text: &str) -> Result<Self> {
        // PA
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| Error::Identity("the identity file holds no key".into()))?;
        let inner = age::x25519::Identity::from_str(line).map_err(|_| {
            Error::Identity(
                "the identity file does not hold an age X25519 secret key (AGE-SECRET-KEY-1...)"
                    .into(),
            )
        })?;
        Ok(Identity { inner })
    }

    /// Loads an identity file, refusing one that group or others can access (as ssh does),
    /// and anything but a small regular file (a directory, a FIFO, `/dev/zero`).
    pub fn load(path: &Path) -> Result<Self> {
        // PA
        let shown = path.display().to_string();
        let bytes = crate::crypto::secret_file::read(path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::Identity(format!(
                    "no identity file at {shown} (run `ouro init` or pass --identity)"
                ))
            }
            Error::Io { source, .. } => {
                Error::Identity(format!("cannot read identity file {shown}: {source}"))
            }
            Error::Identity(why) => Error::Identity(format!("identity file {why}")),
            other => other,
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Identity(format!("identity file {shown} is not text")))?;
        Self::parse(&text)
    }

    /// Writes the identity to a new file with mode 0600, failing if the file exists.
    pub fn save_new(&self, path: &Path) -> Result<()> {
        // PA
        let text = format!(
            "# ouro identity: keep it secret and back it up; without it the store cannot be read\n# public key: {}\n{}\n",
            self.recipient(),
            self.inner.to_string().expose_secret()
        );
        crate::crypto::secret_file::write_new(path, text.as_bytes())
    }

    /// The public recipient of this identity.
    pub fn recipient(&self) -> Recipient {
        // A
        Recipient::X25519(self.inner.to_public())
    }

    /// Decrypts an age file wrapped for this identity.
    pub(crate) fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>> {
        // PA
        age::decrypt(&self.inner, wrapped)
            .map_err(|e| Error::Identity(format!("cannot unwrap the store key: {e}")))
    }
}

impl Recipient {
    /// Parses `age1...` (X25519) or `age1tagpq1...` (post-quantum hybrid) recipients.
    pub fn parse(s: &str) -> Result<Self> {
        // A
        let s = s.trim();
        if s.starts_with("age1tagpq1") {
            return age::tagpq::Recipient::from_str(s)
                .map(|r| Recipient::TagPq(Box::new(r)))
                .map_err(|e| {
                    Error::InvalidArgument(format!("bad post-quantum recipient {s:?}: {e}"))
                });
        }
        age::x25519::Recipient::from_str(s)
            .map(Recipient::X25519)
            .map_err(|e| {
                Error::InvalidArgument(format!("bad age recipient {s:?}: {e} (expected age1...)"))
            })
    }

    /// Stable fingerprint used as the KeyIndex key: BLAKE3 of the recipient's text form.
    pub fn fingerprint(&self) -> crate::hash::Hash {
        // A
        crate::hash::Hash::of(self.to_string().as_bytes())
    }

    /// Encrypts `secret` to this recipient as a binary age file.
    pub(crate) fn wrap(&self, secret: &[u8]) -> Result<Vec<u8>> {
        // PA
        let r = match self {
            Recipient::X25519(r) => age::encrypt(r, secret),
            Recipient::TagPq(r) => age::encrypt(r.as_ref(), secret),
        };
        r.map_err(|e| Error::Identity(format!("cannot wrap the store key for {self}: {e}")))
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        write!(f, "Recipient({self})")
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A
        match self {
            Recipient::X25519(r) => write!(f, "{r}"),
            Recipient::TagPq(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_file_permissions() {
        let id = Identity::generate();
        let w = id.recipient().wrap(b"secret").unwrap();
        assert_eq!(id.unwrap(&w).unwrap(), b"secret");
        assert!(Identity::generate().unwrap(&w).is_err());

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.txt");
        id.save_new(&p).unwrap();
        let back = Identity::load(&p).unwrap();
        assert_eq!(back.recipient().to_string(), id.recipient().to_string());
        assert!(id.save_new(&p).is_err(), "never overwrites an identity");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::load(&p).err().unwrap().to_string();
        assert!(e.contains("accessible by group or others"), "{e}");
    }

    #[test]
    fn recipient_parsing() {
        let r = Identity::generate().recipient().to_string();
        assert!(Recipient::parse(&r).is_ok());
        assert!(Recipient::parse("age1nope").is_err());
        assert!(Identity::parse("# only a comment\n").is_err());
        assert!(Identity::parse("AGE-SECRET-KEY-1XYZ").is_err());
    }
}
