//! DescribeClientQuotas (key 48, KIP-546): the quotas of the entities a filter matches. Needs
//! DESCRIBE_CONFIGS on the cluster, as in Kafka. Filter components match a type's exact name
//! (0), its default (1) or any entity having the type (2); `strict` excludes entities with
//! other types. A bad filter answers INVALID_REQUEST (an unknown entity type
//! UNSUPPORTED_VERSION), with no entries.

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use strom_broker::acl::AclOperation;
use strom_broker::quota::{QuotaFilter, QuotaMatch};

use super::acl_wire::str_bytes;
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};

/// Handles DescribeClientQuotas.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DescribeClientQuotasRequest = decode(request)?;
    let refuse = |e: &strom_broker::Error| {
        respond(
            request,
            &DescribeClientQuotasResponse::default()
                .with_error_code(error_code(e))
                .with_error_message(Some(str_bytes(&e.to_string())))
                .with_entries(None),
        )
    };
    if let Err(e) = authz::check_cluster(context, request, AclOperation::DescribeConfigs) {
        return refuse(&e);
    }
    let mut components = Vec::with_capacity(body.components.len());
    for c in &body.components {
        match QuotaMatch::from_wire(c.match_type, c._match.as_deref()) {
            Ok(m) => components.push((c.entity_type.to_string(), m)),
            Err(reason) => return refuse(&strom_broker::Error::Quota { reason }),
        }
    }
    let filter = QuotaFilter {
        components,
        strict: body.strict,
    };
    let found = match context.broker.describe_client_quotas(&filter) {
        Ok(found) => found,
        Err(e) => return refuse(&e),
    };
    let entries = found
        .into_iter()
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .components()
                        .into_iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(t))
                                .with_entity_name(n.map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(k, v)| {
                            ValueData::default()
                                .with_key(str_bytes(k.name()))
                                .with_value(v)
                        })
                        .collect(),
                )
        })
        .collect();
    respond(
        request,
        &DescribeClientQuotasResponse::default().with_entries(Some(entries)),
    )
}
