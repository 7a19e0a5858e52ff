//! AWS Signature Version 4 verification of Kinesis requests: the `Authorization` header form and
//! the presigned (query-string) form.
//!
//! The client signs a canonical form of its request with a key derived from its secret access
//! key, the request date, region and service; the server rebuilds the same canonical request
//! from what it received, signs it with the secret it has for the named access key, and
//! compares. The steps, as AWS documents them:
//!
//! 1. canonical request: `METHOD \n URI \n QUERY \n HEADERS \n SIGNED-HEADERS \n HEX(SHA256(body))`
//!    where the URI path segments are URI-encoded, the query parameters are URI-encoded and
//!    sorted, and each signed header is `lowercase-name:trimmed-value\n` (inner runs of spaces
//!    collapsed, repeated headers joined by `,`), sorted by name;
//! 2. string to sign: `AWS4-HMAC-SHA256 \n X-Amz-Date \n scope \n HEX(SHA256(canonical request))`
//!    with scope `yyyymmdd/region/service/aws4_request`;
//! 3. signing key: `HMAC("AWS4" + secret, yyyymmdd)`, then successively keyed HMACs of the
//!    region, the service and `aws4_request`; the signature is the hex HMAC of the string to
//!    sign under it.
//!
//! The payload hash is always computed from the body received (a tampered body fails the
//! check even if `x-amz-content-sha256` is sent). `X-Amz-Date` must be within
//! [`MAX_CLOCK_SKEW_MS`] of the server's clock. Pure apart from the clock the caller passes.
//!
//! A presigned request carries the same fields in its query string instead of the header:
//! `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires` (seconds, at most
//! [`MAX_PRESIGNED_EXPIRES_SECONDS`]), `X-Amz-SignedHeaders`, `X-Amz-Signature` and, for a
//! temporary key, `X-Amz-Security-Token`. The canonical query string is every parameter but
//! `X-Amz-Signature`; the payload hash is still the body's. It is valid from `X-Amz-Date` (no
//! more than the clock skew in the future) until `X-Amz-Date + X-Amz-Expires`, and must sign
//! `X-Amz-Target` when it has one, so that it cannot be replayed as another operation.
//!
//! A temporary access key ([`AccessKey::session_token`]) is only accepted with its session
//! token (`X-Amz-Security-Token`, header or query) and, if it has an expiry, before it
//! ([`AuthError::TokenExpired`], AWS's `ExpiredTokenException`); a permanent key is refused
//! with a session token, as AWS refuses one that belongs to no temporary credentials.

use std::collections::HashMap;
use std::fmt::Write as _;

use hmac::{Hmac, KeyInit as _, Mac};
use sha2::{Digest as _, Sha256};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far `X-Amz-Date` may be from the server's clock (AWS: 5 minutes).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The longest validity of a presigned request (AWS: seven days).
pub const MAX_PRESIGNED_EXPIRES_SECONDS: u64 = 7 * 24 * 3600;

/// The longest `Authorization` header parsed.
const MAX_HEADER_LEN: usize = 8 * 1024;

/// One configured access key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id clients send (`AKIA…`).
    pub id: String,
    /// The secret access key.
    pub secret: String,
    /// The principal requests signed with this key act as (`User:name`).
    pub principal: String,
    /// A temporary key's session token: requests must carry it as `X-Amz-Security-Token`.
    /// `None`: a permanent key, refused with any session token.
    pub session_token: Option<String>,
    /// When a temporary key stops being accepted, in epoch milliseconds (then
    /// `ExpiredTokenException`); `None`: never.
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"..")
            .field("principal", &self.principal)
            .field("session_token", &self.session_token.as_ref().map(|_| ".."))
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// How Kinesis requests are authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KinesisAuth {
    /// Any credentials (or none) are accepted; requests act as `User:ANONYMOUS`. Development
    /// only: the default while the listener is on loopback.
    #[default]
    None,
    /// Every request must carry a valid SigV4 signature by one of these keys.
    SigV4(Vec<AccessKey>),
}

