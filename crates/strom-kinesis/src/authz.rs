//! ACLs on Kinesis operations: the same Kafka ACLs that govern a topic govern the stream that
//! is that topic, for the principal the request's access key maps to (or `User:ANONYMOUS`
//! without authentication) and the client's address.
//!
//! | operations | Kafka ACL operation | resource |
//! |---|---|---|
//! | PutRecord, PutRecords | WRITE | the stream's topic |
//! | GetRecords, GetShardIterator, SubscribeToShard, Register/DeregisterStreamConsumer | READ | topic |
//! | Describe*, ListShards, ListTags*, ListStreamConsumers, GetResourcePolicy | DESCRIBE | topic |
//! | ListStreams | DESCRIBE, per stream: the answer lists only the streams allowed (as Kafka filters Metadata) | topic |
//! | CreateStream | CREATE | topic (or the cluster, as Kafka's CreateTopics) |
//! | DeleteStream | DELETE | topic |
//! | every other stream change (shards, retention, tags, encryption, mode, policies…) | ALTER | topic |
//! | DescribeLimits, DescribeAccountSettings / UpdateAccountSettings | DESCRIBE / ALTER | cluster |
//!
//! The stream is named by `StreamName`, or the stream part of `StreamARN`, `ConsumerARN` or
//! `ResourceARN`, or (GetRecords) the topic id inside the shard iterator. A request naming no
//! stream is not checked here (its handler refuses it). `ListStreams` is never refused: it
//! lists the streams the caller may DESCRIBE ([`may_describe`]). Refusal: `AccessDeniedException`.

use serde_json::Value;
use strom_broker::acl::{AclOperation, Requester, Resource, ResourceType};

use crate::error::{ErrorKind, KinesisError};
use crate::service::Context;

/// Who sends a request: the principal its access key maps to (or `User:ANONYMOUS`) and the
/// client's address, as the ACLs see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// `User:name`.
    pub(crate) principal: String,
    /// The client's IP address.
    pub(crate) host: String,
}

/// Whether `caller` may DESCRIBE the stream `name` (always, without an authorizer): what
/// `ListStreams` shows, as Kafka's Metadata shows only the topics a principal may describe.
pub(crate) fn may_describe(ctx: &Context, caller: &Caller, name: &str) -> bool {
    if !ctx.broker.acls().enabled() {
        return true;
    }
    let who = Requester {
        principal: &caller.principal,
        host: &caller.host,
    };
    let topic = Resource {
        resource_type: ResourceType::Topic,
        name,
    };
    ctx.broker.authorize(who, AclOperation::Describe, topic)
}

/// What an action needs: the ACL operation, and whether it is on the cluster (else the topic).
fn required(action: &str) -> Option<(AclOperation, bool)> {
    use AclOperation as O;
    Some(match action {
        "PutRecord" | "PutRecords" => (O::Write, false),
        "GetRecords"
        | "GetShardIterator"
        | "SubscribeToShard"
        | "RegisterStreamConsumer"
        | "DeregisterStreamConsumer" => (O::Read, false),
        "DescribeStream"
        | "DescribeStreamSummary"
        | "DescribeStreamConsumer"
        | "ListShards"
        | "ListTagsForStream"
        | "ListTagsForResource"
        | "ListStreamConsumers"
        | "GetResourcePolicy" => (O::Describe, false),
        "CreateStream" => (O::Create, false),
        "DeleteStream" => (O::Delete, false),
        "DescribeLimits" | "DescribeAccountSettings" => (O::Describe, true),
        "UpdateAccountSettings" => (O::Alter, true),
        "ListStreams" => return None,
        _ => (O::Alter, false),
    })
}

/// The stream name in an ARN `arn:aws:kinesis:region:account:stream/NAME[/consumer/…]`.
fn stream_of_arn(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":stream/")?.1;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// The stream a request is about, if it names one.
fn stream_name(ctx: &Context, input: &Value) -> Option<String> {
    let field = |k: &str| input.get(k).and_then(Value::as_str);
    if let Some(name) = field("StreamName") {
        return Some(name.to_owned());
    }
    for k in ["StreamARN", "ConsumerARN", "ResourceARN"] {
        if let Some(name) = field(k).and_then(stream_of_arn) {
            return Some(name.to_owned());
        }
    }
    let it = ctx.iterator_key.decode(field("ShardIterator")?).ok()?;
    let topic = ctx.broker.topic_by_id(it.topic_id).ok()?;
    Some(topic.name().to_owned())
}

/// Checks the ACLs for `action` with its decoded `input` by `principal` from `host`;
/// `AccessDeniedException` when refused. Free when no authorizer is configured.
pub(crate) fn check(
    ctx: &Context,
    caller: &Caller,
    action: &str,
    input: &Value,
) -> Result<(), KinesisError> {
    if !ctx.broker.acls().enabled() {
        return Ok(());
    }
    let Some((operation, on_cluster)) = required(action) else {
        return Ok(());
    };
    let principal = caller.principal.as_str();
    let who = Requester {
        principal,
        host: &caller.host,
    };
    let cluster = Resource {
        resource_type: ResourceType::Cluster,
        name: strom_broker::acl::CLUSTER_RESOURCE_NAME,
    };
    let allowed = if on_cluster {
        ctx.broker.authorize(who, operation, cluster)
    } else {
        let Some(name) = stream_name(ctx, input) else {
            return Ok(());
        };
        let topic = Resource {
            resource_type: ResourceType::Topic,
            name: &name,
        };
        ctx.broker.authorize(who, operation, topic)
            || (operation == AclOperation::Create && ctx.broker.authorize(who, operation, cluster))
    };
    if allowed {
        Ok(())
    } else {
        Err(KinesisError::new(
            ErrorKind::AccessDenied,
            format!("{principal} is not authorized to perform: kinesis:{action}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_their_stream() {
        let acct = crate::stream::ACCOUNT;
        assert_eq!(
            stream_of_arn(&format!("arn:aws:kinesis:us-east-1:{acct}:stream/s1")),
            Some("s1")
        );
        assert_eq!(
            stream_of_arn(&format!(
                "arn:aws:kinesis:us-east-1:{acct}:stream/s2/consumer/c:1700000000"
            )),
            Some("s2")
        );
        assert_eq!(stream_of_arn("arn:aws:kinesis:us-east-1:1:other/x"), None);
    }

    #[test]
    fn operations_map_to_kafka_acl_operations() {
        assert_eq!(required("PutRecords"), Some((AclOperation::Write, false)));
        assert_eq!(required("GetRecords"), Some((AclOperation::Read, false)));
        assert_eq!(
            required("ListShards"),
            Some((AclOperation::Describe, false))
        );
        assert_eq!(
            required("CreateStream"),
            Some((AclOperation::Create, false))
        );
        assert_eq!(
            required("DeleteStream"),
            Some((AclOperation::Delete, false))
        );
        assert_eq!(
            required("UpdateShardCount"),
            Some((AclOperation::Alter, false))
        );
        assert_eq!(
            required("DescribeLimits"),
            Some((AclOperation::Describe, true))
        );
        assert_eq!(required("ListStreams"), None);
    }
}
