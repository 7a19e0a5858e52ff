//! The server side of each mechanism, sans-io: a [`Exchange`] takes the client's tokens and
//! answers with challenges until it knows the user, or fails.
//!
//! - **PLAIN** is checked against the stored SCRAM credentials (there is no password file):
//!   the password is salted with the stored salt and iterations (`Hi`, PBKDF2), and
//!   `H(HMAC(SaltedPassword, "Client Key"))` is compared with the stored `StoredKey` in constant
//!   time. SCRAM-SHA-256's credential is used if the user has one, else SCRAM-SHA-512's. So one
//!   `strom user scram set` serves PLAIN and SCRAM clients alike, and no password is ever
//!   stored. The cost is one PBKDF2 (4096+ iterations) per PLAIN authentication.
//! - **SCRAM-SHA-256/512**: RFC 5802's server with RFC 7677's hashes: a 32-byte random server
//!   nonce, `server-first = r=<client nonce><server nonce>,s=<salt>,i=<iterations>`, the
//!   client proof checked against `StoredKey` in constant time, `server-final = v=<server
//!   signature>`. Kafka's `tokenauth` extension (delegation tokens) is refused. An unknown
//!   user is answered with a decoy salt (stable per user) and fails at client-final, and PLAIN
//!   runs the same PBKDF2 for one, so neither mechanism tells which users exist (Kafka's
//!   SCRAM server fails unknown users at once).
//! - **OAUTHBEARER**: RFC 7628's initial response; the bearer token must be a JWT signed by a
//!   key of the configured JWKS (chosen by `kid`, or the only key), unexpired (with the
//!   configured leeway), with the configured issuer and audience when set; its `sub` claim is
//!   the user. An authzid, if sent, must equal `sub` (as Kafka's validator requires).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use strom_broker::scram::{ScramCredential, ScramMechanism, salted_password};

use super::wire::{self, ParseError};

/// A SASL mechanism Strom serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
    /// OAUTHBEARER (RFC 7628) with JWTs.
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, in the order Strom lists them.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::OAuthBearer,
    ];

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism of a SASL name (exact, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn scram(self) -> Option<ScramMechanism> {
        match self {
            Mechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            Mechanism::ScramSha512 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where SCRAM and PLAIN find a user's credential.
pub trait CredentialSource: Send + Sync {
    /// The stored credential of `user` for `mechanism`.
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
}

impl CredentialSource for strom_broker::scram::ScramStore {
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        strom_broker::scram::ScramStore::credential(self, user, mechanism)
    }
}

/// OAUTHBEARER settings: the keys that may sign tokens and the claims to check.
#[derive(Clone)]
pub struct OAuthBearerConfig {
    /// The signing keys (a JWKS document's `keys`); replaceable while serving, for a JWKS
    /// endpoint's refresh ([`OAuthBearerConfig::replace_keys`]).
    keys: Arc<std::sync::RwLock<Arc<jsonwebtoken::jwk::JwkSet>>>,
    /// Required `iss`, if set.
    pub expected_issuer: Option<String>,
    /// Required `aud` (one of), if set.
    pub expected_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub clock_skew: Duration,
}

impl std::fmt::Debug for OAuthBearerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthBearerConfig")
            .field("keys", &self.keys().keys.len())
            .field("expected_issuer", &self.expected_issuer)
            .field("expected_audience", &self.expected_audience)
            .field("clock_skew", &self.clock_skew)
            .finish()
    }
}

impl OAuthBearerConfig {
    /// Reads a JWKS document (`{"keys": [...]}`).
    pub fn from_jwks_json(json: &[u8]) -> Result<OAuthBearerConfig, serde_json::Error> {
        Ok(OAuthBearerConfig {
            keys: Arc::new(std::sync::RwLock::new(Arc::new(serde_json::from_slice(
                json,
            )?))),
            expected_issuer: None,
            expected_audience: None,
            clock_skew: Duration::from_secs(30),
        })
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<jsonwebtoken::jwk::JwkSet> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the keys with a JWKS document's (every clone of this config sees the change).
    pub fn replace_keys(&self, json: &[u8]) -> Result<usize, serde_json::Error> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(json)?;
        let n = set.keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(n)
    }
}

