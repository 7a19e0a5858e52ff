//! Shard iterators: opaque, tamper-evident tokens naming a position in a shard.
//!
//! Token = base64 (URL-safe, no padding) of
//!
//! ```text
//! version u8 = 2 | topic id [16] | shard u32 | offset u64 | issued_ms i64 | HMAC-SHA256 [32]
//! ```
//!
//! (integers big-endian). The MAC is keyed with a random 32-byte secret kept in a file, by
//! default [`SECRET_FILE`] in the data directory ([`IteratorKey::load_or_create`], mode 0600;
//! brokers of a cluster must be given the same file until the metadata store carries it), never derived
//! from anything a client can read, so forged or edited tokens are rejected and tokens survive
//! a restart. The topic id, not the name, is inside, so a token of a deleted-and-recreated
//! stream is refused.

use base64::Engine as _;
use std::io::{Read as _, Write as _};
use std::path::Path;

use hmac::{Hmac, KeyInit as _, Mac};
use sha2::Sha256;
use uuid::Uuid;

const VERSION: u8 = 2;
const BODY_LEN: usize = 1 + 16 + 4 + 8 + 8;
const MAC_LEN: usize = 32;

/// The iterator secret's file name in the data directory.
pub const SECRET_FILE: &str = "kinesis-iterator.secret";

/// The iterator secret file cannot be read or written, or is not 32 bytes.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or creating the file failed.
    #[error("iterator secret file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists with the wrong length.
    #[error("iterator secret file {path} holds {len} bytes, not 32")]
    Length {
        /// The file.
        path: std::path::PathBuf,
        /// Its length.
        len: usize,
    },
}

/// A decoded iterator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardIterator {
    /// The stream's topic id.
    pub topic_id: Uuid,
    /// The shard (partition) index.
    pub shard: u32,
    /// The next offset to read.
    pub offset: u64,
    /// When the token was issued, epoch milliseconds.
    pub issued_ms: i64,
}

/// A token that is not one this server issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard iterator")]
pub struct InvalidIterator;

/// Signs and checks iterator tokens.
#[derive(Clone)]
pub struct IteratorKey([u8; 32]);

impl std::fmt::Debug for IteratorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IteratorKey(..)")
    }
}

impl IteratorKey {
    /// A fresh random key (from the operating system's generator, through UUIDv4s' random
    /// bits: 244 random bits over the 32 bytes).
    pub fn random() -> IteratorKey {
        IteratorKey(Self::random_secret())
    }

