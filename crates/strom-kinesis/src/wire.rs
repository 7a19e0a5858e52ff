//! The two body encodings of the Kinesis API, reduced to one JSON value model.
//!
//! Handlers see `serde_json::Value`s in the JSON 1.1 shape: blobs as base64 strings,
//! timestamps as (fractional) epoch seconds. This module converts CBOR to and from that shape:
//!
//! - `application/x-amz-json-1.1`: taken as is.
//! - `application/x-amz-cbor-1.1`: byte strings become base64 strings; CBOR tag 1 holds epoch
//!   **milliseconds** as AWS writes it (not RFC 8949's seconds: see aws-sdk-java-v2 issue 4661
//!   and localstack PRs 11071/11133/11286), and becomes seconds. On the way out, the fields
//!   named in [`BLOB_FIELDS`] become byte strings and those in [`TIMESTAMP_FIELDS`] become tag 1
//!   around integer milliseconds.
//!
//! Pure: no I/O. Every input either decodes or yields a [`WireError`]; nothing panics.

use base64::Engine as _;
use ciborium::value::Value as Cbor;
use serde_json::{Map, Number, Value};

/// Response fields that carry blobs.
pub const BLOB_FIELDS: &[&str] = &["Data"];

/// Response fields that carry timestamps.
pub const TIMESTAMP_FIELDS: &[&str] = &[
    "ApproximateArrivalTimestamp",
    "StreamCreationTimestamp",
    "ConsumerCreationTimestamp",
    "Timestamp",
];

/// How deep a request may nest (bounds the recursion on hostile input).
const MAX_DEPTH: usize = 32;

/// The body format of a request, chosen by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-amz-json-1.1` (and, leniently, `application/json` or none).
    Json,
    /// `application/x-amz-cbor-1.1`.
    Cbor,
}

impl Encoding {
    /// Picks the encoding from a `Content-Type` header value.
    pub fn from_content_type(value: Option<&str>) -> Encoding {
        match value {
            Some(v) if v.to_ascii_lowercase().contains("cbor") => Encoding::Cbor,
            _ => Encoding::Json,
        }
    }

    /// The `Content-Type` of responses in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/x-amz-json-1.1",
            Encoding::Cbor => "application/x-amz-cbor-1.1",
        }
    }
}

/// A body that does not decode.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    /// Not JSON.
    #[error("malformed JSON body: {0}")]
    Json(String),
    /// Not CBOR, or CBOR that has no JSON-shaped meaning here.
    #[error("malformed CBOR body: {0}")]
    Cbor(String),
    /// The top level is not an object/map.
    #[error("the request body must be an object")]
    NotAnObject,
    /// Nested deeper than allowed.
    #[error("the request body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Decodes a request body into the JSON value model. An empty body is `{}`.
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<Value, WireError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let value = match encoding {
        Encoding::Json => {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))?;
            check_depth(&v, 0)?;
            v
        }
        Encoding::Cbor => {
            let v: Cbor = ciborium::de::from_reader_with_recursion_limit(body, MAX_DEPTH)
                .map_err(|e| WireError::Cbor(e.to_string()))?;
            cbor_to_json(v, 0)?
        }
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(WireError::NotAnObject)
    }
}

/// Encodes a response value.
pub fn encode(encoding: Encoding, value: &Value) -> Vec<u8> {
    match encoding {
        Encoding::Json => serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
        Encoding::Cbor => {
            let mut out = Vec::new();
            if ciborium::ser::into_writer(&json_to_cbor(value, None), &mut out).is_err() {
                out.clear();
                out.push(0xa0); // empty map
            }
            out
        }
    }
}

fn check_depth(v: &Value, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep);
    }
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| check_depth(x, depth + 1)),
        Value::Object(o) => o.values().try_for_each(|x| check_depth(x, depth + 1)),
        _ => Ok(()),
    }
}

