//! `/metrics` in Prometheus text format: requests by verb, resource and code, request
//! latency, registered watchers, storage commit latency, and (rkube's own; kube-apiserver
//! has no such metric) `rkube_responses_total{verb,resource,content_type}`: answers by the
//! media type they were sent in (`application/json`, `application/vnd.kubernetes.protobuf`,
//! `application/yaml`, ...; parameters such as `;stream=watch` left off, `none` for an
//! answer without a body type), so what a client was really answered in can be seen.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub verb: String,
    pub resource: String,
    pub content_type: String,
}

type HistogramFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub responses: Family<ResponseLabels, Counter>,
    pub latency: HistogramFamily,
    pub watchers: Gauge,
    pub commit_seconds: Histogram,
    pub commit_batch_writes: Histogram,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let responses = Family::<ResponseLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let watchers = Gauge::default();
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let commit_batch_writes = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register("apiserver_request", "Requests by verb, resource and HTTP code", requests.clone());
        registry.register(
            "rkube_responses",
            "Answers by verb, resource and the media type of their body (rkube's own)",
            responses.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource (watch: until the stream starts)",
            latency.clone(),
        );
        registry.register("apiserver_registered_watchers", "Watch streams open now", watchers.clone());
        registry.register(
            "rkube_storage_commit_duration_seconds",
            "Duration of one durable batch commit",
            commit_seconds.clone(),
        );
        registry.register(
            "rkube_storage_commit_batch_writes",
            "Writes per durable batch commit",
            commit_batch_writes.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            responses,
            latency,
            watchers,
            commit_seconds,
            commit_batch_writes,
        }
    }

    /// Counts one answer: `content_type` is its Content-Type header, if any.
    pub fn record(&self, verb: &str, resource: &str, code: u16, content_type: Option<&str>, seconds: f64) {
        let media = content_type.and_then(|c| c.split(';').next()).map(str::trim).filter(|m| !m.is_empty());
        self.responses
            .get_or_create(&ResponseLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
                content_type: media.unwrap_or("none").to_ascii_lowercase(),
            })
            .inc();
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels { verb: verb.to_string(), resource: resource.to_string() })
            .observe(seconds);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
