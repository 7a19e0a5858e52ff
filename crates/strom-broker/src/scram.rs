//! SCRAM credentials (RFC 5802, RFC 7677): per user and mechanism, the salt, the iteration
//! count, `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")` — never the password nor the salted
//! password. Durable as `ScramCredentialsAltered` events in the metadata log.
//!
//! Kafka's AlterUserScramCredentials sends the *salted password* (the client ran PBKDF2), so
//! the broker only derives the two keys; [`salted_password`] is the client side (the CLI).
//! The rules are Kafka's (`ScramControlManager`): iterations within
//! [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`], a non-empty user name, a user altered at most
//! once per request, deleting a missing credential is `RESOURCE_NOT_FOUND`; one user's failure
//! does not stop the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::Broker;
use crate::error::{Error, Result};
use crate::metadata::MetadataEvent;

/// Fewest iterations Kafka accepts for both mechanisms.
pub const MIN_ITERATIONS: i32 = 4096;
/// Most iterations Kafka accepts for both mechanisms.
pub const MAX_ITERATIONS: i32 = 16384;

/// A SCRAM mechanism, with Kafka's wire code (`ScramMechanism`: 1 and 2; 0 is UNKNOWN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The mechanism of a wire code, if known.
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name, if known.
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// `HMAC(key, parts...)` with this mechanism's hash (SASL/SCRAM's server side).
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        macro_rules! run {
            ($d:ty) => {{
                // HMAC takes keys of any length; the error branch cannot happen.
                match <Hmac<$d> as KeyInit>::new_from_slice(key) {
                    Ok(mut mac) => {
                        for p in parts {
                            mac.update(p);
                        }
                        mac.finalize().into_bytes().to_vec()
                    }
                    Err(_) => Vec::new(),
                }
            }};
        }
        match self {
            ScramMechanism::Sha256 => run!(Sha256),
            ScramMechanism::Sha512 => run!(Sha512),
        }
    }

    /// `H(data)` with this mechanism's hash.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// `SaltedPassword = Hi(password, salt, iterations)` (PBKDF2 with this mechanism's HMAC and
/// one output block), what a client computes before AlterUserScramCredentials.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut u = mechanism.hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = mechanism.hmac(password, &[&u]);
        for (o, x) in out.iter_mut().zip(&u) {
            *o ^= x;
        }
    }
    out
}

/// One stored credential. `Debug` shows the salt's length and the iterations only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The salt.
    pub salt: Vec<u8>,
    /// The iteration count.
    pub iterations: i32,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Derives the stored form from a salted password.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        iterations: i32,
        salted_password: &[u8],
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, &[b"Client Key"]);
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, &[b"Server Key"]),
        }
    }
}

/// One upsertion of AlterUserScramCredentials. `Debug` leaves out the salted password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUpsertion {
    /// The user.
    pub user: String,
    /// The mechanism's wire code (unknown codes are refused per user).
    pub mechanism: i8,
    /// Iterations.
    pub iterations: i32,
    /// Salt.
    pub salt: Vec<u8>,
    /// `Hi(password, salt, iterations)`.
    pub salted_password: Vec<u8>,
}

impl std::fmt::Debug for ScramUpsertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUpsertion")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// One deletion of AlterUserScramCredentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramDeletion {
    /// The user.
    pub user: String,
    /// The mechanism's wire code.
    pub mechanism: i8,
}

/// A stored credential as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredScramCredential {
    /// The user.
    pub user: String,
    /// The mechanism.
    pub mechanism: ScramMechanism,
    /// The credential.
    pub credential: ScramCredential,
}

/// A removed credential as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedScramCredential {
    /// The user.
    pub user: String,
    /// The mechanism.
    pub mechanism: ScramMechanism,
}

