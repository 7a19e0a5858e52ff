//! # strom-tls
//!
//! TLS for every Strom listener (Kafka, Kinesis, admin HTTP), with rustls:
//!
//! - [`TlsFiles`]: a PEM certificate chain and private key, and for client-certificate
//!   authentication (mTLS) a PEM bundle of trusted CAs and Kafka's `ssl.client.auth` mode
//!   ([`ClientAuth`]).
//! - [`TlsServer`]: the rustls server configuration built from those files, replaceable at
//!   run time: [`TlsServer::reload`] re-reads the files (on SIGHUP), and
//!   [`TlsServer::spawn_watcher`] does so when their modification time or size changes. A
//!   failed reload keeps the configuration in force and logs why. Connections already open
//!   keep the certificate they were set up with; new connections use the new one.
//! - [`client_principal`]: the principal of a client that presented a certificate,
//!   `User:` + the subject's RFC 2253 distinguished name (Kafka's default SSL principal).
//! - [`mapping::PrincipalMapper`]: Kafka's `ssl.principal.mapping.rules`, which
//!   [`TlsServer::principal`] applies to that DN (see [`TlsServer::set_principal_mapping`]).
//! - [`TlsListener`]: an [`axum::serve::Listener`] that wraps another listener and hands out
//!   only connections whose handshake completed, handshakes running concurrently, so one
//!   slow client does not hold up the others.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dn;
pub mod mapping;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::task::JoinSet;

pub use tokio_rustls::server::TlsStream;

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka's `ssl.client.auth`: whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one connects as `User:ANONYMOUS`.
    Requested,
    /// Required: a client without a trusted certificate is refused at the handshake.
    Required,
}

/// A `ssl.client.auth` value that is not `none`, `requested` or `required`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client auth mode {value:?} (expected none, requested or required)")]
pub struct UnknownClientAuth {
    /// The value given.
    pub value: String,
}

impl FromStr for ClientAuth {
    type Err = UnknownClientAuth;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err(UnknownClientAuth {
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        })
    }
}

/// Where a listener's certificate, key and trusted client CAs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert_chain: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// PEM bundle of CAs whose client certificates are trusted (needed unless `client_auth`
    /// is `None`).
    pub client_ca: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub client_auth: ClientAuth,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind needed.
    #[error("{path} holds no PEM {what}")]
    NoPem {
        /// The file.
        path: PathBuf,
        /// What was looked for (`certificate`, `private key`).
        what: &'static str,
    },
    /// A PEM section could not be decoded.
    #[error("{path}: bad PEM: {reason}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// No CA file was given and the system's trust store has no usable certificate.
    #[error("no CA file given and no system trust roots found")]
    NoTrustRoots,
    /// A client certificate without its key, or a key without its certificate.
    #[error("{path}: a client certificate and its private key go together")]
    IncompleteClientIdentity {
        /// The one file given.
        path: PathBuf,
    },
    /// Client authentication was asked for without a CA bundle.
    #[error("client authentication ({mode}) needs a client CA bundle")]
    MissingClientCa {
        /// The mode asked for.
        mode: ClientAuth,
    },
    /// rustls refused the certificates or key.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA bundle.
    #[error("client CA bundle {path} refused: {reason}")]
    ClientVerifier {
        /// The CA bundle.
        path: PathBuf,
        /// rustls' message.
        reason: String,
    },
}

/// When each file was last seen changed: modification time and size.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// A listener's TLS configuration, reloadable while the listener runs.
#[derive(Debug)]
pub struct TlsServer {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: RwLock<(Arc<ServerConfig>, Stamp)>,
    /// `ssl.principal.mapping.rules` of the listeners this configuration serves.
    principal_mapping: RwLock<Arc<mapping::PrincipalMapper>>,
}

