//! (Feature `kinesis`.) Cluster mode's AWS-limits buckets behind the Kinesis front end's seam: the front end's
//! [`SharedBuckets`] over `strom-cluster`'s [`KinesisBuckets`] (one PostgreSQL row per shard),
//! so a shard's limits hold for the whole cluster.

use std::future::Future;
use std::pin::Pin;

use crate::KinesisBuckets;
use strom_kinesis::limits::{
    BucketLevels, LevelsUpdate, ShardKey, SharedBuckets, SharedBucketsError,
};

/// [`KinesisBuckets`] as the Kinesis front end's [`SharedBuckets`].
#[derive(Debug)]
pub struct ClusterShardLimits(
    /// The buckets every broker of the cluster shares.
    pub KinesisBuckets,
);

impl SharedBuckets for ClusterShardLimits {
    fn update<'a>(
        &'a self,
        key: ShardKey,
        update: LevelsUpdate<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SharedBucketsError>> + Send + 'a>> {
        Box::pin(async move {
            let shard = i32::try_from(key.shard).unwrap_or(i32::MAX);
            self.0
                .update(key.topic, shard, move |stored| {
                    let stored = stored.map(|([wr, wb, rc, rb], elapsed)| {
                        (
                            BucketLevels {
                                write_records: wr,
                                write_bytes: wb,
                                read_calls: rc,
                                read_bytes: rb,
                            },
                            elapsed,
                        )
                    });
                    let l = update(stored);
                    [l.write_records, l.write_bytes, l.read_calls, l.read_bytes]
                })
                .await
                .map_err(|e| SharedBucketsError {
                    source: Box::new(e),
                })
        })
    }
}