/// Why a user's alteration or description was refused (Kafka's code in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramRefusal {
    /// No such credential or user [RESOURCE_NOT_FOUND].
    #[error("no such credential")]
    NotFound,
    /// The user appears twice [DUPLICATE_RESOURCE].
    #[error("the user appears more than once in the request")]
    Duplicate,
    /// Unknown mechanism code [UNSUPPORTED_SASL_MECHANISM].
    #[error("unknown SCRAM mechanism")]
    UnknownMechanism,
    /// Iterations below [`MIN_ITERATIONS`] [UNACCEPTABLE_CREDENTIAL].
    #[error("too few iterations")]
    TooFewIterations,
    /// Iterations above [`MAX_ITERATIONS`] [UNACCEPTABLE_CREDENTIAL].
    #[error("too many iterations")]
    TooManyIterations,
    /// Empty user name [UNACCEPTABLE_CREDENTIAL].
    #[error("the user name must not be empty")]
    Empty,
}

/// Per user: the mechanisms and iteration counts of their credentials.
pub type UserCredentialInfo = Vec<(ScramMechanism, i32)>;

/// The live credentials.
#[derive(Debug, Default)]
pub struct ScramStore {
    users: RwLock<BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>>,
}

impl ScramStore {
    /// Applies a replayed or newly written event.
    pub(crate) fn apply(&self, event: &MetadataEvent) {
        if let MetadataEvent::ScramCredentialsAltered { upserted, removed } = event {
            let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
            for r in removed {
                if let Some(creds) = users.get_mut(&r.user) {
                    creds.remove(&r.mechanism);
                    if creds.is_empty() {
                        users.remove(&r.user);
                    }
                }
            }
            for u in upserted {
                users
                    .entry(u.user.clone())
                    .or_default()
                    .insert(u.mechanism, u.credential.clone());
            }
        }
    }

    /// The credential of a user for a mechanism (for SASL/SCRAM authentication).
    pub fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.get(user).and_then(|c| c.get(&mechanism)).cloned()
    }

    fn info(&self, user: &str) -> Option<UserCredentialInfo> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users
            .get(user)
            .map(|c| c.iter().map(|(m, cred)| (*m, cred.iterations)).collect())
    }
}

impl Broker {
    /// The SCRAM credential store.
    pub fn scram(&self) -> &ScramStore {
        &self.scram
    }

    /// DescribeUserScramCredentials: for `None` (or an empty list) every user with
    /// credentials; else each requested user in order, `NotFound` for one without credentials
    /// and `Duplicate` for one asked twice.
    pub fn describe_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Vec<(
        String,
        std::result::Result<UserCredentialInfo, ScramRefusal>,
    )> {
        match users {
            None | Some([]) => {
                let all = self.scram.users.read().unwrap_or_else(|e| e.into_inner());
                all.iter()
                    .map(|(user, c)| {
                        (
                            user.clone(),
                            Ok(c.iter().map(|(m, cred)| (*m, cred.iterations)).collect()),
                        )
                    })
                    .collect()
            }
            Some(users) => {
                let mut seen = BTreeMap::<&str, usize>::new();
                for u in users {
                    *seen.entry(u.as_str()).or_default() += 1;
                }
                let mut reported = BTreeSet::new();
                users
                    .iter()
                    .filter(|u| reported.insert(u.as_str()))
                    .map(|u| {
                        let result = if seen.get(u.as_str()).copied().unwrap_or(0) > 1 {
                            Err(ScramRefusal::Duplicate)
                        } else {
                            self.scram.info(u).ok_or(ScramRefusal::NotFound)
                        };
                        (u.clone(), result)
                    })
                    .collect()
            }
        }
    }