impl TlsServer {
    /// Reads the files and builds the configuration; `alpn` lists the application protocols
    /// offered, most preferred first (`h2`, `http/1.1` for HTTP; none for Kafka).
    pub fn load(files: TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Arc<TlsServer>, TlsError> {
        let stamp = stamp(&files);
        let config = build(&files, &alpn)?;
        Ok(Arc::new(TlsServer {
            files,
            alpn,
            current: RwLock::new((config, stamp)),
            principal_mapping: RwLock::default(),
        }))
    }

    /// Sets the `ssl.principal.mapping.rules` that [`TlsServer::principal`] applies (by
    /// default `DEFAULT`: the DN as it is). Connections accepted later use them.
    pub fn set_principal_mapping(&self, mapper: mapping::PrincipalMapper) {
        *self
            .principal_mapping
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(mapper);
    }

    /// The principal of a client of this configuration: `None` without a client
    /// certificate, else `User:` + the name the mapping rules make of its subject DN; a DN no
    /// rule applies to is an error (Kafka then fails the client's authentication).
    pub fn principal(
        &self,
        connection: &rustls::ServerConnection,
    ) -> Result<Option<String>, mapping::NoMatchingRule> {
        let Some(dn) = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| dn::subject_dn(cert))
        else {
            return Ok(None);
        };
        let mapper = Arc::clone(
            &self
                .principal_mapping
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        mapper.map(&dn).map(|name| Some(format!("User:{name}")))
    }

    /// The files this configuration comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration new connections get.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0,
        )
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    /// Re-reads the files; on failure the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = stamp(&self.files);
        let config = build(&self.files, &self.alpn)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (config, stamp);
        tracing::info!(cert = %self.files.cert_chain.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads if any file's modification time or size changed since the last load; whether
    /// it reloaded.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        let seen = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone();
        if now == seen {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// Checks the files every `interval` and reloads when they change, until the returned
    /// handle is aborted or the runtime stops. Failures are logged and retried at the next
    /// change.
    pub fn spawn_watcher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let server = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut failed_at: Option<Stamp> = None;
            loop {
                tick.tick().await;
                let now = stamp(&server.files);
                if failed_at.as_ref() == Some(&now) {
                    continue;
                }
                match server.reload_if_changed() {
                    Ok(_) => failed_at = None,
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be loaded; the previous certificate stays in force");
                        failed_at = Some(now);
                    }
                }
            }
        })
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    [
        Some(&files.cert_chain),
        Some(&files.private_key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
    .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key_pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem {
            path: path.to_owned(),
            what: "private key",
        },
        e => TlsError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// A client's rustls configuration (see [`client_config`]).
pub use rustls::ClientConfig;
/// A client's TLS connection (see [`connect`]).
pub type ClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Runs a client handshake on `tcp`, checking the server's certificate against `host` (a DNS
/// name or an IP address), within [`HANDSHAKE_TIMEOUT`].
pub async fn connect(
    tcp: tokio::net::TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<ClientStream> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} is not a TLS server name: {e}"),
        )
    })?;
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// The files of a TLS client (the `strom` CLI): Kafka's `ssl.ca.location`,
/// `ssl.certificate.location` and `ssl.key.location` (librdkafka's names), all PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// CAs trusted for the broker's certificate; `None`: the system's trust store.
    pub ca: Option<PathBuf>,
    /// The client certificate chain, for a listener that asks for one (mTLS).
    pub cert_chain: Option<PathBuf>,
    /// The client certificate's private key (with `cert_chain`).
    pub private_key: Option<PathBuf>,
}

/// Builds a rustls client configuration from PEM files (see [`ClientTlsFiles`]). A
/// certificate without its key (or the reverse) is refused.
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for cert in certificates(ca)? {
                roots.add(cert)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(TlsError::NoTrustRoots);
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&files.cert_chain, &files.private_key) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(path), None) | (None, Some(path)) => {
            return Err(TlsError::IncompleteClientIdentity { path: path.clone() });
        }
    };
    Ok(Arc::new(config))
}

