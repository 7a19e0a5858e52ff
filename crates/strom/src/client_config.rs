//! How the client subcommands (`topic`, `produce`, `consume`, `group`, `acl`, `user`, `txn`)
//! reach a listener: the security protocol, TLS files and SASL credentials, from flags or a
//! `--command-config` file like Kafka's tools take.
//!
//! The file is Java-properties text with a Kafka client's keys (Java's and librdkafka's
//! names both work):
//!
//! ```properties
//! security.protocol=SASL_SSL
//! ssl.ca.location=/etc/strom/ca.pem            # or ssl.truststore.location (PEM only)
//! ssl.certificate.location=/etc/strom/me.pem   # mTLS; or ssl.keystore.location (PEM, both)
//! ssl.key.location=/etc/strom/me.key
//! sasl.mechanism=SCRAM-SHA-512
//! sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
//!     username="admin" password="admin-secret";
//! ```
//!
//! `sasl.username` / `sasl.password` may stand for the JAAS line. OAUTHBEARER takes a token the
//! user already holds, from a file named as Kafka's clients name one
//! (`sasl.oauthbearer.token.endpoint.url=file:/path/to/token.jwt`, Kafka's `FileJwtRetriever`;
//! an HTTP token endpoint is refused) or by `--sasl-oauthbearer-token-file`; the JAAS line
//! (`OAuthBearerLoginModule required;`) needs no options then. Flags win over the file.
//! Without `security.protocol` it follows from what is given: SASL with a mechanism, TLS
//! with a TLS file. Other keys are ignored (a client's file holds many). Only PEM files are
//! read: a JKS or PKCS12 store type is refused, and so is `ssl.key.password`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use strom_kafka::SecurityProtocol;
use strom_kafka::client::ConnectOptions;
use strom_kafka::client::sasl::SaslCredentials;
use strom_kafka::sasl::Mechanism;
use strom_tls::ClientTlsFiles;

/// Parses Java-properties text: `key=value`, `key: value` or `key value` lines, `#` and `!`
/// comments, `\` at the end of a line continuing it, and `\` escapes (`\n`, `\t`, `\\`).
pub(crate) fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut line = line.trim_start().to_owned();
        if logical.is_empty() && (line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        // An odd number of trailing backslashes continues the line.
        loop {
            let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
            if trailing % 2 == 0 {
                break;
            }
            line.pop();
            match lines.next() {
                Some(next) => line.push_str(next.trim_start()),
                None => break,
            }
        }
        logical = line;
        if logical.trim().is_empty() {
            logical.clear();
            continue;
        }
        let entry = std::mem::take(&mut logical);
        let mut key = String::new();
        let mut chars = entry.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(e) = chars.next() {
                        key.push(unescape(e));
                    }
                }
                '=' | ':' => break,
                c if c.is_whitespace() => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                    if matches!(chars.peek(), Some('=' | ':')) {
                        chars.next();
                    }
                    break;
                }
                c => key.push(c),
            }
        }
        let mut value = String::new();
        let rest: String = chars.collect();
        let mut chars = rest.trim_start().chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(e) = chars.next() {
                        value.push(unescape(e));
                    }
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
    }
    out
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'f' => '\u{c}',
        other => other,
    }
}

/// `name="value"` (or `name=value`) in a JAAS `sasl.jaas.config` line.
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let mut rest = jaas;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + name.len()..].trim_start();
        rest = &rest[at + name.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        if let Some(quoted) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => return Some(out),
                    c => out.push(c),
                }
            }
            return None;
        }
        return Some(
            value
                .split(|c: char| c.is_whitespace() || c == ';')
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    None
}

/// The connection settings the flags give (each `None` when not given).
#[derive(Debug, Default, Clone)]
pub(crate) struct Flags {
    pub(crate) command_config: Option<PathBuf>,
    pub(crate) security_protocol: Option<String>,
    pub(crate) ssl_ca_location: Option<PathBuf>,
    pub(crate) ssl_certificate_location: Option<PathBuf>,
    pub(crate) ssl_key_location: Option<PathBuf>,
    pub(crate) sasl_mechanism: Option<String>,
    pub(crate) sasl_username: Option<String>,
    pub(crate) sasl_password: Option<String>,
    pub(crate) sasl_oauthbearer_token_file: Option<PathBuf>,
}

