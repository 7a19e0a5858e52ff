//! Kafka listeners and TLS settings of `strom serve`: Kafka's `listeners`,
//! `advertised.listeners` and `listener.security.protocol.map` (flags, `STROM_KAFKA_*`, or
//! `[kafka]` strings), `[[listener]]` tables, and the `[tls]` files every TLS listener uses
//! unless its table names its own.
//!
//! ```toml
//! [tls]
//! cert = "/etc/strom/server.pem"       # PEM chain, server certificate first
//! key = "/etc/strom/server.key"        # PEM private key
//! client_ca = "/etc/strom/clients.pem" # CAs trusted for client certificates (mTLS)
//! client_auth = "required"             # ssl.client.auth: none | requested | required
//! reload_check_interval_ms = 10000     # re-read the files when they change (also on SIGHUP)
//! # ssl.principal.mapping.rules for client certificates (also --ssl-principal-mapping-rules)
//! principal_mapping_rules = "RULE:^CN=([^,]*),.*$/$1/L,DEFAULT"
//!
//! [[listener]]
//! name = "INTERNAL"
//! listen = "127.0.0.1:9092"
//! security_protocol = "PLAINTEXT"      # else the protocol map's entry for the name
//!
//! [[listener]]
//! name = "EXTERNAL"
//! listen = "0.0.0.0:9093"
//! advertised_host = "kafka.example.com"
//! advertised_port = 9093
//! security_protocol = "SSL"
//! client_auth = "required"             # per-listener cert, key, client_ca, client_auth,
//!                                      # principal_mapping_rules
//! ```

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use strom_kafka::session::{
    ListenerEndpoint, default_protocol_map, parse_listener_list, parse_protocol_map,
};
use strom_kafka::{ListenerConfig, SecurityProtocol};
use strom_tls::mapping::PrincipalMapper;
use strom_tls::{ClientAuth, TlsFiles, TlsServer};

/// Default interval between checks of the TLS files for changes.
pub(crate) const DEFAULT_RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// `[tls]`: the files of every TLS listener that does not name its own.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) client_ca: Option<PathBuf>,
    pub(crate) client_auth: Option<String>,
    pub(crate) reload_check_interval_ms: Option<u64>,
    /// Kafka's `ssl.principal.mapping.rules` (`strom_tls::mapping`).
    pub(crate) principal_mapping_rules: Option<String>,
}

/// One `[[listener]]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileListener {
    name: String,
    listen: String,
    advertised_host: Option<String>,
    advertised_port: Option<u16>,
    security_protocol: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_auth: Option<String>,
    principal_mapping_rules: Option<String>,
}

/// The Kafka-style listener strings, from flags, environment or `[kafka]`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ListenerStrings {
    pub(crate) listeners: Option<String>,
    pub(crate) advertised_listeners: Option<String>,
    pub(crate) protocol_map: Option<String>,
}

/// Resolved listeners and the TLS configurations to keep fresh.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// Empty: the single PLAINTEXT listener of `--kafka-listen`.
    pub(crate) listeners: Vec<ListenerConfig>,
    /// Every TLS configuration loaded (Kafka listeners, Kinesis, admin HTTP), for reloads.
    pub(crate) tls: Vec<Arc<TlsServer>>,
    /// The `[tls]` files' configuration with HTTP ALPN, for Kinesis and the admin port.
    pub(crate) http_tls: Option<Arc<TlsServer>>,
    /// How often the TLS files are checked for changes.
    pub(crate) reload_check_interval: Duration,
}

fn client_auth(value: Option<&str>) -> anyhow::Result<Option<ClientAuth>> {
    value
        .map(|v| v.parse::<ClientAuth>().map_err(anyhow::Error::from))
        .transpose()
}

fn resolve_addr(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving listener host {host}"))?
        .next()
        .with_context(|| format!("listener host {host} has no address"))
}

/// The per-listener TLS files: the listener's own, else `[tls]`'s.
fn tls_files(
    name: &str,
    global: &FileTls,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    auth: Option<ClientAuth>,
) -> anyhow::Result<TlsFiles> {
    let cert = cert.or_else(|| global.cert.clone()).with_context(|| {
        format!(
            "listener {name} uses TLS but no certificate is configured (--tls-cert or [tls] cert)"
        )
    })?;
    let key = key.or_else(|| global.key.clone()).with_context(|| {
        format!(
            "listener {name} uses TLS but no private key is configured (--tls-key or [tls] key)"
        )
    })?;
    Ok(TlsFiles {
        cert_chain: cert,
        private_key: key,
        client_ca: client_ca.or_else(|| global.client_ca.clone()),
        client_auth: match auth {
            Some(a) => a,
            None => client_auth(global.client_auth.as_deref())?.unwrap_or_default(),
        },
    })
}

