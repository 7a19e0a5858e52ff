//! The client messages of each SASL mechanism, parsed without I/O or credentials: PLAIN
//! (RFC 4616), SCRAM client-first and client-final (RFC 5802 §7) and the OAUTHBEARER initial
//! response (RFC 7628 §3.1). Pure functions over bytes, fuzzed by `fuzz/src/sasl.rs`.

/// Why a client message does not parse. The client is told only that authentication failed;
/// this says why in the broker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not UTF-8.
    #[error("the message is not UTF-8")]
    NotUtf8,
    /// PLAIN: not `authzid NUL authcid NUL passwd`, or an empty user or password.
    #[error("PLAIN message is not authzid NUL authcid NUL passwd with a user and a password")]
    PlainShape,
    /// A GS2 header other than `n,` or `y,` with an optional `a=` authzid.
    #[error("bad GS2 header")]
    Gs2Header,
    /// Channel binding (`p=`) was asked for; Strom offers none.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// A SCRAM attribute is missing, out of order or malformed.
    #[error("SCRAM attribute {attribute} missing or malformed")]
    ScramAttribute {
        /// The attribute's letter.
        attribute: char,
    },
    /// A SCRAM mandatory extension (`m=`), which no server understands.
    #[error("SCRAM mandatory extension")]
    MandatoryExtension,
    /// A `saslname` with a `=` not followed by `2C` or `3D`.
    #[error("bad saslname escape")]
    SaslName,
    /// A base64 attribute does not decode.
    #[error("attribute {attribute} is not base64")]
    Base64 {
        /// The attribute's letter.
        attribute: char,
    },
    /// OAUTHBEARER: the key/value part is not `kvsep *(key=value kvsep) kvsep`.
    #[error("OAUTHBEARER key/value pairs malformed")]
    OAuthPairs,
    /// OAUTHBEARER: no `auth=Bearer <token>` pair.
    #[error("OAUTHBEARER message without auth=Bearer")]
    OAuthNoToken,
}

/// A PLAIN message: `[authzid] NUL authcid NUL passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    /// The authorization id (empty, or the user itself: Kafka refuses any other).
    pub authzid: &'a str,
    /// The user.
    pub user: &'a str,
    /// The password.
    pub password: &'a str,
}

/// Parses a PLAIN message.
pub fn parse_plain(message: &[u8]) -> Result<PlainMessage<'_>, ParseError> {
    let text = std::str::from_utf8(message).map_err(|_| ParseError::NotUtf8)?;
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(user), Some(password), None)
            if !user.is_empty() && !password.is_empty() =>
        {
            Ok(PlainMessage {
                authzid,
                user,
                password,
            })
        }
        _ => Err(ParseError::PlainShape),
    }
}

/// The GS2 header shared by SCRAM and OAUTHBEARER: `n,` or `y,`, then an optional
/// `a=authzid`, then `,`. Returns the authzid (unescaped) and the rest after the header.
fn parse_gs2(text: &str) -> Result<(Option<String>, &str, &str), ParseError> {
    let rest = match text.as_bytes().first() {
        Some(b'n' | b'y') => &text[1..],
        Some(b'p') => return Err(ParseError::ChannelBinding),
        _ => return Err(ParseError::Gs2Header),
    };
    let rest = rest.strip_prefix(',').ok_or(ParseError::Gs2Header)?;
    let comma = rest.find(',').ok_or(ParseError::Gs2Header)?;
    let (authz, after) = rest.split_at(comma);
    let authzid = if authz.is_empty() {
        None
    } else {
        let name = authz.strip_prefix("a=").ok_or(ParseError::Gs2Header)?;
        Some(decode_saslname(name)?)
    };
    let header_len = text.len() - after.len() + 1;
    Ok((authzid, &text[..header_len], &after[1..]))
}

/// Undoes RFC 5802's `saslname` escapes: `=2C` is `,` and `=3D` is `=`.
pub fn decode_saslname(name: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i + 1..i + 3).ok_or(ParseError::SaslName)?;
        out.push(match esc {
            "2C" => ',',
            "3D" => '=',
            _ => return Err(ParseError::SaslName),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if name.is_empty() {
        return Err(ParseError::SaslName);
    }
    Ok(out)
}

/// A SCRAM client-first message: `gs2-header client-first-bare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramClientFirst<'a> {
    /// The GS2 header as sent (`n,,`), which client-final's `c=` must repeat in base64.
    pub gs2_header: &'a str,
    /// The authorization id, if any.
    pub authzid: Option<String>,
    /// The user (unescaped).
    pub user: String,
    /// The client's nonce.
    pub nonce: &'a str,
    /// Optional extensions after the nonce (`key=value`), e.g. Kafka's `tokenauth=true`.
    pub extensions: Vec<(&'a str, &'a str)>,
    /// `client-first-bare`, part of the AuthMessage.
    pub bare: &'a str,
}