/// A PEM store location from the file: `ssl.<store>.location`, refused unless its type is PEM.
fn pem_store(props: &BTreeMap<String, String>, store: &str) -> anyhow::Result<Option<PathBuf>> {
    let Some(location) = props.get(&format!("ssl.{store}.location")) else {
        return Ok(None);
    };
    match props.get(&format!("ssl.{store}.type")).map(String::as_str) {
        Some(t) if t.eq_ignore_ascii_case("PEM") => Ok(Some(PathBuf::from(location))),
        Some(t) => bail!("ssl.{store}.type {t}: only PEM files are supported"),
        None => bail!("ssl.{store}.location needs ssl.{store}.type=PEM (only PEM is supported)"),
    }
}

/// Resolves flags over the command-config file into the options of a connection.
pub(crate) fn resolve(flags: &Flags) -> anyhow::Result<ConnectOptions> {
    let props = match &flags.command_config {
        Some(path) => read_properties(path)?,
        None => BTreeMap::new(),
    };
    let prop = |key: &str| props.get(key).filter(|v| !v.is_empty()).cloned();
    if prop("ssl.key.password").is_some() {
        bail!(
            "ssl.key.password: encrypted private keys are not supported; give an unencrypted PEM key"
        );
    }
    let keystore = pem_store(&props, "keystore")?;
    let tls_files = ClientTlsFiles {
        ca: flags
            .ssl_ca_location
            .clone()
            .or_else(|| prop("ssl.ca.location").map(PathBuf::from))
            .or(pem_store(&props, "truststore")?),
        cert_chain: flags
            .ssl_certificate_location
            .clone()
            .or_else(|| prop("ssl.certificate.location").map(PathBuf::from))
            .or_else(|| keystore.clone()),
        private_key: flags
            .ssl_key_location
            .clone()
            .or_else(|| prop("ssl.key.location").map(PathBuf::from))
            .or(keystore),
    };
    let jaas = prop("sasl.jaas.config");
    let mechanism = flags
        .sasl_mechanism
        .clone()
        .or_else(|| prop("sasl.mechanism"))
        .or_else(|| prop("sasl.mechanisms"))
        .or_else(|| {
            jaas.as_deref().and_then(|j| {
                if j.contains("PlainLoginModule") {
                    Some("PLAIN".to_owned())
                } else if j.contains("OAuthBearerLoginModule") {
                    Some("OAUTHBEARER".to_owned())
                } else {
                    None
                }
            })
        });
    let username = flags
        .sasl_username
        .clone()
        .or_else(|| prop("sasl.username"))
        .or_else(|| jaas.as_deref().and_then(|j| jaas_option(j, "username")));
    let password = flags
        .sasl_password
        .clone()
        .or_else(|| prop("sasl.password"))
        .or_else(|| jaas.as_deref().and_then(|j| jaas_option(j, "password")));
    let protocol = match flags
        .security_protocol
        .clone()
        .or_else(|| prop("security.protocol"))
    {
        Some(p) => p
            .parse::<SecurityProtocol>()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            let tls = tls_files != ClientTlsFiles::default();
            match (mechanism.is_some(), tls) {
                (false, false) => SecurityProtocol::Plaintext,
                (false, true) => SecurityProtocol::Ssl,
                (true, false) => SecurityProtocol::SaslPlaintext,
                (true, true) => SecurityProtocol::SaslSsl,
            }
        }
    };
    let tls = if protocol.uses_tls() {
        Some(strom_tls::client_config(&tls_files).context("TLS client settings")?)
    } else {
        None
    };
    let sasl = if protocol.uses_sasl() {
        let Some(name) = mechanism else {
            bail!(
                "security protocol {protocol} needs a SASL mechanism (--sasl-mechanism or sasl.mechanism)"
            );
        };
        let mechanism =
            Mechanism::from_name(&name.trim().to_ascii_uppercase()).with_context(|| {
                format!(
                    "SASL mechanism {name:?}: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
                )
            })?;
        if mechanism == Mechanism::OAuthBearer {
            let file = match (
                &flags.sasl_oauthbearer_token_file,
                prop("sasl.oauthbearer.token.endpoint.url"),
            ) {
                (Some(path), _) => path.clone(),
                (None, Some(url)) => token_file_url(&url)?,
                (None, None) => bail!(
                    "OAUTHBEARER needs a token file (--sasl-oauthbearer-token-file or \
                     sasl.oauthbearer.token.endpoint.url=file:PATH)"
                ),
            };
            let token = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the OAUTHBEARER token {}", file.display()))?;
            let token = token.trim();
            if token.is_empty() || token.contains(char::is_whitespace) {
                bail!(
                    "the OAUTHBEARER token file {} must hold one token (a JWT)",
                    file.display()
                );
            }
            Some(SaslCredentials::oauthbearer(token.to_owned()))
        } else {
            let (Some(username), Some(password)) = (username, password) else {
                bail!(
                    "SASL needs a user and a password (--sasl-username and STROM_SASL_PASSWORD, or sasl.jaas.config)"
                );
            };
            Some(SaslCredentials {
                mechanism,
                username,
                password,
            })
        }
    } else {
        None
    };
    Ok(ConnectOptions { tls, sasl })
}

