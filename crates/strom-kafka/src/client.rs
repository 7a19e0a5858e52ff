//! A minimal Kafka protocol client: one connection, requests in order.
//!
//! It backs the `strom` CLI (`topic`, `produce`, `consume`, `bench`) and raw-protocol tests; it
//! is not a general client (no metadata-driven routing, no retries, one broker). It negotiates
//! versions with ApiVersions and uses the highest version both sides know, capped at the
//! versions this module was written for.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    FetchRequest, FetchResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

pub mod acl;
pub mod group;
pub mod quota;
pub mod sasl;
pub mod txn;

/// What went wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A message did not encode or decode, or the broker broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The broker does not implement an API this client needs.
    #[error("the broker does not support {0:?}")]
    Unsupported(ApiKey),
    /// The broker answered with an error code.
    #[error("{context}: {error:?}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// What was being done.
        context: String,
        /// The error.
        error: ResponseError,
        /// The broker's message, if any.
        message: Option<String>,
    },
}

fn kafka_error(
    context: impl fmt::Display,
    code: i16,
    message: Option<&StrBytes>,
) -> Result<(), ClientError> {
    if code == 0 {
        return Ok(());
    }
    let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
    Err(ClientError::Kafka {
        context: context.to_string(),
        error,
        message: message.map(|m| m.to_string()),
    })
}

/// The highest versions this client knows how to build.
const CLIENT_MAX: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 9),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 7),
    (ApiKey::Metadata, 12),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 5),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::FindCoordinator, 3),
    (ApiKey::JoinGroup, 5),
    (ApiKey::SyncGroup, 3),
    (ApiKey::Heartbeat, 3),
    (ApiKey::LeaveGroup, 3),
    (ApiKey::OffsetCommit, 7),
    (ApiKey::OffsetFetch, 7),
    (ApiKey::DescribeGroups, 4),
    (ApiKey::ListGroups, 4),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::ListTransactions, 1),
    (ApiKey::DescribeTransactions, 0),
    (ApiKey::DescribeProducers, 0),
    (ApiKey::CreateAcls, 3),
    (ApiKey::DescribeAcls, 3),
    (ApiKey::DeleteAcls, 3),
    (ApiKey::DescribeUserScramCredentials, 0),
    (ApiKey::AlterUserScramCredentials, 0),
    (ApiKey::DescribeClientQuotas, 1),
    (ApiKey::AlterClientQuotas, 1),
];

/// One topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Id (nil before Metadata v10).
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
}

/// A fetched partition: whole record batches and the high watermark.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Record batches (possibly empty).
    pub records: Bytes,
    /// The partition's high watermark.
    pub high_watermark: i64,
}

/// How to reach a listener: TLS (SSL, SASL_SSL) and SASL credentials (SASL_PLAINTEXT,
/// SASL_SSL), as a Kafka client's `security.protocol` and its settings say.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The TLS client configuration, for SSL and SASL_SSL listeners.
    pub tls: Option<Arc<strom_tls::ClientConfig>>,
    /// The SASL credentials, for SASL_PLAINTEXT and SASL_SSL listeners.
    pub sasl: Option<sasl::SaslCredentials>,
}

