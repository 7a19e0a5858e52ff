//! PostgreSQL session settings against real servers: `sslmode` as libpq means it (TLS through
//! rustls), and the session timeouts every broker connection runs with.
//!
//! - against a server without TLS: `disable` and `prefer` connect in plain text, `require`
//!   is refused with an error naming TLS (never a silent fall-back);
//! - against a server with TLS (a test CA and a certificate for `localhost` made with the
//!   `openssl` tool): `prefer` and `require` encrypt, `verify-full` accepts the right CA and
//!   host name and refuses another host name or another CA, `verify-ca` accepts the chain
//!   whatever the host name, and `require` with a root file checks the chain as libpq does;
//! - against a server that requires client certificates (`hostssl … cert` in
//!   `pg_hba.conf`): `sslcert`/`sslkey` of a certificate for the user signed by the server's
//!   client CA connect (the server sees its subject); no certificate, one of another CA, one
//!   for another user, or a key that does not match are refused with an error saying why;
//! - `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout` are set
//!   on every session.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strom_cluster::testkit::PostgresServer;
use strom_cluster::{Db, PgConfig, PgTimeouts};

const TIMEOUTS: PgTimeouts = PgTimeouts {
    statement: Duration::from_millis(4321),
    lock: Duration::from_millis(1234),
    idle_in_transaction: Duration::from_secs(7),
};

/// Connects with `url`; the session's (statement, lock, idle) timeouts and whether it is TLS.
async fn session(url: &str) -> Result<(String, String, String, bool), strom_cluster::Error> {
    let db = Db::new(PgConfig::parse(url, TIMEOUTS)?);
    let conn = db.conn().await?;
    let row = conn
        .query_one(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),
                    current_setting('idle_in_transaction_session_timeout'),
                    (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
            &[],
        )
        .await
        .unwrap();
    Ok((row.get(0), row.get(1), row.get(2), row.get(3)))
}

