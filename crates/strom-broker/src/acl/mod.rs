//! ACLs: Kafka's model ([`model`]), the live set of ACLs with an index for authorization
//! ([`AclStore`]), and the broker operations that change it durably (`AclsCreated` /
//! `AclsDeleted` events in the metadata log, replayed at open).
//!
//! The authorizer is off unless [`AuthorizerConfig::enabled`]: then the ACL operations fail
//! with [`Error::SecurityDisabled`] (Kafka's answer without an authorizer) and
//! [`Broker::authorize`] allows everything.

pub mod model;

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

pub use model::{
    AclBinding, AclBindingFilter, AclOperation, AclPermission, AuthorizerConfig,
    CLUSTER_RESOURCE_NAME, InvalidAcl, PatternFilter, PatternType, Requester, Resource,
    ResourceType,
};

use crate::Broker;
use crate::error::{Error, Result};
use crate::metadata::MetadataEvent;

/// ACLs of one pattern type by resource type, then by name (looked up by `&str`, so a check
/// allocates nothing per prefix).
type NameIndex = HashMap<ResourceType, HashMap<String, Vec<AclBinding>>>;

/// Every ACL, with an index by (type, name) for literal and for prefixed patterns.
#[derive(Debug, Default)]
struct AclSet {
    all: BTreeSet<AclBinding>,
    literal: NameIndex,
    prefixed: NameIndex,
}

impl AclSet {
    fn map(&mut self, pattern: PatternType) -> &mut NameIndex {
        match pattern {
            PatternType::Literal => &mut self.literal,
            PatternType::Prefixed => &mut self.prefixed,
        }
    }

    fn insert(&mut self, acl: AclBinding) {
        if self.all.insert(acl.clone()) {
            self.map(acl.pattern_type)
                .entry(acl.resource_type)
                .or_default()
                .entry(acl.resource_name.clone())
                .or_default()
                .push(acl);
        }
    }

    fn remove(&mut self, acl: &AclBinding) {
        if self.all.remove(acl) {
            let by_type = self.map(acl.pattern_type);
            if let Some(by_name) = by_type.get_mut(&acl.resource_type) {
                if let Some(list) = by_name.get_mut(&acl.resource_name) {
                    list.retain(|a| a != acl);
                    if list.is_empty() {
                        by_name.remove(&acl.resource_name);
                    }
                }
                if by_name.is_empty() {
                    by_type.remove(&acl.resource_type);
                }
            }
        }
    }

    /// The ACLs whose pattern covers `resource`: literal name, literal `*`, and every prefix.
    fn matching<'s>(&'s self, resource: &Resource<'_>) -> Vec<&'s AclBinding> {
        let mut out = Vec::new();
        if let Some(by_name) = self.literal.get(&resource.resource_type) {
            if let Some(list) = by_name.get(resource.name) {
                out.extend(list.iter());
            }
            if resource.name != model::WILDCARD_RESOURCE
                && let Some(list) = by_name.get(model::WILDCARD_RESOURCE)
            {
                out.extend(list.iter());
            }
        }
        if let Some(by_name) = self.prefixed.get(&resource.resource_type) {
            let ends = resource
                .name
                .char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .chain(std::iter::once(resource.name.len()));
            for end in ends {
                if let Some(list) = by_name.get(&resource.name[..end]) {
                    out.extend(list.iter());
                }
            }
        }
        out
    }
}

/// The live ACLs and the authorizer settings. Readers take a short read lock.
#[derive(Debug)]
pub struct AclStore {
    config: AuthorizerConfig,
    acls: RwLock<AclSet>,
}

impl AclStore {
    /// An empty store with these settings.
    pub fn new(config: AuthorizerConfig) -> AclStore {
        AclStore {
            config,
            acls: RwLock::new(AclSet::default()),
        }
    }

    /// Whether an authorizer is configured.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Applies a replayed or newly written event.
    pub(crate) fn apply(&self, event: &MetadataEvent) {
        let mut set = self.acls.write().unwrap_or_else(|e| e.into_inner());
        match event {
            MetadataEvent::AclsCreated { acls } => {
                for acl in acls {
                    set.insert(acl.clone());
                }
            }
            MetadataEvent::AclsDeleted { acls } => {
                for acl in acls {
                    set.remove(acl);
                }
            }
            _ => {}
        }
    }

    /// Every ACL the filter matches, in a stable order.
    pub fn describe(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let set = self.acls.read().unwrap_or_else(|e| e.into_inner());
        set.all
            .iter()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect()
    }

    /// How many ACLs are stored.
    pub fn len(&self) -> usize {
        self.acls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .all
            .len()
    }

    /// Whether no ACL is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The authorization decision through the index (same answer as [`model::authorize`] over
    /// every ACL). Always true when no authorizer is configured.
    pub fn authorize(
        &self,
        who: Requester<'_>,
        operation: AclOperation,
        resource: Resource<'_>,
    ) -> bool {
        if !self.config.enabled {
            return true;
        }
        let set = self.acls.read().unwrap_or_else(|e| e.into_inner());
        model::authorize(
            &self.config,
            set.matching(&resource),
            who,
            operation,
            resource,
        )
    }
}

impl Broker {
    /// The ACL store (authorizer settings and live ACLs).
    pub fn acls(&self) -> &AclStore {
        &self.acls
    }

    /// Whether `who` may do `operation` on `resource` (always true without an authorizer).
    pub fn authorize(
        &self,
        who: Requester<'_>,
        operation: AclOperation,
        resource: Resource<'_>,
    ) -> bool {
        self.acls.authorize(who, operation, resource)
    }

    /// Stores ACLs durably (one metadata event for all of them; ACLs already stored are a
    /// no-op, as in Kafka). Each must have passed [`AclBinding::validate`]. BLOCKING.
    pub fn create_acls_blocking(&self, acls: Vec<AclBinding>) -> Result<()> {
        if !self.acls.enabled() {
            return Err(Error::SecurityDisabled);
        }
        for acl in &acls {
            acl.validate().map_err(Error::InvalidAcl)?;
        }
        let mut meta = self.admin();
        let existing = self.acls.describe(&AclBindingFilter::any());
        let new: Vec<AclBinding> = acls
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|a| existing.binary_search(a).is_err())
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let event = MetadataEvent::AclsCreated { acls: new };
        meta.append(&event)?;
        self.acls.apply(&event);
        Ok(())
    }

    /// The ACLs matching `filter`.
    pub fn describe_acls(&self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>> {
        if !self.acls.enabled() {
            return Err(Error::SecurityDisabled);
        }
        Ok(self.acls.describe(filter))
    }

    /// Deletes every ACL matching any of the filters, durably in one event, and returns per
    /// filter the ACLs it matched (an ACL matched by two filters is listed under both, as
    /// Kafka does). BLOCKING.
    pub fn delete_acls_blocking(
        &self,
        filters: &[AclBindingFilter],
    ) -> Result<Vec<Vec<AclBinding>>> {
        if !self.acls.enabled() {
            return Err(Error::SecurityDisabled);
        }
        let mut meta = self.admin();
        let matched: Vec<Vec<AclBinding>> = filters.iter().map(|f| self.acls.describe(f)).collect();
        let doomed: BTreeSet<AclBinding> = matched.iter().flatten().cloned().collect();
        if !doomed.is_empty() {
            let event = MetadataEvent::AclsDeleted {
                acls: doomed.into_iter().collect(),
            };
            meta.append(&event)?;
            self.acls.apply(&event);
        }
        Ok(matched)
    }
}

#[cfg(test)]
mod tests;
