//! A real full disk: the data directory on a 16 MiB tmpfs. Producing with `acks=all` until the
//! disk is full gets `KAFKA_STORAGE_ERROR` (not a hang or a closed connection) while reads keep
//! being served; freeing space lets writes resume without a restart; `kill -9` on the full
//! disk and a restart on the still-full disk works (the broker starts), and every acknowledged
//! record is readable afterwards.
//!
//! Needs root and a working `mount -t tmpfs`; otherwise it says so on stderr ("SKIPPED") and
//! returns.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use strom_kafka::client::{Client, ClientError};
use strom_record::{BatchBuilder, BatchHeader, DecodeLimits, Record, decode_records};

mod common;

/// A tmpfs mounted for the test; unmounted (and its mount point removed) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `path`, or says why it cannot.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root".into());
        }
        std::fs::create_dir_all(path).map_err(|e| format!("mkdir: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

const TOPIC: &str = "full";
const WAIT: Duration = Duration::from_secs(20);

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => return written,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => return written,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
}

/// Shortens the filler by `bytes`, leaving that much space free.
fn free(path: &Path, bytes: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(bytes)).unwrap();
}

/// A batch of one keyless record with `value`.
fn one_record(value: impl Into<Bytes>) -> Bytes {
    Bytes::from(
        BatchBuilder::new()
            .build(&[Record::new(1, None, Some(value.into()))])
            .unwrap(),
    )
}

fn batch(partition: i32, n: u64) -> Bytes {
    // 32 KiB of payload, so the disk fills in few produces.
    one_record(format!("p{partition}-{n}-{}", "x".repeat(32 << 10)))
}

/// Every record of `partition` as offset → value prefix (`p{partition}-{n}`).
async fn read_all(addr: &str, partition: i32) -> BTreeMap<i64, String> {
    let mut client = Client::connect(addr).await.unwrap();
    let mut offset = 0;
    let mut out = BTreeMap::new();
    loop {
        let fetched =
            tokio::time::timeout(WAIT, client.fetch(TOPIC, partition, offset, 0, 1 << 20))
                .await
                .expect("fetch answered in time")
                .unwrap();
        if fetched.records.is_empty() {
            return out;
        }
        let mut rest = fetched.records;
        while !rest.is_empty() {
            let header = BatchHeader::parse(&rest).unwrap();
            let b = rest.split_to(header.total_len());
            for r in decode_records(&b, DecodeLimits::default()).unwrap().records {
                assert_eq!(r.offset, offset, "dense offsets");
                let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                out.insert(r.offset, v.split('-').take(2).collect::<Vec<_>>().join("-"));
                offset += 1;
            }
        }
    }
}

/// What the full-disk test wrote to its two partitions: the number of the next record of each
/// and the records acknowledged (offset → value prefix).
#[derive(Default)]
struct Written {
    next: [u64; 2],
    acked: [BTreeMap<i64, String>; 2],
}

impl Written {
    /// Produces to `partition` until the broker answers an error (at most `max` produces),
    /// recording what is acknowledged. Returns the error.
    async fn produce(
        &mut self,
        client: &mut Client,
        partition: i32,
        max: usize,
    ) -> Option<ClientError> {
        let i = partition as usize;
        for _ in 0..max {
            let sent = tokio::time::timeout(
                WAIT,
                client.produce(TOPIC, partition, -1, batch(partition, self.next[i])),
            )
            .await
            .expect("produce answered in time, no hang");
            match sent {
                Ok(base) => {
                    self.acked[i].insert(base, format!("p{partition}-{}", self.next[i]));
                    self.next[i] += 1;
                }
                Err(e) => return Some(e),
            }
        }
        None
    }

    /// Asserts that three produces to `partition` succeed.
    async fn produce_ok(&mut self, client: &mut Client, partition: i32, what: &str) {
        assert!(
            self.produce(client, partition, 3).await.is_none(),
            "partition {partition}: {what}"
        );
    }

    /// Produces to `partition` until refused; asserts the refusal is a storage error.
    async fn produce_refused(&mut self, client: &mut Client, partition: i32, max: usize) {
        let err = self
            .produce(client, partition, max)
            .await
            .expect("the disk is full");
        assert_storage_error(&err);
    }

    /// Asserts that every acknowledged record of both partitions is readable from `addr`.
    async fn assert_readable(&self, addr: &str) {
        for p in 0..2 {
            assert_all_acked_readable(addr, p, &self.acked[p as usize]).await;
        }
    }
}

fn assert_storage_error(e: &ClientError) {
    assert!(
        matches!(
            e,
            ClientError::Kafka {
                error: ResponseError::KafkaStorageError,
                ..
            }
        ),
        "expected KAFKA_STORAGE_ERROR, got {e}"
    );
}

