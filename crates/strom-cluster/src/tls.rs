//! PostgreSQL session settings the driver does not model: `sslmode` as libpq reads it (TLS
//! through rustls) and the server-side timeouts every broker session runs with.
//!
//! `tokio-postgres` knows `sslmode=disable|prefer|require` only, and takes TLS from a
//! connector. [`PgConfig::parse`] takes `sslmode` and `sslrootcert` out of the URL (URL or
//! `key=value` form) and gives them libpq's meaning:
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default), `allow` | if the server offers it | not checked |
//! | `require` | always, or fail | not checked; checked against `sslrootcert` when given (as libpq does with a root file) |
//! | `verify-ca` | always | chain checked against `sslrootcert`, else the system's roots |
//! | `verify-full` | always | chain and host name checked |
//!
//! `sslcert` and `sslkey` (PEM files: the client's certificate chain and its private key,
//! PKCS#8, PKCS#1 or SEC1) present a client certificate in every mode that encrypts, for
//! servers whose `pg_hba.conf` says `cert` or `clientcert=verify-ca|verify-full`. Unlike
//! libpq, nothing is read from `~/.postgresql/` when they are not given, both must be given
//! together, and encrypted keys (`sslpassword`) are not supported: a bad pair fails at start
//! with an [`Error::InvalidConfig`] naming the setting.
//!
//! The TLS stack is rustls with the aws-lc-rs provider (the one the object-store client
//! already uses), through the `tokio-postgres-rustls` connector.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{DbOp, Error, Result};

/// How a connection uses TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate.
    Prefer,
    /// TLS or fail; the certificate is checked only against an explicit `sslrootcert`.
    Require,
    /// TLS; the certificate chain is checked, not the host name.
    VerifyCa,
    /// TLS; the certificate chain and the host name are checked.
    VerifyFull,
}

/// Server-side timeouts of every broker session (PostgreSQL's `statement_timeout`,
/// `lock_timeout` and `idle_in_transaction_session_timeout`; zero turns one off). Options in
/// the URL (`options=-c statement_timeout=…`) take precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgTimeouts {
    /// Longest statement.
    pub statement: Duration,
    /// Longest wait for a lock (row locks of a commit, the metadata and migration locks).
    pub lock: Duration,
    /// Longest pause inside a transaction: a broker frozen mid-commit releases its row locks.
    pub idle_in_transaction: Duration,
}

impl Default for PgTimeouts {
    /// 30 s per statement, 10 s per lock wait, 60 s idle in a transaction.
    fn default() -> Self {
        PgTimeouts {
            statement: Duration::from_secs(30),
            lock: Duration::from_secs(10),
            idle_in_transaction: Duration::from_secs(60),
        }
    }
}

/// The connection of one client as the driver hands it out (TLS or not).
pub(crate) type PgConnection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Parsed PostgreSQL settings: the driver's configuration, the TLS mode and connector, and
/// the session timeouts.
#[derive(Clone)]
pub struct PgConfig {
    pub(crate) driver: tokio_postgres::Config,
    tls: TlsMode,
    connector: MakeRustlsConnect,
    timeouts: PgTimeouts,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("driver", &self.driver)
            .field("tls", &self.tls)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    /// Parses a connection URL (`postgres://…` or `key=value …`), with libpq's `sslmode`,
    /// `sslrootcert`, `sslcert` and `sslkey`; every session will run with `timeouts`.
    pub fn parse(url: &str, timeouts: PgTimeouts) -> Result<PgConfig> {
        let invalid = |reason| Error::InvalidConfig {
            setting: "postgres",
            value: crate::config::redact(url),
            reason,
        };
        let (rest, params) = take_tls_params(url);
        let tls = match params.mode.as_deref() {
            None | Some("prefer" | "allow") => TlsMode::Prefer,
            Some("disable") => TlsMode::Disable,
            Some("require") => TlsMode::Require,
            Some("verify-ca") => TlsMode::VerifyCa,
            Some("verify-full") => TlsMode::VerifyFull,
            Some(_) => {
                return Err(invalid(
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full",
                ));
            }
        };
        let mut driver: tokio_postgres::Config = rest
            .parse()
            .map_err(|_| invalid("not a PostgreSQL connection URL"))?;
        driver.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        let ms = |d: Duration| d.as_millis();
        let mut options = format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
            ms(timeouts.statement),
            ms(timeouts.lock),
            ms(timeouts.idle_in_transaction)
        );
        if let Some(given) = driver.get_options() {
            // Later `-c` settings win: the URL's own options override ours.
            options.push(' ');
            options.push_str(given);
        }
        driver.options(&options);
        let identity = client_identity(params.cert, params.key)?;
        let connector = MakeRustlsConnect::new(client_config(tls, params.root, identity)?);
        Ok(PgConfig {
            driver,
            tls,
            connector,
            timeouts,
        })
    }

    /// The TLS mode.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// The session timeouts.
    pub fn timeouts(&self) -> PgTimeouts {
        self.timeouts
    }

    /// The driver's configuration (host, port, user, options with the timeouts).
    pub fn driver(&self) -> &tokio_postgres::Config {
        &self.driver
    }

    /// Client-side bound of one call made through [`crate::Db::bounded`]: the statement
    /// timeout plus time to open a connection, so a server that stopped answering is noticed
    /// even when it cannot enforce its own timeout.
    pub fn query_timeout(&self) -> Duration {
        let statement = if self.timeouts.statement.is_zero() {
            PgTimeouts::default().statement
        } else {
            self.timeouts.statement
        };
        statement + self.connect_bound()
    }

    /// Bound of opening one connection, TLS and authentication included (the driver's
    /// `connect_timeout` covers the TCP connect only).
    fn connect_bound(&self) -> Duration {
        self.driver
            .get_connect_timeout()
            .map_or(Duration::from_secs(10), |t| *t * 2)
            .max(Duration::from_secs(1))
    }

    /// Opens one connection; the caller drives the returned connection.
    pub(crate) async fn connect(&self, op: DbOp) -> Result<(Client, PgConnection)> {
        let limit = self.connect_bound();
        match tokio::time::timeout(limit, self.driver.connect(self.connector.clone())).await {
            Ok(result) => result.map_err(Error::pg(op)),
            Err(_) => Err(Error::Timeout { waited: limit }),
        }
    }
}

