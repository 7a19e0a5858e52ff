//! `strom txn list | describe | producers` against a real `strom serve`, with a transaction
//! opened over the wire: the open transaction, its partitions and the producer's first offset
//! show while it is open, and its completion afterwards.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use strom_kafka::client::Client;
use strom_record::{BatchBuilder, Record};

mod common;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn txn_commands_show_open_and_completed_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path());
    server.ok(&["topic", "create", "tx-cli", "--partitions", "2"], "");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = runtime.block_on(Client::connect(&server.addr)).unwrap();
    let id = TransactionalId(StrBytes::from_static_str("cli-tx"));
    let init: InitProducerIdResponse = runtime
        .block_on(
            client.call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(id.clone()))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )
        .unwrap();
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id, init.producer_epoch);
    let add: AddPartitionsToTxnResponse = runtime
        .block_on(
            client.call(
                ApiKey::AddPartitionsToTxn,
                3,
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(id.clone())
                    .with_v3_and_below_producer_id(pid)
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(vec![
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("tx-cli")))
                            .with_partitions(vec![0, 1]),
                    ]),
            ),
        )
        .unwrap();
    assert!(
        add.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter()
            .all(|p| p.partition_error_code == 0)
    );
    // One plain record first, so the transaction starts at offset 1.
    let plain = BatchBuilder::new()
        .build(&[Record::new(1, None, Some(Bytes::from("plain")))])
        .unwrap();
    runtime
        .block_on(client.produce("tx-cli", 1, -1, Bytes::from(plain)))
        .unwrap();
    let batch = BatchBuilder {
        producer_id: pid.0,
        producer_epoch: epoch,
        base_sequence: 0,
        transactional: true,
        ..BatchBuilder::new()
    }
    .build(&[Record::new(1, None, Some(Bytes::from("in-txn")))])
    .unwrap();
    runtime
        .block_on(client.produce("tx-cli", 1, -1, Bytes::from(batch)))
        .unwrap();

    let list = json(&server.ok(&["txn", "list", "--format", "json"], ""));
    assert_eq!(list[0]["transactional_id"], "cli-tx");
    assert_eq!(list[0]["producer_id"], pid.0);
    assert_eq!(list[0]["state"], "Ongoing");
    let described = json(&server.ok(&["txn", "describe", "cli-tx", "--format", "json"], ""));
    assert_eq!(described["state"], "Ongoing");
    assert_eq!(
        described["partitions"],
        serde_json::json!(["tx-cli-0", "tx-cli-1"])
    );
    let producers = json(&server.ok(
        &["txn", "producers", "--topic", "tx-cli", "--format", "json"],
        "",
    ));
    let p = producers.as_array().unwrap();
    assert_eq!(p.len(), 1, "one producer, in partition 1: {producers}");
    assert_eq!(p[0]["partition"], 1);
    assert_eq!(p[0]["producer_id"], pid.0);
    assert_eq!(p[0]["current_txn_start_offset"], 1);
    let table = server.ok(&["txn", "producers", "--topic", "tx-cli", "-p", "1"], "");
    assert!(table.starts_with("PARTITION"), "{table}");

    let end: EndTxnResponse = runtime
        .block_on(
            client.call(
                ApiKey::EndTxn,
                3,
                &EndTxnRequest::default()
                    .with_transactional_id(id)
                    .with_producer_id(pid)
                    .with_producer_epoch(epoch)
                    .with_committed(true),
            ),
        )
        .unwrap();
    assert_eq!(end.error_code, 0);
    let described = json(&server.ok(&["txn", "describe", "cli-tx", "--format", "json"], ""));
    assert_eq!(described["state"], "CompleteCommit");
    let producers = json(&server.ok(
        &["txn", "producers", "--topic", "tx-cli", "--format", "json"],
        "",
    ));
    assert_eq!(producers[0]["current_txn_start_offset"], -1);
    let missing = server.cli(&["txn", "describe", "no-such-id"], "");
    assert!(!missing.status.success());
    server.stop();
}
