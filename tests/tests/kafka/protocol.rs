//! APIs that librdkafka's public API does not reach, exercised with the raw client.

use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::net::TcpStream;

use super::raw::{call, produce_request};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

async fn produce(s: &mut TcpStream, topic: &str, timestamps: &[i64]) {
    let records: Vec<Record> = timestamps
        .iter()
        .map(|&ts| Record::new(ts, None, Some(Bytes::from(ts.to_string()))))
        .collect();
    let batch = BatchBuilder::new().build(&records).unwrap();
    let req = produce_request(topic, 0, batch).with_acks(1);
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

async fn list_offset(s: &mut TcpStream, topic: &str, timestamp: i64) -> (i64, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp),
                ]),
        ]);
    let r: ListOffsetsResponse = call(s, ApiKey::ListOffsets, 7, &req).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.offset, p.timestamp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_time_and_leader_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    // Produce never creates topics; Metadata or CreateTopics does.
    super::client::create_topic(&broker.bootstrap(), "times", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    produce(&mut s, "times", &[1_000, 2_000, 3_000]).await;
    produce(&mut s, "times", &[9_000, 4_000]).await;

    assert_eq!(list_offset(&mut s, "times", -2).await.0, 0, "earliest");
    assert_eq!(list_offset(&mut s, "times", -1).await.0, 5, "latest");
    assert_eq!(list_offset(&mut s, "times", 2_500).await, (2, 3_000));
    assert_eq!(list_offset(&mut s, "times", 3_500).await, (3, 9_000));
    assert_eq!(list_offset(&mut s, "times", 10_000).await, (-1, -1));
    assert_eq!(
        list_offset(&mut s, "times", -3).await,
        (3, 9_000),
        "max timestamp"
    );

    let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default()
            .with_topic(name("times"))
            .with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(0),
                OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(5),
                OffsetForLeaderPartition::default()
                    .with_partition(3)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(0),
            ]),
    ]);
    let r: OffsetForLeaderEpochResponse = call(&mut s, ApiKey::OffsetForLeaderEpoch, 4, &req).await;
    let parts = &r.topics[0].partitions;
    assert_eq!(
        (
            parts[0].error_code,
            parts[0].leader_epoch,
            parts[0].end_offset
        ),
        (0, 0, 5)
    );
    assert_eq!((parts[1].leader_epoch, parts[1].end_offset), (-1, -1));
    assert_eq!(parts[2].error_code, 3);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_and_log_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    super::client::create_topic(&broker.bootstrap(), "sized", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    produce(&mut s, "sized", &[1, 2, 3]).await;

    let r: DescribeClusterResponse = call(
        &mut s,
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default().with_endpoint_type(1),
    )
    .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.cluster_id.as_str(), broker.broker().cluster_id());
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.brokers[0].port, i32::from(broker.addr().port()));

    let r: DescribeClusterResponse = call(
        &mut s,
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
    )
    .await;
    assert_eq!(
        r.cluster_authorized_operations, 8096,
        "CREATE..IDEMPOTENT_WRITE"
    );
    let r: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        10,
        &MetadataRequest::default()
            .with_topics(None)
            .with_include_topic_authorized_operations(true)
            .with_include_cluster_authorized_operations(true),
    )
    .await;
    assert_eq!(r.cluster_authorized_operations, 8096);
    assert_eq!(
        r.topics[0].topic_authorized_operations, 3576,
        "READ..ALTER_CONFIGS"
    );
    let r: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .await;
    assert_eq!(
        r.topics[0].topic_authorized_operations,
        i32::MIN,
        "not asked for"
    );

    let r: DescribeLogDirsResponse = call(
        &mut s,
        ApiKey::DescribeLogDirs,
        4,
        &DescribeLogDirsRequest::default().with_topics(None),
    )
    .await;
    let dir_result = &r.results[0];
    let topic = dir_result
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "sized")
        .unwrap();
    assert!(topic.partitions[0].partition_size > 0);
    let r: DescribeLogDirsResponse = call(
        &mut s,
        ApiKey::DescribeLogDirs,
        1,
        &DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(name("other"))
                .with_partitions(vec![0]),
        ])),
    )
    .await;
    assert!(r.results[0].topics.is_empty());
    broker.stop().await;
}

