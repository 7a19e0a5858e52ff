//! Per-connection security context: which listener a connection came in on, and who the
//! client is.
//!
//! Kafka names each listener (`INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9093`) and maps
//! each name to a security protocol (`listener.security.protocol.map`). A connection carries
//! its listener ([`ListenerInfo`]: name, protocol, the address Metadata advertises to it) and
//! its principal in a [`Session`], shared by every request of the connection through
//! [`crate::frame::Request::session`]. The principal starts as `User:ANONYMOUS`, or the
//! client certificate's subject on an SSL listener with client authentication; SASL sets it
//! after a successful authentication with [`Session::set_principal`].

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

use crate::authz::ANONYMOUS;

/// A listener's security protocol, Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS; authenticated only with client certificates.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before other requests.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        })
    }
}

/// A security protocol name that is none of Kafka's four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown security protocol {name:?} (expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)")]
pub struct UnknownSecurityProtocol {
    /// The name given.
    pub name: String,
}

impl FromStr for SecurityProtocol {
    type Err = UnknownSecurityProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(UnknownSecurityProtocol { name: s.to_owned() }),
        }
    }
}

/// One bound listener as its connections see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The listener's name (`PLAINTEXT`, `INTERNAL`, …).
    pub name: String,
    /// Its security protocol.
    pub security_protocol: SecurityProtocol,
    /// Host name Metadata, FindCoordinator and DescribeCluster give clients of this listener.
    pub advertised_host: String,
    /// Port they are given.
    pub advertised_port: i32,
}

/// The security context of one connection, shared by its requests.
#[derive(Debug)]
pub struct Session {
    /// The listener the connection came in on.
    pub listener: Arc<ListenerInfo>,
    /// The client's address.
    pub peer: SocketAddr,
    principal: RwLock<Arc<str>>,
    /// The connection's quota throttle (see [`crate::quota`]).
    pub throttle: crate::quota::ConnectionThrottle,
}

impl Session {
    /// A session of `peer` on `listener`, authenticated as `principal` (`User:ANONYMOUS` for
    /// an unauthenticated client).
    pub fn new(listener: Arc<ListenerInfo>, peer: SocketAddr, principal: Option<String>) -> Self {
        Session {
            listener,
            peer,
            principal: RwLock::new(Arc::from(principal.as_deref().unwrap_or(ANONYMOUS))),
            throttle: crate::quota::ConnectionThrottle::default(),
        }
    }

    /// The principal requests are authorized as (`User:…`).
    pub fn principal(&self) -> Arc<str> {
        Arc::clone(
            &self
                .principal
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Replaces the principal (after a SASL authentication).
    pub fn set_principal(&self, principal: &str) {
        *self
            .principal
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::from(principal);
    }
}

/// One entry of Kafka's `listeners` or `advertised.listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEndpoint {
    /// The listener's name, upper-cased as Kafka does.
    pub name: String,
    /// The host (empty: every interface); IPv6 without brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// A `listeners`, `advertised.listeners` or `listener.security.protocol.map` value that does
/// not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenerSpecError {
    /// An entry is not `NAME://host:port`.
    #[error("listener {entry:?} is not NAME://host:port")]
    BadEndpoint {
        /// The entry.
        entry: String,
    },
    /// A protocol-map entry is not `NAME:PROTOCOL`.
    #[error("security protocol map entry {entry:?} is not NAME:PROTOCOL")]
    BadMapEntry {
        /// The entry.
        entry: String,
    },
    /// A protocol name is unknown.
    #[error(transparent)]
    UnknownProtocol(#[from] UnknownSecurityProtocol),
    /// A name appears twice.
    #[error("listener {name} is given twice")]
    Duplicate {
        /// The name.
        name: String,
    },
}

/// Parses a comma-separated `listeners` / `advertised.listeners` value.
pub fn parse_listener_list(value: &str) -> Result<Vec<ListenerEndpoint>, ListenerSpecError> {
    let mut out: Vec<ListenerEndpoint> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ListenerSpecError::BadEndpoint {
            entry: entry.to_owned(),
        };
        let (name, address) = entry.split_once("://").ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port.parse::<u16>().map_err(|_| bad())?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty()
            || name.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(bad());
        }
        if out.iter().any(|e| e.name == name) {
            return Err(ListenerSpecError::Duplicate { name });
        }
        out.push(ListenerEndpoint {
            name,
            host: host.to_owned(),
            port,
        });
    }
    Ok(out)
}

