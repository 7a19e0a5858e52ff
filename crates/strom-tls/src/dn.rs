//! The subject of an X.509 certificate as an RFC 2253 distinguished name, the string Kafka's
//! default SSL principal builder uses (`X500Principal.getName()`): the RDNs in reverse order of
//! their encoding, joined by `,` (`+` inside a multi-valued RDN); the attribute types Java names
//! (`CN`, `C`, `L`, `ST`, `O`, `OU`, `STREET`, `DC`, `UID`) by keyword with their string value
//! escaped, every other type as its dotted OID with `#` and the hex of the value's encoding.
//!
//! A minimal DER reader: only the path certificate → tbsCertificate → subject is walked, and
//! every length is checked against what is left, so arbitrary bytes give `None`, never a
//! panic.

use std::fmt::Write as _;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xA0;

/// The certificate's subject in RFC 2253 form, or `None` when `der` is not a certificate
/// this reader understands.
pub fn subject_dn(der: &[u8]) -> Option<String> {
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    let (tag, _, rest) = tlv(tbs)?;
    if tag == EXPLICIT_0 {
        tbs = rest;
    }
    let (tag, _, rest) = tlv(tbs)?;
    if tag != INTEGER {
        return None;
    }
    tbs = rest;
    for _ in 0..3 {
        let (tag, _, rest) = tlv(tbs)?;
        if tag != SEQUENCE {
            return None;
        }
        tbs = rest;
    }
    let (tag, subject, _) = tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    name_to_rfc2253(subject)
}

/// An encoded `Name`'s content (the RDN sequence) in RFC 2253 form.
fn name_to_rfc2253(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (tag, mut set, rest) = tlv(rdns)?;
        if tag != SET {
            return None;
        }
        rdns = rest;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let (tag, atv, rest) = tlv(set)?;
            if tag != SEQUENCE {
                return None;
            }
            set = rest;
            attributes.push(attribute(atv)?);
        }
        parts.push(attributes.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// One `AttributeTypeAndValue` as `TYPE=value`.
fn attribute(atv: &[u8]) -> Option<String> {
    let (tag, oid, rest) = tlv(atv)?;
    if tag != OID {
        return None;
    }
    let oid = dotted_oid(oid)?;
    let keyword = match oid.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.9" => Some("STREET"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    let (value_tag, value, after) = tlv(rest)?;
    if !after.is_empty() {
        return None;
    }
    let text = keyword.and_then(|_| decode_string(value_tag, value));
    Some(match (keyword, text) {
        (Some(k), Some(text)) => format!("{k}={}", escape(&text)),
        _ => {
            // The type by OID (or a keyword whose value is not a string) and the value's
            // whole encoding in hex.
            let name = keyword.map_or(oid, str::to_owned);
            let encoded = rest;
            let mut s = format!("{name}=#");
            for b in encoded {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
    })
}

/// The directory-string types, decoded.
fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(value.to_vec()).ok(),
        // TeletexString: treated as Latin-1, as most readers do.
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e => {
            if !value.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1c => {
            if !value.len().is_multiple_of(4) {
                return None;
            }
            value
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 2253 §2.4 escaping: `,+"\<>;` anywhere, `#` or a space at the start, a space at the end.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An OBJECT IDENTIFIER's content in dotted form.
fn dotted_oid(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    let mut pending = false;
    for &b in content {
        if value > (u64::MAX >> 7) {
            return None;
        }
        value = (value << 7) | u64::from(b & 0x7f);
        pending = true;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
            pending = false;
        }
    }
    if pending || arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// One DER tag-length-value: `(tag, content, rest)`. Single-byte tags only (all this reader
/// needs); definite lengths up to four bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        rest = rest.get(n..)?;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let content = rest.get(..len)?;
    let after = rest.get(len..)?;
    Some((tag, content, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut inner = seq(OID, oid);
        inner.extend(seq(tag, value));
        seq(SET, &seq(SEQUENCE, &inner))
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];

    fn cert_with_subject(rdns: &[Vec<u8>]) -> Vec<u8> {
        let name: Vec<u8> = seq(SEQUENCE, &rdns.concat());
        let mut tbs = seq(EXPLICIT_0, &seq(INTEGER, &[2]));
        tbs.extend(seq(INTEGER, &[1, 2, 3]));
        tbs.extend(seq(SEQUENCE, &seq(OID, &[0x2a, 0x03])));
        tbs.extend(seq(SEQUENCE, &[])); // issuer
        tbs.extend(seq(SEQUENCE, &[])); // validity
        tbs.extend(name);
        tbs.extend(seq(SEQUENCE, &[])); // spki
        let mut cert = seq(SEQUENCE, &tbs);
        cert.extend(seq(SEQUENCE, &[]));
        cert.extend(seq(0x03, &[0]));
        seq(SEQUENCE, &cert)
    }

    #[test]
    fn subject_in_rfc2253_order_with_escapes_and_oids() {
        let der = cert_with_subject(&[
            atv(C, 0x13, b"US"),
            atv(O, 0x0c, b"Acme, Inc"),
            atv(CN, 0x0c, b"alice"),
            atv(EMAIL, 0x16, b"a@b"),
        ]);
        assert_eq!(
            subject_dn(&der).as_deref(),
            Some("1.2.840.113549.1.9.1=#1603614062,CN=alice,O=Acme\\, Inc,C=US")
        );
    }

    #[test]
    fn multi_valued_rdn_and_bmp_string() {
        let mut set_content = seq(
            SEQUENCE,
            &[seq(OID, CN), seq(0x1e, &[0, b'b', 0, b'o'])].concat(),
        );
        set_content.extend(seq(SEQUENCE, &[seq(OID, O), seq(0x13, b"x")].concat()));
        let der = cert_with_subject(&[seq(SET, &set_content)]);
        assert_eq!(subject_dn(&der).as_deref(), Some("CN=bo+O=x"));
    }

    #[test]
    fn escaping_rules() {
        assert_eq!(escape("#a b "), "\\#a b\\ ");
        assert_eq!(escape(" x"), "\\ x");
        assert_eq!(escape("a+b;c<d>\"e\\"), "a\\+b\\;c\\<d\\>\\\"e\\\\");
    }

    #[test]
    fn garbage_gives_none() {
        assert_eq!(subject_dn(&[]), None);
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let der = cert_with_subject(&[atv(CN, 0x0c, b"x")]);
        for cut in 0..der.len() {
            let _ = subject_dn(&der[..cut]);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = subject_dn(&bytes);
        }
    }
}
