//! Shard iterators: opaque, tamper-evident tokens naming a position in a shard.
//!
//! Token = base64 (URL-safe, no padding) of
//!
//! ```text
//! version u8 = 1 | topic id [16] | shard u32 | offset u64 | issued_ms i64 | HMAC-MD5 [16]
//! ```
//!
//! (integers big-endian). The MAC is keyed with a per-server random key, so forged or edited
//! tokens are rejected; tokens therefore do not survive a restart, which clients handle as
//! they handle expiry (get a new iterator). The topic id, not the name, is inside, so a token
//! of a deleted-and-recreated stream is refused.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use uuid::Uuid;

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 16 + 4 + 8 + 8;
const MAC_LEN: usize = 16;

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
    /// A fresh random key.
    pub fn random() -> IteratorKey {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        IteratorKey(key)
    }

    /// A key derived from a durable secret (the broker's cluster id), so iterators issued
    /// before a restart stay valid after it. Two MD5 digests under distinct labels fill the key.
    pub fn derive(secret: &[u8]) -> IteratorKey {
        use md5::Digest as _;
        let mut key = [0u8; 32];
        for (half, label) in [
            &b"strom-kinesis-iterator-key/1/"[..],
            b"strom-kinesis-iterator-key/2/",
        ]
        .into_iter()
        .enumerate()
        {
            let mut h = Md5::new();
            h.update(label);
            h.update(secret);
            if let Some(slot) = key.get_mut(half * 16..half * 16 + 16) {
                slot.copy_from_slice(&h.finalize());
            }
        }
        IteratorKey(key)
    }

    /// A fixed key (tests).
    pub fn from_bytes(key: [u8; 32]) -> IteratorKey {
        IteratorKey(key)
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        if let Ok(mut m) = Hmac::<Md5>::new_from_slice(&self.0) {
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
        if token.len() > 128 {
            return Err(InvalidIterator);
        }
        let buf = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidIterator)?;
        if buf.len() != BODY_LEN + MAC_LEN {
            return Err(InvalidIterator);
        }
        let (body, mac) = buf.split_at(BODY_LEN);
        // Not constant-time: the MAC guards against mistakes and casual forgery, not timing
        // attacks on loopback; use `Mac::verify_slice` which is constant-time anyway.
        let mut m = Hmac::<Md5>::new_from_slice(&self.0).map_err(|_| InvalidIterator)?;
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
        fn any_edit_is_rejected(pos in 0usize..50, byte in 1u8..) {
            let key = IteratorKey::random();
            let it = ShardIterator { topic_id: Uuid::new_v4(), shard: 1, offset: 2, issued_ms: 3 };
            let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key.encode(&it)).unwrap();
            let i = pos % raw.len();
            raw[i] ^= byte;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            prop_assert_eq!(key.decode(&token), Err(InvalidIterator));
        }

        #[test]
        fn derived_keys_are_stable_per_secret(secret in proptest::collection::vec(0u8.., 0..64)) {
            let it = ShardIterator { topic_id: Uuid::new_v4(), shard: 3, offset: 4, issued_ms: 5 };
            let token = IteratorKey::derive(&secret).encode(&it);
            prop_assert_eq!(IteratorKey::derive(&secret).decode(&token), Ok(it));
            let mut other = secret.clone();
            other.push(1);
            prop_assert_eq!(IteratorKey::derive(&other).decode(&token), Err(InvalidIterator));
        }

        #[test]
        fn garbage_never_panics(s in ".{0,200}") {
            let _ = IteratorKey::random().decode(&s);
        }
    }
}
