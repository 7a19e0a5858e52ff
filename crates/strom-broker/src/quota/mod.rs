//! Kafka client quotas (KIP-13 byte rates, KIP-55 user quotas, KIP-124 request percentage,
//! KIP-546 DescribeClientQuotas/AlterClientQuotas): the model, the live set ([`QuotaStore`])
//! with Kafka's precedence order, and the broker operations that change it durably
//! (`ClientQuotasAltered` events in the metadata log, replayed at open and, in cluster mode,
//! tailed from the shared store, so every broker knows every quota).
//!
//! Enforcement (measuring rates, throttling, muting channels) is the Kafka front end's
//! (`strom_kafka::quota`); this module only answers "which limit applies to this user and
//! client id, and which entity's rate does it count against".
//!
//! ## Entities and precedence
//!
//! An entity is a user, a client id, or both, each either a name or the default
//! (`<default>`, a null name on the wire). For each quota key independently, the first entity
//! in this order that sets the key applies (Kafka's `DefaultQuotaCallback`):
//!
//! 1. user + client id, 2. user + default client id, 3. user, 4. default user + client id,
//! 5. default user + default client id, 6. default user, 7. client id, 8. default client id.
//!
//! The rate is measured per [`QuotaTags`]: the concrete user and/or client id of the types
//! the matched entity has (a default user quota gives every user a rate of its own).
//! Users are principal names without the `User:` prefix (`ANONYMOUS` when not authenticated).
//! Kafka's `ip` entities (`connection_creation_rate`) are not supported.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::Broker;
use crate::error::{Error, Result};
use crate::metadata::MetadataEvent;

/// The entity type of users on the wire.
pub const USER: &str = "user";
/// The entity type of client ids on the wire.
pub const CLIENT_ID: &str = "client-id";
/// The entity type of IP addresses on the wire (not supported by Strom).
pub const IP: &str = "ip";

/// One component of an entity: a name, or the default.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityName {
    /// The default of its type (`<default>`; a null name on the wire).
    Default,
    /// A name.
    Named(String),
}

impl EntityName {
    /// From the wire: `None` is the default.
    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n.to_owned()),
        }
    }

    /// To the wire: the default is `None`.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

impl std::fmt::Display for EntityName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityName::Default => f.write_str("<default>"),
            EntityName::Named(n) => f.write_str(n),
        }
    }
}

/// A quota entity: a user, a client id, or both (never neither).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    /// The user component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    /// The client-id component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

impl QuotaEntity {
    /// The wire form: `(entity type, name)` pairs, user first.
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::with_capacity(2);
        if let Some(u) = &self.user {
            out.push((USER, u.as_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.as_wire()));
        }
        out
    }

    /// Parses the wire form with Kafka's checks (`ClientQuotaControlManager.validateEntity`).
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> std::result::Result<QuotaEntity, QuotaRefusal> {
        let mut entity = QuotaEntity {
            user: None,
            client_id: None,
        };
        let mut any = false;
        for (entity_type, name) in components {
            any = true;
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => return Err(QuotaRefusal::IpUnsupported),
                _ => return Err(QuotaRefusal::UnknownEntityType),
            };
            if slot.is_some() {
                return Err(QuotaRefusal::DuplicateEntityType);
            }
            if name == Some("") {
                return Err(QuotaRefusal::EmptyName);
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if !any {
            return Err(QuotaRefusal::EmptyEntity);
        }
        Ok(entity)
    }
}

impl std::fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (t, n) in self.components() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{t}={}", n.unwrap_or("<default>"))?;
        }
        Ok(())
    }
}

/// A quota key (Kafka's `QuotaConfig` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKey {
    /// `producer_byte_rate`: bytes per second of Produce requests (a whole number).
    ProducerByteRate,
    /// `consumer_byte_rate`: bytes per second of Fetch responses (a whole number).
    ConsumerByteRate,
    /// `request_percentage`: percent of one request-handling thread's time per second.
    RequestPercentage,
    /// `controller_mutation_rate`: accepted and stored as Kafka does, not enforced (Strom
    /// has no controller whose work it would bound).
    ControllerMutationRate,
}

impl QuotaKey {
    /// Every key.
    pub const ALL: [QuotaKey; 4] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
        QuotaKey::ControllerMutationRate,
    ];

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
            QuotaKey::ControllerMutationRate => "controller_mutation_rate",
        }
    }

    /// Whether values must be whole numbers (Kafka's LONG keys).
    pub fn integral(self) -> bool {
        matches!(
            self,
            QuotaKey::ProducerByteRate | QuotaKey::ConsumerByteRate
        )
    }
}