/// The path of a `file:` token endpoint URL (`file:/p`, `file:///p`, or `file://localhost/p`,
/// percent-escapes decoded); any other URL is refused: the CLI does not fetch tokens.
fn token_file_url(url: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = url.strip_prefix("file:") else {
        bail!(
            "sasl.oauthbearer.token.endpoint.url {url}: only a file: URL is supported (the CLI \
             does not fetch tokens)"
        );
    };
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => {
            let at = authority_and_path
                .find('/')
                .unwrap_or(authority_and_path.len());
            let (authority, path) = authority_and_path.split_at(at);
            if !authority.is_empty() && authority != "localhost" {
                bail!("sasl.oauthbearer.token.endpoint.url {url}: a file URL names no other host");
            }
            path
        }
        None => rest,
    };
    if !path.starts_with('/') {
        bail!("sasl.oauthbearer.token.endpoint.url {url}: the file path must be absolute");
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut raw = path.bytes();
    while let Some(b) = raw.next() {
        if b == b'%' {
            let hex: Vec<u8> = raw.by_ref().take(2).collect();
            let decoded = std::str::from_utf8(&hex)
                .ok()
                .filter(|h| h.len() == 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| {
                    format!("sasl.oauthbearer.token.endpoint.url {url}: bad %-escape")
                })?;
            bytes.push(decoded);
        } else {
            bytes.push(b);
        }
    }
    let path = String::from_utf8(bytes)
        .with_context(|| format!("sasl.oauthbearer.token.endpoint.url {url}: not UTF-8"))?;
    Ok(PathBuf::from(path))
}

