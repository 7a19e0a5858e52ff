//! SASL authentication of Kafka connections (SaslHandshake, SaslAuthenticate, KIP-368).
//!
//! A listener with a [`SaslConfig`] requires every connection to authenticate before any API
//! other than ApiVersions, SaslHandshake and SaslAuthenticate; anything else closes the
//! connection, as Kafka's `SaslServerAuthenticator` does. The [`Session`] is the connection's
//! state machine:
//!
//! ```text
//!   Unauthenticated --SaslHandshake(mech)--> Handshaken --tokens--> Authenticated
//!         ^                  | v0: tokens come raw (4-byte length, no Kafka header)
//!         |                  | v1: tokens come in SaslAuthenticate requests
//!   failure closes the connection (after a SaslAuthenticate error response)
//!   Authenticated --SaslHandshake v1 (same mech)--> Reauthenticating --tokens--> Authenticated
//! ```
//!
//! On success the principal is `User:<name>`, used for every ACL check afterwards. With
//! `connections.max.reauth.ms` (or a token that expires) the session has a lifetime: v1+
//! SaslAuthenticate responses carry `session_lifetime_ms`, and a request other than a
//! re-authentication arriving after it closes the connection (KIP-368). A re-authentication
//! must use the same mechanism and end with the same principal; it checks the credentials as
//! they are now, so a changed password fails it.

pub mod mechanism;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use mechanism::{AuthFailure, CredentialSource, Exchange, Mechanism, OAuthBearerConfig, Step};

/// SASL settings of a listener.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms`.
    pub mechanisms: Vec<Mechanism>,
    /// `connections.max.reauth.ms`: the longest a session lasts before the client must
    /// re-authenticate (`None`: no limit beyond a token's own expiry).
    pub max_reauth: Option<Duration>,
    /// OAUTHBEARER keys and checks (required when OAUTHBEARER is enabled).
    pub oauthbearer: Option<OAuthBearerConfig>,
}

/// Why a SASL request could not be served; each maps to a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The mechanism is not enabled [UNSUPPORTED_SASL_MECHANISM].
    #[error("unsupported SASL mechanism {mechanism}")]
    UnsupportedMechanism {
        /// The name the client asked for.
        mechanism: String,
    },
    /// The request does not fit the connection's state [ILLEGAL_SASL_STATE].
    #[error("illegal SASL state: {what}")]
    IllegalState {
        /// What happened.
        what: &'static str,
    },
    /// Authentication failed [SASL_AUTHENTICATION_FAILED].
    #[error(transparent)]
    Failed(#[from] AuthFailure),
    /// A re-authentication changed the principal or mechanism [SASL_AUTHENTICATION_FAILED].
    #[error("re-authentication must keep the principal and mechanism")]
    ReauthChanged,
}

/// The per-connection authentication state.
#[derive(Debug)]
pub struct Session {
    required: bool,
    state: State,
    principal: Option<Arc<str>>,
    mechanism: Option<Mechanism>,
    expires_at: Option<Instant>,
}

#[derive(Debug)]
enum State {
    /// Waiting for SaslHandshake (or re-authentication's).
    Idle,
    /// Handshake done; tokens next. `raw` for handshake v0.
    Exchanging { exchange: Exchange, raw: bool },
    /// A failure was answered; the connection closes.
    Failed,
}

/// A successful exchange's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The last server message to send.
    pub response: Vec<u8>,
    /// `session_lifetime_ms` (0: none).
    pub session_lifetime_ms: i64,
}

impl Session {
    /// A connection's session; `required` when the listener has SASL.
    pub fn new(required: bool) -> Session {
        Session {
            required,
            state: State::Idle,
            principal: None,
            mechanism: None,
            expires_at: None,
        }
    }

    /// The authenticated principal (`User:<name>`), if any.
    pub fn principal(&self) -> Option<&Arc<str>> {
        self.principal.as_ref()
    }

    /// Whether requests other than ApiVersions and the SASL APIs may be served.
    pub fn may_serve(&self) -> bool {
        !self.required || self.principal.is_some()
    }

