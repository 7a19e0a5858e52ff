//! The shared metadata event table is compacted into its snapshot row, against real PostgreSQL
//! and moto: it stays bounded by the live state, a broker opening afterwards rebuilds exactly the
//! state every event describes, a broker tailing within the keep window misses nothing, and one
//! whose unread events were deleted is told so instead of skipping them.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strom_broker::metadata::{MetadataEvent, MetadataState};
use strom_broker::storage::StorageBackend;
use strom_cluster::{ClusterBackend, ClusterNode, MetadataCompaction};
use support::{Env, blocking};
use uuid::Uuid;

async fn node(env: &Env, compaction: MetadataCompaction) -> (ClusterNode, Arc<ClusterBackend>) {
    support::node_with(env, |config| config.metadata_compaction = compaction).await
}

fn fold(events: &[MetadataEvent]) -> MetadataState {
    let mut state = MetadataState::default();
    for e in events {
        state.apply(e);
    }
    state
}

/// Events of a busy topic: created, then its configs rewritten `n` times; plus a topic created
/// and deleted, which a snapshot must not resurrect.
fn history(n: usize) -> (Vec<MetadataEvent>, Uuid) {
    let id = Uuid::new_v4();
    let gone = Uuid::new_v4();
    let mut events = vec![
        MetadataEvent::TopicCreated {
            name: "busy".into(),
            id,
            partitions: 2,
            configs: BTreeMap::new(),
        },
        MetadataEvent::TopicCreated {
            name: "gone".into(),
            id: gone,
            partitions: 1,
            configs: BTreeMap::new(),
        },
        MetadataEvent::TopicDeleted { id: gone },
    ];
    for i in 0..n {
        events.push(MetadataEvent::ConfigsSet {
            id,
            configs: BTreeMap::from([("retention.ms".to_owned(), (1000 + i).to_string())]),
        });
    }
    (events, id)
}

async fn event_rows(env: &Env) -> i64 {
    let db = env.db();
    let conn = db.conn().await.expect("connect");
    conn.query_one("SELECT count(*) FROM strom_metadata_events", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_bounds_the_table_and_reopening_rebuilds_the_same_state() {
    let env = Env::start().await;
    let prune_at_once = MetadataCompaction {
        min_events: 10,
        keep_events_for: Duration::ZERO,
    };
    let (_node_a, a) = node(&env, prune_at_once).await;
    let (_node_b, b) = node(&env, prune_at_once).await;
    let (history, _) = history(60);
    let expected = history.clone();

    let (a2, b2) = (a.clone(), b.clone());
    let (opened, lagging) = blocking(move || {
        let (mut meta_a, opened) = a2.open_metadata().unwrap();
        let (mut meta_b, _) = b2.open_metadata().unwrap();
        for event in &history {
            meta_a.append(event).unwrap();
        }
        // B never polled while A appended and compacted with no keep window: the events it
        // had not read are gone, and its poll says so instead of skipping them.
        (opened, meta_b.poll())
    })
    .await;
    let err = lagging.expect_err("a broker behind the pruned events must not skip them");
    assert!(err.to_string().contains("compacted"), "{err}");

    // Bounded by the live state (2 events) and the policy, not by the 63 appended.
    let rows = event_rows(&env).await;
    assert!(rows <= 10, "{rows} event rows left after compaction");

    // A broker opening now replays the snapshot and the rest: the same state as all events.
    let (_node_c, c) = node(&env, prune_at_once).await;
    let replayed = blocking(move || c.open_metadata().unwrap().1).await;
    let mut model = vec![opened[0].clone()];
    model.extend(expected);
    assert_eq!(fold(&replayed), fold(&model));
    assert!(
        replayed.len() < 20,
        "opening replays the snapshot, not history: {} events",
        replayed.len()
    );
    assert!(
        !replayed
            .iter()
            .any(|e| matches!(e, MetadataEvent::TopicCreated { name, .. } if name == "gone")),
        "a deleted topic stays deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_tailing_within_the_keep_window_misses_nothing() {
    let env = Env::start().await;
    let keep = MetadataCompaction {
        min_events: 10,
        keep_events_for: Duration::from_secs(600),
    };
    let (_node_a, a) = node(&env, keep).await;
    let (_node_b, b) = node(&env, keep).await;
    let (history, _) = history(40);
    let expected = history.clone();
    let (a2, b2) = (a.clone(), b.clone());
    let seen = blocking(move || {
        let (mut meta_a, _) = a2.open_metadata().unwrap();
        let (mut meta_b, _) = b2.open_metadata().unwrap();
        for event in &history {
            meta_a.append(event).unwrap();
        }
        meta_b.poll().unwrap()
    })
    .await;
    // Compacted (a snapshot was written) but nothing B needs was deleted.
    let db = env.db();
    let conn = db.conn().await.expect("connect");
    let through: i64 = conn
        .query_one("SELECT through_seq FROM strom_metadata_snapshot", &[])
        .await
        .expect("a snapshot was taken")
        .get(0);
    assert!(through > 10, "snapshot through seq {through}");
    assert_eq!(seen, expected, "every event, in order, exactly once");
}