/// A SCRAM nonce: printable ASCII but `,`.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// One `x=value` attribute.
fn attribute(part: Option<&str>, name: char) -> Result<&str, ParseError> {
    let part = part.ok_or(ParseError::ScramAttribute { attribute: name })?;
    let mut chars = part.chars();
    match (chars.next(), chars.next()) {
        (Some(c), Some('=')) if c == name => Ok(&part[2..]),
        _ => Err(ParseError::ScramAttribute { attribute: name }),
    }
}

/// Parses a SCRAM client-first message.
pub fn parse_scram_client_first(message: &[u8]) -> Result<ScramClientFirst<'_>, ParseError> {
    let text = std::str::from_utf8(message).map_err(|_| ParseError::NotUtf8)?;
    let (authzid, gs2_header, bare) = parse_gs2(text)?;
    if bare.starts_with("m=") {
        return Err(ParseError::MandatoryExtension);
    }
    let mut parts = bare.split(',');
    let user = decode_saslname(attribute(parts.next(), 'n')?)?;
    let nonce = attribute(parts.next(), 'r')?;
    if !valid_nonce(nonce) {
        return Err(ParseError::ScramAttribute { attribute: 'r' });
    }
    let extensions = parts
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or(ParseError::ScramAttribute { attribute: '?' })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScramClientFirst {
        gs2_header,
        authzid,
        user,
        nonce,
        extensions,
        bare,
    })
}

/// A SCRAM client-final message: `c=… ,r=… [,ext] ,p=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramClientFinal<'a> {
    /// The decoded channel binding (`c=`): the GS2 header again, as no binding is used.
    pub channel_binding: Vec<u8>,
    /// The combined nonce (client's then server's).
    pub nonce: &'a str,
    /// The decoded client proof.
    pub proof: Vec<u8>,
    /// The message without `,p=…`, part of the AuthMessage.
    pub without_proof: &'a str,
}

fn base64_attr(value: &str, attribute: char) -> Result<Vec<u8>, ParseError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| ParseError::Base64 { attribute })
}

/// Parses a SCRAM client-final message.
pub fn parse_scram_client_final(message: &[u8]) -> Result<ScramClientFinal<'_>, ParseError> {
    let text = std::str::from_utf8(message).map_err(|_| ParseError::NotUtf8)?;
    let cut = text
        .rfind(",p=")
        .ok_or(ParseError::ScramAttribute { attribute: 'p' })?;
    let (without_proof, proof) = (&text[..cut], &text[cut + 3..]);
    let mut parts = without_proof.split(',');
    let channel_binding = base64_attr(attribute(parts.next(), 'c')?, 'c')?;
    let nonce = attribute(parts.next(), 'r')?;
    if !valid_nonce(nonce) {
        return Err(ParseError::ScramAttribute { attribute: 'r' });
    }
    if proof.is_empty() || proof.contains(',') {
        return Err(ParseError::ScramAttribute { attribute: 'p' });
    }
    Ok(ScramClientFinal {
        channel_binding,
        nonce,
        proof: base64_attr(proof, 'p')?,
        without_proof,
    })
}

/// The OAUTHBEARER initial client response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerMessage<'a> {
    /// The authorization id, if any (Kafka requires it to equal the token's subject).
    pub authzid: Option<String>,
    /// The bearer token (a JWT).
    pub token: &'a str,
    /// The other key/value pairs (SASL extensions).
    pub extensions: Vec<(&'a str, &'a str)>,
}

/// `kvsep` of RFC 7628.
const KVSEP: char = '\u{1}';

