//! Named listeners and TLS on the Kafka port, with certificates made by the test (rcgen):
//! librdkafka (Debian's kcat, linked with OpenSSL; written before the rdkafka crate had its `ssl`
//! feature, which `sasl.rs`'s SASL_SSL test uses)
//! produces and consumes over SSL, an untrusted server certificate is refused, a client
//! certificate's subject is the principal the ACLs see, Metadata advertises the listener a
//! client came in on, and a changed certificate is picked up without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use rcgen::DnType;
use strom_broker::BrokerConfig;
use strom_broker::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use strom_kafka::client::Client;
use strom_kafka::{KafkaConfig, ListenerConfig, SecurityProtocol};
use strom_tests::TestBroker;
use strom_tests::tls::TestCa;
use strom_tls::{ClientAuth, TlsFiles, TlsServer};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const BOUND: Duration = Duration::from_secs(90);
const LOOPBACK_ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// Debian's kcat, with the build's own librdkafka (no SSL) off the library path; `None`
/// (and a note) when kcat is not installed.
async fn kcat() -> Option<impl Fn() -> Command> {
    let make = || {
        let mut c = Command::new("kcat");
        c.env_remove("LD_LIBRARY_PATH");
        c.kill_on_drop(true);
        c
    };
    match make().arg("-V").output().await {
        Ok(_) => Some(make),
        Err(_) => {
            eprintln!("kcat not installed (apt-get install kcat); skipping");
            None
        }
    }
}

fn ssl_listener(name: &str, tls: Arc<TlsServer>) -> ListenerConfig {
    ListenerConfig {
        name: name.to_owned(),
        security_protocol: SecurityProtocol::Ssl,
        listen: SocketAddr::from(LOOPBACK_ANY_PORT),
        advertised_host: None,
        advertised_port: None,
        tls: Some(tls),
    }
}

/// kcat's SSL settings: trust `ca`, and present `client` (certificate, key) if given.
fn ssl_args(ca: &Path, client: Option<&strom_tests::tls::IssuedFiles>) -> Vec<String> {
    let mut args = vec![
        "-X".to_owned(),
        "security.protocol=SSL".to_owned(),
        "-X".to_owned(),
        format!("ssl.ca.location={}", ca.display()),
    ];
    if let Some(c) = client {
        args.extend([
            "-X".to_owned(),
            format!("ssl.certificate.location={}", c.cert.display()),
            "-X".to_owned(),
            format!("ssl.key.location={}", c.key.display()),
        ]);
    }
    args
}

