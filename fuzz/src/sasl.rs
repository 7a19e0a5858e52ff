//! SASL client messages (PLAIN, SCRAM client-first and client-final, OAUTHBEARER's GS2 header
//! and key/value pairs) through `strom_kafka::sasl::wire`, and whole exchanges through
//! `sasl::Exchange` with a fixed user: nothing may panic, and what parses must be consistent
//! with the bytes it came from. The first byte picks the parser.

use strom_broker::scram::{ScramCredential, ScramMechanism, salted_password};
use strom_kafka::sasl::wire;
use strom_kafka::sasl::{CredentialSource, Exchange, Mechanism};

struct OneUser;

impl CredentialSource for OneUser {
    fn credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
        // One iteration: the fuzzer must stay fast; the exchange logic is the same.
        (user == "alice").then(|| {
            let salted = salted_password(m, b"pw", b"salt", 1);
            ScramCredential::from_salted_password(m, b"salt", 1, &salted)
        })
    }
}

/// The checks behind the `sasl` fuzz target.
pub fn check(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            if let Ok(m) = wire::parse_plain(input) {
                assert!(!m.user.is_empty() && !m.password.is_empty());
                assert!(!m.user.contains('\0') && !m.password.contains('\0'));
                let rebuilt = format!("{}\0{}\0{}", m.authzid, m.user, m.password);
                assert_eq!(rebuilt.as_bytes(), input);
            }
        }
        1 => {
            if let Ok(m) = wire::parse_scram_client_first(input) {
                let text = std::str::from_utf8(input).expect("parsed, so UTF-8");
                assert!(text.starts_with(m.gs2_header) && text.ends_with(m.bare));
                assert_eq!(m.gs2_header.len() + m.bare.len(), text.len());
                assert!(!m.nonce.is_empty() && !m.nonce.contains(','));
            }
        }
        2 => {
            if let Ok(m) = wire::parse_scram_client_final(input) {
                let text = std::str::from_utf8(input).expect("parsed, so UTF-8");
                assert!(text.starts_with(m.without_proof));
                assert!(m.without_proof.starts_with("c="));
                assert!(!m.nonce.is_empty());
            }
        }
        3 => {
            if let Ok(m) = wire::parse_oauthbearer(input) {
                assert!(!m.token.is_empty());
                assert!(!m.token.contains('\u{1}'));
            }
        }
        _ => {
            // A whole exchange: the input is split into client tokens at 0xff bytes.
            let Some((&pick, rest)) = input.split_first() else {
                return;
            };
            let mechanism = Mechanism::ALL[usize::from(pick) % 3];
            let mut exchange = Exchange::new(mechanism);
            let verifier = strom_kafka::sasl::mechanism::Verifier {
                credentials: &OneUser,
                oauth: None,
            };
            for token in rest.split(|&b| b == 0xff) {
                if exchange.step(verifier, token).is_err() {
                    break;
                }
            }
        }
    }
}