fn expected(tls: bool) -> (String, String, String, bool) {
    ("4321ms".into(), "1234ms".into(), "7s".into(), tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_disable_and_prefer_connect_and_require_is_refused() {
    let pg = tokio::task::spawn_blocking(|| PostgresServer::start().expect("start postgres"))
        .await
        .unwrap();
    for mode in ["disable", "prefer"] {
        let got = session(&format!("{}&sslmode={mode}", pg.url()))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(got, expected(false), "{mode}");
    }
    // No sslmode is prefer.
    assert_eq!(session(&pg.url()).await.unwrap(), expected(false));
    let err = session(&format!("{}&sslmode=require", pg.url()))
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("TLS"), "{err}");
    assert!(err.is_retriable(), "a connection error is an outage: {err}");
    // verify-full needs roots it can read.
    let url = format!(
        "{}&sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
        pg.url()
    );
    let err = PgConfig::parse(&url, TIMEOUTS).unwrap_err();
    assert!(format!("{err}").contains("sslrootcert"), "{err}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl tool is needed to make the test certificates");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA (`NAME.crt`, `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_modes_encrypt_and_check_what_libpq_checks() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "server.ext",
        ],
    );
    let cert = std::fs::read(dir.join("server.crt")).unwrap();
    let key = std::fs::read(dir.join("server.key")).unwrap();
    let pg = tokio::task::spawn_blocking(move || {
        PostgresServer::start_with_settings(
            &[
                ("ssl", "on"),
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
            ],
            &[("server.crt", &cert), ("server.key", &key)],
        )
        .expect("start postgres with TLS")
    })
    .await
    .unwrap();
    let port = pg.port();
    let root = |name: &str| dir.join(name).display().to_string();
    // `localhost` for the certificate's name, the TCP connection to 127.0.0.1 either way.
    let by_name = |query: &str| {
        format!(
            "postgres://postgres@localhost:{port}/postgres?connect_timeout=5&hostaddr=127.0.0.1&{query}"
        )
    };
    let by_ip = |query: &str| {
        format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=5&{query}")
    };
    let ca = root("ca.crt");
    let other = root("other-ca.crt");

    let accepted = [
        ("disable", by_ip("sslmode=disable"), false),
        ("prefer", by_ip("sslmode=prefer"), true),
        ("require", by_ip("sslmode=require"), true),
        (
            "verify-full, right CA and name",
            by_name(&format!("sslmode=verify-full&sslrootcert={ca}")),
            true,
        ),
        (
            "verify-ca, right CA, name not in the certificate",
            by_ip(&format!("sslmode=verify-ca&sslrootcert={ca}")),
            true,
        ),
    ];
    for (what, url, tls) in accepted {
        let got = session(&url)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, expected(tls), "{what}");
    }
    let refused = [
        (
            "verify-full, name not in the certificate",
            by_ip(&format!("sslmode=verify-full&sslrootcert={ca}")),
        ),
        (
            "verify-full, another CA",
            by_name(&format!("sslmode=verify-full&sslrootcert={other}")),
        ),
        (
            "verify-ca, another CA",
            by_ip(&format!("sslmode=verify-ca&sslrootcert={other}")),
        ),
        (
            "require with a root file of another CA",
            by_ip(&format!("sslmode=require&sslrootcert={other}")),
        ),
    ];
    for (what, url) in refused {
        let err = session(&url).await.expect_err(what);
        assert!(format!("{err}").contains("TLS"), "{what}: {err}");
    }
}

/// A key and a certificate for `cn` (`NAME.key`, `NAME.crt`) in `dir`, signed by the CA
/// `ca`, with the extensions in `ext` (`openssl x509 -extfile` lines).
fn issue(dir: &Path, name: &str, cn: &str, ca: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_and_wrong_or_missing_ones_are_refused() {
    const CLIENT_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    issue(
        dir,
        "server",
        "localhost",
        "ca",
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    );
    // The user is `postgres`: `cert` authentication maps the certificate's CN to it.
    issue(dir, "client", "postgres", "ca", CLIENT_EXT);
    issue(dir, "stranger", "postgres", "other-ca", CLIENT_EXT);
    issue(dir, "alice", "alice", "ca", CLIENT_EXT);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (cert, key, ca) = (read("server.crt"), read("server.key"), read("ca.crt"));
    // Only TLS connections with a valid client certificate get in over TCP.
    let hba = b"local all all trust\nhostssl all all 127.0.0.1/32 cert\nhost all all 127.0.0.1/32 reject\n";
    let pg = tokio::task::spawn_blocking(move || {
        PostgresServer::start_with_settings(
            &[
                ("ssl", "on"),
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
                ("ssl_ca_file", "ca.crt"),
            ],
            &[
                ("server.crt", &cert),
                ("server.key", &key),
                ("ca.crt", &ca),
                ("pg_hba.conf", hba),
            ],
        )
        .expect("start postgres with client certificates")
    })
    .await
    .unwrap();
    let port = pg.port();
    let path = |name: &str| dir.join(name).display().to_string();
    let url = |query: &str| {
        format!(
            "postgres://postgres@localhost:{port}/postgres?connect_timeout=5&hostaddr=127.0.0.1&sslrootcert={}&{query}",
            path("ca.crt")
        )
    };
    let with = |mode: &str, name: &str| {
        url(&format!(
            "sslmode={mode}&sslcert={}&sslkey={}",
            path(&format!("{name}.crt")),
            path(&format!("{name}.key"))
        ))
    };

    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let url = with(mode, "client");
        let got = session(&url)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(got, expected(true), "{mode}");
        let db = Db::new(PgConfig::parse(&url, TIMEOUTS).unwrap());
        let dn: String = db
            .conn()
            .await
            .unwrap()
            .query_one(
                "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(dn, "/CN=postgres", "{mode}: the server saw the certificate");
    }

    // No certificate: the server's answer says it needs one.
    let err = session(&url("sslmode=verify-full")).await.unwrap_err();
    assert!(
        format!("{err}").contains("requires a valid client certificate"),
        "no client certificate: {err}"
    );
    assert_eq!(err.pg_code(), Some("28000"), "invalid authorization: {err}");
    // A certificate of a CA the server does not trust: the handshake fails.
    let err = session(&with("verify-full", "stranger")).await.unwrap_err();
    assert!(
        format!("{err}").contains("UnknownCA"),
        "another CA's certificate: {err}"
    );
    // A valid certificate for another user.
    let err = session(&with("verify-full", "alice")).await.unwrap_err();
    assert!(
        format!("{err}").contains("certificate authentication failed"),
        "another user's certificate: {err}"
    );
    // A key that is not the certificate's is refused before connecting.
    let mismatched = url(&format!(
        "sslmode=verify-full&sslcert={}&sslkey={}",
        path("client.crt"),
        path("alice.key")
    ));
    let err = PgConfig::parse(&mismatched, TIMEOUTS).unwrap_err();
    assert!(format!("{err}").contains("sslkey"), "{err}");
}