/// Produces `lines` to `topic` with kcat; its exit status and stderr.
async fn kcat_produce(
    kcat: &impl Fn() -> Command,
    bootstrap: &str,
    extra: &[String],
    topic: &str,
    lines: &[String],
) -> (bool, String) {
    let mut child = kcat()
        .args(["-b", bootstrap, "-P", "-t", topic])
        .args(["-X", "message.timeout.ms=8000"])
        .args(extra)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        stdin.write_all(format!("{l}\n").as_bytes()).await.unwrap();
    }
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kcat ends")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Lists metadata with kcat; success and stdout + stderr.
async fn kcat_list(
    kcat: &impl Fn() -> Command,
    bootstrap: &str,
    extra: &[String],
) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        kcat()
            .args(["-b", bootstrap, "-L", "-m", "5"])
            .args(extra)
            .output(),
    )
    .await
    .expect("kcat ends")
    .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_produces_and_consumes_over_ssl_and_refuses_an_untrusted_certificate() {
    let Some(kcat) = kcat().await else { return };
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Strom Test CA");
        let ca_pem = ca.write_cert(&dir.path().join("ca.pem"));
        let server = ca.server(dir.path(), "server", "localhost");
        let tls = TlsServer::load(
            TlsFiles {
                cert_chain: server.cert,
                private_key: server.key,
                client_ca: None,
                client_auth: ClientAuth::None,
            },
            Vec::new(),
        )
        .unwrap();
        let kafka = KafkaConfig {
            listeners: vec![ssl_listener("SSL", tls)],
            ..KafkaConfig::default()
        };
        let data = dir.path().join("data");
        let broker = TestBroker::start_with(BrokerConfig::new(&data), kafka).await;
        let bootstrap = broker.bootstrap();
        let lines: Vec<String> = (0..50).map(|i| format!("record-{i}")).collect();
        let (ok, err) =
            kcat_produce(&kcat, &bootstrap, &ssl_args(&ca_pem, None), "tls", &lines).await;
        assert!(ok, "produce over SSL failed: {err}");
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            kcat()
                .args(["-b", &bootstrap, "-C", "-t", "tls", "-o", "beginning", "-e"])
                .args(ssl_args(&ca_pem, None))
                .output(),
        )
        .await
        .expect("consumer ends")
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, lines);

        // A client that trusts another CA refuses the server's certificate.
        let other = TestCa::new("Another CA");
        let other_pem = other.write_cert(&dir.path().join("other-ca.pem"));
        let (ok, out) = kcat_list(&kcat, &bootstrap, &ssl_args(&other_pem, None)).await;
        assert!(
            !ok,
            "metadata with an untrusted certificate succeeded: {out}"
        );
        assert!(out.contains("certificate verify failed"), "{out}");
        // And a plaintext client gets nothing from the SSL port.
        let (ok, out) = kcat_list(&kcat, &bootstrap, &[]).await;
        assert!(!ok, "plaintext metadata on the SSL port succeeded: {out}");
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_subject_is_the_principal_acls_see() {
    let Some(kcat) = kcat().await else { return };
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Strom Test CA");
        let ca_pem = ca.write_cert(&dir.path().join("ca.pem"));
        let server = ca.server(dir.path(), "server", "localhost");
        let alice = ca.client(
            dir.path(),
            "alice",
            &[
                (DnType::OrganizationName, "Strom"),
                (DnType::CommonName, "alice"),
            ],
        );
        let bob = ca.client(
            dir.path(),
            "bob",
            &[
                (DnType::OrganizationName, "Strom"),
                (DnType::CommonName, "bob"),
            ],
        );
        let tls = TlsServer::load(
            TlsFiles {
                cert_chain: server.cert,
                private_key: server.key,
                client_ca: Some(ca_pem.clone()),
                client_auth: ClientAuth::Required,
            },
            Vec::new(),
        )
        .unwrap();
        let kafka = KafkaConfig {
            listeners: vec![ssl_listener("SSL", tls)],
            ..KafkaConfig::default()
        };
        let mut config = BrokerConfig::new(dir.path().join("data"));
        config.authorizer.enabled = true;
        let broker = TestBroker::start_with(config, kafka).await;
        broker
            .broker()
            .run_blocking(|b| {
                b.create_topic_blocking(strom_broker::CreateTopic {
                    name: "secure".to_owned(),
                    partitions: Some(1),
                    replication_factor: None,
                    configs: Default::default(),
                    validate_only: false,
                })
            })
            .await
            .unwrap();
        // Kafka's default SSL principal: the subject DN in RFC 2253 order.
        let allow = |op| AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "secure".to_owned(),
            pattern_type: PatternType::Literal,
            principal: "User:CN=alice,O=Strom".to_owned(),
            host: "*".to_owned(),
            operation: op,
            permission: AclPermission::Allow,
        };
        let acls = vec![allow(AclOperation::Write), allow(AclOperation::Describe)];
        broker
            .broker()
            .run_blocking(move |b| b.create_acls_blocking(acls))
            .await
            .unwrap();
        let bootstrap = broker.bootstrap();
        let lines = vec!["from-a-certificate".to_owned()];
        let (ok, err) = kcat_produce(
            &kcat,
            &bootstrap,
            &ssl_args(&ca_pem, Some(&alice)),
            "secure",
            &lines,
        )
        .await;
        assert!(ok, "alice may write: {err}");
        let (_, err) = kcat_produce(
            &kcat,
            &bootstrap,
            &ssl_args(&ca_pem, Some(&bob)),
            "secure",
            &lines,
        )
        .await;
        assert!(
            err.contains("Topic authorization failed"),
            "bob must get TOPIC_AUTHORIZATION_FAILED: {err}"
        );
        // Without a certificate the handshake fails (client auth required).
        let (ok, out) = kcat_list(&kcat, &bootstrap, &ssl_args(&ca_pem, None)).await;
        assert!(!ok, "a client without a certificate got metadata: {out}");
        let end = broker
            .broker()
            .partition("secure", 0)
            .unwrap()
            .high_watermark();
        assert_eq!(end, 1, "only alice's record is stored");
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_advertises_the_listener_the_client_came_in_on() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let listener = |name: &str, host: &str, port: u16| ListenerConfig {
            name: name.to_owned(),
            security_protocol: SecurityProtocol::Plaintext,
            listen: SocketAddr::from(LOOPBACK_ANY_PORT),
            advertised_host: Some(host.to_owned()),
            advertised_port: Some(port),
            tls: None,
        };
        let kafka = KafkaConfig {
            listeners: vec![
                listener("INTERNAL", "internal.strom.test", 19092),
                listener("EXTERNAL", "external.strom.test", 29092),
            ],
            ..KafkaConfig::default()
        };
        let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
        for (name, host, port) in [
            ("INTERNAL", "internal.strom.test", 19092),
            ("EXTERNAL", "external.strom.test", 29092),
        ] {
            let addr = broker.listener_addr(name).to_string();
            let mut client = Client::connect(&addr).await.unwrap();
            let metadata: MetadataResponse = client
                .call(ApiKey::Metadata, 12, &MetadataRequest::default())
                .await
                .unwrap();
            let brokers: Vec<(String, i32)> = metadata
                .brokers
                .iter()
                .map(|b| (b.host.to_string(), b.port))
                .collect();
            assert_eq!(brokers, vec![(host.to_owned(), port)], "listener {name}");
            let coordinator: kafka_protocol::messages::FindCoordinatorResponse = client
                .call(
                    ApiKey::FindCoordinator,
                    3,
                    &kafka_protocol::messages::FindCoordinatorRequest::default()
                        .with_key(kafka_protocol::protocol::StrBytes::from_static_str("g")),
                )
                .await
                .unwrap();
            assert_eq!(
                (coordinator.host.to_string(), coordinator.port),
                (host.to_owned(), port),
                "coordinator on listener {name}"
            );
        }
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_certificate_is_used_by_new_connections_without_a_restart() {
    let Some(kcat) = kcat().await else { return };
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let old_ca = TestCa::new("Old CA");
        let old_pem = old_ca.write_cert(&dir.path().join("old-ca.pem"));
        let new_ca = TestCa::new("New CA");
        let new_pem = new_ca.write_cert(&dir.path().join("new-ca.pem"));
        let server = old_ca.server(dir.path(), "server", "localhost");
        let tls = TlsServer::load(
            TlsFiles {
                cert_chain: server.cert.clone(),
                private_key: server.key.clone(),
                client_ca: None,
                client_auth: ClientAuth::None,
            },
            Vec::new(),
        )
        .unwrap();
        let watcher = tls.spawn_watcher(Duration::from_millis(100));
        let kafka = KafkaConfig {
            listeners: vec![ssl_listener("SSL", Arc::clone(&tls))],
            ..KafkaConfig::default()
        };
        let broker =
            TestBroker::start_with(BrokerConfig::new(dir.path().join("data")), kafka).await;
        let bootstrap = broker.bootstrap();
        let (ok, out) = kcat_list(&kcat, &bootstrap, &ssl_args(&old_pem, None)).await;
        assert!(ok, "old certificate trusted: {out}");

        // A broken file (a key without its certificate) is refused; the old one stays.
        std::fs::write(dir.path().join("server.pem.broken"), "not a certificate").unwrap();
        std::fs::rename(dir.path().join("server.pem.broken"), &server.cert).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (ok, out) = kcat_list(&kcat, &bootstrap, &ssl_args(&old_pem, None)).await;
        assert!(
            ok,
            "a broken file must not replace the certificate in force: {out}"
        );

        // The operator installs a certificate from the new CA; the watcher picks it up.
        new_ca.server(dir.path(), "server", "localhost");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, _) = kcat_list(&kcat, &bootstrap, &ssl_args(&new_pem, None)).await;
            if ok {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new certificate was not picked up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ok, out) = kcat_list(&kcat, &bootstrap, &ssl_args(&old_pem, None)).await;
        assert!(!ok, "the old certificate is still served: {out}");
        watcher.abort();
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

