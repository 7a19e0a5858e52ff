//! Transactions from the client side, for operators (`strom txn`, like
//! `kafka-transactions.sh`): ListTransactions, DescribeTransactions and DescribeProducers.

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError, kafka_error, topic_name};

/// One transactional id as ListTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its state (`Ongoing`, `CompleteCommit`…).
    pub state: String,
}

/// One transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedTransaction {
    /// The transactional id.
    pub transactional_id: String,
    /// State.
    pub state: String,
    /// Producer id and epoch.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction started, -1 if none.
    pub start_time_ms: i64,
    /// Partitions of the transaction.
    pub partitions: Vec<(String, i32)>,
}

/// One producer a partition remembers (DescribeProducers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProducer {
    /// Partition.
    pub partition: i32,
    /// Producer id.
    pub producer_id: i64,
    /// Epoch.
    pub producer_epoch: i32,
    /// Last sequence written, -1 if none.
    pub last_sequence: i32,
    /// Timestamp of its last batch.
    pub last_timestamp: i64,
    /// First offset of its open transaction in this partition, -1 if none.
    pub current_txn_start_offset: i64,
}

impl Client {
    /// ListTransactions: every transactional id, sorted.
    pub async fn list_transactions(&mut self) -> Result<Vec<ListedTransaction>, ClientError> {
        let v = self.version(ApiKey::ListTransactions)?;
        let response: ListTransactionsResponse = self
            .call(
                ApiKey::ListTransactions,
                v,
                &ListTransactionsRequest::default(),
            )
            .await?;
        kafka_error("list transactions", response.error_code, None)?;
        let mut out: Vec<ListedTransaction> = response
            .transaction_states
            .into_iter()
            .map(|t| ListedTransaction {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: t.producer_id.0,
                state: t.transaction_state.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// DescribeTransactions for one id (TRANSACTIONAL_ID_NOT_FOUND if unknown).
    pub async fn describe_transaction(
        &mut self,
        transactional_id: &str,
    ) -> Result<DescribedTransaction, ClientError> {
        let v = self.version(ApiKey::DescribeTransactions)?;
        let request =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_string(transactional_id.to_owned()),
            )]);
        let response: DescribeTransactionsResponse =
            self.call(ApiKey::DescribeTransactions, v, &request).await?;
        let t = response
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty DescribeTransactions answer".into()))?;
        kafka_error(
            format!("describe transaction {transactional_id}"),
            t.error_code,
            None,
        )?;
        Ok(DescribedTransaction {
            transactional_id: t.transactional_id.0.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.topic.0.to_string();
                    topic.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect(),
        })
    }

    /// DescribeProducers for `partitions` of `topic`.
    pub async fn describe_producers(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<PartitionProducer>, ClientError> {
        let v = self.version(ApiKey::DescribeProducers)?;
        let request = DescribeProducersRequest::default().with_topics(vec![
            TopicRequest::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec()),
        ]);
        let response: DescribeProducersResponse =
            self.call(ApiKey::DescribeProducers, v, &request).await?;
        let mut out = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                kafka_error(
                    format!("describe producers of {topic}-{}", p.partition_index),
                    p.error_code,
                    p.error_message.as_ref(),
                )?;
                for s in p.active_producers {
                    out.push(PartitionProducer {
                        partition: p.partition_index,
                        producer_id: s.producer_id.0,
                        producer_epoch: s.producer_epoch,
                        last_sequence: s.last_sequence,
                        last_timestamp: s.last_timestamp,
                        current_txn_start_offset: s.current_txn_start_offset,
                    });
                }
            }
        }
        Ok(out)
    }
}