/// Why an authentication failed (logged; the client gets [`AuthFailure::client_message`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// A client message did not parse.
    #[error("malformed {mechanism} message: {error}")]
    Malformed {
        /// The mechanism.
        mechanism: Mechanism,
        /// What was wrong.
        error: ParseError,
    },
    /// Unknown user, wrong password or proof.
    #[error("invalid credentials for {mechanism}")]
    InvalidCredentials {
        /// The mechanism.
        mechanism: Mechanism,
    },
    /// The authzid names someone else.
    #[error("authorization id differs from the authenticated user")]
    AuthzidMismatch,
    /// The SCRAM nonce or channel binding of client-final does not match.
    #[error("SCRAM client-final does not match client-first")]
    ScramMismatch,
    /// A SCRAM extension Strom does not serve (delegation tokens).
    #[error("unsupported SCRAM extension")]
    ScramExtension,
    /// The JWT was refused.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// jsonwebtoken's reason, or ours.
        reason: String,
    },
    /// OAUTHBEARER is enabled without keys.
    #[error("OAUTHBEARER has no configured keys")]
    NoKeys,
    /// A token arrived after the exchange finished.
    #[error("unexpected SASL token after the exchange completed")]
    UnexpectedToken,
}

impl AuthFailure {
    /// The message sent to the client in SaslAuthenticate's `error_message` (Kafka's wording
    /// where Kafka has one; never says whether the user exists).
    pub fn client_message(&self) -> String {
        match self {
            AuthFailure::InvalidCredentials {
                mechanism: Mechanism::Plain,
            } => "Authentication failed: Invalid username or password".to_owned(),
            AuthFailure::InvalidCredentials { mechanism } => format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
            ),
            AuthFailure::InvalidToken { .. } | AuthFailure::NoKeys => {
                "{\"status\":\"invalid_token\"}".to_owned()
            }
            other => format!("Authentication failed: {other}"),
        }
    }
}

/// The result of one step of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge and wait for the next client token.
    Challenge(Vec<u8>),
    /// Authenticated: send `response` (possibly empty) to finish.
    Done {
        /// The user name (the principal is `User:<user>`).
        user: String,
        /// The last server message.
        response: Vec<u8>,
        /// When the credential itself expires (a token's `exp`), as Unix milliseconds.
        credential_expires_ms: Option<i64>,
    },
}

/// One mechanism's exchange in progress.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    state: ExchangeState,
}

#[derive(Debug)]
enum ExchangeState {
    Start,
    /// SCRAM: server-first sent.
    ScramSent {
        user: String,
        gs2_header: String,
        nonce: String,
        auth_prefix: String,
        credential: ScramCredential,
    },
    Finished,
}

/// What an exchange needs to check credentials.
#[derive(Clone, Copy)]
pub struct Verifier<'a> {
    /// SCRAM credentials (PLAIN and SCRAM).
    pub credentials: &'a dyn CredentialSource,
    /// OAUTHBEARER settings.
    pub oauth: Option<&'a OAuthBearerConfig>,
}

impl std::fmt::Debug for Verifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// A new exchange for `mechanism`.
    pub fn new(mechanism: Mechanism) -> Exchange {
        Exchange {
            mechanism,
            state: ExchangeState::Start,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Takes the next client token.
    pub fn step(&mut self, verifier: Verifier<'_>, token: &[u8]) -> Result<Step, AuthFailure> {
        let state = std::mem::replace(&mut self.state, ExchangeState::Finished);
        let mechanism = self.mechanism;
        let malformed = |error| AuthFailure::Malformed { mechanism, error };
        match (state, mechanism.scram()) {
            (ExchangeState::Start, None) if mechanism == Mechanism::Plain => {
                let m = wire::parse_plain(token).map_err(malformed)?;
                if !m.authzid.is_empty() && m.authzid != m.user {
                    return Err(AuthFailure::AuthzidMismatch);
                }
                if !check_plain(verifier.credentials, m.user, m.password) {
                    return Err(AuthFailure::InvalidCredentials { mechanism });
                }
                Ok(Step::Done {
                    user: m.user.to_owned(),
                    response: Vec::new(),
                    credential_expires_ms: None,
                })
            }
            (ExchangeState::Start, None) => {
                let m = wire::parse_oauthbearer(token).map_err(malformed)?;
                let config = verifier.oauth.ok_or(AuthFailure::NoKeys)?;
                let claims = validate_jwt(config, m.token)?;
                if m.authzid.as_deref().is_some_and(|a| a != claims.sub) {
                    return Err(AuthFailure::AuthzidMismatch);
                }
                let expires = i64::try_from(claims.exp)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000);
                Ok(Step::Done {
                    user: claims.sub,
                    response: Vec::new(),
                    credential_expires_ms: Some(expires),
                })
            }
            (ExchangeState::Start, Some(scram)) => {
                let first = wire::parse_scram_client_first(token).map_err(malformed)?;
                if !first.extensions.is_empty() {
                    return Err(AuthFailure::ScramExtension);
                }
                if first.authzid.as_ref().is_some_and(|a| *a != first.user) {
                    return Err(AuthFailure::AuthzidMismatch);
                }
                // An unknown user gets a made-up credential (stable per user, so the salt
                // does not change between attempts) and fails at client-final like a wrong
                // password: the exchange does not tell which users exist.
                let credential = verifier
                    .credentials
                    .credential(&first.user, scram)
                    .unwrap_or_else(|| decoy_credential(scram, &first.user));
                let nonce = format!("{}{}", first.nonce, server_nonce());
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&credential.salt),
                    credential.iterations
                );
                self.state = ExchangeState::ScramSent {
                    user: first.user.clone(),
                    gs2_header: first.gs2_header.to_owned(),
                    nonce,
                    auth_prefix: format!("{},{server_first}", first.bare),
                    credential,
                };
                Ok(Step::Challenge(server_first.into_bytes()))
            }
            (
                ExchangeState::ScramSent {
                    user,
                    gs2_header,
                    nonce,
                    auth_prefix,
                    credential,
                },
                Some(scram),
            ) => {
                let fin = wire::parse_scram_client_final(token).map_err(malformed)?;
                if fin.nonce != nonce || fin.channel_binding != gs2_header.as_bytes() {
                    return Err(AuthFailure::ScramMismatch);
                }
                let auth_message = format!("{auth_prefix},{}", fin.without_proof);
                let client_signature =
                    scram.hmac(&credential.stored_key, &[auth_message.as_bytes()]);
                if fin.proof.len() != client_signature.len() {
                    return Err(AuthFailure::InvalidCredentials { mechanism });
                }
                let client_key: Vec<u8> = fin
                    .proof
                    .iter()
                    .zip(&client_signature)
                    .map(|(p, s)| p ^ s)
                    .collect();
                if !constant_time_eq(&scram.hash(&client_key), &credential.stored_key) {
                    return Err(AuthFailure::InvalidCredentials { mechanism });
                }
                let server_signature =
                    scram.hmac(&credential.server_key, &[auth_message.as_bytes()]);
                Ok(Step::Done {
                    user,
                    response: format!("v={}", B64.encode(server_signature)).into_bytes(),
                    credential_expires_ms: None,
                })
            }
            _ => Err(AuthFailure::UnexpectedToken),
        }
    }
}