/// `ssl.principal.mapping.rules` on an mTLS listener: the first rule that applies names the
/// principal (`alice` from `CN=alice,OU=Eng,O=Strom`), DEFAULT keeps a DN as it is, and a
/// certificate no rule applies to is refused (no request is served). Through the protocol
/// client the CLI uses, over TLS with a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_rules_name_the_principal_of_a_client_certificate() {
    use strom_kafka::client::{ClientError, ConnectOptions};
    use strom_tls::mapping::PrincipalMapper;
    use strom_tls::{ClientTlsFiles, client_config};
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Strom Test CA");
        let ca_pem = ca.write_cert(&dir.path().join("ca.pem"));
        let server = ca.server(dir.path(), "server", "localhost");
        let subject = |ou: &str, cn: &str| {
            vec![
                (DnType::OrganizationName, "Strom".to_owned()),
                (DnType::OrganizationalUnitName, ou.to_owned()),
                (DnType::CommonName, cn.to_owned()),
            ]
        };
        let issue = |stem: &str, pairs: Vec<(DnType, String)>| {
            let pairs: Vec<(DnType, &str)> =
                pairs.iter().map(|(t, v)| (t.clone(), v.as_str())).collect();
            ca.client(dir.path(), stem, &pairs)
        };
        let alice = issue("alice", subject("Eng", "Alice"));
        let ops = issue("ops", subject("Ops", "robot"));
        let stranger = issue(
            "stranger",
            vec![(DnType::OrganizationName, "Elsewhere".to_owned())],
        );
        let tls = TlsServer::load(
            TlsFiles {
                cert_chain: server.cert,
                private_key: server.key,
                client_ca: Some(ca_pem.clone()),
                client_auth: ClientAuth::Required,
            },
            Vec::new(),
        )
        .unwrap();
        tls.set_principal_mapping(
            PrincipalMapper::parse(
                "RULE:^CN=([^,]*),OU=Eng,O=Strom$/$1/L, RULE:^.*OU=Ops.*$/DEFAULT_OPS/",
            )
            .unwrap(),
        );
        let kafka = KafkaConfig {
            listeners: vec![ssl_listener("SSL", tls)],
            ..KafkaConfig::default()
        };
        let mut config = BrokerConfig::new(dir.path().join("data"));
        config.authorizer.enabled = true;
        let broker = TestBroker::start_with(config, kafka).await;
        for name in ["mapped", "ops"] {
            broker
                .broker()
                .run_blocking(move |b| {
                    b.create_topic_blocking(strom_broker::CreateTopic {
                        name: name.to_owned(),
                        partitions: Some(1),
                        replication_factor: None,
                        configs: Default::default(),
                        validate_only: false,
                    })
                })
                .await
                .unwrap();
        }
        let describe = |topic: &str, principal: &str| AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: topic.to_owned(),
            pattern_type: PatternType::Literal,
            principal: principal.to_owned(),
            host: "*".to_owned(),
            operation: AclOperation::Describe,
            permission: AclPermission::Allow,
        };
        let acls = vec![
            describe("mapped", "User:alice"),
            describe("ops", "User:DEFAULT_OPS"),
        ];
        broker
            .broker()
            .run_blocking(move |b| b.create_acls_blocking(acls))
            .await
            .unwrap();
        let options = |client: &strom_tests::tls::IssuedFiles| ConnectOptions {
            tls: Some(
                client_config(&ClientTlsFiles {
                    ca: Some(ca_pem.clone()),
                    cert_chain: Some(client.cert.clone()),
                    private_key: Some(client.key.clone()),
                })
                .unwrap(),
            ),
            sasl: None,
        };
        let addr = format!("localhost:{}", broker.addr().port());
        let visible = |topics: Vec<strom_kafka::client::TopicInfo>| {
            let mut names: Vec<String> = topics.into_iter().map(|t| t.name).collect();
            names.sort();
            names
        };
        let mut c = Client::connect_with_options(&addr, &options(&alice))
            .await
            .unwrap();
        assert_eq!(visible(c.topics(None).await.unwrap()), vec!["mapped"]);
        let mut c = Client::connect_with_options(&addr, &options(&ops))
            .await
            .unwrap();
        assert_eq!(visible(c.topics(None).await.unwrap()), vec!["ops"]);
        // No rule applies (and no DEFAULT): the connection serves nothing.
        match Client::connect_with_options(&addr, &options(&stranger)).await {
            Err(ClientError::Io(_)) => {}
            other => panic!("a certificate no rule maps was served: {other:?}"),
        }
        broker.stop().await;
    })
    .await
    .expect("bounded");
}