/// The TLS parameters of a connection string, as given.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    /// `sslmode`.
    mode: Option<String>,
    /// `sslrootcert`.
    root: Option<String>,
    /// `sslcert`.
    cert: Option<String>,
    /// `sslkey`.
    key: Option<String>,
}

/// Splits `sslmode`, `sslrootcert`, `sslcert` and `sslkey` off a connection string: the
/// rest, and their values.
fn take_tls_params(url: &str) -> (String, TlsParams) {
    let mut params = TlsParams::default();
    let mut take = |pair: &str, decode: bool| -> bool {
        let Some((key, value)) = pair.split_once('=') else {
            return false;
        };
        let value = if decode {
            percent_decode(value)
        } else {
            value.trim_matches('\'').to_owned()
        };
        let slot = match key.trim() {
            "sslmode" => &mut params.mode,
            "sslrootcert" => &mut params.root,
            "sslcert" => &mut params.cert,
            "sslkey" => &mut params.key,
            _ => return false,
        };
        *slot = Some(value);
        true
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|p| !take(p, true)).collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|p| !take(p, false))
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, params)
}

/// A client certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The client certificate and key named by `sslcert` and `sslkey`, read now so that a bad
/// file stops the start rather than every connection.
fn client_identity(cert: Option<String>, key: Option<String>) -> Result<Option<Identity>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(Error::InvalidConfig {
                setting: "sslkey",
                value: String::new(),
                reason: "sslcert needs sslkey (the client certificate's private key file)",
            });
        }
        (None, Some(key)) => {
            return Err(Error::InvalidConfig {
                setting: "sslcert",
                value: key,
                reason: "sslkey needs sslcert (the client certificate file)",
            });
        }
    };
    let bad_cert = |reason| Error::InvalidConfig {
        setting: "sslcert",
        value: cert.clone(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(PathBuf::from(&cert))
        .map_err(|_| bad_cert("cannot read the PEM file"))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad_cert("not a PEM certificate file"))?;
    if chain.is_empty() {
        return Err(bad_cert("no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(PathBuf::from(&key)).map_err(|_| {
        Error::InvalidConfig {
            setting: "sslkey",
            value: key.clone(),
            reason: "cannot read an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1) from the file",
        }
    })?;
    Ok(Some((chain, private)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The rustls configuration of `mode` (see the module docs), presenting `identity` when the
/// server asks for a client certificate.
fn client_config(
    mode: TlsMode,
    root: Option<String>,
    identity: Option<Identity>,
) -> Result<rustls::ClientConfig> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::InvalidConfig {
            setting: "postgres",
            value: "(TLS)".to_owned(),
            reason: "no TLS protocol version supported by the crypto provider",
        })?;
    let verify_chain = match mode {
        TlsMode::Disable | TlsMode::Prefer => false,
        TlsMode::Require => root.is_some(),
        TlsMode::VerifyCa | TlsMode::VerifyFull => true,
    };
    let algorithms = provider.signature_verification_algorithms;
    let finish = |builder: rustls::ConfigBuilder<
        rustls::ClientConfig,
        rustls::client::WantsClientCert,
    >| {
        match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => {
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| Error::InvalidConfig {
                    setting: "sslkey",
                    value: "(key)".to_owned(),
                    reason: "the private key does not match the client certificate or is of an unsupported type",
                })
        }
    }
    };
    if !verify_chain {
        return finish(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked { algorithms })),
        );
    }
    let roots = Arc::new(roots(root)?);
    if mode == TlsMode::VerifyFull {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|_| Error::InvalidConfig {
                setting: "sslrootcert",
                value: "(roots)".to_owned(),
                reason: "no usable root certificate",
            })?;
        return finish(builder.with_webpki_verifier(verifier));
    }
    finish(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly { roots, algorithms })),
    )
}

