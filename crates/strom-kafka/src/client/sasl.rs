//! SASL for the protocol client (the CLI): SaslHandshake v1 and SaslAuthenticate with PLAIN,
//! SCRAM-SHA-256/512 (RFC 5802's client side, the server signature checked) or OAUTHBEARER
//! with a token the caller already holds (RFC 7628's initial client response), so the CLI
//! works against a listener that requires authentication.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::scram::{ScramMechanism, salted_password};

use super::{Client, ClientError, kafka_error};
use crate::sasl::Mechanism;

/// A user and password for PLAIN or SCRAM, or a bearer token for OAUTHBEARER (see
/// [`SaslCredentials::oauthbearer`]). `Debug` leaves the password (or token) out.
#[derive(Clone)]
pub struct SaslCredentials {
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.
    pub mechanism: Mechanism,
    /// The user; for OAUTHBEARER the authorization id sent in the GS2 header, empty for none
    /// (the token's subject is the user then, as Kafka's clients send it).
    pub username: String,
    /// The password; for OAUTHBEARER the token (a JWT in its compact form).
    pub password: String,
}

impl SaslCredentials {
    /// OAUTHBEARER with `token` (a JWT in its compact form) and no authorization id.
    pub fn oauthbearer(token: String) -> SaslCredentials {
        SaslCredentials {
            mechanism: Mechanism::OAuthBearer,
            username: String::new(),
            password: token,
        }
    }
}

/// RFC 7628's initial client response: the GS2 header (`n,,` or `n,a=<authzid>,`) and the
/// `auth=Bearer <token>` pair, each key/value pair ended by `\x01`, the whole by another.
fn oauthbearer_initial_response(authzid: &str, token: &str) -> Vec<u8> {
    // The GS2 saslname encoding: `=` and `,` escaped.
    let authzid = authzid.replace('=', "=3D").replace(',', "=2C");
    let header = if authzid.is_empty() {
        "n,,".to_owned()
    } else {
        format!("n,a={authzid},")
    };
    format!("{header}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn protocol(what: &str) -> ClientError {
    ClientError::Protocol(format!("SASL: {what}"))
}

impl Client {
    /// Connects, negotiates versions and authenticates when `sasl` is given.
    pub async fn connect_with(
        addr: &str,
        sasl: Option<&SaslCredentials>,
    ) -> Result<Client, ClientError> {
        let options = super::ConnectOptions {
            tls: None,
            sasl: sasl.cloned(),
        };
        Client::connect_with_options(addr, &options).await
    }

    /// The credentials this connection authenticated with, if any.
    pub fn sasl_credentials(&self) -> Option<&SaslCredentials> {
        self.options.sasl.as_ref()
    }

    /// Authenticates this connection (SaslHandshake v1, then SaslAuthenticate).
    pub async fn authenticate(&mut self, credentials: &SaslCredentials) -> Result<(), ClientError> {
        self.exchange(credentials).await?;
        self.options.sasl = Some(credentials.clone());
        Ok(())
    }

    async fn exchange(&mut self, credentials: &SaslCredentials) -> Result<(), ClientError> {
        let mechanism = credentials.mechanism;
        let handshake: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism.name())),
            )
            .await?;
        kafka_error("SaslHandshake", handshake.error_code, None)?;
        let scram = match mechanism {
            Mechanism::Plain => {
                let token = format!("\0{}\0{}", credentials.username, credentials.password);
                self.sasl_step(token.into_bytes()).await?;
                return Ok(());
            }
            Mechanism::ScramSha256 => ScramMechanism::Sha256,
            Mechanism::ScramSha512 => ScramMechanism::Sha512,
            Mechanism::OAuthBearer => {
                let token = credentials.password.trim();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(protocol("the OAUTHBEARER token is empty or has spaces"));
                }
                let first = oauthbearer_initial_response(&credentials.username, token);
                let challenge = self.sasl_step(first).await?;
                if !challenge.is_empty() {
                    // RFC 7628 §3.2.3: an error challenge is answered with a lone %x01, and
                    // the server then fails the exchange (Kafka's message says why).
                    self.sasl_step(vec![0x01]).await?;
                    return Err(protocol("the server refused the token"));
                }
                return Ok(());
            }
        };
        let mut nonce_bytes = [0u8; 24];
        nonce_bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        nonce_bytes[16..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        let nonce = B64.encode(nonce_bytes);
        let user = credentials.username.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={user},r={nonce}");
        let server_first = self.sasl_step(format!("n,,{bare}").into_bytes()).await?;
        let server_first = String::from_utf8(server_first.to_vec())
            .map_err(|_| protocol("server-first is not UTF-8"))?;
        let mut parts = server_first.split(',');
        let (Some(r), Some(s), Some(i)) = (
            parts.next().and_then(|p| p.strip_prefix("r=")),
            parts.next().and_then(|p| p.strip_prefix("s=")),
            parts.next().and_then(|p| p.strip_prefix("i=")),
        ) else {
            return Err(protocol("malformed server-first message"));
        };
        if !r.starts_with(&nonce) || r.len() == nonce.len() {
            return Err(protocol("the server nonce does not extend ours"));
        }
        let salt = B64.decode(s).map_err(|_| protocol("salt is not base64"))?;
        let iterations: u32 = i
            .parse()
            .ok()
            .filter(|i| (4096..=16384).contains(i))
            .ok_or_else(|| protocol("iteration count out of range"))?;
        let salted = salted_password(scram, credentials.password.as_bytes(), &salt, iterations);
        let client_key = scram.hmac(&salted, &[b"Client Key"]);
        let stored_key = scram.hash(&client_key);
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = scram.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_final = self
            .sasl_step(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
            .await?;
        let server_key = scram.hmac(&salted, &[b"Server Key"]);
        let expected = format!(
            "v={}",
            B64.encode(scram.hmac(&server_key, &[auth_message.as_bytes()]))
        );
        if server_final != expected.as_bytes() {
            return Err(protocol(
                "the server signature does not match: not the real server",
            ));
        }
        Ok(())
    }

    async fn sasl_step(&mut self, token: Vec<u8>) -> Result<Bytes, ClientError> {
        let response: SaslAuthenticateResponse = self
            .call(
                ApiKey::SaslAuthenticate,
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            )
            .await?;
        kafka_error(
            "SaslAuthenticate",
            response.error_code,
            response.error_message.as_ref(),
        )?;
        Ok(response.auth_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::oauthbearer_initial_response;

    #[test]
    fn oauthbearer_initial_response_is_rfc_7628s() {
        assert_eq!(
            oauthbearer_initial_response("", "a.b.c"),
            b"n,,\x01auth=Bearer a.b.c\x01\x01"
        );
        assert_eq!(
            oauthbearer_initial_response("al=i,ce", "t"),
            b"n,a=al=3Di=2Cce,\x01auth=Bearer t\x01\x01"
        );
    }
}