/// HTTP's ALPN: HTTP/2 first (SubscribeToShard needs it), then HTTP/1.1.
pub(crate) fn http_alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// Builds the Kafka listeners (and loads every TLS configuration they need) from the
/// listener strings (flags over `[kafka]`), else the `[[listener]]` tables; `http_tls` loads
/// `[tls]`'s files for Kinesis and the admin port too.
pub(crate) fn resolve(
    strings: &ListenerStrings,
    tables: Vec<FileListener>,
    global: &FileTls,
    http_tls: bool,
) -> anyhow::Result<Resolved> {
    let mut resolved = Resolved {
        reload_check_interval: global
            .reload_check_interval_ms
            .map_or(DEFAULT_RELOAD_CHECK_INTERVAL, |ms| {
                Duration::from_millis(ms.max(100))
            }),
        ..Resolved::default()
    };
    let map = match &strings.protocol_map {
        Some(m) => parse_protocol_map(m).context("invalid listener security protocol map")?,
        None => default_protocol_map(),
    };
    let protocol_of = |name: &str| -> anyhow::Result<SecurityProtocol> {
        map.iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .with_context(|| {
                format!("listener {name} has no entry in the listener security protocol map (e.g. {name}:PLAINTEXT)")
            })
    };
    let mut specs: Vec<(ListenerConfig, Option<TlsFiles>, Option<String>)> = Vec::new();
    if let Some(list) = &strings.listeners {
        let advertised: Vec<ListenerEndpoint> = match &strings.advertised_listeners {
            Some(a) => parse_listener_list(a).context("invalid advertised listeners")?,
            None => Vec::new(),
        };
        for e in parse_listener_list(list).context("invalid listeners")? {
            let protocol = protocol_of(&e.name)?;
            let adv = advertised.iter().find(|a| a.name == e.name);
            let listen = resolve_addr(&e.host, e.port)?;
            let files = if protocol.uses_tls() {
                Some(tls_files(&e.name, global, None, None, None, None)?)
            } else {
                None
            };
            specs.push((
                ListenerConfig {
                    name: e.name,
                    security_protocol: protocol,
                    listen,
                    advertised_host: adv.map(|a| a.host.clone()).filter(|h| !h.is_empty()),
                    advertised_port: adv.map(|a| a.port),
                    tls: None,
                },
                files,
                None,
            ));
        }
        if let Some(a) = advertised
            .iter()
            .find(|a| !specs.iter().any(|s| s.0.name == a.name))
        {
            anyhow::bail!("advertised listener {} is not among the listeners", a.name);
        }
    } else {
        for t in tables {
            let name = t.name.trim().to_ascii_uppercase();
            let protocol = match &t.security_protocol {
                Some(p) => p.parse::<SecurityProtocol>()?,
                None => protocol_of(&name)?,
            };
            let listen = match t.listen.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    let (host, port) = t.listen.rsplit_once(':').with_context(|| {
                        format!("listener {name}: listen {:?} is not host:port", t.listen)
                    })?;
                    let port = port
                        .parse::<u16>()
                        .with_context(|| format!("listener {name}: bad port in {:?}", t.listen))?;
                    resolve_addr(host, port)?
                }
            };
            let auth = client_auth(t.client_auth.as_deref())?;
            let files = if protocol.uses_tls() {
                Some(tls_files(&name, global, t.cert, t.key, t.client_ca, auth)?)
            } else {
                if t.cert.is_some()
                    || t.key.is_some()
                    || t.client_auth.is_some()
                    || t.principal_mapping_rules.is_some()
                {
                    anyhow::bail!("listener {name} is {protocol} but names TLS settings");
                }
                None
            };
            specs.push((
                ListenerConfig {
                    name,
                    security_protocol: protocol,
                    listen,
                    advertised_host: t.advertised_host,
                    advertised_port: t.advertised_port,
                    tls: None,
                },
                files,
                t.principal_mapping_rules,
            ));
        }
    }
    for (mut listener, files, rules) in specs {
        if let Some(files) = files {
            let server = TlsServer::load(files, Vec::new())
                .with_context(|| format!("loading the TLS files of listener {}", listener.name))?;
            if let Some(rules) = rules.or_else(|| global.principal_mapping_rules.clone()) {
                let mapper = PrincipalMapper::parse(&rules).with_context(|| {
                    format!("ssl.principal.mapping.rules of listener {}", listener.name)
                })?;
                server.set_principal_mapping(mapper);
            }
            resolved.tls.push(Arc::clone(&server));
            listener.tls = Some(server);
        }
        resolved.listeners.push(listener);
    }
    if http_tls {
        let files = tls_files("kinesis/http", global, None, None, None, None)?;
        let server = TlsServer::load(files, http_alpn())
            .context("loading the TLS files for the Kinesis and admin HTTP listeners")?;
        resolved.tls.push(Arc::clone(&server));
        resolved.http_tls = Some(server);
    }
    Ok(resolved)
}