impl std::str::FromStr for QuotaKey {
    type Err = QuotaRefusal;

    fn from_str(s: &str) -> std::result::Result<QuotaKey, QuotaRefusal> {
        QuotaKey::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or(QuotaRefusal::UnknownKey)
    }
}

impl std::fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A quota value: finite and positive (validated before it is stored), so equality by bits
/// is equality of numbers.
#[derive(Debug, Clone, Copy, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

impl QuotaValue {
    /// Checks a proposed value for `key` as Kafka's `validateQuotaKeyValue` does.
    pub fn validate(key: QuotaKey, value: f64) -> std::result::Result<QuotaValue, QuotaRefusal> {
        if !value.is_finite() || value <= 0.0 {
            return Err(QuotaRefusal::NotPositive);
        }
        if key.integral() {
            if value > i64::MAX as f64 {
                return Err(QuotaRefusal::TooLarge);
            }
            if (value % 1.0).abs() > 1e-6 {
                return Err(QuotaRefusal::Fractional);
            }
        }
        Ok(QuotaValue(value))
    }
}

/// One stored change: `value` set, or `None` to remove the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaChange {
    /// Whose quota.
    pub entity: QuotaEntity,
    /// Which key.
    pub key: QuotaKey,
    /// The new value; `None` removes it.
    pub value: Option<QuotaValue>,
}

/// Why a quota request was refused (Kafka answers each with INVALID_REQUEST, except
/// [`QuotaRefusal::UnsupportedEntityType`] in a describe filter, UNSUPPORTED_VERSION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaRefusal {
    /// An entity with no component.
    #[error("invalid empty client quota entity")]
    EmptyEntity,
    /// An entity type named twice in one entity or filter.
    #[error("an entity type appears more than once")]
    DuplicateEntityType,
    /// An entity type other than `user`, `client-id` and `ip`.
    #[error("unhandled client quota entity type")]
    UnknownEntityType,
    /// An `ip` entity (connection-rate quotas are not supported).
    #[error("ip quota entities are not supported")]
    IpUnsupported,
    /// An entity type other than `user`, `client-id` and `ip` in a describe filter.
    #[error("unsupported entity type in the filter")]
    UnsupportedEntityType,
    /// `ip` combined with `user` or `client-id` in a filter.
    #[error("an ip filter component cannot be combined with user or client-id")]
    IpCombined,
    /// An empty entity name (names are non-empty; the default is a null name).
    #[error("empty entity names are not supported")]
    EmptyName,
    /// A key that is not a client quota key.
    #[error("invalid quota configuration key")]
    UnknownKey,
    /// The same key twice for one entity.
    #[error("duplicate quota key")]
    DuplicateKey,
    /// The same entity twice in one request.
    #[error("duplicate entity in the request")]
    DuplicateEntity,
    /// A value that is not a positive number.
    #[error("quota values must be greater than 0")]
    NotPositive,
    /// A fractional value for a byte rate.
    #[error("byte rates cannot be fractional")]
    Fractional,
    /// A byte rate beyond a LONG.
    #[error("value too large for a LONG")]
    TooLarge,
    /// An unknown match type in a filter, or a match string where none belongs (or missing).
    #[error("invalid filter component match")]
    BadMatch,
}

/// How a filter component matches an entity's component of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    /// `MATCH_TYPE_EXACT` (0): this name.
    Exact(String),
    /// `MATCH_TYPE_DEFAULT` (1): the default.
    Default,
    /// `MATCH_TYPE_SPECIFIED` (2): any name or the default (the type is present).
    Specified,
}

impl QuotaMatch {
    /// From the wire's match type and match string, checked as Kafka does.
    pub fn from_wire(
        match_type: i8,
        name: Option<&str>,
    ) -> std::result::Result<QuotaMatch, QuotaRefusal> {
        match (match_type, name) {
            (0, Some(n)) => Ok(QuotaMatch::Exact(n.to_owned())),
            (1, None) => Ok(QuotaMatch::Default),
            (2, None) => Ok(QuotaMatch::Specified),
            _ => Err(QuotaRefusal::BadMatch),
        }
    }
}

/// A DescribeClientQuotas filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaFilter {
    /// `(entity type, match)`; all must match.
    pub components: Vec<(String, QuotaMatch)>,
    /// Whether matched entities must have no other component types.
    pub strict: bool,
}