fn read_properties(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the command config {}", path.display()))?;
    Ok(parse_properties(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_as_java_reads_them() {
        let text = "# comment\n! also\nsecurity.protocol=SASL_SSL\n  a.b : c d \nkey value\n\
                    sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n    \
                    username=\"al=ice\" password=\"p w\";\nempty=\nesc\\=aped=x\\ty\n";
        let props = parse_properties(text);
        assert_eq!(props["security.protocol"], "SASL_SSL");
        assert_eq!(props["a.b"], "c d ");
        assert_eq!(props["key"], "value");
        assert_eq!(props["empty"], "");
        assert_eq!(props["esc=aped"], "x\ty");
        let jaas = &props["sasl.jaas.config"];
        assert!(
            jaas.ends_with("username=\"al=ice\" password=\"p w\";"),
            "{jaas}"
        );
        assert_eq!(jaas_option(jaas, "username").as_deref(), Some("al=ice"));
        assert_eq!(jaas_option(jaas, "password").as_deref(), Some("p w"));
        assert_eq!(
            jaas_option("x username=bob;", "username").as_deref(),
            Some("bob")
        );
        assert_eq!(jaas_option("myusername=\"x\"", "username"), None);
    }

    fn with_file(text: &str, flags: Flags) -> anyhow::Result<ConnectOptions> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("client.properties");
        std::fs::write(&path, text)?;
        resolve(&Flags {
            command_config: Some(path),
            ..flags
        })
    }

    #[test]
    fn sasl_from_the_file_and_flags_over_it() {
        let text = "sasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"s3cret\";\n";
        let o = with_file(text, Flags::default()).unwrap();
        let sasl = o.sasl.unwrap();
        assert_eq!(sasl.mechanism, Mechanism::ScramSha512);
        assert_eq!(sasl.username, "admin");
        assert_eq!(sasl.password, "s3cret");
        assert!(o.tls.is_none(), "SASL_PLAINTEXT inferred");
        let o = with_file(
            text,
            Flags {
                sasl_username: Some("other".into()),
                security_protocol: Some("PLAINTEXT".into()),
                ..Flags::default()
            },
        )
        .unwrap();
        assert!(o.sasl.is_none(), "the protocol flag wins");
        // PLAIN follows from the login module.
        let o = with_file(
            "security.protocol=SASL_PLAINTEXT\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\";",
            Flags::default(),
        )
        .unwrap();
        assert_eq!(o.sasl.unwrap().mechanism, Mechanism::Plain);
    }

    #[test]
    fn oauthbearer_reads_its_token_from_a_file_url_or_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("my token.jwt");
        std::fs::write(&token, "  h.c.s\n").unwrap();
        let url = format!("file://{}", token.display().to_string().replace(' ', "%20"));
        let text = format!(
            "security.protocol=SASL_SSL\nsasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\nsasl.oauthbearer.token.endpoint.url={url}\n"
        );
        let o = with_file(&text, Flags::default()).unwrap();
        let sasl = o.sasl.unwrap();
        assert_eq!(
            sasl.mechanism,
            Mechanism::OAuthBearer,
            "from the login module"
        );
        assert_eq!(sasl.password, "h.c.s");
        assert_eq!(sasl.username, "");
        let other = dir.path().join("other.jwt");
        std::fs::write(&other, "x.y.z").unwrap();
        let o = with_file(
            &text,
            Flags {
                sasl_oauthbearer_token_file: Some(other),
                ..Flags::default()
            },
        )
        .unwrap();
        assert_eq!(o.sasl.unwrap().password, "x.y.z", "the flag wins");
        assert_eq!(token_file_url("file:/a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(
            token_file_url("file://localhost/a%2Fb").unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(token_file_url("file://elsewhere/a").is_err());
        assert!(token_file_url("file:relative").is_err());
        assert!(token_file_url("file:/a%2").is_err());
        std::fs::write(&token, "two tokens\n").unwrap();
        let e = format!("{:#}", with_file(&text, Flags::default()).unwrap_err());
        assert!(e.contains("must hold one token"), "{e}");
    }

    #[test]
    fn refusals_say_why() {
        for (text, needle) in [
            (
                "security.protocol=SASL_SSL\nssl.ca.location=/nonexistent/ca.pem\nsasl.mechanism=PLAIN",
                "TLS client settings",
            ),
            ("security.protocol=SASL_PLAINTEXT", "needs a SASL mechanism"),
            (
                "sasl.mechanism=GSSAPI\nsasl.username=a\nsasl.password=b",
                "GSSAPI",
            ),
            ("sasl.mechanism=PLAIN", "user and a password"),
            ("sasl.mechanism=OAUTHBEARER", "needs a token file"),
            (
                "sasl.mechanism=OAUTHBEARER\nsasl.oauthbearer.token.endpoint.url=https://idp/token",
                "only a file: URL",
            ),
            (
                "sasl.mechanism=OAUTHBEARER\nsasl.oauthbearer.token.endpoint.url=file:/nonexistent/t",
                "reading the OAUTHBEARER token",
            ),
            (
                "ssl.truststore.location=/x.jks\nssl.truststore.type=JKS",
                "only PEM",
            ),
            ("ssl.truststore.location=/x.jks", "only PEM"),
            ("ssl.key.password=x", "encrypted"),
            ("security.protocol=QUIC", "QUIC"),
        ] {
            let e = format!("{:#}", with_file(text, Flags::default()).unwrap_err());
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
