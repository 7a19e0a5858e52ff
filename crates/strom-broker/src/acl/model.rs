//! Kafka's ACL model: resource patterns, access-control entries, filters over both, and the
//! pure authorization decision.
//!
//! The numeric codes of every enum are Kafka's wire codes (`ResourceType`, `PatternType`,
//! `AclOperation`, `AclPermissionType` in `org.apache.kafka.common`), so front ends convert
//! with [`TryFrom<i8>`] and `as i8`.
//!
//! The decision ([`authorize`]) follows Kafka's `StandardAuthorizer`: super users may do
//! anything; otherwise the ACLs that *match the resource* are those of its type whose pattern is
//! the literal name, the literal wildcard `*`, or a prefix of the name. If there are none, the
//! answer is `allow.everyone.if.no.acl.found`. Else a matching DENY (same principal or `User:*`,
//! same host or `*`, operation equal or `ALL`) refuses, and failing that a matching ALLOW
//! permits, where an ALLOW of READ, WRITE, DELETE or ALTER also permits DESCRIBE and an ALLOW of
//! ALTER_CONFIGS also permits DESCRIBE_CONFIGS (a DENY implies nothing). Deny wins.

use serde::{Deserialize, Serialize};

/// The principal every `User:*` ACL applies to.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host every `*` ACL applies to.
pub const WILDCARD_HOST: &str = "*";
/// A literal resource name matching every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The name of the one CLUSTER resource.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

/// Why an ACL or a filter is not acceptable (Kafka answers `INVALID_REQUEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAcl {
    /// A code outside the enum, or UNKNOWN.
    #[error("unknown {field} code {code}")]
    UnknownCode {
        /// Which field.
        field: &'static str,
        /// The code sent.
        code: i8,
    },
    /// ANY (or MATCH) where a binding needs a concrete value.
    #[error("{field} must be concrete in an ACL binding, not ANY/MATCH")]
    NotConcrete {
        /// Which field.
        field: &'static str,
    },
    /// The resource name is empty.
    #[error("the resource name must not be empty")]
    EmptyResourceName,
    /// A CLUSTER ACL names another resource than `kafka-cluster`.
    #[error("the only valid name for the CLUSTER resource is kafka-cluster")]
    ClusterName,
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[repr(i8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code),+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL_VALUES: &'static [$name] = &[$($name::$variant),+];

            /// The wire code.
            pub fn code(self) -> i8 {
                self as i8
            }
        }

        impl TryFrom<i8> for $name {
            type Error = InvalidAcl;
            fn try_from(code: i8) -> Result<Self, InvalidAcl> {
                match code {
                    $($code => Ok($name::$variant),)+
                    _ => Err(InvalidAcl::UnknownCode { field: $field, code }),
                }
            }
        }
    };
}

wire_enum!(
    /// What kind of thing an ACL protects (ANY = 1 is a filter value, see [`AclBindingFilter`]).
    ResourceType, "resource type" {
        /// A topic.
        Topic = 2,
        /// A consumer group.
        Group = 3,
        /// The cluster (its one resource is named `kafka-cluster`).
        Cluster = 4,
        /// A transactional id.
        TransactionalId = 5,
        /// A delegation token (stored, never checked: Strom has no tokens).
        DelegationToken = 6,
        /// A user (SCRAM credentials, quotas).
        User = 7,
    }
);

wire_enum!(
    /// How an ACL's resource name matches resource names.
    PatternType, "pattern type" {
        /// The name exactly (or every name, if it is `*`).
        Literal = 3,
        /// Every name that starts with it.
        Prefixed = 4,
    }
);

wire_enum!(
    /// What an ACL allows or denies.
    AclOperation, "operation" {
        /// Every operation.
        All = 2,
        /// Read (fetch, commit offsets, join a group).
        Read = 3,
        /// Write (produce).
        Write = 4,
        /// Create topics.
        Create = 5,
        /// Delete topics, records, groups.
        Delete = 6,
        /// Alter (create partitions, ACLs, SCRAM credentials on the cluster).
        Alter = 7,
        /// Describe.
        Describe = 8,
        /// Inter-broker actions.
        ClusterAction = 9,
        /// Describe configs.
        DescribeConfigs = 10,
        /// Alter configs.
        AlterConfigs = 11,
        /// Idempotent produce.
        IdempotentWrite = 12,
        /// Create delegation tokens.
        CreateTokens = 13,
        /// Describe delegation tokens.
        DescribeTokens = 14,
    }
);

wire_enum!(
    /// Whether an ACL allows or denies.
    AclPermission, "permission type" {
        /// Refuses; wins over any ALLOW.
        Deny = 2,
        /// Permits.
        Allow = 3,
    }
);

/// The wire code of ANY in every filter enum.
pub const ANY_CODE: i8 = 1;
/// The wire code of MATCH in the pattern-type filter.
pub const MATCH_CODE: i8 = 2;

impl AclOperation {
    /// Whether an ALLOW of `self` permits `requested` (Kafka: READ, WRITE, DELETE, ALTER imply
    /// DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL implies everything).
    pub fn allow_implies(self, requested: AclOperation) -> bool {
        use AclOperation as Op;
        self == Op::All
            || self == requested
            || (requested == Op::Describe
                && matches!(self, Op::Read | Op::Write | Op::Delete | Op::Alter))
            || (requested == Op::DescribeConfigs && self == Op::AlterConfigs)
    }

