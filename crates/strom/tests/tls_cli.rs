//! The client subcommands over TLS and SASL: `strom serve` with an SSL listener (client
//! certificates requested, `--ssl-principal-mapping-rules`) and a SASL_SSL one, the
//! authorizer on; the CLI reaches each with flags or a `--command-config` file as Kafka's
//! tools take, and its principal is the one the ACLs see. OAUTHBEARER: a SASL_PLAINTEXT
//! listener validating JWTs against a JWKS file; the CLI sends a token from a file named by
//! `--sasl-oauthbearer-token-file` or Kafka's `sasl.oauthbearer.token.endpoint.url=file:…`.

mod common;

use strom_tests::jwt::{Issuer, now_s};
use strom_tests::tls::{DnType, TestCa};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_commands_reach_ssl_and_sasl_ssl_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ca = TestCa::new("Strom Test CA");
    let ca_pem = ca.write_cert(&certs.join("ca.pem"));
    let server = ca.server(&certs, "server", "localhost");
    let ops = ca.client(
        &certs,
        "ops",
        &[
            (DnType::OrganizationName, "Strom"),
            (DnType::CommonName, "ops"),
        ],
    );
    let other_ca = TestCa::new("Someone Else");
    let other_ca_pem = other_ca.write_cert(&certs.join("other-ca.pem"));
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (cert, key, ca_file) = (s(&server.cert), s(&server.key), s(&ca_pem));
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let broker = common::start_with(
        &data,
        &[
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca_file,
            "--tls-client-auth",
            "requested",
            "--ssl-principal-mapping-rules",
            "RULE:^CN=([^,]*),O=Strom$/$1/L,DEFAULT",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-256",
            "--authorizer",
            "--super-users",
            "User:ops",
        ],
    );
    let ssl = broker.listener_addr("SSL");
    let sasl_ssl = broker.listener_addr("SASL_SSL");
    let ssl_flags = [
        "--security-protocol",
        "SSL",
        "--ssl-ca-location",
        &ca_file,
        "--ssl-certificate-location",
        &s(&ops.cert),
        "--ssl-key-location",
        &s(&ops.key),
    ]
    .map(str::to_owned);
    let with = |base: &[String], more: &[&str]| -> Vec<String> {
        more.iter()
            .map(|&a| a.to_owned())
            .chain(base.iter().cloned())
            .collect()
    };
    let run = |addr: &str, args: Vec<String>, stdin: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::wait_bounded(broker.spawn_at(addr, &args, stdin), 60)
    };
    let ok = |addr: &str, args: Vec<String>, stdin: &str| {
        let out = run(addr, args.clone(), stdin);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };

    // Over SSL with a client certificate: the mapped principal `ops` is a super user.
    ok(
        &ssl,
        with(
            &ssl_flags,
            &["user", "scram", "set", "alice", "--password", "-"],
        ),
        "alice-pw\n",
    );
    ok(
        &ssl,
        with(&ssl_flags, &["topic", "create", "orders", "-p", "1"]),
        "",
    );
    ok(
        &ssl,
        with(
            &ssl_flags,
            &[
                "acl",
                "add",
                "--resource-type",
                "topic",
                "--resource",
                "orders",
                "--principal",
                "User:alice",
                "--operation",
                "describe",
            ],
        ),
        "",
    );
    let acls = ok(&ssl, with(&ssl_flags, &["acl", "list"]), "");
    assert!(acls.contains("User:alice"), "{acls}");

    // Over SASL_SSL with a Kafka client properties file: alice sees only what she may
    // describe, and may not manage ACLs.
    let properties = dir.path().join("client.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\nssl.truststore.type=PEM\nssl.truststore.location={ca_file}\n\
             sasl.mechanism=SCRAM-SHA-256\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  \
             username=\"alice\" password=\"alice-pw\";\n"
        ),
    )
    .unwrap();
    let config = s(&properties);
    let listed = ok(
        &sasl_ssl,
        vec![
            "topic".into(),
            "list".into(),
            "--command-config".into(),
            config.clone(),
        ],
        "",
    );
    assert!(listed.contains("orders"), "{listed}");
    let refused = run(
        &sasl_ssl,
        vec![
            "acl".into(),
            "list".into(),
            "--command-config".into(),
            config.clone(),
        ],
        "",
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("ClusterAuthorizationFailed"),
        "{}",
        stderr(&refused)
    );
    // A wrong password is refused by the listener; flags win over the file.
    let wrong = run(
        &sasl_ssl,
        vec![
            "topic".into(),
            "list".into(),
            "--command-config".into(),
            config.clone(),
            "--sasl-password".into(),
            "nope".into(),
        ],
        "",
    );
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("SaslAuthenticationFailed"),
        "{}",
        stderr(&wrong)
    );

    // A broker certificate the client does not trust: the handshake fails.
    let untrusted = run(
        &ssl,
        vec![
            "topic".into(),
            "list".into(),
            "--security-protocol".into(),
            "SSL".into(),
            "--ssl-ca-location".into(),
            s(&other_ca_pem),
        ],
        "",
    );
    assert!(!untrusted.status.success());
    assert!(
        stderr(&untrusted).to_lowercase().contains("certificate"),
        "{}",
        stderr(&untrusted)
    );
    // Without a client certificate the SSL client is User:ANONYMOUS: nothing to describe.
    let anonymous = ok(
        &ssl,
        vec![
            "topic".into(),
            "list".into(),
            "--security-protocol".into(),
            "SSL".into(),
            "--ssl-ca-location".into(),
            ca_file.clone(),
        ],
        "",
    );
    assert!(!anonymous.contains("orders"), "{anonymous}");
    broker.stop();
}