fn cbor_to_json(v: Cbor, depth: usize) -> Result<Value, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep);
    }
    Ok(match v {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(u) = u64::try_from(i) {
                Value::Number(u.into())
            } else if let Ok(s) = i64::try_from(i) {
                Value::Number(s.into())
            } else {
                return Err(WireError::Cbor("integer out of range".to_owned()));
            }
        }
        Cbor::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| WireError::Cbor("non-finite float".to_owned()))?,
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Array(a) => Value::Array(
            a.into_iter()
                .map(|x| cbor_to_json(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let Cbor::Text(k) = k else {
                    return Err(WireError::Cbor("map keys must be text".to_owned()));
                };
                out.insert(k, cbor_to_json(v, depth + 1)?);
            }
            Value::Object(out)
        }
        Cbor::Tag(1, inner) => {
            // AWS: epoch milliseconds (integer or float) under tag 1.
            let ms = match *inner {
                Cbor::Integer(i) => i128::from(i) as f64,
                Cbor::Float(f) => f,
                _ => return Err(WireError::Cbor("tag 1 must hold a number".to_owned())),
            };
            Number::from_f64(ms / 1000.0)
                .map(Value::Number)
                .ok_or_else(|| WireError::Cbor("non-finite timestamp".to_owned()))?
        }
        Cbor::Tag(_, inner) => cbor_to_json(*inner, depth + 1)?,
        _ => return Err(WireError::Cbor("unsupported CBOR value".to_owned())),
    })
}

fn json_to_cbor(v: &Value, field: Option<&str>) -> Cbor {
    match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => {
            if field.is_some_and(|f| TIMESTAMP_FIELDS.contains(&f)) {
                let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                return Cbor::Tag(1, Box::new(Cbor::Integer(ms.into())));
            }
            if let Some(u) = n.as_u64() {
                Cbor::Integer(u.into())
            } else if let Some(i) = n.as_i64() {
                Cbor::Integer(i.into())
            } else {
                Cbor::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => {
            if field.is_some_and(|f| BLOB_FIELDS.contains(&f))
                && let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s)
            {
                return Cbor::Bytes(b);
            }
            Cbor::Text(s.clone())
        }
        Value::Array(a) => Cbor::Array(a.iter().map(|x| json_to_cbor(x, field)).collect()),
        Value::Object(o) => Cbor::Map(
            o.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), json_to_cbor(v, Some(k))))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cbor(v: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn cbor_request_blobs_and_millisecond_timestamps() {
        let body = cbor(&Cbor::Map(vec![
            (Cbor::Text("Data".into()), Cbor::Bytes(b"hi".to_vec())),
            (
                Cbor::Text("Timestamp".into()),
                Cbor::Tag(1, Box::new(Cbor::Integer(1_787_036_486_712i64.into()))),
            ),
        ]));
        let v = decode(Encoding::Cbor, &body).unwrap();
        assert_eq!(v["Data"], "aGk=");
        assert!((v["Timestamp"].as_f64().unwrap() - 1_787_036_486.712).abs() < 1e-6);
    }

    #[test]
    fn cbor_response_round_trip() {
        let v = json!({"Records": [{"Data": "aGk=", "ApproximateArrivalTimestamp": 1.5, "PartitionKey": "k"}]});
        let bytes = encode(Encoding::Cbor, &v);
        let back: Cbor = ciborium::de::from_reader(&bytes[..]).unwrap();
        let Cbor::Map(top) = back else { panic!() };
        let Cbor::Array(recs) = &top[0].1 else {
            panic!()
        };
        let Cbor::Map(rec) = &recs[0] else { panic!() };
        let get = |k: &str| {
            rec.iter()
                .find(|(kk, _)| kk == &Cbor::Text(k.into()))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(get("Data"), Cbor::Bytes(b"hi".to_vec()));
        assert_eq!(
            get("ApproximateArrivalTimestamp"),
            Cbor::Tag(1, Box::new(Cbor::Integer(1500.into())))
        );
        assert_eq!(get("PartitionKey"), Cbor::Text("k".into()));
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(decode(Encoding::Json, b"{").is_err());
        assert!(decode(Encoding::Json, b"[1]").is_err());
        assert!(decode(Encoding::Cbor, &[0xff, 0x00]).is_err());
        assert!(decode(Encoding::Cbor, &[0x9f; 1000]).is_err());
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(decode(Encoding::Json, format!("{{\"a\":{deep}}}").as_bytes()).is_err());
        assert_eq!(decode(Encoding::Json, b"").unwrap(), json!({}));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode(Encoding::Json, &bytes);
            let _ = decode(Encoding::Cbor, &bytes);
        }
    }
}
