//! Conversions shared by CreateAcls, DescribeAcls and DeleteAcls: wire codes to the broker's
//! ACL model and back.

use kafka_protocol::protocol::StrBytes;
use strom_broker::acl::model::ANY_CODE;
use strom_broker::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermission, InvalidAcl, PatternFilter,
    ResourceType,
};

/// The wire fields of a filter (DescribeAcls' request body, one DeleteAcls filter).
pub(crate) struct FilterFields<'a> {
    pub(crate) resource_type: i8,
    pub(crate) resource_name: Option<&'a StrBytes>,
    pub(crate) pattern_type: i8,
    pub(crate) principal: Option<&'a StrBytes>,
    pub(crate) host: Option<&'a StrBytes>,
    pub(crate) operation: i8,
    pub(crate) permission: i8,
}

/// `None` for ANY, else the concrete value (UNKNOWN and out-of-range codes are refused).
fn any_or<T: TryFrom<i8, Error = InvalidAcl>>(code: i8) -> Result<Option<T>, InvalidAcl> {
    if code == ANY_CODE {
        Ok(None)
    } else {
        T::try_from(code).map(Some)
    }
}

/// Decodes a filter, refusing UNKNOWN codes as Kafka does (`INVALID_REQUEST`).
pub(crate) fn filter(fields: FilterFields<'_>) -> Result<AclBindingFilter, InvalidAcl> {
    Ok(AclBindingFilter {
        resource_type: any_or::<ResourceType>(fields.resource_type)?,
        resource_name: fields.resource_name.map(|s| s.to_string()),
        pattern: PatternFilter::from_code(fields.pattern_type)?,
        principal: fields.principal.map(|s| s.to_string()),
        host: fields.host.map(|s| s.to_string()),
        operation: any_or::<AclOperation>(fields.operation)?,
        permission: any_or::<AclPermission>(fields.permission)?,
    })
}

/// The wire fields of one ACL to create.
pub(crate) struct BindingFields<'a> {
    pub(crate) resource_type: i8,
    pub(crate) resource_name: &'a StrBytes,
    pub(crate) pattern_type: i8,
    pub(crate) principal: &'a StrBytes,
    pub(crate) host: &'a StrBytes,
    pub(crate) operation: i8,
    pub(crate) permission: i8,
}

/// Decodes and validates one ACL to create: ANY or MATCH anywhere is refused.
pub(crate) fn binding(fields: BindingFields<'_>) -> Result<AclBinding, InvalidAcl> {
    let concrete = |field: &'static str, code: i8| {
        if code == ANY_CODE || (field == "pattern type" && code == 2) {
            Err(InvalidAcl::NotConcrete { field })
        } else {
            Ok(())
        }
    };
    concrete("resource type", fields.resource_type)?;
    concrete("pattern type", fields.pattern_type)?;
    concrete("operation", fields.operation)?;
    concrete("permission type", fields.permission)?;
    let acl = AclBinding {
        resource_type: ResourceType::try_from(fields.resource_type)?,
        resource_name: fields.resource_name.to_string(),
        pattern_type: fields.pattern_type.try_into()?,
        principal: fields.principal.to_string(),
        host: fields.host.to_string(),
        operation: fields.operation.try_into()?,
        permission: fields.permission.try_into()?,
    };
    acl.validate()?;
    Ok(acl)
}

/// A string field of a response.
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}
