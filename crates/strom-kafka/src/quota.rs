//! Enforcement of Kafka client quotas (KIP-13, KIP-55, KIP-124, KIP-219), per broker as in
//! Kafka: each broker measures the rates of the clients connected to it against the limits
//! of `strom_broker::quota` (shared by every broker in cluster mode).
//!
//! - **Rates** are measured as Kafka's `Rate` over `SampledStat`: [`SAMPLES`] samples of
//!   [`SAMPLE_WINDOW_MS`] (11 × 1 s); a sample starts at the first record after the previous
//!   one's window ended, samples older than 11 windows are dropped, and the rate is the sum
//!   over the elapsed time since the oldest sample, counted as at least 10 full windows.
//! - **Throttle time**, when the rate after recording exceeds the limit, is the time for the
//!   rate to come back to it with nothing more recorded: `(rate − limit) / limit × window`
//!   (Kafka's `QuotaUtils.throttleTime`); for request time it is bounded by one window, as
//!   Kafka's request quota manager does.
//! - **What is measured**: Produce request bytes (`producer_byte_rate`), Fetch response
//!   bytes (`consumer_byte_rate`; a throttled Fetch is answered empty and its bytes are taken
//!   back, and a Fetch reads at most `limit × 10 s`, as Kafka), and the time a request spends
//!   in its handler, long-poll waits excluded, as a percentage of one second
//!   (`request_percentage`; ApiVersions and the SASL APIs are exempt, as in Kafka).
//! - **Throttling** (KIP-219): the response leaves at once carrying `throttle_time_ms` (the
//!   longest throttle of its request, byte rate or request time, written into the encoded
//!   response by `frame::raise_throttle_time` for every API and version that has the field), then
//!   the connection is muted: its next request is not read before the throttle time has
//!   passed ([`ConnectionThrottle`], kept in the connection's `Session`).
//!
//! A rate is kept per quota type and [`QuotaTags`] (the user and/or client id of the entity
//! whose limit applies); one unused for an hour is dropped with its metrics series.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strom_broker::quota::{QuotaKey, QuotaStore, QuotaTags};

use kafka_protocol::messages::ApiKey;

use crate::frame::Request;
use crate::session::Session;

/// Samples a rate is measured over (Kafka's `quota.window.num`).
pub const SAMPLES: u64 = 11;
/// Length of one sample (Kafka's `quota.window.size.seconds`, in ms).
pub const SAMPLE_WINDOW_MS: u64 = 1000;
/// A rate not recorded to for this long is dropped (Kafka's inactive sensor expiry).
const SENSOR_EXPIRY_MS: u64 = 3600 * 1000;

/// What a rate measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum QuotaType {
    /// Produce request bytes.
    Produce,
    /// Fetch response bytes.
    Fetch,
    /// Request handler time, in percent of a second.
    Request,
}

impl QuotaType {
    fn key(self) -> QuotaKey {
        match self {
            QuotaType::Produce => QuotaKey::ProducerByteRate,
            QuotaType::Fetch => QuotaKey::ConsumerByteRate,
            QuotaType::Request => QuotaKey::RequestPercentage,
        }
    }
}

/// The labels of the per-entity series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QuotaLabels {
    /// `produce`, `fetch` or `request`.
    pub quota_type: QuotaType,
    /// The user of the entity whose limit applies, or empty.
    pub user: String,
    /// The client id of the entity whose limit applies, or empty.
    pub client_id: String,
}

/// A rate over sampled windows (Kafka's `Rate` with `SampledStat`), in units per second.
#[derive(Debug, Clone, Default)]
pub struct SampledRate {
    /// `(start ms, value)`, oldest first, at most [`SAMPLES`].
    samples: std::collections::VecDeque<(u64, f64)>,
}

