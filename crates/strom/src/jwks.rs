//! OAUTHBEARER keys from a JWKS endpoint: fetched once before the Kafka listener binds (a
//! failure stops the start), then again every refresh interval (a failure keeps the keys in
//! force and logs a warning), as Kafka's `sasl.oauthbearer.jwks.endpoint.url` does.

use std::time::Duration;

use anyhow::Context as _;
use strom_kafka::sasl::OAuthBearerConfig;

/// Fetches the JWKS document at `url` and puts its keys into force.
pub(crate) async fn fetch_into(url: &str, oauth: &OAuthBearerConfig) -> anyhow::Result<usize> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(url)
        .send()
        .await
        .context("requesting the JWKS")?
        .error_for_status()
        .context("the JWKS endpoint answered an error")?;
    let body = response.bytes().await.context("reading the JWKS")?;
    let n = oauth
        .replace_keys(&body)
        .context("the JWKS endpoint's answer is not a JWKS document")?;
    tracing::info!(url, keys = n, "OAUTHBEARER keys loaded");
    Ok(n)
}

/// Refetches the keys every `every`, forever.
pub(crate) async fn refresh(url: String, every: Duration, oauth: OAuthBearerConfig) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = fetch_into(&url, &oauth).await {
            tracing::warn!(
                url,
                error = format!("{e:#}"),
                "refreshing the OAUTHBEARER keys failed; keeping the current ones"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server answering `status` and `body` to every request.
    async fn serve(status: &'static str, body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}/jwks.json")
    }

    #[tokio::test]
    async fn keys_come_from_the_endpoint_and_failures_keep_them() {
        let oauth = OAuthBearerConfig::from_jwks_json(br#"{"keys":[]}"#).unwrap();
        let ok = serve(
            "200 OK",
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        )
        .await;
        assert_eq!(fetch_into(&ok, &oauth).await.unwrap(), 1);
        assert_eq!(oauth.keys().keys.len(), 1);
        let missing = serve("404 Not Found", "no").await;
        assert!(fetch_into(&missing, &oauth).await.is_err());
        let garbage = serve("200 OK", "not json").await;
        assert!(fetch_into(&garbage, &oauth).await.is_err());
        assert_eq!(oauth.keys().keys.len(), 1, "a failed fetch keeps the keys");
    }
}