/// Parses the OAUTHBEARER initial response:
/// `gs2-header kvsep *(key "=" value kvsep) kvsep`.
pub fn parse_oauthbearer(message: &[u8]) -> Result<OAuthBearerMessage<'_>, ParseError> {
    let text = std::str::from_utf8(message).map_err(|_| ParseError::NotUtf8)?;
    let (authzid, _, rest) = parse_gs2(text)?;
    let pairs = rest
        .strip_prefix(KVSEP)
        .and_then(|r| r.strip_suffix(KVSEP))
        .ok_or(ParseError::OAuthPairs)?;
    let mut token = None;
    let mut extensions = Vec::new();
    if !pairs.is_empty() {
        let pairs = pairs.strip_suffix(KVSEP).ok_or(ParseError::OAuthPairs)?;
        for pair in pairs.split(KVSEP) {
            let (key, value) = pair.split_once('=').ok_or(ParseError::OAuthPairs)?;
            let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic());
            let value_ok = value
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) || matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
            if !key_ok || !value_ok {
                return Err(ParseError::OAuthPairs);
            }
            if key == "auth" {
                let (scheme, value) = value.split_once(' ').ok_or(ParseError::OAuthNoToken)?;
                let value = value.trim();
                if !scheme.eq_ignore_ascii_case("bearer") || value.is_empty() || token.is_some() {
                    return Err(ParseError::OAuthNoToken);
                }
                token = Some(value);
            } else {
                extensions.push((key, value));
            }
        }
    }
    Ok(OAuthBearerMessage {
        authzid,
        token: token.ok_or(ParseError::OAuthNoToken)?,
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let m = parse_plain(b"\0alice\0secret").unwrap();
        assert_eq!((m.authzid, m.user, m.password), ("", "alice", "secret"));
        let m = parse_plain(b"alice\0alice\0pw\0x");
        assert_eq!(m, Err(ParseError::PlainShape));
        assert_eq!(parse_plain(b"\0\0pw"), Err(ParseError::PlainShape));
        assert_eq!(parse_plain(b"\0u\0"), Err(ParseError::PlainShape));
        assert_eq!(parse_plain(b"\0u"), Err(ParseError::PlainShape));
        assert_eq!(parse_plain(b"\0u\0\xff"), Err(ParseError::NotUtf8));
    }

    /// RFC 7677 §3's example messages.
    #[test]
    fn scram_rfc_7677_messages() {
        let first = parse_scram_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.user, "user");
        assert_eq!(first.nonce, "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first.bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert!(first.authzid.is_none() && first.extensions.is_empty());
        let fin = parse_scram_client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
        assert_eq!(fin.channel_binding, b"n,,");
        assert_eq!(
            fin.nonce,
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        assert_eq!(fin.proof.len(), 32);
        assert_eq!(
            fin.without_proof,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
    }

    #[test]
    fn scram_refusals() {
        let e = |m: &[u8]| parse_scram_client_first(m).unwrap_err();
        assert_eq!(e(b"p=tls-unique,,n=u,r=x"), ParseError::ChannelBinding);
        assert_eq!(e(b"x,,n=u,r=x"), ParseError::Gs2Header);
        assert_eq!(e(b"n,,m=1,n=u,r=x"), ParseError::MandatoryExtension);
        assert_eq!(e(b"n,,n=a=2Xb,r=x"), ParseError::SaslName);
        assert_eq!(
            e(b"n,,r=x,n=u"),
            ParseError::ScramAttribute { attribute: 'n' }
        );
        let first = parse_scram_client_first(b"n,a=b=3Dc,n=a=2Cb,r=x,tokenauth=true").unwrap();
        assert_eq!(first.authzid.as_deref(), Some("b=c"));
        assert_eq!(first.user, "a,b");
        assert_eq!(first.extensions, vec![("tokenauth", "true")]);
        assert_eq!(
            parse_scram_client_final(b"c=biws,r=x,p=***").unwrap_err(),
            ParseError::Base64 { attribute: 'p' }
        );
    }

    #[test]
    fn oauthbearer() {
        let m = parse_oauthbearer(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap();
        assert_eq!(m.token, "abc.def.ghi");
        assert!(m.authzid.is_none());
        let m = parse_oauthbearer(b"n,a=alice,\x01ext=1\x01auth=bearer t\x01\x01").unwrap();
        assert_eq!(m.authzid.as_deref(), Some("alice"));
        assert_eq!(m.extensions, vec![("ext", "1")]);
        assert_eq!(
            parse_oauthbearer(b"n,,\x01\x01").unwrap_err(),
            ParseError::OAuthNoToken
        );
        assert_eq!(
            parse_oauthbearer(b"n,,\x01auth=Basic x\x01\x01").unwrap_err(),
            ParseError::OAuthNoToken
        );
        assert_eq!(
            parse_oauthbearer(b"n,,\x01auth=Bearer t\x01").unwrap_err(),
            ParseError::OAuthPairs
        );
    }
}
