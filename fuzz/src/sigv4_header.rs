//! SigV4 `Authorization` headers from arbitrary bytes: `strom_kinesis::sigv4` must parse or
//! refuse with a typed error, never panic; whatever parses must render back to a header that
//! parses to the same fields; and the whole verifier (header, query string and body taken from
//! the input, and the presigned form from the query string alone) must answer without panicking.
//!
//! Input layout: the bytes are the header value (lossily UTF-8), also used as the query
//! string and the body. This file is also compiled into `strom-kinesis`'s `fuzz_corpus` test
//! (by path), so it may only use `strom_kinesis`.

use strom_kinesis::sigv4::{AccessKey, KeyRing, SignedRequest, parse_authorization};

/// The fuzz target's check.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(auth) = parse_authorization(&text) {
        let again = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
            auth.access_key,
            auth.scope(),
            auth.signed_headers.join(";"),
            auth.signature
        );
        assert_eq!(
            parse_authorization(&again).ok(),
            Some(auth),
            "a parsed header must render back to the same fields"
        );
    }
    let ring = KeyRing::new(&[AccessKey {
        id: "AKIDEXAMPLE".to_owned(),
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        principal: "User:fuzz".to_owned(),
        session_token: Some("fuzz-token".to_owned()),
        expires_at_ms: None,
    }]);
    let headers: [(&str, &[u8]); 3] = [
        ("Host", b"example.amazonaws.com"),
        ("X-Amz-Date", b"20150830T123600Z"),
        ("Authorization", data),
    ];
    let req = SignedRequest {
        method: "POST",
        path: "/",
        query: &text,
        headers: &headers,
        body: data,
    };
    let _ = ring.verify(&req, 1_440_938_160_000);
    // Without the header: the presigned (query-string) form, parameters from the input.
    let presigned = SignedRequest {
        headers: &headers[..2],
        ..req
    };
    let _ = ring.verify(&presigned, 1_440_938_160_000);
}
