//! The S3 server used in tests (moto) supports every call the cluster backend makes, through the
//! same `object_store` client the backend uses: PUT, ranged GET, LIST and DELETE.

mod support;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_supports_put_ranged_get_list_delete() {
    let env = support::Env::start().await;
    let store = &env.store;
    let a = Path::from("cluster/data/a.batches");
    let b = Path::from("cluster/data/b.batches");
    let body = Bytes::from((0u8..=255).cycle().take(10_000).collect::<Vec<u8>>());
    store.put(&a, body.clone().into()).await.unwrap();
    store
        .put(&b, Bytes::from_static(b"bb").into())
        .await
        .unwrap();

    let part = store.get_range(&a, 1_000..1_300).await.unwrap();
    assert_eq!(part, body.slice(1_000..1_300));
    assert_eq!(store.get_range(&a, 0..10_000).await.unwrap(), body);

    let mut listed: Vec<String> = store
        .list(Some(&Path::from("cluster/data")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, ["cluster/data/a.batches", "cluster/data/b.batches"]);

    store.delete(&a).await.unwrap();
    let gone = store.get_range(&a, 0..1).await.unwrap_err();
    assert!(
        matches!(gone, object_store::Error::NotFound { .. }),
        "{gone}"
    );
    let listed: Vec<_> = store
        .list(Some(&Path::from("cluster")))
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}
