//! Prometheus metrics recorded as the process runs (prometheus-client):
//! request counters and latency histograms, produced and fetched bytes,
//! fsync times. The broker adds its state at scrape time
//! (`broker::scrape`), and the HTTP listener serves both on `GET /metrics`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub api: String,
}

type HistogramFamily = Family<ApiLabel, Histogram, fn() -> Histogram>;

/// 0.1 ms to ~3.3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    produce_records: Family<TopicLabel, Counter>,
    produce_bytes: Family<TopicLabel, Counter>,
    fetch_bytes: Family<TopicLabel, Counter>,
    requests: Family<ApiLabel, Counter>,
    request_errors: Family<ApiLabel, Counter>,
    request_seconds: HistogramFamily,
    fsync_seconds: Histogram,
    rebalances: Family<GroupLabel, Counter>,
    kafka_requests: Family<ApiLabel, Counter>,
    kafka_request_errors: Family<ApiLabel, Counter>,
    kafka_request_seconds: HistogramFamily,
    kafka_connections: prometheus_client::metrics::gauge::Gauge,
    rebalance_seconds: Family<ProtocolLabel, Histogram, fn() -> Histogram>,
    produce_stage_seconds: Family<StageLabel, Histogram, fn() -> Histogram>,
    cleaner: CleanerMetrics,
}

/// The log cleaner's counters (all partitions of the broker).
struct CleanerMetrics {
    bytes_read: Counter,
    bytes_written: Counter,
    bytes_reclaimed: Counter,
    passes: Counter,
    pass_seconds: Histogram,
}

impl CleanerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            bytes_read: Counter::default(),
            bytes_written: Counter::default(),
            bytes_reclaimed: Counter::default(),
            passes: Counter::default(),
            pass_seconds: rebalance_histogram(),
        };
        registry.register(
            "cleaner_read_bytes",
            "Bytes of log the cleaner read",
            m.bytes_read.clone(),
        );
        registry.register(
            "cleaner_written_bytes",
            "Bytes of cleaned segments the cleaner wrote",
            m.bytes_written.clone(),
        );
        registry.register(
            "cleaner_reclaimed_bytes",
            "Bytes of log compaction removed",
            m.bytes_reclaimed.clone(),
        );
        registry.register(
            "cleaner_passes",
            "Compaction passes installed",
            m.passes.clone(),
        );
        registry.register(
            "cleaner_pass_duration_seconds",
            "Time one compaction pass took, from its plan to its swap",
            m.pass_seconds.clone(),
        );
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

/// 10 µs to ~0.65 s: stages are short.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 17))
}

/// 10 ms to ~3 min.
fn rebalance_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: String,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Routes the storage layer's fsync timings into the fsync histogram.
/// Safe to call more than once (the first installation stays).
pub fn install() {
    crate::log::observe_fsyncs(|d| global().fsync(d));
}

impl Metrics {
    /// The process's counters and histograms as OpenMetrics text, without
    /// the closing `# EOF` (more families follow).
    pub fn encode(&self, out: &mut String) {
        let _ = prometheus_client::encoding::text::encode(out, &self.registry);
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
    }