async fn assert_all_acked_readable(addr: &str, partition: i32, acked: &BTreeMap<i64, String>) {
    let read = read_all(addr, partition).await;
    for (offset, value) in acked {
        assert_eq!(
            read.get(offset),
            Some(value),
            "partition {partition}: acknowledged record at {offset}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_storage_errors_and_never_stops_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let mount = match Tmpfs::mount(&dir.path().join("mnt"), "16m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_answers_storage_errors_and_never_stops_a_start: {why}");
            return;
        }
    };
    let data = mount.path.join("data");
    let filler = mount.path.join("filler");
    let mut w = Written::default();

    let server = common::start(&data);
    let mut client = Client::connect(&server.addr).await.unwrap();
    client
        .create_topic(TOPIC, 2, &Default::default())
        .await
        .unwrap();
    for p in 0..2 {
        w.produce_ok(&mut client, p, "writes before the disk fills")
            .await;
    }

    // Round 1: the disk fills up while producing; space returns; writes resume, no restart.
    fill(&filler);
    free(&filler, 1 << 20);
    w.produce_refused(&mut client, 0, 200).await;
    assert!(
        w.acked[0].len() > 10,
        "the free megabyte took {} records",
        w.acked[0].len()
    );
    // The same connection still works, and a second produce is refused the same way.
    w.produce_refused(&mut client, 0, 1).await;
    // Reads keep being served, on both partitions.
    w.assert_readable(&server.addr).await;
    std::fs::remove_file(&filler).unwrap();
    for p in 0..2 {
        w.produce_ok(
            &mut client,
            p,
            "writes resume without a restart once space returns",
        )
        .await;
    }

    // Round 2: full again, kill -9, restart on the still-full disk (twice), then free space.
    fill(&filler);
    w.produce_refused(&mut client, 1, 200).await;
    drop(client);
    drop(server); // SIGKILL
    for _ in 0..2 {
        // Whatever the broker freed while stopping is taken again.
        fill(&filler);
        let server = common::start(&data);
        w.assert_readable(&server.addr).await;
        drop(server);
    }
    let server = common::start(&data);
    let mut client = Client::connect(&server.addr).await.unwrap();
    // Still full after the restart.
    w.produce_refused(&mut client, 0, 1).await;
    std::fs::remove_file(&filler).unwrap();
    for p in 0..2 {
        w.produce_ok(
            &mut client,
            p,
            "writes resume after the restart once space returns",
        )
        .await;
    }
    drop(client);
    drop(server);
    let server = common::start(&data);
    w.assert_readable(&server.addr).await;
    drop(server);
    drop(mount);
    eprintln!(
        "disk_full: acknowledged {} + {} records across the full-disk rounds",
        w.acked[0].len(),
        w.acked[1].len()
    );
}

/// A batch damaged on disk in the middle of a closed segment: a Kafka fetch at its offset gets
/// `CORRUPT_MESSAGE` (every time, never the next offset), fetches before and after it and in
/// later segments are served, and the damage shows in `strom_partition_damaged_ranges`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_batch_is_a_corrupt_message_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let total = 60;
    {
        let server = common::start(&data);
        let mut client = Client::connect(&server.addr).await.unwrap();
        let configs = [("segment.bytes".to_owned(), "4096".to_owned())].into();
        client.create_topic(TOPIC, 1, &configs).await.unwrap();
        for i in 0..total {
            let b = one_record(format!("p0-{i}"));
            assert_eq!(client.produce(TOPIC, 0, -1, b).await.unwrap(), i);
        }
        drop(client);
        server.stop();
    }
    // Damage the records of the 10th batch of the first segment.
    let seg = data
        .join(format!("{TOPIC}-0"))
        .join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut pos = 0;
    for _ in 0..10 {
        pos += BatchHeader::parse(&bytes[pos..]).unwrap().total_len();
    }
    let damaged = BatchHeader::parse(&bytes[pos..]).unwrap().base_offset;
    assert_eq!(damaged, 10);
    bytes[pos + 64] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    assert!(
        std::fs::read_dir(seg.parent().unwrap())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log"))
            .count()
            > 1,
        "the damage is in a closed segment"
    );

    let server = common::start(&data);
    let mut client = Client::connect(&server.addr).await.unwrap();
    let mut served = BTreeMap::new();
    let mut offset = 0;
    while offset < total {
        match client.fetch(TOPIC, 0, offset, 0, 1 << 20).await {
            Ok(f) => {
                assert!(!f.records.is_empty(), "nothing at {offset}");
                let mut rest = f.records;
                while !rest.is_empty() {
                    let h = BatchHeader::parse(&rest).unwrap();
                    let b = rest.split_to(h.total_len());
                    for r in decode_records(&b, DecodeLimits::default()).unwrap().records {
                        assert_eq!(r.offset, offset, "no silent gap");
                        served.insert(r.offset, r.value.unwrap());
                        offset += 1;
                    }
                }
            }
            Err(ClientError::Kafka {
                error: ResponseError::CorruptMessage,
                ..
            }) => {
                assert_eq!(offset, damaged);
                // Again: the same answer, the connection still usable.
                let again = client.fetch(TOPIC, 0, offset, 0, 1 << 20).await;
                assert!(
                    matches!(
                        again,
                        Err(ClientError::Kafka {
                            error: ResponseError::CorruptMessage,
                            ..
                        })
                    ),
                    "{again:?}"
                );
                offset += 1;
            }
            Err(e) => panic!("fetch at {offset}: {e}"),
        }
    }
    assert_eq!(served.len() as i64, total - 1);
    assert!(!served.contains_key(&damaged));
    let metrics = server.http_get("/metrics");
    assert!(
        metrics.contains(&format!(
            "strom_partition_damaged_ranges{{topic=\"{TOPIC}\",partition=\"0\"}} 1"
        )),
        "{metrics}"
    );
    // Writes go on.
    let b = one_record("after");
    assert_eq!(client.produce(TOPIC, 0, -1, b).await.unwrap(), total);
}
