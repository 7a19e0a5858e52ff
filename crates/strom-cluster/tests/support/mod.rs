//! Shared set-up for the cluster tests: one real PostgreSQL and one moto S3 server per test,
//! torn down when the [`Env`] drops.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use strom_cluster::testkit::{MotoServer, PostgresServer};
use strom_cluster::{ClusterConfig, Db};

/// Upper bound for any single test step that waits on the servers.
pub const STEP: Duration = Duration::from_secs(60);

pub const BUCKET: &str = "strom-test";
pub const PREFIX: &str = "cluster";

/// Real PostgreSQL and moto, a migrated schema and a bucket.
pub struct Env {
    pub pg: PostgresServer,
    pub s3: MotoServer,
    pub config: ClusterConfig,
    pub store: Arc<dyn ObjectStore>,
}

impl Env {
    /// Starts both servers (blocking work off the async threads), creates the bucket and
    /// migrates the schema.
    pub async fn start() -> Env {
        let (pg, s3) = tokio::task::spawn_blocking(|| {
            let pg = PostgresServer::start().expect("start postgres");
            let s3 = MotoServer::start().expect("start moto");
            s3.create_bucket(BUCKET).expect("create bucket");
            (pg, s3)
        })
        .await
        .expect("harness thread");
        let mut config =
            ClusterConfig::new(&pg.url(), &format!("s3://{BUCKET}/{PREFIX}")).expect("config");
        config.s3.endpoint = Some(s3.endpoint());
        config.s3.region = Some("us-east-1".into());
        config.s3.allow_http = Some(true);
        config.s3.access_key_id = Some("test".into());
        config.s3.secret_access_key = Some("test".into());
        config.s3.max_retries = 2;
        config.s3.retry_timeout = Duration::from_secs(3);
        config.s3.request_timeout = Duration::from_secs(5);
        config.s3.connect_timeout = Duration::from_secs(1);
        let store = config.build_object_store().expect("object store");
        let env = Env {
            pg,
            s3,
            config,
            store,
        };
        let db = env.db();
        let mut conn = db.conn().await.expect("connect");
        strom_cluster::schema::migrate(&mut conn)
            .await
            .expect("migrate");
        env
    }

    pub fn db(&self) -> Db {
        Db::new(self.config.postgres_config().expect("pg config"))
    }
}