    /// Whether a DENY of `self` refuses `requested` (only the operation itself or ALL).
    pub fn deny_implies(self, requested: AclOperation) -> bool {
        self == AclOperation::All || self == requested
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name (or prefix, or `*`).
    pub resource_name: String,
    /// How the name matches.
    pub pattern_type: PatternType,
    /// `<type>:<name>`, e.g. `User:alice` or `User:*`.
    pub principal: String,
    /// `*` or the client's IP address.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

impl AclBinding {
    /// Checks what Kafka checks before storing an ACL (`AclApis.handleCreateAcls`,
    /// `AclControlManager.validateNewAcl`): a non-empty resource name, and `kafka-cluster` as
    /// the name of a CLUSTER resource. Principal and host are stored as given, as Kafka does
    /// (a principal without `<type>:` matches nobody).
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if self.resource_type == ResourceType::Cluster
            && self.resource_name != CLUSTER_RESOURCE_NAME
        {
            return Err(InvalidAcl::ClusterName);
        }
        if self.resource_name.is_empty() {
            return Err(InvalidAcl::EmptyResourceName);
        }
        Ok(())
    }

    /// Whether this ACL's pattern covers the resource `(resource_type, name)`.
    pub fn matches_resource(&self, resource: &Resource<'_>) -> bool {
        self.resource_type == resource.resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == resource.name || self.resource_name == WILDCARD_RESOURCE
                }
                PatternType::Prefixed => resource.name.starts_with(self.resource_name.as_str()),
            }
    }
}

/// The pattern-type part of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type; with a name, only patterns of exactly that name.
    Any,
    /// Every pattern that would match a resource of the filter's name (literal equal, literal
    /// `*`, prefixes of it); without a name, every pattern.
    Match,
    /// Exactly this pattern type.
    Exact(PatternType),
}

impl PatternFilter {
    /// Decodes a wire code (ANY, MATCH, LITERAL, PREFIXED).
    pub fn from_code(code: i8) -> Result<PatternFilter, InvalidAcl> {
        match code {
            ANY_CODE => Ok(PatternFilter::Any),
            MATCH_CODE => Ok(PatternFilter::Match),
            other => PatternType::try_from(other).map(PatternFilter::Exact),
        }
    }
}

/// A filter over ACLs (DescribeAcls, DeleteAcls): `None` means ANY (or any name, principal,
/// host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    /// The resource type, or any.
    pub resource_type: Option<ResourceType>,
    /// The resource name, or any.
    pub resource_name: Option<String>,
    /// How pattern types are matched.
    pub pattern: PatternFilter,
    /// The principal, or any.
    pub principal: Option<String>,
    /// The host, or any.
    pub host: Option<String>,
    /// The operation, or any.
    pub operation: Option<AclOperation>,
    /// The permission, or any.
    pub permission: Option<AclPermission>,
}

impl AclBindingFilter {
    /// The filter that matches every ACL.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// Whether `acl` passes the filter (Kafka's `AclBindingFilter.matches`).
    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.matches_pattern(acl) && self.matches_entry(acl)
    }

    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        if self.resource_type.is_some_and(|t| t != acl.resource_type) {
            return false;
        }
        if let PatternFilter::Exact(p) = self.pattern
            && p != acl.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        match self.pattern {
            PatternFilter::Any | PatternFilter::Exact(_) => *name == acl.resource_name,
            PatternFilter::Match => match acl.pattern_type {
                PatternType::Literal => {
                    *name == acl.resource_name || acl.resource_name == WILDCARD_RESOURCE
                }
                PatternType::Prefixed => name.starts_with(acl.resource_name.as_str()),
            },
        }
    }

    fn matches_entry(&self, acl: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// A resource an action is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    /// Its type.
    pub resource_type: ResourceType,
    /// Its name ([`CLUSTER_RESOURCE_NAME`] for the cluster).
    pub name: &'a str,
}

/// Who asks, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester<'a> {
    /// `<type>:<name>`, e.g. `User:ANONYMOUS`.
    pub principal: &'a str,
    /// The client's IP address.
    pub host: &'a str,
}

/// The authorizer's static settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Whether an authorizer is configured at all; without one the ACL APIs answer
    /// `SECURITY_DISABLED` and nothing is checked.
    pub enabled: bool,
    /// Principals allowed everything (`super.users`).
    pub super_users: Vec<String>,
    /// The answer for a resource no ACL matches (`allow.everyone.if.no.acl.found`).
    pub allow_everyone_if_no_acl_found: bool,
}

/// Decides whether `who` may do `operation` on `resource`, given every ACL (the pure
/// decision; see the module docs for the rules). `acls` is every stored ACL; callers with an
/// index pass only those of the resource's type and matching names.
pub fn authorize<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding>,
    who: Requester<'_>,
    operation: AclOperation,
    resource: Resource<'_>,
) -> bool {
    if config.super_users.iter().any(|s| s == who.principal) {
        return true;
    }
    let mut any_for_resource = false;
    let mut allowed = false;
    for acl in acls {
        if !acl.matches_resource(&resource) {
            continue;
        }
        any_for_resource = true;
        let entry_matches = (acl.principal == who.principal || acl.principal == WILDCARD_PRINCIPAL)
            && (acl.host == who.host || acl.host == WILDCARD_HOST);
        if !entry_matches {
            continue;
        }
        match acl.permission {
            AclPermission::Deny if acl.operation.deny_implies(operation) => return false,
            AclPermission::Allow if acl.operation.allow_implies(operation) => allowed = true,
            _ => {}
        }
    }
    if !any_for_resource {
        return config.allow_everyone_if_no_acl_found;
    }
    allowed
}
