//! OAUTHBEARER material for the tests: an Ed25519 key generated at run time, its JWKS document
//! (what the broker's `--sasl-oauthbearer-jwks-file` reads) and JWTs signed with it.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `kid` of the key in the JWKS and in every token's header.
pub const KEY_ID: &str = "test-key";
/// The `iss` of every token.
pub const ISSUER: &str = "test-issuer";

/// Seconds since the Unix epoch, now.
pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An Ed25519 key, its JWKS, and tokens signed with it.
pub struct Issuer {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").finish_non_exhaustive()
    }
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer::new()
    }
}

impl Issuer {
    /// A fresh random key.
    pub fn new() -> Issuer {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate an Ed25519 key");
        Issuer {
            key: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("read the generated key"),
        }
    }

    /// The JWKS document holding the public key (`kid` [`KEY_ID`], `alg` EdDSA).
    pub fn jwks(&self) -> String {
        format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{KEY_ID}","alg":"EdDSA","use":"sig","x":"{}"}}]}}"#,
            URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref())
        )
    }

    /// A JWT for `sub` expiring at `exp_s` (Unix seconds), issued now by [`ISSUER`] for `aud`.
    pub fn token(&self, sub: &str, exp_s: i64, aud: &str) -> String {
        let header =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{KEY_ID}"}}"#));
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"{sub}","exp":{exp_s},"iat":{},"iss":"{ISSUER}","aud":"{aud}"}}"#,
            now_s()
        ));
        let input = format!("{header}.{claims}");
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}
