//! The storage seam's conformance suites (`strom_broker::storage::conformance`), run against the
//! cluster backend over real PostgreSQL and moto: the same contract clauses the local backend
//! passes.

mod support;

use std::collections::BTreeMap;

use strom_broker::metadata::MetadataEvent;
use strom_broker::storage::conformance::{metadata_store_suite, partition_store_suite};
use strom_broker::storage::{PartitionIndex, StorageBackend, TopicPartition};
use support::{Env, blocking, node};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_partition_stores_pass_the_seam_suite() {
    let env = Env::start().await;
    let (_node, backend) = node(&env).await;
    blocking(move || {
        let (mut meta, _) = backend.open_metadata().expect("open metadata");
        let mut n = 0;
        partition_store_suite(&mut |config| {
            n += 1;
            // A fresh one-partition topic per clause; the name lives as long as the test.
            let topic: &'static str = Box::leak(format!("conformance-{n}").into_boxed_str());
            meta.append(&MetadataEvent::TopicCreated {
                name: topic.to_owned(),
                id: Uuid::new_v4(),
                partitions: 1,
                configs: BTreeMap::new(),
            })
            .expect("create topic");
            backend
                .open_partition(
                    TopicPartition {
                        topic,
                        index: PartitionIndex(0),
                    },
                    config,
                )
                .expect("open partition")
        });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_metadata_store_passes_the_seam_suite() {
    let env = Env::start().await;
    let (_node, backend) = node(&env).await;
    blocking(move || {
        metadata_store_suite(&mut || backend.open_metadata().expect("open metadata"));
    })
    .await;
}
