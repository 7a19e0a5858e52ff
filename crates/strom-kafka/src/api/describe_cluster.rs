//! DescribeCluster (key 60): the cluster id, the controller and the brokers (this one, or every
//! live broker in cluster mode).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::frame::Request;

/// `endpoint_type` of DescribeCluster v1+: brokers (1) or controllers (2).
const ENDPOINT_BROKERS: i8 = 1;

/// Handles DescribeCluster.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let body: DescribeClusterRequest = decode(request)?;
    let broker = &context.broker;
    let node = BrokerId(broker.node_id());
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id().to_owned()))
        .with_controller_id(node)
        .with_brokers(
            super::metadata::live_brokers(context, request)
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(StrBytes::from_string(b.host))
                        .with_port(i32::from(b.port))
                })
                .collect(),
        );
    if body.include_cluster_authorized_operations {
        response.cluster_authorized_operations =
            super::metadata::cluster_authorized_operations(context, request);
    }
    if version >= 1 && body.endpoint_type != ENDPOINT_BROKERS {
        // A combined single node is its own controller; report the same endpoint.
        response.endpoint_type = body.endpoint_type;
        if body.endpoint_type != 2 {
            response.error_code = ResponseError::UnsupportedEndpointType.code();
            response.brokers.clear();
        }
    }
    respond(request, &response)
}
