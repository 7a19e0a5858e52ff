//! The Kinesis endpoint and the admin HTTP port over HTTPS, with certificates made by the
//! test: aws-sdk-kinesis (rustls, HTTP/2 by ALPN) writes, reads and subscribes to a shard
//! (SubscribeToShard needs HTTP/2), the `h2` client on a TLS connection that negotiated `h2`
//! subscribes too (so the event stream is known to travel over HTTP/2, whatever the SDK's
//! connector chose), a client trusting another CA is refused, and ALPN offers `h2` first.

use std::sync::Arc;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use strom_kinesis::KinesisConfig;
use strom_tests::tls::TestCa;
use strom_tls::{ClientAuth, TlsFiles, TlsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{Both, WAIT};
use super::http2::{header, next_message};

fn http_alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// The SDK client over HTTPS, trusting only `ca_pem`.
fn https_client(endpoint: &str, ca_pem: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(ca_pem.as_bytes()))
                .build()
                .unwrap(),
        )
        .build_https();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "static"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .http_client(http)
        .build();
    Client::from_conf(config)
}

/// A TLS client connection to `addr` trusting `ca_pem`, offering `alpn`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_puts_reads_and_subscribes_over_https_with_http2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Strom Test CA");
    let server = ca.server(dir.path(), "server", "localhost");
    let tls = TlsServer::load(
        TlsFiles {
            cert_chain: server.cert,
            private_key: server.key,
            client_ca: None,
            client_auth: ClientAuth::None,
        },
        http_alpn(),
    )
    .unwrap();
    let config = KinesisConfig {
        tls: Some(tls),
        ..KinesisConfig::default()
    };
    let both = Both::start_with(&dir.path().join("data"), config).await;
    let endpoint = format!("https://localhost:{}", both.kinesis.port());

    // ALPN: HTTP/2 is chosen when offered.
    let conn = tls_connect(both.kinesis, &ca.cert_pem, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(conn);

    let k = https_client(&endpoint, &ca.cert_pem);
    k.create_stream()
        .stream_name("secure")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    for i in 0..3u8 {
        k.put_record()
            .stream_name("secure")
            .partition_key("p")
            .data(Blob::new(vec![i]))
            .send()
            .await
            .unwrap();
    }
    let iterator = k
        .get_shard_iterator()
        .stream_name("secure")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let records = k
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap();
    let got: Vec<u8> = records
        .records()
        .iter()
        .map(|r| r.data().as_ref()[0])
        .collect();
    assert_eq!(got, [0, 1, 2]);

    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/secure";
    let consumer = k
        .register_stream_consumer()
        .stream_arn(arn)
        .consumer_name("efo")
        .send()
        .await
        .unwrap();
    let consumer_arn = consumer.consumer().unwrap().consumer_arn().to_owned();
    let mut out = k
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < 3 {
            match out.event_stream.recv().await.unwrap() {
                Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => {
                    seen.extend(e.records().iter().map(|r| r.data().as_ref()[0]));
                }
                Some(other) => panic!("unexpected event {other:?}"),
                None => panic!("stream ended early"),
            }
        }
    })
    .await
    .expect("records arrive over the HTTP/2 subscription");
    assert_eq!(seen, [0, 1, 2]);
    drop(out);

    // The same over an HTTP/2 connection known to be one: h2 on TLS with ALPN `h2`.
    let consumer_arn = k
        .register_stream_consumer()
        .stream_arn(arn)
        .consumer_name("efo-h2")
        .send()
        .await
        .unwrap()
        .consumer()
        .unwrap()
        .consumer_arn()
        .to_owned();
    let conn = tls_connect(both.kinesis, &ca.cert_pem, &[b"h2"])
        .await
        .unwrap();
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (h2_client, connection) = h2::client::handshake(conn).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut h2_client = h2_client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/", both.kinesis.port()))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .body(())
        .unwrap();
    let body = serde_json::json!({
        "ConsumerARN": consumer_arn,
        "ShardId": "shardId-000000000000",
        "StartingPosition": {"Type": "TRIM_HORIZON"},
    });
    let (response, mut send) = h2_client.send_request(request, false).unwrap();
    send.send_data(bytes::Bytes::from(serde_json::to_vec(&body).unwrap()), true)
        .unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut decoder = aws_smithy_eventstream::frame::MessageFrameDecoder::new();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < 3 {
            let m = next_message(&mut stream, &mut buf, &mut decoder)
                .await
                .expect("stream ended early");
            if header(&m, ":event-type") != "SubscribeToShardEvent" {
                continue;
            }
            let e: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
            for r in e["Records"].as_array().expect("Records") {
                let data = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    r["Data"].as_str().unwrap(),
                )
                .unwrap();
                seen.push(data[0]);
            }
        }
    })
    .await
    .expect("records arrive over h2 on TLS");
    assert_eq!(seen, [0, 1, 2]);
    drop(stream);
    drop(h2_client);
    driver.abort();

    // A client that trusts another CA is refused at the handshake.
    let other = TestCa::new("Another CA");
    let refused = https_client(&endpoint, &other.cert_pem)
        .list_streams()
        .send()
        .await;
    assert!(refused.is_err(), "an untrusted certificate was accepted");
    assert!(
        tls_connect(both.kinesis, &other.cert_pem, &[b"h2"])
            .await
            .is_err(),
        "handshake with an untrusted certificate succeeded"
    );
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_http_serves_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Strom Test CA");
    let server = ca.server(dir.path(), "server", "localhost");
    let tls = TlsServer::load(
        TlsFiles {
            cert_chain: server.cert,
            private_key: server.key,
            client_ca: None,
            client_auth: ClientAuth::None,
        },
        vec![b"http/1.1".to_vec()],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(strom_http::serve_tls(
        listener,
        tls,
        Arc::new(prometheus_client::registry::Registry::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    let body = tokio::time::timeout(WAIT, async {
        let mut conn = tls_connect(addr, &ca.cert_pem, &[b"http/1.1"])
            .await
            .unwrap();
        conn.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ = conn.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).to_string()
    })
    .await
    .expect("health answers");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.ends_with("ok\n"), "{body}");
    // Plain HTTP on the HTTPS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut response)).await;
    assert!(
        !String::from_utf8_lossy(&response).contains("ok"),
        "plain HTTP answered"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(WAIT, task).await;
}