    /// AlterUserScramCredentials, with the rules of Kafka's `ScramControlManager`: a user may
    /// be altered once per request (a second deletion or upsertion of the same user, whatever
    /// the mechanism, makes the user `Duplicate` and drops both); an empty name is `Empty`, an
    /// unknown mechanism `UnknownMechanism`, iterations outside `MIN..=MAX`
    /// `TooFewIterations`/`TooManyIterations`, deleting a missing credential `NotFound`; a
    /// user's first refusal is the one reported. Every accepted change is written in one
    /// durable event; one result per user in first-appearance order (a metadata write failure
    /// fails every accepted user). BLOCKING.
    pub fn alter_scram_credentials_blocking(
        &self,
        deletions: &[ScramDeletion],
        upsertions: &[ScramUpsertion],
    ) -> Vec<(String, Result<()>)> {
        let mut order: Vec<&str> = Vec::new();
        for user in deletions
            .iter()
            .map(|d| d.user.as_str())
            .chain(upsertions.iter().map(|u| u.user.as_str()))
        {
            if !order.contains(&user) {
                order.push(user);
            }
        }
        let meta = self.admin();
        let mut refused: BTreeMap<&str, ScramRefusal> = BTreeMap::new();
        let mut removed: BTreeMap<&str, RemovedScramCredential> = BTreeMap::new();
        let mut upserted: BTreeMap<&str, StoredScramCredential> = BTreeMap::new();
        for d in deletions {
            let user = d.user.as_str();
            if refused.contains_key(user) {
                continue;
            }
            if removed.remove(user).is_some() {
                refused.insert(user, ScramRefusal::Duplicate);
                continue;
            }
            match validate(user, d.mechanism) {
                Err(why) => {
                    refused.insert(user, why);
                }
                Ok(m) if self.scram.credential(user, m).is_none() => {
                    refused.insert(user, ScramRefusal::NotFound);
                }
                Ok(m) => {
                    removed.insert(
                        user,
                        RemovedScramCredential {
                            user: user.to_owned(),
                            mechanism: m,
                        },
                    );
                }
            }
        }
        for u in upsertions {
            let user = u.user.as_str();
            if refused.contains_key(user) {
                continue;
            }
            if removed.remove(user).is_some() || upserted.remove(user).is_some() {
                refused.insert(user, ScramRefusal::Duplicate);
                continue;
            }
            let checked = validate(user, u.mechanism).and_then(|m| {
                if u.iterations < MIN_ITERATIONS {
                    Err(ScramRefusal::TooFewIterations)
                } else if u.iterations > MAX_ITERATIONS {
                    Err(ScramRefusal::TooManyIterations)
                } else {
                    Ok(m)
                }
            });
            match checked {
                Err(why) => {
                    refused.insert(user, why);
                }
                Ok(m) => {
                    upserted.insert(
                        user,
                        StoredScramCredential {
                            user: user.to_owned(),
                            mechanism: m,
                            credential: ScramCredential::from_salted_password(
                                m,
                                &u.salt,
                                u.iterations,
                                &u.salted_password,
                            ),
                        },
                    );
                }
            }
        }
        let written = if removed.is_empty() && upserted.is_empty() {
            Ok(())
        } else {
            let event = MetadataEvent::ScramCredentialsAltered {
                upserted: upserted.into_values().collect(),
                removed: removed.into_values().collect(),
            };
            let mut meta = meta;
            let r = meta.append(&event);
            if r.is_ok() {
                self.scram.apply(&event);
            }
            r
        };
        order
            .into_iter()
            .map(|user| {
                let result = match refused.get(user) {
                    Some(why) => Err(Error::Scram {
                        user: user.to_owned(),
                        reason: *why,
                    }),
                    None => written.clone(),
                };
                (user.to_owned(), result)
            })
            .collect()
    }
}