/// The root certificates: the PEM file `sslrootcert` (or `system`), else the system's.
fn roots(root: Option<String>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root.as_deref() {
        Some(path) if path != "system" => {
            let bad = |reason| Error::InvalidConfig {
                setting: "sslrootcert",
                value: path.to_owned(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(PathBuf::from(path))
                .map_err(|_| bad("cannot read the PEM file"))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad("not a PEM certificate file"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(bad("no certificate in the file"));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::InvalidConfig {
                    setting: "sslrootcert",
                    value: "system".to_owned(),
                    reason: "no system root certificates found; give sslrootcert=PATH",
                });
            }
        }
    }
    Ok(store)
}

/// libpq's `prefer`/`require` without a root file: encryption, no authentication of the
/// server. Signatures are still checked (the handshake must be with the key of the
/// certificate presented).
#[derive(Debug)]
struct Unchecked {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root; the host name is not compared.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_leave_the_url_and_keep_their_meaning() {
        let (rest, p) = take_tls_params(
            "postgres://u@h:5/db?sslmode=verify-full&connect_timeout=5&sslrootcert=%2Ftmp%2Fca.pem&sslcert=%2Ftmp%2Fc.crt&sslkey=/tmp/c.key",
        );
        assert_eq!(rest, "postgres://u@h:5/db?connect_timeout=5");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(p.cert.as_deref(), Some("/tmp/c.crt"));
        assert_eq!(p.key.as_deref(), Some("/tmp/c.key"));
        let (rest, p) =
            take_tls_params("host=h sslmode=require user=u sslcert='/c.crt' sslkey=/c.key");
        assert_eq!(rest, "host=h user=u");
        assert_eq!(p.mode.as_deref(), Some("require"));
        assert_eq!(p.cert.as_deref(), Some("/c.crt"));
        assert_eq!(p.key.as_deref(), Some("/c.key"));
        let (rest, p) = take_tls_params("postgres://h/db?sslmode=disable");
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(p.mode.as_deref(), Some("disable"));
        assert_eq!((p.cert, p.key), (None, None));
    }

    #[test]
    fn modes_and_timeouts() {
        let t = PgTimeouts::default();
        let c = PgConfig::parse("postgres://u@h/db", t).unwrap();
        assert_eq!(c.tls_mode(), TlsMode::Prefer);
        assert_eq!(c.driver().get_ssl_mode(), SslMode::Prefer);
        assert_eq!(
            c.driver().get_options(),
            Some(
                "-c statement_timeout=30000 -c lock_timeout=10000 -c idle_in_transaction_session_timeout=60000"
            )
        );
        let c = PgConfig::parse(
            "postgres://u@h/db?sslmode=require&options=-c%20lock_timeout%3D5",
            t,
        )
        .unwrap();
        assert_eq!(c.tls_mode(), TlsMode::Require);
        assert_eq!(c.driver().get_ssl_mode(), SslMode::Require);
        assert!(
            c.driver()
                .get_options()
                .unwrap()
                .ends_with("-c lock_timeout=5"),
            "the URL's options come last and win"
        );
        let c = PgConfig::parse("postgres://u@h/db?sslmode=disable", t).unwrap();
        assert_eq!(c.driver().get_ssl_mode(), SslMode::Disable);
        let err = PgConfig::parse("postgres://u:pw@h/db?sslmode=sometimes", t).unwrap_err();
        assert!(err.to_string().contains("sslmode"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        let err = PgConfig::parse(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
            t,
        )
        .unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }

    #[test]
    fn client_certificate_settings_are_checked_at_parse() {
        let t = PgTimeouts::default();
        let dir = tempfile::tempdir().unwrap();
        let named = |setting: &str, url: &str| {
            let err = PgConfig::parse(url, t).unwrap_err();
            match &err {
                Error::InvalidConfig { setting: s, .. } => assert_eq!(*s, setting, "{err}"),
                other => panic!("{url}: {other:?}"),
            }
        };
        named("sslkey", "postgres://u@h/db?sslcert=/tmp/c.crt");
        named("sslcert", "postgres://u@h/db?sslkey=/tmp/c.key");
        named(
            "sslcert",
            "postgres://u@h/db?sslcert=/nonexistent/c.crt&sslkey=/nonexistent/c.key",
        );
        let not_pem = dir.path().join("empty.pem");
        std::fs::write(&not_pem, "nothing here\n").unwrap();
        let p = not_pem.display();
        named(
            "sslcert",
            &format!("postgres://u@h/db?sslcert={p}&sslkey={p}"),
        );
    }
}