/// A connection's byte stream: plain TCP or TLS.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A connection to one broker.
pub struct Client {
    stream: Box<dyn Transport>,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
    /// How this connection was made (and the credentials it authenticated with), for
    /// further connections (a group's coordinator).
    options: ConnectOptions,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.options.tls.is_some())
            .field("sasl", &self.options.sasl)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects over plain TCP and negotiates API versions.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Client::connect_with_options(addr, &ConnectOptions::default()).await
    }

    /// Connects (over TLS when `options.tls` is set, the server's certificate checked
    /// against `addr`'s host), negotiates API versions, and authenticates when
    /// `options.sasl` is set.
    pub async fn connect_with_options(
        addr: &str,
        options: &ConnectOptions,
    ) -> Result<Client, ClientError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Transport> = match &options.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                Box::new(strom_tls::connect(tcp, host, Arc::clone(config)).await?)
            }
        };
        let mut client = Client {
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
            options: ConnectOptions {
                tls: options.tls.clone(),
                sasl: None,
            },
        };
        client.negotiate().await?;
        if let Some(credentials) = &options.sasl {
            client.authenticate(credentials).await?;
        }
        Ok(client)
    }

    /// How this connection was made: its TLS configuration and the credentials it
    /// authenticated with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    async fn negotiate(&mut self) -> Result<(), ClientError> {
        let client = self;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strom-cli"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse = client.call(ApiKey::ApiVersions, 3, &request).await?;
        kafka_error("ApiVersions", response.error_code, None)?;
        client.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    fn version(&self, api_key: ApiKey) -> Result<i16, ClientError> {
        let ours = CLIENT_MAX
            .iter()
            .find(|(k, _)| *k == api_key)
            .map(|(_, v)| *v)
            .ok_or(ClientError::Unsupported(api_key))?;
        match self.versions.get(&(api_key as i16)) {
            Some(&(min, max)) if min <= ours => Ok(ours.min(max)),
            _ => Err(ClientError::Unsupported(api_key)),
        }
    }

    /// Sends one request and reads its response.
    pub async fn call<Req, Resp>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: Encodable,
        Resp: Decodable + HeaderVersion,
    {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strom-cli")));
        let mut payload = BytesMut::new();
        header
            .encode(&mut payload, api_key.request_header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        request
            .encode(&mut payload, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let len = i32::try_from(payload.len())
            .map_err(|_| ClientError::Protocol("request too large".into()))?;
        let mut frame = BytesMut::with_capacity(payload.len() + 4);
        frame.put_i32(len);
        frame.extend_from_slice(&payload);
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await?;
        let size = usize::try_from(i32::from_be_bytes(size))
            .map_err(|_| ClientError::Protocol("negative response size".into()))?;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let response_header = ResponseHeader::decode(&mut body, Resp::header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if response_header.correlation_id != self.correlation_id {
            return Err(ClientError::Protocol(format!(
                "correlation id {} does not match request {}",
                response_header.correlation_id, self.correlation_id
            )));
        }
        Resp::decode(&mut body, version).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// All topics (or the named ones, auto-creating them if the broker does).
    pub async fn topics(&mut self, names: Option<&[&str]>) -> Result<Vec<TopicInfo>, ClientError> {
        let v = self.version(ApiKey::Metadata)?;
        let request = MetadataRequest::default().with_topics(names.map(|names| {
            names
                .iter()
                .map(|n| {
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(n)))
                })
                .collect()
        }));
        let response: MetadataResponse = self.call(ApiKey::Metadata, v, &request).await?;
        let mut out = Vec::with_capacity(response.topics.len());
        for t in response.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            kafka_error(format!("topic {name}"), t.error_code, None)?;
            out.push(TopicInfo {
                name,
                id: t.topic_id,
                partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
            });
        }
        Ok(out)
    }

    /// Every broker Metadata lists, as `host:port`, sorted by node id (one on a single
    /// broker; every live broker of a cluster).
    pub async fn brokers(&mut self) -> Result<Vec<String>, ClientError> {
        let v = self.version(ApiKey::Metadata)?;
        let request = MetadataRequest::default().with_topics(Some(Vec::new()));
        let response: MetadataResponse = self.call(ApiKey::Metadata, v, &request).await?;
        let mut brokers: Vec<(i32, String)> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        brokers.sort();
        Ok(brokers.into_iter().map(|(_, addr)| addr).collect())
    }

    /// Creates a topic.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        let v = self.version(ApiKey::CreateTopics)?;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name(name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(-1)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    ),
            ]);
        let response: CreateTopicsResponse = self.call(ApiKey::CreateTopics, v, &request).await?;
        for t in &response.topics {
            kafka_error(
                format!("create topic {name}"),
                t.error_code,
                t.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let v = self.version(ApiKey::DeleteTopics)?;
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(vec![topic_name(name)]);
        let response: DeleteTopicsResponse = self.call(ApiKey::DeleteTopics, v, &request).await?;
        for t in &response.responses {
            kafka_error(
                format!("delete topic {name}"),
                t.error_code,
                t.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Changes topic configs with IncrementalAlterConfigs: sets every `set` entry and resets
    /// every `reset` key to its default.
    pub async fn alter_topic_configs(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        reset: &[String],
    ) -> Result<(), ClientError> {
        let v = self.version(ApiKey::IncrementalAlterConfigs)?;
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, val)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(val.clone())))
            })
            .collect();
        configs.extend(reset.iter().map(|k| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(1)
                .with_value(None)
        }));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configs(configs),
        ]);
        let response: IncrementalAlterConfigsResponse = self
            .call(ApiKey::IncrementalAlterConfigs, v, &request)
            .await?;
        for r in &response.responses {
            kafka_error(
                format!("alter configs of {name}"),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// The effective configs of a topic: `(name, value, source code)`.
    pub async fn topic_configs(
        &mut self,
        name: &str,
    ) -> Result<Vec<(String, String, i8)>, ClientError> {
        let v = self.version(ApiKey::DescribeConfigs)?;
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configuration_keys(None),
        ]);
        let response: DescribeConfigsResponse =
            self.call(ApiKey::DescribeConfigs, v, &request).await?;
        let mut out = Vec::new();
        for r in response.results {
            kafka_error(
                format!("describe configs of {name}"),
                r.error_code,
                r.error_message.as_ref(),
            )?;
            for c in r.configs {
                out.push((
                    c.name.to_string(),
                    c.value.map(|v| v.to_string()).unwrap_or_default(),
                    c.config_source,
                ));
            }
        }
        Ok(out)
    }

    /// Appends record batches to a partition; returns the base offset (-1 for `acks=0`).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        batches: Bytes,
    ) -> Result<i64, ClientError> {
        let v = self.version(ApiKey::Produce)?;
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batches)),
                    ]),
            ]);
        if acks == 0 {
            // No response comes back; just send the frame.
            return self
                .send_only(ApiKey::Produce, v, &request)
                .await
                .map(|()| -1);
        }
        let response: ProduceResponse = self.call(ApiKey::Produce, v, &request).await?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| ClientError::Protocol("empty produce response".into()))?;
        kafka_error(
            format!("produce to {topic}-{partition}"),
            p.error_code,
            p.error_message.as_ref(),
        )?;
        Ok(p.base_offset)
    }

    async fn send_only<Req: Encodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<(), ClientError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id);
        let mut payload = BytesMut::new();
        header
            .encode(&mut payload, api_key.request_header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        request
            .encode(&mut payload, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let len = i32::try_from(payload.len())
            .map_err(|_| ClientError::Protocol("request too large".into()))?;
        let mut frame = BytesMut::with_capacity(payload.len() + 4);
        frame.put_i32(len);
        frame.extend_from_slice(&payload);
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Fetches from one partition, waiting up to `max_wait_ms` for at least one byte.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<Fetched, ClientError> {
        let v = self.version(ApiKey::Fetch)?;
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let response: FetchResponse = self.call(ApiKey::Fetch, v, &request).await?;
        kafka_error("fetch", response.error_code, None)?;
        let p = response
            .responses
            .into_iter()
            .next()
            .and_then(|t| t.partitions.into_iter().next())
            .ok_or_else(|| ClientError::Protocol("empty fetch response".into()))?;
        kafka_error(
            format!("fetch {topic}-{partition}@{offset}"),
            p.error_code,
            None,
        )?;
        Ok(Fetched {
            records: p.records.unwrap_or_default(),
            high_watermark: p.high_watermark,
        })
    }

    /// ListOffsets for one partition: -2 earliest, -1 latest, or a timestamp.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let v = self.version(ApiKey::ListOffsets)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let response: ListOffsetsResponse = self.call(ApiKey::ListOffsets, v, &request).await?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty list offsets response".into()))?;
        kafka_error(
            format!("list offsets of {topic}-{partition}"),
            p.error_code,
            None,
        )?;
        Ok(p.offset)
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}