/// Produce requests pipelined on one connection, then a ListOffsets behind them: the broker
/// writes each Produce in order and defers its answer until durable, yet answers strictly in
/// request order, and the ListOffsets (not a Produce) is handled only after every answer before
/// it, so it sees all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_are_answered_in_order_and_seen_by_the_next_request() {
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    use tokio::io::AsyncWriteExt;

    use super::raw::{frame, produce_request, read_frame};

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    // Produce never creates topics; Metadata or CreateTopics does.
    super::client::create_topic(&broker.bootstrap(), "piped", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    // Takes offset 0.
    produce(&mut s, "piped", &[1]).await;
    let mut out = Vec::new();
    for id in 1..=8i32 {
        let batch = BatchBuilder::new()
            .build(&[Record::new(
                i64::from(id),
                None,
                Some(Bytes::from(id.to_string())),
            )])
            .unwrap();
        let req = produce_request("piped", 0, batch);
        out.extend_from_slice(&frame(ApiKey::Produce, 9, id, &req));
    }
    let latest = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("piped"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
    out.extend_from_slice(&frame(ApiKey::ListOffsets, 7, 9, &latest));
    // All nine requests leave in one write, before any answer is read.
    s.write_all(&out).await.unwrap();
    for id in 1..=8i32 {
        let mut r = read_frame(&mut s).await.expect("a produce response");
        let header = ResponseHeader::decode(&mut r, ProduceResponse::header_version(9)).unwrap();
        assert_eq!(header.correlation_id, id, "answers in request order");
        let r = ProduceResponse::decode(&mut r, 9).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i64::from(id)));
    }
    let mut r = read_frame(&mut s).await.expect("a list offsets response");
    let header = ResponseHeader::decode(&mut r, ListOffsetsResponse::header_version(7)).unwrap();
    assert_eq!(header.correlation_id, 9);
    let r = ListOffsetsResponse::decode(&mut r, 7).unwrap();
    assert_eq!(
        r.topics[0].partitions[0].offset, 9,
        "sees every produce before it"
    );
    broker.stop().await;
}

/// A fault injector that holds every `fdatasync` of segment files under `dir` until opened,
/// and counts the segment writes there.
#[derive(Debug)]
struct SyncGate {
    dir: std::path::PathBuf,
    state: std::sync::Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    /// Segment writes so far.
    writes: usize,
    /// Syncs waiting at the gate now.
    held: usize,
}

impl strom_log::fault::FaultInjector for SyncGate {
    fn before(
        &self,
        op: strom_log::fault::FileOp,
        kind: strom_log::fault::FileKind,
        path: &std::path::Path,
    ) -> Option<std::io::Error> {
        use strom_log::fault::{FileKind, FileOp};
        if kind != FileKind::Segment || !path.starts_with(&self.dir) {
            return None;
        }
        let mut st = self.state.lock().unwrap();
        match op {
            FileOp::Write => {
                st.writes += 1;
                self.changed.notify_all();
            }
            FileOp::Sync => {
                st.held += 1;
                self.changed.notify_all();
                // Bounded: a test that never opens the gate still ends.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while !st.open && std::time::Instant::now() < deadline {
                    st = self
                        .changed
                        .wait_timeout(st, std::time::Duration::from_millis(50))
                        .unwrap()
                        .0;
                }
                st.held -= 1;
            }
            _ => {}
        }
        None
    }
}

/// Pipelined Produce requests overlap: while the first one waits for its `fdatasync` (held by
/// the fault seam), the broker already writes the second one; neither is answered before its
/// sync, and the answers come back in request order once the syncs complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_produce_is_written_while_the_one_before_waits_for_its_sync() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    use tokio::io::AsyncWriteExt;

    use super::raw::{frame, read_frame};

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    super::client::create_topic(&broker.bootstrap(), "overlap", 1).await;
    let gate = Arc::new(SyncGate {
        dir: dir.path().join("overlap-0"),
        state: Default::default(),
        changed: Default::default(),
    });
    let installed = strom_log::fault::install(gate.clone());
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut out = Vec::new();
    for id in 1..=2i32 {
        let batch = BatchBuilder::new()
            .build(&[Record::new(1, None, Some(Bytes::from(id.to_string())))])
            .unwrap();
        // acks=all (the default of `produce_request`): answered only after the sync.
        out.extend_from_slice(&frame(
            ApiKey::Produce,
            9,
            id,
            &produce_request("overlap", 0, batch),
        ));
    }
    s.write_all(&out).await.unwrap();
    // Wait (bounded) until both requests are written while a sync is held. No sync can
    // finish while the gate is closed, so the first request is not durable yet: the second
    // write did not wait for the first sync. (Handled one at a time, the connection would not
    // read the second request before answering the first, and this would time out.)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (writes, held) = {
            let st = gate.state.lock().unwrap();
            (st.writes, st.held)
        };
        if writes >= 2 && held >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no overlap: {writes} writes, {held} syncs held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Nothing is answered while the syncs are held.
    let mut probe = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(200), s.peek(&mut probe)).await;
    assert!(early.is_err(), "a produce was answered before its sync");
    {
        let mut st = gate.state.lock().unwrap();
        st.open = true;
        gate.changed.notify_all();
    }
    for id in 1..=2i32 {
        let mut r = read_frame(&mut s).await.expect("a produce response");
        let header = ResponseHeader::decode(&mut r, ProduceResponse::header_version(9)).unwrap();
        assert_eq!(header.correlation_id, id, "answers in request order");
        let r = ProduceResponse::decode(&mut r, 9).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i64::from(id - 1)));
    }
    drop(installed);
    broker.stop().await;
}

