//! Schema migrations: concurrent migrators apply each version exactly once.

mod support;

use strom_cluster::schema::{MIGRATIONS, migrate};
use strom_cluster::testkit::PostgresServer;
use strom_cluster::{ClusterConfig, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_migrators_apply_each_version_once() {
    let pg = tokio::task::spawn_blocking(|| PostgresServer::start().expect("postgres"))
        .await
        .unwrap();
    let config = ClusterConfig::new(&pg.url(), "s3://b/p").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let db = Db::new(config.postgres_config().unwrap());
        tasks.push(tokio::spawn(async move {
            let mut conn = db.conn().await.unwrap();
            migrate(&mut conn).await
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        let versions = tokio::time::timeout(support::STEP, task)
            .await
            .expect("bounded")
            .unwrap()
            .expect("migrate");
        applied.extend(versions);
    }
    applied.sort();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each version applied by exactly one migrator");

    let db = Db::new(config.postgres_config().unwrap());
    let mut conn = db.conn().await.unwrap();
    assert!(migrate(&mut conn).await.unwrap().is_empty(), "idempotent");
    let rows = conn
        .query(
            "SELECT version FROM strom_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let recorded: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(recorded, all);
}
