//! FindCoordinator (key 10): this single broker coordinates every group (`key_type` 0) and
//! every transactional id (`key_type` 1).
//!
//! In cluster mode a group (`key_type` 0) is coordinated by the broker holding the lease of
//! its coordinator shard (`strom_broker::storage::coordinator_shard`), or, while nobody holds
//! it, by the live broker that will take it; every member of a group therefore talks to the
//! same coordinator whichever broker it asked, and a broker that lost the lease answers group
//! requests with NOT_COORDINATOR so clients ask again. A transactional id (`key_type` 1) is
//! coordinated the same way under the transaction-coordinator shard leases
//! (`strom_broker::txn::authority`).
//!
//! v0–v3 ask for one key; v4+ batch keys in `coordinator_keys`. Other key types (share groups)
//! answer INVALID_REQUEST.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use strom_broker::storage::{PartitionIndex, partition_leader};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// Handles FindCoordinator.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: FindCoordinatorRequest = decode(request)?;
    let error = match body.key_type {
        0 | 1 => None,
        _ => Some(ResponseError::InvalidRequest),
    };
    let code = error.map_or(0, |e| e.code());
    let live = super::metadata::live_brokers(context, request);
    let coordinator = |key: &str| {
        let namespace = if body.key_type == 1 {
            "__transaction_state"
        } else {
            "__consumer_offsets"
        };
        // Cluster mode: the holder of the group's or transactional id's coordinator-shard
        // lease (or the live broker that will take it).
        let leased = if body.key_type == 1 {
            context.broker.txns().coordinator_node(key)
        } else {
            context.broker.groups().coordinator_node(key)
        }
        .and_then(|node| live.iter().find(|b| b.node_id == node));
        // `live` always holds at least this broker.
        leased
            .or_else(|| partition_leader(&live, &format!("{namespace}/{key}"), PartitionIndex(0)))
            .map(|b| {
                (
                    BrokerId(b.node_id),
                    StrBytes::from_string(b.host.clone()),
                    i32::from(b.port),
                )
            })
            .unwrap_or_else(|| {
                let (host, port) = super::metadata::advertised(context, request);
                (
                    BrokerId(context.broker.node_id()),
                    StrBytes::from_string(host),
                    port,
                )
            })
    };
    // With an authorizer: DESCRIBE on the group (key type 0) or transactional id (1).
    let resource = if body.key_type == 1 {
        ResourceType::TransactionalId
    } else {
        ResourceType::Group
    };
    let denied = |key: &str| {
        (code == 0)
            .then(|| authz::check(context, request, AclOperation::Describe, resource, key).err())
            .flatten()
            .map(|e| error_code(&e))
    };
    let mut response = FindCoordinatorResponse::default();
    if request.version() >= 4 {
        response.coordinators = body
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let (node, host, port) = coordinator(&key);
                let key_code = denied(key.as_str()).unwrap_or(code);
                let mut c = Coordinator::default()
                    .with_key(key)
                    .with_error_code(key_code);
                if key_code == 0 {
                    c = c.with_node_id(node).with_host(host).with_port(port);
                } else {
                    c = c.with_node_id(BrokerId(-1));
                }
                c
            })
            .collect();
    } else {
        let code = denied(body.key.as_str()).unwrap_or(code);
        response.error_code = code;
        if code == 0 {
            let (node, host, port) = coordinator(&body.key);
            response.node_id = node;
            response.host = host;
            response.port = port;
        } else {
            response.node_id = BrokerId(-1);
        }
    }
    respond(request, &response)
}