/// A random key of this process, for [`decoy_credential`].
fn process_secret() -> &'static [u8; 32] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes
    })
}

/// The credential shown for a user that does not exist: a salt derived from the user name and
/// a process secret, the minimum iterations, and keys no proof matches.
fn decoy_credential(mechanism: ScramMechanism, user: &str) -> ScramCredential {
    let salt = mechanism.hmac(process_secret(), &[b"salt", user.as_bytes()]);
    ScramCredential {
        salt: salt.get(..16).unwrap_or(&salt).to_vec(),
        iterations: strom_broker::scram::MIN_ITERATIONS,
        stored_key: mechanism.hmac(process_secret(), &[b"stored", user.as_bytes()]),
        server_key: mechanism.hmac(process_secret(), &[b"server", user.as_bytes()]),
    }
}

/// 32 random bytes, base64 (no `,`): two v4 UUIDs' worth of randomness.
fn server_nonce() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    B64.encode(bytes)
}

/// Compares in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// PLAIN against a stored SCRAM credential (SHA-256's if any, else SHA-512's).
fn check_plain(credentials: &dyn CredentialSource, user: &str, password: &str) -> bool {
    let found = ScramMechanism::ALL
        .into_iter()
        .find_map(|m| credentials.credential(user, m).map(|c| (m, c)));
    let (mechanism, stored, known) = match found {
        Some((m, c)) => (m, c, true),
        // Spend the same PBKDF2 for an unknown user, so timing does not tell users apart.
        None => (
            ScramMechanism::Sha256,
            decoy_credential(ScramMechanism::Sha256, user),
            false,
        ),
    };
    let Ok(iterations) = u32::try_from(stored.iterations) else {
        return false;
    };
    let salted = salted_password(mechanism, password.as_bytes(), &stored.salt, iterations);
    let derived =
        ScramCredential::from_salted_password(mechanism, &stored.salt, stored.iterations, &salted);
    constant_time_eq(&derived.stored_key, &stored.stored_key) && known
}

/// The claims Strom reads from a token.
#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

