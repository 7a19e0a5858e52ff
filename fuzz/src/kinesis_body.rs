//! Kinesis request bodies from arbitrary bytes: `strom_kinesis::wire::decode` must return a
//! value or a typed error for both encodings, never panic; whatever decodes must re-encode and
//! decode again to the same value (JSON) or to a value (CBOR, whose blobs and timestamps are
//! rewritten on the way out).
//!
//! Input layout: one selector byte (even: JSON 1.1, odd: CBOR), then the body. This file is
//! also compiled into `strom-kinesis`'s `fuzz_corpus` test (by path), so it may only use
//! `strom_kinesis`.

use strom_kinesis::wire::{Encoding, decode, encode};

/// The fuzz target's check.
pub fn check(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = if selector % 2 == 0 {
        Encoding::Json
    } else {
        Encoding::Cbor
    };
    let Ok(value) = decode(encoding, body) else {
        return;
    };
    let again = encode(encoding, &value);
    let back = decode(encoding, &again);
    assert!(
        back.is_ok(),
        "a decoded body must re-encode to something decodable"
    );
    if encoding == Encoding::Json {
        assert_eq!(back.ok(), Some(value), "JSON round trip");
    }
}
