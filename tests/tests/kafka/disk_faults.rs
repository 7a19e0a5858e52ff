//! A batch damaged on disk, seen by librdkafka: the consumer gets a `CORRUPT_MESSAGE` error
//! (code 2, librdkafka's `INVALID_MSG`) at exactly the damaged offset (librdkafka hands partition
//! errors other than the retriable ones to the application and retries the same offset), and
//! everything before it and, after a seek past it, everything after it is delivered.

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use strom_broker::{BrokerConfig, CreateTopic};
use strom_record::BatchHeader;
use strom_tests::TestBroker;

use super::client::{self, WAIT};

const TOPIC: &str = "damaged";
const TOTAL: i64 = 60;
const DAMAGED: i64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_gets_corrupt_message_at_the_damaged_offset_only() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    broker
        .broker()
        .run_blocking(|b| {
            b.create_topic_blocking(CreateTopic {
                name: TOPIC.into(),
                partitions: Some(1),
                configs: [("segment.bytes".to_owned(), "4096".to_owned())].into(),
                ..CreateTopic::default()
            })
        })
        .await
        .unwrap();
    let producer = client::producer(&broker.bootstrap());
    for i in 0..TOTAL {
        let value = format!("v{i}");
        let delivery = producer
            .send(
                FutureRecord::<(), _>::to(TOPIC)
                    .partition(0)
                    .payload(&value),
                WAIT,
            )
            .await
            .expect("delivered");
        assert_eq!(delivery.offset, i);
    }
    drop(producer);
    let data_dir = broker.data_dir().to_path_buf();
    broker.stop().await;

    // Flip a byte inside the records of the batch at offset DAMAGED (one record per batch).
    let seg = data_dir
        .join(format!("{TOPIC}-0"))
        .join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut pos = 0;
    loop {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        if h.base_offset == DAMAGED {
            break;
        }
        pos += h.total_len();
    }
    bytes[pos + 64] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();

    let broker = TestBroker::start_with(BrokerConfig::new(&data_dir), Default::default()).await;
    let consumer = client::consumer(&broker.bootstrap());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut values = Vec::new();
    let corrupt = loop {
        let got = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("a message or an error in time");
        match got {
            Ok(m) => {
                assert_eq!(m.offset(), values.len() as i64, "no gap before the damage");
                values.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            corrupt,
            KafkaError::MessageConsumption(RDKafkaErrorCode::InvalidMessage)
        ),
        "{corrupt:?}"
    );
    assert_eq!(values.len() as i64, DAMAGED, "everything before the damage");

    // The application skips the damaged offset knowingly; the rest is delivered.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(DAMAGED + 1))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    while (values.len() as i64) < TOTAL - 1 {
        let m = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("a message in time")
            .expect("no more errors after the damage");
        let expected = values.len() as i64 + 1;
        assert_eq!(m.offset(), expected);
        values.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
    }
    for (i, v) in values.iter().enumerate() {
        let offset = if (i as i64) < DAMAGED {
            i as i64
        } else {
            i as i64 + 1
        };
        assert_eq!(v, &format!("v{offset}"));
    }
    broker.stop().await;
}