impl QuotaFilter {
    /// Checks the components (Kafka's `ClientQuotasImage.describe`).
    fn validate(&self) -> std::result::Result<(), QuotaRefusal> {
        let mut seen: Vec<&str> = Vec::new();
        for (t, _) in &self.components {
            if t.is_empty() {
                return Err(QuotaRefusal::EmptyName);
            }
            if seen.contains(&t.as_str()) {
                return Err(QuotaRefusal::DuplicateEntityType);
            }
            if ![USER, CLIENT_ID, IP].contains(&t.as_str()) {
                return Err(QuotaRefusal::UnsupportedEntityType);
            }
            seen.push(t);
        }
        if seen.contains(&IP) && (seen.contains(&USER) || seen.contains(&CLIENT_ID)) {
            return Err(QuotaRefusal::IpCombined);
        }
        Ok(())
    }

    /// Whether `entity` matches.
    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.strict && entity.components().len() != self.components.len() {
            return false;
        }
        self.components.iter().all(|(t, m)| {
            let slot = match t.as_str() {
                USER => &entity.user,
                CLIENT_ID => &entity.client_id,
                _ => return false,
            };
            match (slot, m) {
                (None, _) => false,
                (Some(_), QuotaMatch::Specified) => true,
                (Some(EntityName::Default), QuotaMatch::Default) => true,
                (Some(EntityName::Named(n)), QuotaMatch::Exact(want)) => n == want,
                _ => false,
            }
        })
    }
}

/// One entity's requested changes in an AlterClientQuotas request, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaAlteration {
    /// `(entity type, name)` as sent (`None` is the default).
    pub entity: Vec<(String, Option<String>)>,
    /// `(key, value, remove)` as sent.
    pub ops: Vec<QuotaOp>,
}

/// One operation of a [`QuotaAlteration`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaOp {
    /// The key as sent.
    pub key: String,
    /// The value (ignored when removing).
    pub value: f64,
    /// Remove the key instead of setting it.
    pub remove: bool,
}

/// Whose rate a limit is measured against: the concrete user and/or client id of the
/// matched entity's types (empty for a type it does not have), as Kafka's metric tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaTags {
    /// The user, or empty.
    pub user: String,
    /// The client id, or empty.
    pub client_id: String,
}

/// A limit that applies to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedQuota {
    /// The limit (bytes per second, or percent).
    pub limit: f64,
    /// The rate it is measured against.
    pub tags: QuotaTags,
}

/// Every entity's quotas.
pub type QuotaMap = BTreeMap<QuotaEntity, BTreeMap<QuotaKey, QuotaValue>>;

/// The live quotas.
#[derive(Debug, Default)]
pub struct QuotaStore {
    entities: RwLock<QuotaMap>,
    /// Whether any quota exists (the request path's check when there is none).
    any: AtomicBool,
    /// Bumped on every change, so a front end can cache what it resolved.
    version: AtomicU64,
}