fn build(files: &TlsFiles, alpn: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert_chain)?;
    let key = private_key(&files.private_key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match files.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let ca = files
                .client_ca
                .as_ref()
                .ok_or(TlsError::MissingClientCa { mode })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::ClientVerifier {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// The principal of a TLS client: `User:` + its certificate's subject DN in RFC 2253 form,
/// or `None` without a client certificate (the caller's anonymous principal then).
pub fn client_principal(connection: &rustls::ServerConnection) -> Option<String> {
    let cert = connection.peer_certificates()?.first()?;
    dn::subject_dn(cert).map(|dn| format!("User:{dn}"))
}

/// A finished handshake (or `None` for a failed one) with the client's address.
type Handshake<L> = Option<(
    TlsStream<<L as axum::serve::Listener>::Io>,
    <L as axum::serve::Listener>::Addr,
)>;

/// An [`axum::serve::Listener`] serving TLS on top of `inner`'s connections.
pub struct TlsListener<L: axum::serve::Listener> {
    inner: L,
    tls: Arc<TlsServer>,
    handshakes: JoinSet<Handshake<L>>,
}

impl<L: axum::serve::Listener> fmt::Debug for TlsListener<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("tls", &self.tls)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl<L: axum::serve::Listener> TlsListener<L> {
    /// Wraps `inner`.
    pub fn new(inner: L, tls: Arc<TlsServer>) -> Self {
        TlsListener {
            inner,
            tls,
            handshakes: JoinSet::new(),
        }
    }
}

impl<L> axum::serve::Listener for TlsListener<L>
where
    L: axum::serve::Listener,
    L::Addr: fmt::Debug + 'static,
{
    type Io = TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                (io, addr) = self.inner.accept() => {
                    let acceptor = self.tls.acceptor();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                            Ok(Ok(stream)) => Some((stream, addr)),
                            Ok(Err(e)) => {
                                tracing::debug!(peer = ?addr, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(peer = ?addr, "TLS handshake timed out");
                                None
                            }
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(accepted)) = done {
                        return accepted;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_auth_names() {
        for m in [
            ClientAuth::None,
            ClientAuth::Requested,
            ClientAuth::Required,
        ] {
            assert_eq!(m.to_string().parse::<ClientAuth>(), Ok(m));
        }
        assert!("yes".parse::<ClientAuth>().is_err());
    }

    /// A self-signed certificate for `cn` with its key, written to `dir`.
    fn self_signed(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn reload_if_changed_swaps_only_on_change_and_keeps_the_old_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "one");
        let files = TlsFiles {
            cert_chain: cert.clone(),
            private_key: key,
            client_ca: None,
            client_auth: ClientAuth::None,
        };
        let server = TlsServer::load(files, vec![b"h2".to_vec()]).unwrap();
        assert_eq!(server.config().alpn_protocols, vec![b"h2".to_vec()]);
        assert!(!server.reload_if_changed().unwrap(), "nothing changed");
        let before = server.config();
        std::fs::write(&cert, "garbage").unwrap();
        assert!(matches!(
            server.reload_if_changed(),
            Err(TlsError::NoPem {
                what: "certificate",
                ..
            })
        ));
        assert!(Arc::ptr_eq(&before, &server.config()), "old config kept");
        self_signed(dir.path(), "two");
        assert!(server.reload_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, &server.config()));
    }

    #[test]
    fn client_auth_needs_a_ca_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "one");
        let files = TlsFiles {
            cert_chain: cert.clone(),
            private_key: key,
            client_ca: None,
            client_auth: ClientAuth::Required,
        };
        assert!(matches!(
            TlsServer::load(files.clone(), Vec::new()),
            Err(TlsError::MissingClientCa {
                mode: ClientAuth::Required
            })
        ));
        let with_ca = TlsFiles {
            client_ca: Some(cert),
            ..files
        };
        assert!(TlsServer::load(with_ca, Vec::new()).is_ok());
    }

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let files = TlsFiles {
            cert_chain: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
            client_ca: None,
            client_auth: ClientAuth::None,
        };
        match TlsServer::load(files, Vec::new()) {
            Err(TlsError::Read { path, .. }) => {
                assert_eq!(path, Path::new("/nonexistent/cert.pem"))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }
}