impl SampledRate {
    fn purge(&mut self, now_ms: u64) {
        while let Some(&(start, _)) = self.samples.front() {
            if now_ms.saturating_sub(start) >= SAMPLES * SAMPLE_WINDOW_MS {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Adds `value` at `now_ms`.
    pub fn record(&mut self, value: f64, now_ms: u64) {
        self.purge(now_ms);
        let new_sample = self
            .samples
            .back()
            .is_none_or(|&(start, _)| now_ms.saturating_sub(start) >= SAMPLE_WINDOW_MS);
        if new_sample {
            self.samples.push_back((now_ms, 0.0));
            while self.samples.len() as u64 > SAMPLES {
                self.samples.pop_front();
            }
        }
        if let Some(last) = self.samples.back_mut() {
            last.1 += value;
        }
    }

    /// The time the rate is taken over at `now_ms`: since the oldest sample, at least
    /// `SAMPLES − 1` full windows plus the current one's elapsed part (Kafka's
    /// `Rate.windowSize`), at least 1 ms.
    pub fn window_ms(&mut self, now_ms: u64) -> u64 {
        self.purge(now_ms);
        let oldest = self.samples.front().map_or(now_ms, |&(s, _)| s);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / SAMPLE_WINDOW_MS;
        if full < SAMPLES - 1 {
            elapsed += (SAMPLES - 1 - full) * SAMPLE_WINDOW_MS;
        }
        elapsed.max(1)
    }

    /// Units per second at `now_ms`.
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        let window = self.window_ms(now_ms);
        let total: f64 = self.samples.iter().map(|&(_, v)| v).sum();
        total * 1000.0 / window as f64
    }

    /// The throttle time in ms at `now_ms` against `limit` (0 within it).
    pub fn throttle_ms(&mut self, limit: f64, now_ms: u64) -> u64 {
        let rate = self.rate(now_ms);
        if rate <= limit || limit <= 0.0 {
            return 0;
        }
        let window = self.window_ms(now_ms) as f64;
        ((rate - limit) / limit * window).round() as u64
    }
}

#[derive(Debug)]
struct Sensor {
    rate: SampledRate,
    last_used_ms: u64,
}

/// Per connection: the longest throttle recorded while handling the current request (the
/// time to mute the connection for after its response), and the time the request spent
/// waiting rather than working (a Fetch's long poll), which request time excludes.
#[derive(Debug, Default)]
pub struct ConnectionThrottle {
    mute_ms: AtomicU32,
    waited_us: AtomicU64,
}

impl ConnectionThrottle {
    /// Raises the current request's mute to at least `ms`.
    pub fn raise(&self, ms: u32) {
        self.mute_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// Adds time the current request spent waiting.
    pub fn waited(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.waited_us.fetch_add(us, Ordering::AcqRel);
    }

    /// Takes (and resets) the mute and the waited time of the request just handled.
    pub(crate) fn take(&self) -> (u32, Duration) {
        (
            self.mute_ms.swap(0, Ordering::AcqRel),
            Duration::from_micros(self.waited_us.swap(0, Ordering::AcqRel)),
        )
    }
}

/// The rates of this broker's clients, and their metrics.
#[derive(Debug)]
pub struct QuotaManager {
    started: Instant,
    sensors: Mutex<HashMap<(QuotaType, QuotaTags), Sensor>>,
    /// When sensors were last swept for expiry.
    swept_ms: AtomicU64,
    throttle_time: Family<QuotaLabels, Counter>,
    throttled: Family<QuotaLabels, Counter>,
    rate: Family<QuotaLabels, Gauge<f64, AtomicU64>>,
}

impl Default for QuotaManager {
    fn default() -> Self {
        QuotaManager {
            started: Instant::now(),
            sensors: Mutex::new(HashMap::new()),
            swept_ms: AtomicU64::new(0),
            throttle_time: Family::default(),
            throttled: Family::default(),
            rate: Family::default(),
        }
    }
}

/// The user name of a principal as quota entities name it (`User:alice` → `alice`).
pub fn quota_user(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

impl QuotaManager {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records `value` for the client at `now_ms` and returns its throttle time in ms (0
    /// when no limit applies or the rate is within it). `undo_if_throttled` takes the value
    /// back when throttled (a throttled Fetch sends nothing).
    pub fn record_at(
        &self,
        store: &QuotaStore,
        quota_type: QuotaType,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: u64,
    ) -> u32 {
        let Some(quota) = store.resolve(quota_type.key(), user, client_id) else {
            return 0;
        };
        let mut sensors = self
            .sensors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.sweep(&mut sensors, now_ms);
        let labels = QuotaLabels {
            quota_type,
            user: quota.tags.user.clone(),
            client_id: quota.tags.client_id.clone(),
        };
        let sensor = sensors
            .entry((quota_type, quota.tags))
            .or_insert_with(|| Sensor {
                rate: SampledRate::default(),
                last_used_ms: now_ms,
            });
        sensor.last_used_ms = now_ms;
        sensor.rate.record(value, now_ms);
        let mut throttle = sensor.rate.throttle_ms(quota.limit, now_ms);
        if quota_type == QuotaType::Request {
            throttle = throttle.min(SAMPLE_WINDOW_MS);
        }
        if throttle > 0 && quota_type == QuotaType::Fetch {
            sensor.rate.record(-value, now_ms);
        }
        self.rate
            .get_or_create(&labels)
            .set(sensor.rate.rate(now_ms));
        let throttle = u32::try_from(throttle).unwrap_or(u32::MAX);
        if throttle > 0 {
            self.throttle_time
                .get_or_create(&labels)
                .inc_by(u64::from(throttle));
            self.throttled.get_or_create(&labels).inc();
        }
        throttle
    }

    /// Drops sensors unused for an hour (at most once a minute), with their series.
    fn sweep(&self, sensors: &mut HashMap<(QuotaType, QuotaTags), Sensor>, now_ms: u64) {
        let last = self.swept_ms.load(Ordering::Acquire);
        if now_ms.saturating_sub(last) < 60_000 {
            return;
        }
        self.swept_ms.store(now_ms, Ordering::Release);
        sensors.retain(|(quota_type, tags), s| {
            let keep = now_ms.saturating_sub(s.last_used_ms) < SENSOR_EXPIRY_MS;
            if !keep {
                let labels = QuotaLabels {
                    quota_type: *quota_type,
                    user: tags.user.clone(),
                    client_id: tags.client_id.clone(),
                };
                self.rate.remove(&labels);
                self.throttle_time.remove(&labels);
                self.throttled.remove(&labels);
            }
            keep
        });
    }

    /// Records `value` for `request`'s client now; the throttle time in ms, also raised on
    /// the connection's mute. 0 when no quota is set at all (no lock taken).
    pub(crate) fn record(
        &self,
        store: &QuotaStore,
        request: &Request,
        quota_type: QuotaType,
        value: f64,
    ) -> u32 {
        match &request.session {
            Some(session) => self.record_for(
                store,
                session,
                request.header.client_id.as_deref().unwrap_or(""),
                quota_type,
                value,
            ),
            None => 0,
        }
    }

    /// [`QuotaManager::record`] for a connection's session and a client id.
    pub(crate) fn record_for(
        &self,
        store: &QuotaStore,
        session: &Session,
        client_id: &str,
        quota_type: QuotaType,
        value: f64,
    ) -> u32 {
        if store.is_empty() {
            return 0;
        }
        let principal = session.principal();
        let throttle = self.record_at(
            store,
            quota_type,
            quota_user(&principal),
            client_id,
            value,
            self.now_ms(),
        );
        session.throttle.raise(throttle);
        throttle
    }

    /// Records the handler time of a request just handled (its long-poll waits excluded)
    /// against `request_percentage`, and returns how long to mute the connection: the
    /// longest throttle recorded for the request. ApiVersions and the SASL APIs are exempt
    /// from the request quota, as in Kafka.
    pub(crate) fn after_request(
        &self,
        store: &QuotaStore,
        session: &Session,
        client_id: &str,
        api_key: ApiKey,
        handled: Duration,
    ) -> Duration {
        let (mut mute_ms, waited) = session.throttle.take();
        let exempt = matches!(
            api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        if !exempt && !store.is_empty() {
            let worked = handled.saturating_sub(waited);
            // Percent of one second: 10 ms of work is 1 %.
            let percent = worked.as_secs_f64() * 100.0;
            let throttle = self.record_for(store, session, client_id, QuotaType::Request, percent);
            mute_ms = mute_ms.max(throttle);
            session.throttle.take();
        }
        Duration::from_millis(u64::from(mute_ms))
    }

    /// The most a Fetch of `request`'s client may read at once: `consumer_byte_rate` × 10
    /// windows (Kafka's `getMaxValueInQuotaWindow`), or `None` without a limit.
    pub(crate) fn max_fetch_bytes(&self, store: &QuotaStore, request: &Request) -> Option<usize> {
        if store.is_empty() {
            return None;
        }
        let session = request.session.as_ref()?;
        let principal = session.principal();
        let client_id = request.header.client_id.as_deref().unwrap_or("");
        let quota = store.resolve(
            QuotaKey::ConsumerByteRate,
            quota_user(&principal),
            client_id,
        )?;
        let bytes = quota.limit * ((SAMPLES - 1) * SAMPLE_WINDOW_MS / 1000) as f64;
        Some(bytes.min(usize::MAX as f64).max(1.0) as usize)
    }

    /// Registers the per-entity series under `strom_kafka_quota`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strom_kafka_quota");
        r.register(
            "throttle_time_ms",
            "Throttle time given to clients, in ms, by quota type and the entity whose limit applied",
            self.throttle_time.clone(),
        );
        r.register(
            "throttled_responses",
            "Responses that carried a throttle time, by quota type and entity",
            self.throttled.clone(),
        );
        r.register(
            "rate",
            "Measured rate (bytes per second, or percent of a second for request), by quota type and entity",
            self.rate.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_broker::quota::{EntityName, QuotaChange, QuotaEntity, QuotaValue};

    #[test]
    fn rate_counts_at_least_ten_windows_and_forgets_old_samples() {
        let mut r = SampledRate::default();
        r.record(10_000.0, 0);
        // 10 000 bytes over the minimum window of 10 s.
        assert_eq!(r.window_ms(0), 10_000);
        assert!((r.rate(0) - 1000.0).abs() < 1e-9);
        // 20 s later the sample is gone.
        assert_eq!(r.rate(20_000), 0.0);
        // Beyond 10 full windows, the window is the elapsed time.
        let mut r = SampledRate::default();
        for s in 0..=10u64 {
            r.record(1000.0, s * 1000);
        }
        assert_eq!(r.window_ms(10_500), 10_500);
        assert_eq!(r.samples.len(), 11);
        r.record(1000.0, 11_000);
        assert_eq!(r.samples.len(), 11, "the oldest sample makes way");
    }

    #[test]
    fn throttle_is_the_time_back_to_the_limit() {
        let mut r = SampledRate::default();
        r.record(20_000.0, 0);
        // 2000 B/s against 1000 B/s over a 10 s window: 10 s more to come back.
        assert_eq!(r.throttle_ms(1000.0, 0), 10_000);
        assert_eq!(r.throttle_ms(2000.0, 0), 0);
        // After throttling, the rate measured then is at the limit.
        assert!(r.rate(10_000) <= 2000.0);
    }

    #[test]
    fn manager_uses_the_resolved_entity_and_undoes_throttled_fetches() {
        let store = QuotaStore::default();
        let event = strom_broker::metadata::MetadataEvent::ClientQuotasAltered {
            changes: vec![
                QuotaChange {
                    entity: QuotaEntity {
                        user: Some(EntityName::Default),
                        client_id: None,
                    },
                    key: QuotaKey::ConsumerByteRate,
                    value: Some(QuotaValue(1000.0)),
                },
                QuotaChange {
                    entity: QuotaEntity {
                        user: None,
                        client_id: Some(EntityName::Named("p".into())),
                    },
                    key: QuotaKey::RequestPercentage,
                    value: Some(QuotaValue(10.0)),
                },
            ],
        };
        store.apply(&event);
        let m = QuotaManager::default();
        assert_eq!(m.record_at(&store, QuotaType::Produce, "a", "c", 1e9, 0), 0);
        assert_eq!(
            m.record_at(&store, QuotaType::Fetch, "a", "c", 5000.0, 0),
            0
        );
        let t = m.record_at(&store, QuotaType::Fetch, "a", "c", 10_000.0, 0);
        assert_eq!(t, 5000, "15 000 B over 10 s against 1000 B/s");
        // The throttled fetch's bytes were taken back; another user has a rate of its own.
        assert_eq!(
            m.record_at(&store, QuotaType::Fetch, "a", "c", 4000.0, 0),
            0
        );
        assert_eq!(
            m.record_at(&store, QuotaType::Fetch, "b", "c", 9000.0, 0),
            0
        );
        // Request time is bounded by one window.
        let t = m.record_at(&store, QuotaType::Request, "a", "p", 1000.0, 0);
        assert_eq!(t, 1000);
    }
}