/// The fields of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
/// Signature=…` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id.
    pub access_key: String,
    /// The credential scope's date, `yyyymmdd`.
    pub date: String,
    /// The credential scope's region.
    pub region: String,
    /// The credential scope's service.
    pub service: String,
    /// The signed header names, lowercase, in the order sent.
    pub signed_headers: Vec<String>,
    /// The signature, lowercase hex.
    pub signature: String,
}

impl Authorization {
    /// The credential scope, `date/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Why a request is refused (each maps to an AWS exception in [`crate::error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (AWS: `MissingAuthenticationTokenException`).
    #[error("Missing Authentication Token")]
    Missing,
    /// The header does not parse (AWS: `IncompleteSignatureException`).
    #[error("Authorization header is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The access key is not configured (AWS: `UnrecognizedClientException`).
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The session token is missing, wrong, or sent with a permanent key (AWS:
    /// `UnrecognizedClientException`).
    #[error("The security token included in the request is invalid.")]
    BadToken,
    /// The temporary key is past its expiry (AWS: `ExpiredTokenException`).
    #[error("The security token included in the request is expired")]
    TokenExpired,
    /// The signature does not match (AWS: `InvalidSignatureException`).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    BadSignature,
    /// `X-Amz-Date` is outside the clock-skew window (AWS: `InvalidSignatureException`).
    #[error(
        "Signature expired: {date} is now earlier or later than {window} (5 minutes away from now)"
    )]
    Expired {
        /// The request's date.
        date: String,
        /// A description of the acceptable window.
        window: String,
    },
    /// A presigned request past `X-Amz-Date + X-Amz-Expires` (AWS: `InvalidSignatureException`).
    #[error(
        "Signature expired: the request signed at {date} was valid for {expires_seconds} seconds"
    )]
    PresignedExpired {
        /// The request's `X-Amz-Date`.
        date: String,
        /// Its `X-Amz-Expires`.
        expires_seconds: u64,
    },
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let malformed = |reason| AuthError::Malformed { reason };
    if value.len() > MAX_HEADER_LEN {
        return Err(malformed("header too long"));
    }
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or(malformed("unsupported algorithm"))?;
    if !rest.starts_with(' ') {
        return Err(malformed("unsupported algorithm"));
    }
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or(malformed("component without '='"))?;
        let slot = match k.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(malformed("unknown component")),
        };
        if slot.replace(v.trim()).is_some() {
            return Err(malformed("repeated component"));
        }
    }
    let credential = credential.ok_or(malformed("missing Credential"))?;
    let signed = signed.ok_or(malformed("missing SignedHeaders"))?;
    let signature = signature.ok_or(malformed("missing Signature"))?;
    authorization_from_parts(credential, signed, signature)
}