/// The checks common to deletions and upsertions: a non-empty name, a known mechanism.
fn validate(user: &str, mechanism: i8) -> std::result::Result<ScramMechanism, ScramRefusal> {
    if user.is_empty() {
        return Err(ScramRefusal::Empty);
    }
    ScramMechanism::from_code(mechanism).ok_or(ScramRefusal::UnknownMechanism)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's test vector: user "user", password "pencil", salt
    /// base64 "W22ZaJ0SNY7soEsUEjb6gQ==", 4096 iterations; the server signature it shows is
    /// made with this ServerKey, so checking the salted password checks Hi.
    #[test]
    fn hi_matches_rfc_7677_vector() {
        let salt = [
            0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36,
            0xfa, 0x81,
        ];
        let salted = salted_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        // PBKDF2-HMAC-SHA256("pencil", salt, 4096, 32), computed independently.
        let hex: String = salted.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "c4a49510323ab4f952cac1fa99441939e78ea74d6be81ddf7096e87513dc615d"
        );
        let cred =
            ScramCredential::from_salted_password(ScramMechanism::Sha256, &salt, 4096, &salted);
        assert_eq!(cred.stored_key.len(), 32);
        assert_eq!(cred.server_key.len(), 32);
        assert_ne!(cred.stored_key, cred.server_key);
    }

    fn up(user: &str, mechanism: i8, iterations: i32) -> ScramUpsertion {
        ScramUpsertion {
            user: user.to_owned(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: vec![7; 32],
        }
    }

    fn del(user: &str, mechanism: i8) -> ScramDeletion {
        ScramDeletion {
            user: user.to_owned(),
            mechanism,
        }
    }

    fn refusals(results: &[(String, Result<()>)]) -> Vec<(&str, Option<ScramRefusal>)> {
        results
            .iter()
            .map(|(u, r)| {
                let why = match r {
                    Ok(()) => None,
                    Err(Error::Scram { reason, .. }) => Some(*reason),
                    Err(e) => panic!("unexpected {e}"),
                };
                (u.as_str(), why)
            })
            .collect()
    }

    /// Kafka's `ScramControlManager.alterCredentials`: one alteration per user per request,
    /// the first refusal sticks, refused users change nothing.
    #[test]
    fn alterations_follow_kafka_rules() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(crate::BrokerConfig::new(dir.path())).unwrap();
        let results = broker.alter_scram_credentials_blocking(
            &[del("gone", 1), del("twice", 1)],
            &[
                up("ok", 1, 4096),
                up("twice", 2, 8192),
                up("dup", 1, 4096),
                up("dup", 2, 4096),
                up("gone", 1, 4096),
                up("few", 1, 4095),
                up("many", 2, 16385),
                up("", 1, 4096),
                up("mech", 0, 4096),
                up("max", 2, 16384),
            ],
        );
        assert_eq!(
            refusals(&results),
            vec![
                ("gone", Some(ScramRefusal::NotFound)),
                ("twice", Some(ScramRefusal::NotFound)),
                ("ok", None),
                ("dup", Some(ScramRefusal::Duplicate)),
                ("few", Some(ScramRefusal::TooFewIterations)),
                ("many", Some(ScramRefusal::TooManyIterations)),
                ("", Some(ScramRefusal::Empty)),
                ("mech", Some(ScramRefusal::UnknownMechanism)),
                ("max", None),
            ]
        );
        assert!(
            broker
                .scram()
                .credential("dup", ScramMechanism::Sha256)
                .is_none()
        );
        assert!(
            broker
                .scram()
                .credential("ok", ScramMechanism::Sha256)
                .is_some()
        );
        // A valid deletion then an upsertion of the same user: duplicate, nothing deleted.
        let results =
            broker.alter_scram_credentials_blocking(&[del("ok", 1)], &[up("ok", 2, 4096)]);
        assert_eq!(
            refusals(&results),
            vec![("ok", Some(ScramRefusal::Duplicate))]
        );
        assert!(
            broker
                .scram()
                .credential("ok", ScramMechanism::Sha256)
                .is_some()
        );
        let described = broker.describe_scram_credentials(None);
        let users: Vec<&str> = described.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(users, vec!["max", "ok"]);
        broker.shutdown_blocking().unwrap();
    }

    #[test]
    fn pbkdf2_sha512_one_iteration_is_one_hmac() {
        let s = salted_password(ScramMechanism::Sha512, b"p", b"s", 1);
        assert_eq!(s, ScramMechanism::Sha512.hmac(b"p", &[b"s", &[0, 0, 0, 1]]));
        assert_eq!(s.len(), 64);
    }
}