#[test]
fn cli_commands_authenticate_with_an_oauthbearer_token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks()).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let broker = common::start_with(
        &data,
        &[
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "--sasl-enabled-mechanisms",
            "OAUTHBEARER",
            "--sasl-oauthbearer-jwks-file",
            jwks.to_str().unwrap(),
            "--authorizer",
            "--super-users",
            "User:ops",
        ],
    );
    let sasl = broker.listener_addr("SASL_PLAINTEXT");
    let token_file = |name: &str, sub: &str, exp_s: i64| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n", issuer.token(sub, exp_s, "strom"))).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ops = token_file("ops.jwt", "ops", now_s() + 3600);
    let alice = token_file("alice.jwt", "alice", now_s() + 3600);
    let expired = token_file("expired.jwt", "ops", now_s() - 600);
    let run =
        |args: &[&str], stdin: &str| common::wait_bounded(broker.spawn_at(&sasl, args, stdin), 60);

    // The token's subject is the principal: ops is a super user and may create and write.
    let flags = [
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanism",
        "OAUTHBEARER",
        "--sasl-oauthbearer-token-file",
    ];
    let as_ops = |more: &[&str]| -> Vec<String> {
        more.iter()
            .chain(flags.iter())
            .map(|&a| a.to_owned())
            .chain([ops.clone()])
            .collect()
    };
    for (args, stdin) in [
        (as_ops(&["topic", "create", "tokens", "-p", "1"]), ""),
        (as_ops(&["produce", "tokens"]), "one\ntwo\n"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, stdin);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }

    // Kafka's properties: the token file as a `file:` token endpoint, the login module naming
    // the mechanism.
    let properties = dir.path().join("client.properties");
    let write_properties = |token: &str| {
        std::fs::write(
            &properties,
            format!(
                "security.protocol=SASL_PLAINTEXT\n\
                 sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\n\
                 sasl.oauthbearer.token.endpoint.url=file://{token}\n"
            ),
        )
        .unwrap();
    };
    write_properties(&ops);
    let config = properties.to_str().unwrap();
    let consumed = run(
        &["consume", "tokens", "-n", "2", "--command-config", config],
        "",
    );
    assert!(consumed.status.success(), "{}", stderr(&consumed));
    assert_eq!(String::from_utf8_lossy(&consumed.stdout), "one\ntwo\n");

    // alice is authenticated but holds no ACL: the authorizer refuses her by name.
    write_properties(&alice);
    let refused = run(&["acl", "list", "--command-config", config], "");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("ClusterAuthorizationFailed"),
        "{}",
        stderr(&refused)
    );
    // An expired token is refused by the listener (Kafka's invalid_token answer).
    write_properties(&expired);
    let expired_out = run(&["topic", "list", "--command-config", config], "");
    assert!(!expired_out.status.success());
    let err = stderr(&expired_out);
    assert!(
        err.contains("SaslAuthenticationFailed") && err.contains("invalid_token"),
        "{err}"
    );
    broker.stop();
}
