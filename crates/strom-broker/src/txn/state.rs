//! The record encoding of `__transaction_state`, the internal compacted topic that holds every
//! transactional id's [`TxnMetadata`] (all integers big-endian):
//!
//! ```text
//! key   = version:u16 (=0) | id_len:u16 | transactional id
//! value = version:u16 (=1) | JSON of TxnMetadata
//! ```
//!
//! The latest record of a key is the id's state; a tombstone (null value) forgets an expired
//! id. Unknown versions are skipped on replay. In cluster mode a coordinator shard's fence is
//! a tombstone under key version 1 (`version:u16 (=1) | shard:u32`), which replay skips.

use bytes::{Buf, BufMut, Bytes};

use super::engine::TxnMetadata;

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

const KEY_VERSION: u16 = 0;
const VALUE_VERSION: u16 = 1;
/// Key version of a transaction-coordinator shard's fence (cluster mode, see
/// `txn::authority`): a tombstone replay skips and compaction drops.
const FENCE_KEY_VERSION: u16 = 1;

/// The key of transaction-coordinator shard `shard`'s fence record.
pub(crate) fn encode_fence_key(shard: u32) -> Bytes {
    let mut buf = Vec::with_capacity(6);
    buf.put_u16(FENCE_KEY_VERSION);
    buf.put_u32(shard);
    Bytes::from(buf)
}

/// Encodes the key of a transactional id.
pub(crate) fn encode_key(transactional_id: &str) -> Bytes {
    let id = transactional_id.as_bytes();
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut buf = Vec::with_capacity(4 + id.len());
    buf.put_u16(KEY_VERSION);
    buf.put_u16(len);
    buf.put_slice(id.get(..usize::from(len)).unwrap_or_default());
    Bytes::from(buf)
}

/// Decodes a key; `None` if malformed or of an unknown version.
pub(crate) fn decode_key(mut key: Bytes) -> Option<String> {
    if key.remaining() < 4 || key.get_u16() != KEY_VERSION {
        return None;
    }
    let len = usize::from(key.get_u16());
    if key.remaining() != len {
        return None;
    }
    String::from_utf8(key.to_vec()).ok()
}

/// Encodes a state; `None` if it cannot be serialised (it always can).
pub(crate) fn encode_value(metadata: &TxnMetadata) -> Option<Bytes> {
    let json = serde_json::to_vec(metadata).ok()?;
    let mut buf = Vec::with_capacity(2 + json.len());
    buf.put_u16(VALUE_VERSION);
    buf.put_slice(&json);
    Some(Bytes::from(buf))
}

/// Decodes a state; `None` if malformed or of an unknown version.
pub(crate) fn decode_value(mut value: Bytes) -> Option<TxnMetadata> {
    if value.remaining() < 2 || value.get_u16() != VALUE_VERSION {
        return None;
    }
    serde_json::from_slice(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_and_garbage_is_skipped() {
        let mut m = TxnMetadata::new(5, 1_000, 9);
        m.add(&[("t".into(), 3)], Some("g"), 10);
        let key = encode_key("tx-1");
        assert_eq!(decode_key(key.clone()).as_deref(), Some("tx-1"));
        assert_eq!(decode_value(encode_value(&m).unwrap()), Some(m));
        assert_eq!(decode_key(key.slice(..3)), None);
        assert_eq!(decode_key(Bytes::from_static(&[0, 9, 0, 0])), None);
        assert_eq!(decode_value(Bytes::from_static(b"\x00\x01{")), None);
        assert_eq!(decode_value(Bytes::from_static(b"\x00\x02{}")), None);
        assert_eq!(decode_key(encode_fence_key(3)), None);
    }
}