impl QuotaStore {
    /// Applies a replayed or newly written event (other events are ignored).
    pub fn apply(&self, event: &MetadataEvent) {
        if let MetadataEvent::ClientQuotasAltered { changes } = event {
            let mut entities = self.entities.write().unwrap_or_else(|e| e.into_inner());
            apply_changes(&mut entities, changes);
            self.any.store(!entities.is_empty(), Ordering::Release);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether any quota is set.
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// A number that changes whenever a quota does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every entity's quotas.
    pub fn all(&self) -> QuotaMap {
        self.entities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The limit for `key` that applies to `user` with `client_id`, in Kafka's precedence
    /// order (module doc), or `None` when no entity sets it.
    pub fn resolve(&self, key: QuotaKey, user: &str, client_id: &str) -> Option<ResolvedQuota> {
        if self.is_empty() {
            return None;
        }
        let entities = self.entities.read().unwrap_or_else(|e| e.into_inner());
        let named_user = Some(EntityName::Named(user.to_owned()));
        let named_client = Some(EntityName::Named(client_id.to_owned()));
        let default = Some(EntityName::Default);
        let both = |u: &str, c: &str| QuotaTags {
            user: u.to_owned(),
            client_id: c.to_owned(),
        };
        let order = [
            (&named_user, &named_client, both(user, client_id)),
            (&named_user, &default, both(user, client_id)),
            (&named_user, &None, both(user, "")),
            (&default, &named_client, both(user, client_id)),
            (&default, &default, both(user, client_id)),
            (&default, &None, both(user, "")),
            (&None, &named_client, both("", client_id)),
            (&None, &default, both("", client_id)),
        ];
        for (u, c, tags) in order {
            let entity = QuotaEntity {
                user: u.clone(),
                client_id: c.clone(),
            };
            if let Some(v) = entities.get(&entity).and_then(|keys| keys.get(&key)) {
                return Some(ResolvedQuota { limit: v.0, tags });
            }
        }
        None
    }
}

/// Applies changes to a quota map (shared by the store and the metadata snapshot state).
pub(crate) fn apply_changes(entities: &mut QuotaMap, changes: &[QuotaChange]) {
    for c in changes {
        match c.value {
            Some(v) => {
                entities
                    .entry(c.entity.clone())
                    .or_default()
                    .insert(c.key, v);
            }
            None => {
                if let Some(keys) = entities.get_mut(&c.entity) {
                    keys.remove(&c.key);
                    if keys.is_empty() {
                        entities.remove(&c.entity);
                    }
                }
            }
        }
    }
}

impl Broker {
    /// The client quotas.
    pub fn quotas(&self) -> &QuotaStore {
        &self.quotas
    }

    /// DescribeClientQuotas: every entity the filter matches, with its values.
    pub fn describe_client_quotas(
        &self,
        filter: &QuotaFilter,
    ) -> Result<Vec<(QuotaEntity, BTreeMap<QuotaKey, f64>)>> {
        filter
            .validate()
            .map_err(|reason| Error::Quota { reason })?;
        let entities = self
            .quotas
            .entities
            .read()
            .unwrap_or_else(|e| e.into_inner());
        Ok(entities
            .iter()
            .filter(|(e, _)| filter.matches(e))
            .map(|(e, keys)| (e.clone(), keys.iter().map(|(k, v)| (*k, v.0)).collect()))
            .collect())
    }

    /// AlterClientQuotas with Kafka's rules (`ClientQuotaControlManager`): per entity, an
    /// invalid entity, unknown key, duplicate key, or bad value refuses that entity's changes
    /// (and an entity sent twice is refused); removing a key that is not set changes nothing.
    /// The accepted changes of every entity are written in one durable event, unless
    /// `validate_only`. One result per alteration, in request order (a metadata write failure
    /// fails every accepted entity). BLOCKING.
    pub fn alter_client_quotas_blocking(
        &self,
        alterations: &[QuotaAlteration],
        validate_only: bool,
    ) -> Vec<Result<()>> {
        let meta = self.admin_synced();
        let current = self.quotas.all();
        let mut seen: Vec<QuotaEntity> = Vec::new();
        let mut changes: Vec<QuotaChange> = Vec::new();
        let mut results: Vec<std::result::Result<(), QuotaRefusal>> = Vec::new();
        for alteration in alterations {
            let checked = check_alteration(alteration, &current, &mut seen);
            match checked {
                Ok(mut c) => {
                    changes.append(&mut c);
                    results.push(Ok(()));
                }
                Err(why) => results.push(Err(why)),
            }
        }
        let written = if validate_only || changes.is_empty() {
            Ok(())
        } else {
            let event = MetadataEvent::ClientQuotasAltered { changes };
            let mut meta = meta;
            let r = meta.append(&event);
            if r.is_ok() {
                self.quotas.apply(&event);
            }
            r
        };
        results
            .into_iter()
            .map(|r| match r {
                Ok(()) => written.clone(),
                Err(reason) => Err(Error::Quota { reason }),
            })
            .collect()
    }
}

/// One entity's checked changes; `seen` collects the entities of the request so far.
fn check_alteration(
    alteration: &QuotaAlteration,
    current: &QuotaMap,
    seen: &mut Vec<QuotaEntity>,
) -> std::result::Result<Vec<QuotaChange>, QuotaRefusal> {
    let mut keys: Vec<&str> = Vec::new();
    let mut duplicate_key = false;
    for op in &alteration.ops {
        if keys.contains(&op.key.as_str()) {
            duplicate_key = true;
        }
        keys.push(&op.key);
    }
    let entity = QuotaEntity::from_components(
        alteration
            .entity
            .iter()
            .map(|(t, n)| (t.as_str(), n.as_deref())),
    );
    if let Ok(e) = &entity {
        if seen.contains(e) {
            return Err(QuotaRefusal::DuplicateEntity);
        }
        seen.push(e.clone());
    }
    if duplicate_key {
        return Err(QuotaRefusal::DuplicateKey);
    }
    let entity = entity?;
    let existing = current.get(&entity);
    let mut out = Vec::with_capacity(alteration.ops.len());
    for op in &alteration.ops {
        let key: QuotaKey = op.key.parse()?;
        if op.remove {
            if existing.is_some_and(|k| k.contains_key(&key)) {
                out.push(QuotaChange {
                    entity: entity.clone(),
                    key,
                    value: None,
                });
            }
        } else {
            let value = QuotaValue::validate(key, op.value)?;
            if existing.and_then(|k| k.get(&key)) != Some(&value) {
                out.push(QuotaChange {
                    entity: entity.clone(),
                    key,
                    value: Some(value),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