/// Delays every segment write under `dir` (the fault seam), so that partition's write ends last.
#[derive(Debug)]
struct SlowWrites {
    dir: std::path::PathBuf,
}

impl strom_log::fault::FaultInjector for SlowWrites {
    fn before(
        &self,
        op: strom_log::fault::FileOp,
        kind: strom_log::fault::FileKind,
        path: &std::path::Path,
    ) -> Option<std::io::Error> {
        use strom_log::fault::{FileKind, FileOp};
        if op == FileOp::Write && kind == FileKind::Segment && path.starts_with(&self.dir) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }
}

/// A Produce over six partitions with `acks=all` under `strom.fsync=always` (the default) costs
/// one commit window: every partition is written before any of them waits for durability, so
/// the first waiter starts a window that already holds all six segment files, and each file is
/// `fdatasync`ed once. The last partition's writes are slowed down (fault seam), so a wait
/// started before every write is done — each partition waiting straight after its own write,
/// or the handler starting a partition's wait as soon as that partition is written — starts a
/// window without it, and this fails. Counted with the broker's commit-window counters over
/// several rounds, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_over_six_partitions_costs_one_commit_window() {
    use std::time::{Duration, Instant};

    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    const PARTITIONS: i32 = 6;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    super::client::create_topic(&broker.bootstrap(), "window", PARTITIONS).await;
    let slow = std::sync::Arc::new(SlowWrites {
        dir: dir.path().join(format!("window-{}", PARTITIONS - 1)),
    });
    let installed = strom_log::fault::install(slow);
    let durability = broker
        .broker()
        .durability()
        .expect("the local backend has a commit window");
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    for round in 0..8i64 {
        let partition_data = (0..PARTITIONS)
            .map(|p| {
                let value = Bytes::from(format!("r{round}-p{p}"));
                let batch = BatchBuilder::new()
                    .build(&[Record::new(1, None, Some(value))])
                    .unwrap();
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(Bytes::from(batch)))
            })
            .collect();
        // acks=all (the default of `produce_request`).
        let request = produce_request("window", 0, Bytes::new()).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("window"))
                .with_partition_data(partition_data),
        ]);
        let (windows, syncs) = (durability.window_count(), durability.sync_count());
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &request).await;
        let answers: Vec<_> = r.responses[0]
            .partition_responses
            .iter()
            .map(|p| (p.index, p.error_code, p.base_offset))
            .collect();
        let expected: Vec<_> = (0..PARTITIONS).map(|p| (p, 0, round)).collect();
        assert_eq!(
            answers, expected,
            "round {round}: every partition, in order"
        );
        // A waiter returns once its own file is synced; the window is counted when its last
        // sync ends, a moment later.
        let settle = Instant::now() + Duration::from_secs(5);
        while durability.window_count() == windows && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            durability.window_count() - windows,
            1,
            "round {round}: one commit window for {PARTITIONS} partitions"
        );
        assert_eq!(
            durability.sync_count() - syncs,
            PARTITIONS as u64,
            "round {round}: one fdatasync per partition"
        );
    }
    drop(installed);
    broker.stop().await;
}

/// A Produce over more partitions than the broker's append slots (`APPEND_SLOTS`, 64) is
/// appended in groups that each take their slots at once, so it neither waits on itself nor
/// on a concurrent one: two such requests on two connections are both answered, every
/// partition at its offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_over_more_partitions_than_append_slots_are_answered() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    const PARTITIONS: i32 = strom_kafka::APPEND_SLOTS as i32 + 6;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    super::client::create_topic(&broker.bootstrap(), "wide", PARTITIONS).await;
    let request = |tag: &str| {
        let partition_data = (0..PARTITIONS)
            .map(|p| {
                let batch = BatchBuilder::new()
                    .build(&[Record::new(1, None, Some(Bytes::from(format!("{tag}{p}"))))])
                    .unwrap();
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(Bytes::from(batch)))
            })
            .collect();
        produce_request("wide", 0, Bytes::new()).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("wide"))
                .with_partition_data(partition_data),
        ])
    };
    let (a, b) = (request("a"), request("b"));
    let mut sa = TcpStream::connect(broker.addr()).await.unwrap();
    let mut sb = TcpStream::connect(broker.addr()).await.unwrap();
    let (ra, rb): (ProduceResponse, ProduceResponse) = tokio::join!(
        call(&mut sa, ApiKey::Produce, 9, &a),
        call(&mut sb, ApiKey::Produce, 9, &b)
    );
    for r in [ra, rb] {
        let parts = &r.responses[0].partition_responses;
        assert_eq!(parts.len(), PARTITIONS as usize);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!((p.index, p.error_code), (i as i32, 0));
            assert!(p.base_offset == 0 || p.base_offset == 1);
        }
    }
    broker.stop().await;
}