/// The warning for a listener reachable beyond loopback without authentication, if any.
pub(crate) fn exposure_warning(
    name: &str,
    protocol: SecurityProtocol,
    client_auth: Option<ClientAuth>,
    bound: SocketAddr,
) -> Option<String> {
    if bound.ip().is_loopback() {
        return None;
    }
    let authenticated = protocol.uses_sasl()
        || (protocol == SecurityProtocol::Ssl && client_auth == Some(ClientAuth::Required));
    (!authenticated).then(|| {
        format!(
            "Kafka listener {name} ({protocol}) on {bound} is reachable beyond loopback and does not authenticate clients: anyone who can reach it acts as User:ANONYMOUS{}",
            if protocol == SecurityProtocol::Plaintext {
                ", and traffic is not encrypted"
            } else {
                " (use client_auth = \"required\" or SASL_SSL)"
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_warnings() {
        let lo: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9092".parse().unwrap();
        assert!(exposure_warning("A", SecurityProtocol::Plaintext, None, lo).is_none());
        assert!(exposure_warning("A", SecurityProtocol::Plaintext, None, any).is_some());
        assert!(
            exposure_warning("A", SecurityProtocol::Ssl, Some(ClientAuth::Requested), any)
                .is_some()
        );
        assert!(
            exposure_warning("A", SecurityProtocol::Ssl, Some(ClientAuth::Required), any).is_none()
        );
        assert!(exposure_warning("A", SecurityProtocol::SaslSsl, None, any).is_none());
    }

    #[test]
    fn listener_strings_with_map_and_advertised() {
        let strings = ListenerStrings {
            listeners: Some("INTERNAL://127.0.0.1:0,EXTERNAL://:0".into()),
            advertised_listeners: Some("EXTERNAL://kafka.example:19093".into()),
            protocol_map: Some("INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT".into()),
        };
        let r = resolve(&strings, Vec::new(), &FileTls::default(), false).unwrap();
        assert_eq!(r.listeners.len(), 2);
        assert_eq!(r.listeners[0].name, "INTERNAL");
        assert_eq!(r.listeners[0].advertised_host, None);
        assert_eq!(r.listeners[1].listen, "0.0.0.0:0".parse().unwrap());
        assert_eq!(
            r.listeners[1].advertised_host.as_deref(),
            Some("kafka.example")
        );
        assert_eq!(r.listeners[1].advertised_port, Some(19093));
    }

    #[test]
    fn listener_errors() {
        let s = |l: &str, m: Option<&str>| ListenerStrings {
            listeners: Some(l.into()),
            advertised_listeners: None,
            protocol_map: m.map(Into::into),
        };
        let e = resolve(
            &s("CUSTOM://127.0.0.1:0", None),
            Vec::new(),
            &FileTls::default(),
            false,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("protocol map"), "{e:#}");
        let e = resolve(
            &s("SSL://127.0.0.1:0", None),
            Vec::new(),
            &FileTls::default(),
            false,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("no certificate"), "{e:#}");
        let mut adv = s("A://127.0.0.1:0", Some("A:PLAINTEXT"));
        adv.advertised_listeners = Some("B://h:1".into());
        assert!(resolve(&adv, Vec::new(), &FileTls::default(), false).is_err());
    }
}