fn validate_jwt(config: &OAuthBearerConfig, token: &str) -> Result<Claims, AuthFailure> {
    let invalid = |reason: String| AuthFailure::InvalidToken { reason };
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
    let keys = config.keys();
    let jwk = match header.kid.as_deref() {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| invalid("no configured key matches the token's kid".to_owned()))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| invalid(e.to_string()))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.leeway = config.clock_skew.as_secs();
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    if let Some(iss) = &config.expected_issuer {
        validation.set_issuer(&[iss]);
    }
    match &config.expected_audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|e| invalid(e.to_string()))?;
    if data.claims.sub.is_empty() {
        return Err(invalid("empty sub".to_owned()));
    }
    Ok(data.claims)
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Users(HashMap<(String, ScramMechanism), ScramCredential>);

    impl CredentialSource for Users {
        fn credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.0.get(&(user.to_owned(), m)).cloned()
        }
    }

    fn users(password: &str) -> Users {
        let mut u = Users::default();
        for m in ScramMechanism::ALL {
            let salt = b"0123456789abcdef";
            let salted = salted_password(m, password.as_bytes(), salt, 4096);
            u.0.insert(
                ("alice".to_owned(), m),
                ScramCredential::from_salted_password(m, salt, 4096, &salted),
            );
        }
        u
    }

    fn verifier(u: &Users) -> Verifier<'_> {
        Verifier {
            credentials: u,
            oauth: None,
        }
    }

    #[test]
    fn plain_checks_the_scram_credential() {
        let u = users("secret");
        let ok = Exchange::new(Mechanism::Plain).step(verifier(&u), b"\0alice\0secret");
        assert!(matches!(ok, Ok(Step::Done { ref user, .. }) if user == "alice"));
        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0secret",
            b"bob\0alice\0secret",
        ] {
            assert!(
                Exchange::new(Mechanism::Plain)
                    .step(verifier(&u), bad)
                    .is_err()
            );
        }
    }

    /// A SCRAM client written from RFC 5802 §3, to run the server against.
    fn scram_client(
        m: ScramMechanism,
        mechanism: Mechanism,
        u: &Users,
        password: &str,
    ) -> Result<(), AuthFailure> {
        let mut ex = Exchange::new(mechanism);
        let bare = "n=alice,r=clientnonce";
        let Step::Challenge(first) = ex.step(verifier(u), format!("n,,{bare}").as_bytes())? else {
            panic!("expected a challenge")
        };
        let first = String::from_utf8(first).unwrap();
        let mut parts = first.split(',');
        let nonce = parts.next().unwrap().strip_prefix("r=").unwrap();
        assert!(nonce.starts_with("clientnonce") && nonce.len() > 20);
        let salt = B64
            .decode(parts.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = parts.next().unwrap()[2..].parse().unwrap();
        let salted = salted_password(m, password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{first},{without_proof}");
        let signature = m.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let fin = format!("{without_proof},p={}", B64.encode(proof));
        let Step::Done { user, response, .. } = ex.step(verifier(u), fin.as_bytes())? else {
            panic!("expected done")
        };
        assert_eq!(user, "alice");
        let server_key = m.hmac(&salted, &[b"Server Key"]);
        let expected = m.hmac(&server_key, &[auth_message.as_bytes()]);
        assert_eq!(response, format!("v={}", B64.encode(expected)).into_bytes());
        assert!(matches!(
            ex.step(verifier(u), b"x"),
            Err(AuthFailure::UnexpectedToken)
        ));
        Ok(())
    }

    #[test]
    fn scram_both_hashes() {
        let u = users("pencil");
        scram_client(ScramMechanism::Sha256, Mechanism::ScramSha256, &u, "pencil").unwrap();
        scram_client(ScramMechanism::Sha512, Mechanism::ScramSha512, &u, "pencil").unwrap();
        assert_eq!(
            scram_client(ScramMechanism::Sha256, Mechanism::ScramSha256, &u, "wrong"),
            Err(AuthFailure::InvalidCredentials {
                mechanism: Mechanism::ScramSha256
            })
        );
    }

    #[test]
    fn scram_refuses_a_changed_nonce_and_unknown_users() {
        let u = users("pencil");
        let mut ex = Exchange::new(Mechanism::ScramSha256);
        assert!(matches!(
            ex.step(verifier(&u), b"n,,n=alice,r=abc"),
            Ok(Step::Challenge(_))
        ));
        assert_eq!(
            ex.step(verifier(&u), b"c=biws,r=abcdef,p=AAAA"),
            Err(AuthFailure::ScramMismatch)
        );
        // An unknown user gets a challenge like anyone (with a salt stable across attempts)
        // and fails at client-final.
        let challenge = |user: &str| {
            let mut ex = Exchange::new(Mechanism::ScramSha256);
            match ex.step(verifier(&u), format!("n,,n={user},r=abc").as_bytes()) {
                Ok(Step::Challenge(c)) => {
                    let c = String::from_utf8(c).unwrap();
                    (ex, c.split(',').nth(1).unwrap().to_owned())
                }
                other => panic!("{other:?}"),
            }
        };
        let (mut ex, salt) = challenge("bob");
        assert_eq!(challenge("bob").1, salt);
        assert_ne!(challenge("carol").1, salt);
        let nonce = "abc";
        let fin = format!("c=biws,r={nonce},p=AAAA");
        assert!(ex.step(verifier(&u), fin.as_bytes()).is_err());
        let mut ex = Exchange::new(Mechanism::ScramSha256);
        assert_eq!(
            ex.step(verifier(&u), b"n,,n=alice,r=abc,tokenauth=true"),
            Err(AuthFailure::ScramExtension)
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