/// The fields of a credential (`KEY/yyyymmdd/region/service/aws4_request`), a `;`-separated
/// signed-header list and a hex signature, checked.
fn authorization_from_parts(
    credential: &str,
    signed: &str,
    signature: &str,
) -> Result<Authorization, AuthError> {
    let malformed = |reason| AuthError::Malformed { reason };
    // The access key id cannot contain '/', so the last four '/'-separated parts are the scope.
    let mut parts = credential.rsplitn(5, '/');
    let terminator = parts.next().ok_or(malformed("short Credential"))?;
    let service = parts.next().ok_or(malformed("short Credential"))?;
    let region = parts.next().ok_or(malformed("short Credential"))?;
    let date = parts.next().ok_or(malformed("short Credential"))?;
    let access_key = parts.next().ok_or(malformed("short Credential"))?;
    if terminator != "aws4_request" {
        return Err(malformed("Credential scope must end in aws4_request"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("Credential date must be yyyymmdd"));
    }
    if access_key.is_empty() || region.is_empty() || service.is_empty() {
        return Err(malformed("empty Credential part"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    if signed_headers.iter().any(|h| {
        h.is_empty()
            || h.bytes()
                .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
    }) {
        return Err(malformed(
            "SignedHeaders must be lowercase names separated by ';'",
        ));
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(malformed("Signature must be 64 lowercase hex digits"));
    }
    Ok(Authorization {
        access_key: access_key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

/// The signature fields of a presigned request's query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// `X-Amz-Credential`, `X-Amz-SignedHeaders` and `X-Amz-Signature`.
    pub authorization: Authorization,
    /// `X-Amz-Date`, `yyyymmddThhmmssZ`.
    pub amz_date: String,
    /// `X-Amz-Expires`, seconds.
    pub expires_seconds: u64,
    /// `X-Amz-Security-Token`, if sent.
    pub security_token: Option<String>,
}

/// Parses the signature parameters of a presigned request's query string; `Ok(None)` when it
/// has no `X-Amz-Algorithm` (not presigned).
pub fn parse_presigned(query: &str) -> Result<Option<Presigned>, AuthError> {
    let malformed = |reason| AuthError::Malformed { reason };
    if query.len() > MAX_HEADER_LEN * 2 {
        return Err(malformed("query string too long"));
    }
    let mut fields: [Option<String>; 7] = Default::default();
    const NAMES: [&str; 7] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    ];
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let k = percent_decode(k);
        let Some(i) = NAMES.iter().position(|n| n.as_bytes() == k.as_slice()) else {
            continue;
        };
        let v = String::from_utf8(percent_decode(v))
            .map_err(|_| malformed("query parameter is not UTF-8"))?;
        let Some(slot) = fields.get_mut(i) else {
            continue;
        };
        if slot.replace(v).is_some() {
            return Err(malformed("repeated query parameter"));
        }
    }
    let [
        algorithm,
        credential,
        date,
        expires,
        signed,
        signature,
        token,
    ] = fields;
    let Some(algorithm) = algorithm else {
        return Ok(None);
    };
    if algorithm != ALGORITHM {
        return Err(malformed("unsupported algorithm"));
    }
    let credential = credential.ok_or(malformed("missing X-Amz-Credential"))?;
    let amz_date = date.ok_or(malformed("missing X-Amz-Date"))?;
    let expires = expires.ok_or(malformed("missing X-Amz-Expires"))?;
    let signed = signed.ok_or(malformed("missing X-Amz-SignedHeaders"))?;
    let signature = signature.ok_or(malformed("missing X-Amz-Signature"))?;
    let expires_seconds: u64 = expires
        .parse()
        .ok()
        .filter(|s| (1..=MAX_PRESIGNED_EXPIRES_SECONDS).contains(s))
        .ok_or(malformed(
            "X-Amz-Expires must be a number of seconds from 1 to 604800",
        ))?;
    Ok(Some(Presigned {
        authorization: authorization_from_parts(&credential, &signed, &signature)?,
        amz_date,
        expires_seconds,
        security_token: token,
    }))
}

/// `query` without its `X-Amz-Signature` parameter (the canonical query of a presigned request).
fn without_signature(query: &str) -> String {
    query
        .split('&')
        .filter(|p| {
            let k = p.split_once('=').map_or(*p, |(k, _)| k);
            percent_decode(k) != b"X-Amz-Signature"
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// What of a request the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The query string as sent, without `?` (may be empty).
    pub query: &'a str,
    /// Every header, names in any case, in the order received.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The request body.
    pub body: &'a [u8],
}

/// URI-encodes `s` as SigV4 does: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX` (upper hex),
/// and `/` too unless `keep_slash`.
pub fn uri_encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The canonical request of `req` for `signed_headers` (lowercase names).
pub fn canonical_request(req: &SignedRequest<'_>, signed_headers: &[String]) -> String {
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    // Path: each segment URI-encoded (non-S3 services encode the already-encoded path again).
    let path = if req.path.is_empty() { "/" } else { req.path };
    out.push_str(&uri_encode(path.as_bytes(), true));
    out.push('\n');
    let mut params: Vec<(String, String)> = req
        .query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    params.sort();
    let query: Vec<String> = params
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.push_str(&query.join("&"));
    out.push('\n');
    let mut names: Vec<&String> = signed_headers.iter().collect();
    names.sort();
    names.dedup();
    for name in &names {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| {
                String::from_utf8_lossy(v)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    out.push_str(&names.join(";"));
    out.push('\n');
    out.push_str(&hex(&Sha256::digest(req.body)));
    out
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) {
        m.update(data);
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// The signing key for a secret and a credential scope.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The hex signature of a string to sign under a signing key.
pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex(&hmac(key, string_to_sign.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses an ISO 8601 basic date-time `yyyymmddThhmmssZ` into epoch milliseconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        s.get(from..to)?.parse::<u32>().ok().map(i64::from)
    };
    let (y, m, d) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (hh, mm, ss) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), epoch 1970-01-01.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

/// The configured keys by id.
#[derive(Debug, Clone, Default)]
pub struct KeyRing(HashMap<String, AccessKey>);

impl KeyRing {
    /// Indexes `keys` by id (a later key with the same id wins).
    pub fn new(keys: &[AccessKey]) -> KeyRing {
        KeyRing(keys.iter().map(|k| (k.id.clone(), k.clone())).collect())
    }

    /// Verifies `req` (signed in its `Authorization` header, else presigned in its query
    /// string) against `now_ms`: the header form's `X-Amz-Date` within [`MAX_CLOCK_SKEW_MS`],
    /// a presigned request within its `X-Amz-Expires`, a temporary key with its session token
    /// and before its expiry. The principal of the key that signed it.
    pub fn verify(&self, req: &SignedRequest<'_>, now_ms: i64) -> Result<&str, AuthError> {
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).trim().to_owned())
        };
        let (auth, amz_date, token, expires) = match header("authorization") {
            Some(value) => {
                let auth = parse_authorization(&value)?;
                let date = header("x-amz-date").ok_or(AuthError::Malformed {
                    reason: "missing X-Amz-Date",
                })?;
                (auth, date, header("x-amz-security-token"), None)
            }
            None => match parse_presigned(req.query)? {
                Some(p) => (
                    p.authorization,
                    p.amz_date,
                    p.security_token,
                    Some(p.expires_seconds),
                ),
                None => return Err(AuthError::Missing),
            },
        };
        let key = self.0.get(&auth.access_key).ok_or(AuthError::UnknownKey)?;
        match (&key.session_token, &token) {
            (None, None) => {}
            (Some(want), Some(got)) if constant_time_eq(want.as_bytes(), got.as_bytes()) => {}
            _ => return Err(AuthError::BadToken),
        }
        if key.expires_at_ms.is_some_and(|at| now_ms >= at) {
            return Err(AuthError::TokenExpired);
        }
        let at = parse_amz_date(&amz_date).ok_or(AuthError::Malformed {
            reason: "X-Amz-Date must be yyyymmddThhmmssZ",
        })?;
        if !auth.signed_headers.iter().any(|h| h == "host") {
            return Err(AuthError::Malformed {
                reason: "SignedHeaders must include host",
            });
        }
        let skewed = || AuthError::Expired {
            date: amz_date.clone(),
            window: format!(
                "the server's clock ({} ms since the epoch) plus or minus 5 minutes",
                now_ms
            ),
        };
        let presigned_query;
        let req = match expires {
            None => {
                if (now_ms - at).abs() > MAX_CLOCK_SKEW_MS {
                    return Err(skewed());
                }
                *req
            }
            Some(expires_seconds) => {
                if at - now_ms > MAX_CLOCK_SKEW_MS {
                    return Err(skewed());
                }
                let valid_ms =
                    i64::try_from(expires_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
                if now_ms > at.saturating_add(valid_ms) {
                    return Err(AuthError::PresignedExpired {
                        date: amz_date.clone(),
                        expires_seconds,
                    });
                }
                if header("x-amz-target").is_some()
                    && !auth.signed_headers.iter().any(|h| h == "x-amz-target")
                {
                    return Err(AuthError::Malformed {
                        reason: "a presigned request must sign X-Amz-Target",
                    });
                }
                presigned_query = without_signature(req.query);
                SignedRequest {
                    query: &presigned_query,
                    ..*req
                }
            }
        };
        if amz_date.get(..8) != Some(auth.date.as_str()) {
            return Err(AuthError::BadSignature);
        }
        let creq = canonical_request(&req, &auth.signed_headers);
        let sts = string_to_sign(&amz_date, &auth.scope(), &creq);
        let k = signing_key(&key.secret, &auth.date, &auth.region, &auth.service);
        if !constant_time_eq(signature(&k, &sts).as_bytes(), auth.signature.as_bytes()) {
            return Err(AuthError::BadSignature);
        }
        Ok(&key.principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// AWS's documented example: IAM `ListUsers`, signed 2015-08-30T12:36:00Z in us-east-1.
    #[test]
    fn aws_documentation_example() {
        let headers: &[(&str, &[u8])] = &[
            ("Host", b"iam.amazonaws.com"),
            (
                "Content-Type",
                b"application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("X-Amz-Date", b"20150830T123600Z"),
        ];
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "Version=2010-05-08&Action=ListUsers",
            headers,
            body: b"",
        };
        let signed = ["content-type", "host", "x-amz-date"].map(str::to_owned);
        let creq = canonical_request(&req, &signed);
        assert_eq!(
            creq,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
             content-type:application/x-www-form-urlencoded; charset=utf-8\n\
             host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            &creq,
        );
        assert_eq!(
            sts.lines().last(),
            Some("f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59")
        );
        let key = signing_key(SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        assert_eq!(
            signature(&key, &sts),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    /// The `get-vanilla` case of AWS's SigV4 test suite, end to end through `verify`.
    #[test]
    fn verify_get_vanilla() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let headers: &[(&str, &[u8])] = &[
            ("Host", b"example.amazonaws.com"),
            ("X-Amz-Date", b"20150830T123600Z"),
            ("Authorization", auth.as_bytes()),
        ];
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers,
            body: b"",
        };
        let ring = KeyRing::new(&[AccessKey {
            id: "AKIDEXAMPLE".into(),
            secret: SECRET.into(),
            principal: "User:alice".into(),
            ..AccessKey::default()
        }]);
        let at = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(at, 1_440_938_160_000);
        assert_eq!(ring.verify(&req, at + 1000), Ok("User:alice"));
        assert!(matches!(
            ring.verify(&req, at + MAX_CLOCK_SKEW_MS + 1),
            Err(AuthError::Expired { .. })
        ));
        let tampered = SignedRequest { body: b"x", ..req };
        assert_eq!(ring.verify(&tampered, at), Err(AuthError::BadSignature));
        let other = KeyRing::new(&[AccessKey {
            id: "AKIDEXAMPLE".into(),
            secret: "wrong".into(),
            principal: "User:alice".into(),
            ..AccessKey::default()
        }]);
        assert_eq!(other.verify(&req, at), Err(AuthError::BadSignature));
        assert_eq!(
            KeyRing::default().verify(&req, at),
            Err(AuthError::UnknownKey)
        );
        let none = SignedRequest {
            headers: &headers[..2],
            ..req
        };
        assert_eq!(ring.verify(&none, at), Err(AuthError::Missing));
    }

    const NOW: i64 = 1_440_938_160_000; // 20150830T123600Z

    fn key(token: Option<&str>, expires_at_ms: Option<i64>) -> KeyRing {
        KeyRing::new(&[AccessKey {
            id: "AKIDEXAMPLE".into(),
            secret: SECRET.into(),
            principal: "User:alice".into(),
            session_token: token.map(str::to_owned),
            expires_at_ms,
        }])
    }

    /// A presigned query string for `body` and `headers`, signed at `date` for `expires`
    /// seconds, with the primitives the AWS examples above pin down.
    fn presign(
        date: &str,
        expires: u64,
        token: Option<&str>,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> String {
        let signed: Vec<String> = {
            let mut n: Vec<String> = headers
                .iter()
                .map(|(n, _)| n.to_ascii_lowercase())
                .collect();
            n.sort();
            n
        };
        let mut query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F{}%2Fus-east-1%2Fkinesis%2Faws4_request&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders={}",
            &date[..8],
            uri_encode(signed.join(";").as_bytes(), false)
        );
        if let Some(t) = token {
            query.push_str(&format!(
                "&X-Amz-Security-Token={}",
                uri_encode(t.as_bytes(), false)
            ));
        }
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: &query,
            headers,
            body,
        };
        let creq = canonical_request(&req, &signed);
        let sts = string_to_sign(
            date,
            &format!("{}/us-east-1/kinesis/aws4_request", &date[..8]),
            &creq,
        );
        let sig = signature(
            &signing_key(SECRET, &date[..8], "us-east-1", "kinesis"),
            &sts,
        );
        format!("{query}&X-Amz-Signature={sig}")
    }

    #[test]
    fn presigned_requests_verify_until_they_expire() {
        let headers: &[(&str, &[u8])] = &[
            ("Host", b"kinesis.example"),
            ("X-Amz-Target", b"Kinesis_20131202.ListStreams"),
        ];
        let query = presign("20150830T123600Z", 60, None, headers, b"{}");
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: &query,
            headers,
            body: b"{}",
        };
        let ring = key(None, None);
        assert_eq!(ring.verify(&req, NOW), Ok("User:alice"));
        assert_eq!(ring.verify(&req, NOW + 60_000), Ok("User:alice"));
        assert!(matches!(
            ring.verify(&req, NOW + 60_001),
            Err(AuthError::PresignedExpired {
                expires_seconds: 60,
                ..
            })
        ));
        // Dated beyond the clock skew in the future.
        assert!(matches!(
            ring.verify(&req, NOW - MAX_CLOCK_SKEW_MS - 1),
            Err(AuthError::Expired { .. })
        ));
        // The body, the operation and the validity are all covered.
        let tampered = SignedRequest {
            body: b"{\"x\":1}",
            ..req
        };
        assert_eq!(ring.verify(&tampered, NOW), Err(AuthError::BadSignature));
        let other_op: &[(&str, &[u8])] = &[
            ("Host", b"kinesis.example"),
            ("X-Amz-Target", b"Kinesis_20131202.DeleteStream"),
        ];
        let replayed = SignedRequest {
            headers: other_op,
            ..req
        };
        assert_eq!(ring.verify(&replayed, NOW), Err(AuthError::BadSignature));
        let longer = query.replace("X-Amz-Expires=60", "X-Amz-Expires=600");
        let longer = SignedRequest {
            query: &longer,
            ..req
        };
        assert_eq!(
            ring.verify(&longer, NOW + 120_000),
            Err(AuthError::BadSignature)
        );
        // X-Amz-Target unsigned: refused, whatever the signature.
        let host_only: &[(&str, &[u8])] = &[("Host", b"kinesis.example")];
        let q = presign("20150830T123600Z", 60, None, host_only, b"{}");
        let unsigned_target = SignedRequest { query: &q, ..req };
        assert!(matches!(
            ring.verify(&unsigned_target, NOW),
            Err(AuthError::Malformed { .. })
        ));
        assert_eq!(
            ring.verify(
                &SignedRequest {
                    headers: host_only,
                    query: &q,
                    ..req
                },
                NOW
            ),
            Ok("User:alice")
        );
        // No signature at all.
        assert_eq!(
            ring.verify(&SignedRequest { query: "", ..req }, NOW),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn presigned_parser_refuses_bad_parameters() {
        let good = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20150830%2Fr%2Fkinesis%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let p = parse_presigned(good).unwrap().unwrap();
        assert_eq!(p.authorization.access_key, "AK");
        assert_eq!(p.expires_seconds, 60);
        assert_eq!(p.security_token, None);
        assert_eq!(parse_presigned("a=b&c").unwrap(), None);
        for bad in [
            good.replace("X-Amz-Expires=60", "X-Amz-Expires=0"),
            good.replace("X-Amz-Expires=60", "X-Amz-Expires=604801"),
            good.replace("X-Amz-Expires=60", "X-Amz-Expires=-1"),
            good.replace("&X-Amz-Expires=60", ""),
            good.replace("&X-Amz-Date=20150830T123600Z", ""),
            good.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
            good.replace("SignedHeaders=host", "SignedHeaders=Host"),
            format!("{good}&X-Amz-Date=20150830T123600Z"),
        ] {
            assert!(parse_presigned(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn temporary_keys_need_their_session_token_until_they_expire() {
        let headers_with = |token: Option<&'static [u8]>| {
            let mut h: Vec<(&str, &[u8])> = vec![
                ("Host", b"kinesis.example"),
                ("X-Amz-Date", b"20150830T123600Z"),
            ];
            if let Some(t) = token {
                h.push(("X-Amz-Security-Token", t));
            }
            h
        };
        // Signed over every header present (the token too, as the SDKs do).
        let sign = |h: &[(&str, &[u8])]| {
            let names: Vec<String> = {
                let mut n: Vec<String> = h.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
                n.sort();
                n
            };
            let req = SignedRequest {
                method: "POST",
                path: "/",
                query: "",
                headers: h,
                body: b"",
            };
            let sts = string_to_sign(
                "20150830T123600Z",
                "20150830/us-east-1/kinesis/aws4_request",
                &canonical_request(&req, &names),
            );
            let sig = signature(
                &signing_key(SECRET, "20150830", "us-east-1", "kinesis"),
                &sts,
            );
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders={}, Signature={sig}",
                names.join(";")
            )
        };
        let verify = |ring: &KeyRing, token: Option<&'static [u8]>, now: i64| {
            let mut h = headers_with(token);
            let auth = sign(&h);
            h.push(("Authorization", auth.as_bytes()));
            let req = SignedRequest {
                method: "POST",
                path: "/",
                query: "",
                headers: &h,
                body: b"",
            };
            ring.verify(&req, now).map(str::to_owned)
        };
        let temporary = key(Some("session-1"), Some(NOW + 1000));
        assert_eq!(
            verify(&temporary, Some(b"session-1"), NOW),
            Ok("User:alice".into())
        );
        assert_eq!(verify(&temporary, None, NOW), Err(AuthError::BadToken));
        assert_eq!(
            verify(&temporary, Some(b"session-2"), NOW),
            Err(AuthError::BadToken)
        );
        assert_eq!(
            verify(&temporary, Some(b"session-1"), NOW + 1000),
            Err(AuthError::TokenExpired)
        );
        // A permanent key with a session token: refused.
        assert_eq!(
            verify(&key(None, None), Some(b"session-1"), NOW),
            Err(AuthError::BadToken)
        );
        // Presigned, the token in the query string.
        let host: &[(&str, &[u8])] = &[("Host", b"kinesis.example")];
        let q = presign("20150830T123600Z", 60, Some("session-1"), host, b"");
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: &q,
            headers: host,
            body: b"",
        };
        assert_eq!(temporary.verify(&req, NOW), Ok("User:alice"));
        assert_eq!(
            temporary.verify(&req, NOW + 1000),
            Err(AuthError::TokenExpired)
        );
        let q = presign("20150830T123600Z", 60, None, host, b"");
        let req = SignedRequest { query: &q, ..req };
        assert_eq!(temporary.verify(&req, NOW), Err(AuthError::BadToken));
    }

    #[test]
    fn header_parser_refuses_malformed_values() {
        for bad in [
            "",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/2015/r/s/aws4_request, SignedHeaders=host, Signature=",
            "AWS4-HMAC-SHA256 Credential=20150830/r/s/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/x, SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=Host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn header_parser_never_panics(s in ".{0,300}") {
            let _ = parse_authorization(&s);
            let _ = parse_amz_date(&s);
            let _ = parse_presigned(&s);
        }

        #[test]
        fn presigned_parser_never_panics(
            params in proptest::collection::vec(
                ("X-Amz-(Algorithm|Credential|Date|Expires|SignedHeaders|Signature|Security-Token)|[a-z%]{0,4}", "[ -~]{0,40}"),
                0..9,
            )
        ) {
            let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = parse_presigned(&q.join("&"));
        }

        #[test]
        fn header_parser_round_trips(
            key in "[A-Z0-9]{1,20}",
            date in "[0-9]{8}",
            region in "[a-z0-9-]{1,15}",
            headers in proptest::collection::vec("[a-z0-9-]{1,12}", 1..5),
            sig in proptest::collection::vec(0u8.., 32),
        ) {
            let value = format!(
                "AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/kinesis/aws4_request, SignedHeaders={}, Signature={}",
                headers.join(";"),
                hex(&sig)
            );
            let parsed = parse_authorization(&value).unwrap();
            prop_assert_eq!(parsed.access_key, key);
            prop_assert_eq!(parsed.date, date);
            prop_assert_eq!(parsed.region, region);
            prop_assert_eq!(parsed.service, "kinesis");
            prop_assert_eq!(parsed.signed_headers, headers);
            prop_assert_eq!(parsed.signature, hex(&sig));
        }
    }
}
