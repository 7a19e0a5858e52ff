//! AlterClientQuotas (key 49, KIP-546): sets and removes client quotas, one result per entity
//! (see `strom_broker::quota` for the rules; every refusal is INVALID_REQUEST, as in Kafka).
//! Needs ALTER_CONFIGS on the cluster (else every entity gets CLUSTER_AUTHORIZATION_FAILED).
//! With `validate_only` the changes are checked and nothing is stored.

use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use strom_broker::acl::AclOperation;
use strom_broker::quota::{QuotaAlteration, QuotaOp};

use super::acl_wire::str_bytes;
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};

/// Handles AlterClientQuotas.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: AlterClientQuotasRequest = decode(request)?;
    let alterations: Vec<QuotaAlteration> = body
        .entries
        .iter()
        .map(|e| QuotaAlteration {
            entity: e
                .entity
                .iter()
                .map(|c| {
                    (
                        c.entity_type.to_string(),
                        c.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect(),
            ops: e
                .ops
                .iter()
                .map(|o| QuotaOp {
                    key: o.key.to_string(),
                    value: o.value,
                    remove: o.remove,
                })
                .collect(),
        })
        .collect();
    let results = match authz::check_cluster(context, request, AclOperation::AlterConfigs) {
        Err(e) => alterations.iter().map(|_| Err(e.clone())).collect(),
        Ok(()) => {
            let validate_only = body.validate_only;
            let alterations = alterations.clone();
            context
                .broker
                .run_blocking(move |b| {
                    Ok(b.alter_client_quotas_blocking(&alterations, validate_only))
                })
                .await
                .map_err(|e| HandlerError::Internal(e.to_string()))?
        }
    };
    let entries = body
        .entries
        .into_iter()
        .zip(results)
        .map(|(entry, result)| {
            let entity = entry
                .entity
                .into_iter()
                .map(|c| {
                    EntityData::default()
                        .with_entity_type(c.entity_type)
                        .with_entity_name(c.entity_name)
                })
                .collect();
            let out = EntryData::default().with_entity(entity);
            match result {
                Ok(()) => out,
                Err(e) => out
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str_bytes(&e.to_string()))),
            }
        })
        .collect();
    respond(
        request,
        &AlterClientQuotasResponse::default().with_entries(entries),
    )
}