/// Kafka's default `listener.security.protocol.map`: each protocol's name maps to itself.
pub fn default_protocol_map() -> Vec<(String, SecurityProtocol)> {
    [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ]
    .into_iter()
    .map(|p| (p.to_string(), p))
    .collect()
}

/// Parses a `listener.security.protocol.map` value (`INTERNAL:PLAINTEXT,EXTERNAL:SSL`).
pub fn parse_protocol_map(
    value: &str,
) -> Result<Vec<(String, SecurityProtocol)>, ListenerSpecError> {
    let mut out: Vec<(String, SecurityProtocol)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) =
            entry
                .split_once(':')
                .ok_or_else(|| ListenerSpecError::BadMapEntry {
                    entry: entry.to_owned(),
                })?;
        let name = name.trim().to_ascii_uppercase();
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ListenerSpecError::Duplicate { name });
        }
        out.push((name, protocol.parse()?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for p in [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ] {
            assert_eq!(p.to_string().parse::<SecurityProtocol>(), Ok(p));
        }
        assert_eq!("sasl_ssl".parse(), Ok(SecurityProtocol::SaslSsl));
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(!SecurityProtocol::Plaintext.uses_tls() && !SecurityProtocol::Ssl.uses_sasl());
    }

    #[test]
    fn listener_lists_parse_like_kafka() {
        let l = parse_listener_list("INTERNAL://127.0.0.1:9092, external://:9093,V6://[::1]:9094")
            .unwrap();
        assert_eq!(
            l,
            vec![
                ListenerEndpoint {
                    name: "INTERNAL".into(),
                    host: "127.0.0.1".into(),
                    port: 9092
                },
                ListenerEndpoint {
                    name: "EXTERNAL".into(),
                    host: String::new(),
                    port: 9093
                },
                ListenerEndpoint {
                    name: "V6".into(),
                    host: "::1".into(),
                    port: 9094
                },
            ]
        );
        for bad in [
            "127.0.0.1:9092",
            "A://host",
            "A://host:99999",
            "://h:1",
            "A B://h:1",
        ] {
            assert!(
                matches!(
                    parse_listener_list(bad),
                    Err(ListenerSpecError::BadEndpoint { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_listener_list("A://h:1,a://h:2"),
            Err(ListenerSpecError::Duplicate { .. })
        ));
    }

    #[test]
    fn protocol_maps_parse() {
        assert_eq!(
            parse_protocol_map("INTERNAL:PLAINTEXT,external:sasl_ssl").unwrap(),
            vec![
                ("INTERNAL".to_owned(), SecurityProtocol::Plaintext),
                ("EXTERNAL".to_owned(), SecurityProtocol::SaslSsl)
            ]
        );
        assert!(parse_protocol_map("A").is_err());
        assert!(parse_protocol_map("A:TLS").is_err());
        assert_eq!(default_protocol_map().len(), 4);
    }

    #[test]
    fn principal_defaults_to_anonymous_and_can_change() {
        let listener = Arc::new(ListenerInfo {
            name: "PLAINTEXT".into(),
            security_protocol: SecurityProtocol::Plaintext,
            advertised_host: "localhost".into(),
            advertised_port: 9092,
        });
        let s = Session::new(listener, "127.0.0.1:1".parse().unwrap(), None);
        assert_eq!(&*s.principal(), ANONYMOUS);
        s.set_principal("User:alice");
        assert_eq!(&*s.principal(), "User:alice");
    }
}