    /// Whether the exchange failed: the connection closes once the answer is written.
    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// Whether the next frame is a raw SASL token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state, State::Exchanging { raw: true, .. })
    }

    /// Whether the session outlived its lifetime at `now` (KIP-368): the connection must be
    /// closed unless this request re-authenticates.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// SaslHandshake at `version` for `mechanism`.
    pub fn handshake(
        &mut self,
        config: Option<&SaslConfig>,
        version: i16,
        mechanism: &str,
    ) -> Result<(), SaslError> {
        let Some(config) = config.filter(|_| self.required) else {
            return Err(SaslError::IllegalState {
                what: "SASL is not enabled on this listener",
            });
        };
        let reauth = self.principal.is_some();
        match self.state {
            State::Idle => {}
            _ => {
                self.state = State::Failed;
                return Err(SaslError::IllegalState {
                    what: "SaslHandshake during an exchange",
                });
            }
        }
        if reauth && version < 1 {
            return Err(SaslError::IllegalState {
                what: "re-authentication needs SaslHandshake v1",
            });
        }
        let Some(m) = Mechanism::from_name(mechanism).filter(|m| config.mechanisms.contains(m))
        else {
            self.state = State::Failed;
            return Err(SaslError::UnsupportedMechanism {
                mechanism: mechanism.to_owned(),
            });
        };
        if reauth && self.mechanism != Some(m) {
            self.state = State::Failed;
            return Err(SaslError::ReauthChanged);
        }
        self.state = State::Exchanging {
            exchange: Exchange::new(m),
            raw: version == 0,
        };
        Ok(())
    }

    /// One client token, raw (`raw`) or from SaslAuthenticate. `Ok(Err(challenge))` asks
    /// for another token; `Ok(Ok(_))` finishes.
    pub fn authenticate(
        &mut self,
        config: Option<&SaslConfig>,
        credentials: &dyn CredentialSource,
        token: &[u8],
        raw: bool,
    ) -> Result<Result<Authenticated, Vec<u8>>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::Exchanging {
            mut exchange,
            raw: expected_raw,
        } = state
        else {
            if matches!(state, State::Idle) && !self.required {
                self.state = state;
                return Err(SaslError::IllegalState {
                    what: "SASL is not enabled on this listener",
                });
            }
            if matches!(state, State::Idle) && self.principal.is_some() {
                self.state = state;
                return Err(SaslError::IllegalState {
                    what: "SaslAuthenticate received after successful authentication",
                });
            }
            return Err(SaslError::IllegalState {
                what: "SaslAuthenticate before SaslHandshake",
            });
        };
        if expected_raw != raw {
            return Err(SaslError::IllegalState {
                what: "SaslAuthenticate after a v0 SaslHandshake",
            });
        }
        let verifier = mechanism::Verifier {
            credentials,
            oauth: config.and_then(|c| c.oauthbearer.as_ref()),
        };
        match exchange.step(verifier, token)? {
            Step::Challenge(challenge) => {
                self.state = State::Exchanging { exchange, raw };
                Ok(Err(challenge))
            }
            Step::Done {
                user,
                response,
                credential_expires_ms,
            } => {
                let principal: Arc<str> = Arc::from(format!("User:{user}"));
                if self.principal.as_ref().is_some_and(|p| *p != principal) {
                    return Err(SaslError::ReauthChanged);
                }
                let now = mechanism::now_ms();
                let max_reauth = config
                    .and_then(|c| c.max_reauth)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                let token_left = credential_expires_ms.map(|exp| exp.saturating_sub(now));
                let lifetime = match (max_reauth, token_left) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) => a,
                    (None, Some(b)) => b,
                    (None, None) => 0,
                }
                .max(0);
                self.expires_at = (lifetime > 0).then(|| {
                    Instant::now() + Duration::from_millis(u64::try_from(lifetime).unwrap_or(0))
                });
                self.principal = Some(principal);
                self.mechanism = Some(exchange.mechanism());
                self.state = State::Idle;
                Ok(Ok(Authenticated {
                    response,
                    session_lifetime_ms: lifetime,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_broker::scram::{ScramCredential, ScramMechanism, salted_password};

    struct One;
    impl CredentialSource for One {
        fn credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice").then(|| {
                let salted = salted_password(m, b"pw", b"salt", 4096);
                ScramCredential::from_salted_password(m, b"salt", 4096, &salted)
            })
        }
    }

    fn config() -> SaslConfig {
        SaslConfig {
            mechanisms: vec![Mechanism::Plain, Mechanism::ScramSha256],
            max_reauth: Some(Duration::from_secs(60)),
            oauthbearer: None,
        }
    }

    #[test]
    fn handshake_then_plain_then_reauth() {
        let c = config();
        let mut s = Session::new(true);
        assert!(!s.may_serve());
        assert_eq!(
            s.authenticate(Some(&c), &One, b"\0alice\0pw", false),
            Err(SaslError::IllegalState {
                what: "SaslAuthenticate before SaslHandshake"
            })
        );
        let mut s = Session::new(true);
        assert_eq!(
            s.handshake(Some(&c), 1, "GSSAPI"),
            Err(SaslError::UnsupportedMechanism {
                mechanism: "GSSAPI".into()
            })
        );
        let mut s = Session::new(true);
        s.handshake(Some(&c), 1, "PLAIN").unwrap();
        let done = s
            .authenticate(Some(&c), &One, b"\0alice\0pw", false)
            .unwrap()
            .unwrap();
        assert_eq!(done.session_lifetime_ms, 60_000);
        assert!(s.may_serve());
        assert_eq!(s.principal().map(|p| &**p), Some("User:alice"));
        assert!(!s.expired(Instant::now()));
        assert!(s.expired(Instant::now() + Duration::from_secs(61)));
        assert!(matches!(
            s.authenticate(Some(&c), &One, b"x", false),
            Err(SaslError::IllegalState { .. })
        ));
        // Re-authentication: v0 refused, other mechanism refused, wrong password fails.
        assert!(s.handshake(Some(&c), 0, "PLAIN").is_err());
        s.handshake(Some(&c), 1, "PLAIN").unwrap();
        assert!(
            s.authenticate(Some(&c), &One, b"\0alice\0old", false)
                .is_err()
        );
        let mut s2 = Session::new(true);
        s2.handshake(Some(&c), 1, "PLAIN").unwrap();
        s2.authenticate(Some(&c), &One, b"\0alice\0pw", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            s2.handshake(Some(&c), 1, "SCRAM-SHA-256"),
            Err(SaslError::ReauthChanged)
        );
    }

    #[test]
    fn raw_tokens_after_v0() {
        let c = config();
        let mut s = Session::new(true);
        s.handshake(Some(&c), 0, "PLAIN").unwrap();
        assert!(s.expects_raw_token());
        assert!(
            s.authenticate(Some(&c), &One, b"\0alice\0pw", true)
                .unwrap()
                .is_ok()
        );
        assert!(!s.expects_raw_token());
        assert!(s.may_serve());
    }

    #[test]
    fn without_sasl_the_apis_are_illegal() {
        let mut s = Session::new(false);
        assert!(s.may_serve());
        assert!(matches!(
            s.handshake(None, 1, "PLAIN"),
            Err(SaslError::IllegalState { .. })
        ));
        assert!(matches!(
            s.authenticate(None, &One, b"", false),
            Err(SaslError::IllegalState { .. })
        ));
        assert!(s.may_serve());
    }
}
