//! Named leases (fencing epochs, expiry by the database clock) and broker registration.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use strom_cluster::Error;
use strom_cluster::lease::{acquire, list, release, renew};
use strom_cluster::registry::{BrokerId, Registration, live_brokers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fence_and_expire_and_brokers_drop_out_when_their_lease_lapses() {
    let env = support::Env::start().await;
    let db = env.db();
    let ttl = Duration::from_millis(700);

    // Leases: one holder at a time; re-acquire by the holder keeps the epoch.
    let a = acquire(&db, "job/x", "a", ttl)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(a.epoch, 1);
    assert!(acquire(&db, "job/x", "b", ttl).await.unwrap().is_none());
    let again = acquire(&db, "job/x", "a", ttl).await.unwrap().expect("own");
    assert_eq!(again.epoch, 1);
    renew(&db, &a).await.unwrap();

    // Expiry: b takes over with a higher epoch; a is fenced.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let b = acquire(&db, "job/x", "b", ttl)
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(b.epoch, 2);
    assert!(matches!(
        renew(&db, &a).await,
        Err(Error::LeaseLost { epoch: 1, .. })
    ));
    // Release hands over at once, with a new epoch.
    release(&db, &b).await.unwrap();
    let c = acquire(&db, "job/x", "c", ttl)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(c.epoch, 3);
    let states = list(&db).await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!((states[0].holder.as_str(), states[0].epoch), ("c", 3));

    // Brokers.
    let addrs = |port: u16| BTreeMap::from([("kafka".to_string(), format!("127.0.0.1:{port}"))]);
    let one = Registration::register(&db, BrokerId(1), &addrs(9092), ttl)
        .await
        .unwrap();
    let two = Registration::register(&db, BrokerId(2), &addrs(9093), ttl)
        .await
        .unwrap();
    assert!(matches!(
        Registration::register(&db, BrokerId(1), &addrs(9999), ttl).await,
        Err(Error::BrokerIdInUse { broker_id: 1 })
    ));
    let live = live_brokers(&db).await.unwrap();
    assert_eq!(
        live.iter().map(|b| b.broker_id).collect::<Vec<_>>(),
        [BrokerId(1), BrokerId(2)]
    );
    assert_eq!(live[1].addresses["kafka"], "127.0.0.1:9093");

    // Broker 1 keeps heartbeating, broker 2 stops: only 1 stays listed.
    let one = std::sync::Arc::new(one);
    let beating = one.keep_alive(env.db(), ttl / 3);
    tokio::time::sleep(ttl * 2).await;
    assert!(!beating.is_finished());
    let live = live_brokers(&db).await.unwrap();
    assert_eq!(
        live.iter().map(|b| b.broker_id).collect::<Vec<_>>(),
        [BrokerId(1)]
    );
    // A lapsed id can be taken by a new process; the old one then cannot heartbeat.
    let two_again = Registration::register(&db, BrokerId(2), &addrs(9094), ttl)
        .await
        .unwrap();
    assert!(matches!(
        two.heartbeat(&db).await,
        Err(Error::LeaseLost { .. })
    ));
    two_again.deregister(&db).await.unwrap();
    one.deregister(&db).await.unwrap();
    assert!(live_brokers(&db).await.unwrap().is_empty());
    // The keep-alive task notices the registration is gone and ends with LeaseLost.
    let ended = tokio::time::timeout(support::STEP, beating)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ended, Error::LeaseLost { .. }), "{ended}");
}