    fn new() -> Self {
        let mut registry = Registry::with_prefix("strata");
        let produce_records = Family::<TopicLabel, Counter>::default();
        let produce_bytes = Family::<TopicLabel, Counter>::default();
        let fetch_bytes = Family::<TopicLabel, Counter>::default();
        let requests = Family::<ApiLabel, Counter>::default();
        let request_errors = Family::<ApiLabel, Counter>::default();
        let request_seconds: HistogramFamily =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let fsync_seconds = latency_histogram();
        registry.register(
            "produced_records",
            "Records appended by produce requests",
            produce_records.clone(),
        );
        registry.register(
            "produced_bytes",
            "Record batch bytes appended by produce requests (bytes in)",
            produce_bytes.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Record batch bytes returned by fetches and subscriptions (bytes out)",
            fetch_bytes.clone(),
        );
        registry.register("requests", "Client requests by API", requests.clone());
        registry.register(
            "request_errors",
            "Client requests that failed, by API",
            request_errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Client request latency by API (produce: until acknowledged; fetch: including long-poll waits)",
            request_seconds.clone(),
        );
        registry.register(
            "fsync_duration_seconds",
            "Latency of one sync pass over a log's files",
            fsync_seconds.clone(),
        );
        let rebalances = Family::<GroupLabel, Counter>::default();
        registry.register(
            "group_rebalances",
            "Group epoch changes of groups this broker coordinates (a member joined, left, expired or resubscribed)",
            rebalances.clone(),
        );
        let kafka_requests = Family::<ApiLabel, Counter>::default();
        let kafka_request_errors = Family::<ApiLabel, Counter>::default();
        let kafka_request_seconds: HistogramFamily =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let kafka_connections = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "kafka_requests",
            "Requests on the Kafka listener by Kafka API",
            kafka_requests.clone(),
        );
        registry.register(
            "kafka_request_errors",
            "Kafka requests answered with an error (any partition or item), by Kafka API",
            kafka_request_errors.clone(),
        );
        registry.register(
            "kafka_request_duration_seconds",
            "Kafka request latency by Kafka API, from the decoded frame to the encoded answer",
            kafka_request_seconds.clone(),
        );
        registry.register(
            "kafka_connections",
            "Open connections on the Kafka listener",
            kafka_connections.clone(),
        );
        let rebalance_seconds: Family<ProtocolLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(rebalance_histogram as fn() -> Histogram);
        let produce_stage_seconds: Family<StageLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(stage_histogram as fn() -> Histogram);
        registry.register(
            "produce_stage_seconds",
            "Time produce requests spent per stage: check, queue (to the Raft proposal), append (to the local log), replicate (to the high watermark), respond",
            produce_stage_seconds.clone(),
        );
        registry.register(
            "group_rebalance_duration_seconds",
            "Time from the start of a rebalance to a stable group (every partition with its target owner), by group protocol",
            rebalance_seconds.clone(),
        );
        let cleaner = CleanerMetrics::register(&mut registry);
        // Zeros rather than absent series for the APIs with latency figures.
        for api in ["produce", "fetch"] {
            let l = Self::api(api);
            requests.get_or_create(&l).inc_by(0);
            request_errors.get_or_create(&l).inc_by(0);
        }
        Self {
            registry,
            produce_records,
            produce_bytes,
            fetch_bytes,
            requests,
            request_errors,
            request_seconds,
            fsync_seconds,
            rebalances,
            kafka_requests,
            kafka_request_errors,
            kafka_request_seconds,
            kafka_connections,
            rebalance_seconds,
            produce_stage_seconds,
            cleaner,
        }
    }

    /// A compaction pass was installed.
    pub fn cleaner_pass(&self, read: u64, written: u64, reclaimed: u64, took: Duration) {
        let c = &self.cleaner;
        c.bytes_read.inc_by(read);
        c.bytes_written.inc_by(written);
        c.bytes_reclaimed.inc_by(reclaimed);
        c.passes.inc();
        c.pass_seconds.observe(took.as_secs_f64());
    }

    /// A rebalance of a group of `protocol` ended in a stable group.
    pub fn rebalance_done(&self, protocol: &str, took: Duration) {
        self.rebalance_seconds
            .get_or_create(&ProtocolLabel {
                protocol: protocol.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A finished request on the Kafka listener.
    pub fn kafka_request(&self, api: &str, took: Duration, ok: bool) {
        let l = Self::api(api);
        self.kafka_requests.get_or_create(&l).inc();
        if !ok {
            self.kafka_request_errors.get_or_create(&l).inc();
        }
        self.kafka_request_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// A Kafka connection opened (+1) or closed (-1).
    pub fn kafka_connection(&self, delta: i64) {
        self.kafka_connections.inc_by(delta);
    }

    fn api(api: &str) -> ApiLabel {
        ApiLabel {
            api: api.to_owned(),
        }
    }

    /// A finished client request of `api`.
    pub fn request(&self, api: &str, took: Duration, ok: bool) {
        let l = Self::api(api);
        self.requests.get_or_create(&l).inc();
        if !ok {
            self.request_errors.get_or_create(&l).inc();
        }
        self.request_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let l = TopicLabel {
            topic: topic.to_owned(),
        };
        self.produce_records.get_or_create(&l).inc_by(records);
        self.produce_bytes.get_or_create(&l).inc_by(bytes);
    }

    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let l = TopicLabel {
            topic: topic.to_owned(),
        };
        self.fetch_bytes.get_or_create(&l).inc_by(bytes);
    }

    pub fn rebalance(&self, group: &str) {
        self.rebalances
            .get_or_create(&GroupLabel {
                group: group.to_owned(),
            })
            .inc();
    }

    /// Time a produce spent in one stage (`broker::produce`).
    pub fn produce_stage(&self, stage: &'static str, took: Duration) {
        self.produce_stage_seconds
            .get_or_create(&StageLabel { stage })
            .observe(took.as_secs_f64());
    }

    pub fn fsync(&self, took: Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }
}