    /// The bytes of a fresh random key ([`random`](Self::random)): cluster mode offers them as
    /// the candidate for the secret every broker shares.
    pub fn random_secret() -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        key
    }

    /// The key kept in the file `path`: read when present, else created with a fresh random
    /// key, mode 0600, written and synced before use (created exclusively, so two processes
    /// racing on one file agree on the first writer's key).
    pub fn load_or_create(path: &Path) -> Result<IteratorKey, SecretError> {
        let path = path.to_path_buf();
        let io = |source| SecretError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let key = IteratorKey::random();
                file.write_all(&key.0).map_err(io)?;
                file.sync_all().map_err(io)?;
                if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
                    // Best effort: the key is in use either way; a lost file means new iterators.
                    let _ = d.sync_all();
                }
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut bytes = Vec::with_capacity(32);
                std::fs::File::open(&path)
                    .and_then(|f| f.take(64).read_to_end(&mut bytes))
                    .map_err(io)?;
                let key: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| SecretError::Length {
                            path: path.clone(),
                            len: bytes.len(),
                        })?;
                Ok(IteratorKey(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key from its bytes (tests; cluster mode's shared secret).
    pub fn from_bytes(key: [u8; 32]) -> IteratorKey {
        IteratorKey(key)
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.0) {
            m.update(body);
            out.copy_from_slice(&m.finalize().into_bytes());
        }
        out
    }

    /// Encodes and signs an iterator.
    pub fn encode(&self, it: &ShardIterator) -> String {
        let mut buf = Vec::with_capacity(BODY_LEN + MAC_LEN);
        buf.push(VERSION);
        buf.extend_from_slice(it.topic_id.as_bytes());
        buf.extend_from_slice(&it.shard.to_be_bytes());
        buf.extend_from_slice(&it.offset.to_be_bytes());
        buf.extend_from_slice(&it.issued_ms.to_be_bytes());
        let mac = self.mac(&buf);
        buf.extend_from_slice(&mac);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    }

    /// Checks and decodes a token.
    pub fn decode(&self, token: &str) -> Result<ShardIterator, InvalidIterator> {
        if token.len() > 160 {
            return Err(InvalidIterator);
        }
        let buf = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidIterator)?;
        if buf.len() != BODY_LEN + MAC_LEN {
            return Err(InvalidIterator);
        }
        let (body, mac) = buf.split_at(BODY_LEN);
        // `verify_slice` compares in constant time.
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).map_err(|_| InvalidIterator)?;
        m.update(body);
        m.verify_slice(mac).map_err(|_| InvalidIterator)?;
        let field = |from: usize, to: usize| body.get(from..to).ok_or(InvalidIterator);
        if body.first() != Some(&VERSION) {
            return Err(InvalidIterator);
        }
        let id: [u8; 16] = field(1, 17)?.try_into().map_err(|_| InvalidIterator)?;
        let shard: [u8; 4] = field(17, 21)?.try_into().map_err(|_| InvalidIterator)?;
        let offset: [u8; 8] = field(21, 29)?.try_into().map_err(|_| InvalidIterator)?;
        let issued: [u8; 8] = field(29, 37)?.try_into().map_err(|_| InvalidIterator)?;
        Ok(ShardIterator {
            topic_id: Uuid::from_bytes(id),
            shard: u32::from_be_bytes(shard),
            offset: u64::from_be_bytes(offset),
            issued_ms: i64::from_be_bytes(issued),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(id in proptest::array::uniform16(0u8..), shard in 0u32.., offset in 0u64.., issued in 0i64..) {
            let key = IteratorKey::from_bytes([7; 32]);
            let it = ShardIterator { topic_id: Uuid::from_bytes(id), shard, offset, issued_ms: issued };
            let token = key.encode(&it);
            prop_assert_eq!(key.decode(&token), Ok(it));
            prop_assert_eq!(IteratorKey::from_bytes([8; 32]).decode(&token), Err(InvalidIterator));
        }

        #[test]
        fn any_edit_is_rejected(pos in 0usize..80, byte in 1u8..) {
            let key = IteratorKey::random();
            let it = ShardIterator { topic_id: Uuid::new_v4(), shard: 1, offset: 2, issued_ms: 3 };
            let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key.encode(&it)).unwrap();
            let i = pos % raw.len();
            raw[i] ^= byte;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            prop_assert_eq!(key.decode(&token), Err(InvalidIterator));
        }

        #[test]
        fn garbage_never_panics(s in ".{0,200}") {
            let _ = IteratorKey::random().decode(&s);
        }
    }

    #[test]
    fn secret_file_is_created_once_and_read_after() {
        let dir = tempfile::tempdir().unwrap();
        let it = ShardIterator {
            topic_id: Uuid::new_v4(),
            shard: 3,
            offset: 4,
            issued_ms: 5,
        };
        let first = IteratorKey::load_or_create(&dir.path().join(SECRET_FILE)).unwrap();
        let token = first.encode(&it);
        let again = IteratorKey::load_or_create(&dir.path().join(SECRET_FILE)).unwrap();
        assert_eq!(again.decode(&token), Ok(it));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            IteratorKey::load_or_create(&other.path().join(SECRET_FILE))
                .unwrap()
                .decode(&token),
            Err(InvalidIterator)
        );
        std::fs::write(other.path().join(SECRET_FILE), b"short").unwrap();
        let broken = tempfile::tempdir().unwrap();
        std::fs::write(broken.path().join(SECRET_FILE), b"short").unwrap();
        assert!(matches!(
            IteratorKey::load_or_create(&broken.path().join(SECRET_FILE)),
            Err(SecretError::Length { len: 5, .. })
        ));
    }
}
