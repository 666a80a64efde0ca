//! Prometheus metrics. The seed documents' names (`sentinel_*`) are exported as they are, and
//! every metric also under the `frameguard_` prefix.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteDirection {
    pub route: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    pub direction: String,
    pub opcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TagLabel {
    pub tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DataPathLabel {
    pub data_path: String,
}

pub struct Metrics {
    registry: Registry,
    pub connections_active: Gauge,
    pub connections: Family<DataPathLabel, Counter>,
    pub connection_duration: Histogram,
    pub messages: Family<RouteDirection, Counter>,
    pub frames: Family<FrameLabels, Counter>,
    pub bytes: Family<DirectionLabel, Counter>,
    pub messages_inspected: Counter,
    pub blocked: Family<TagLabel, Counter>,
    pub detect_only: Family<TagLabel, Counter>,
    pub inspection_errors: Counter,
    pub inspection_latency: Histogram,
    pub handshakes: Family<ResultLabel, Counter>,
    pub upstream_connect_errors: Family<UpstreamLabel, Counter>,
}

/// Register under `frameguard_<name>`, and under `seed_name` too when the seed documents name it.
fn register<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    seed_name: Option<&str>,
    help: &str,
    metric: &M,
) {
    registry.register(format!("frameguard_{name}"), help, metric.clone());
    if let Some(seed_name) = seed_name {
        registry.register(seed_name, help, metric.clone());
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            connections_active: Gauge::default(),
            connections: Family::default(),
            connection_duration: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            messages: Family::default(),
            frames: Family::default(),
            bytes: Family::default(),
            messages_inspected: Counter::default(),
            blocked: Family::default(),
            detect_only: Family::default(),
            inspection_errors: Counter::default(),
            inspection_latency: Histogram::new(exponential_buckets(0.000_001, 2.0, 20)),
            handshakes: Family::default(),
            upstream_connect_errors: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        register(
            r,
            "websocket_connections_active",
            Some("sentinel_websocket_connections_active"),
            "Open WebSocket connections",
            &metrics.connections_active,
        );
        register(
            r,
            "websocket_connections",
            None,
            "WebSocket connections opened, by data path",
            &metrics.connections,
        );
        register(
            r,
            "websocket_connection_duration_seconds",
            Some("sentinel_websocket_connection_duration_seconds"),
            "Lifetime of WebSocket connections",
            &metrics.connection_duration,
        );
        register(
            r,
            "websocket_messages",
            Some("sentinel_websocket_messages"),
            "WebSocket data messages relayed, by route and direction",
            &metrics.messages,
        );
        register(
            r,
            "websocket_frames",
            None,
            "WebSocket frames relayed, by direction and opcode",
            &metrics.frames,
        );
        register(
            r,
            "websocket_bytes",
            None,
            "WebSocket bytes read, by direction",
            &metrics.bytes,
        );
        register(
            r,
            "messages_inspected",
            None,
            "Messages run through the inspection engine",
            &metrics.messages_inspected,
        );
        register(
            r,
            "agent_ws_blocked",
            Some("sentinel_agent_ws_blocked"),
            "Messages blocked (sender closed), by audit tag",
            &metrics.blocked,
        );
        register(
            r,
            "agent_ws_detect_only",
            None,
            "Detections forwarded in detect-only mode, by audit tag",
            &metrics.detect_only,
        );
        register(
            r,
            "inspection_errors",
            None,
            "Inspection engine errors (allowed under fail-open, closed 1011 otherwise)",
            &metrics.inspection_errors,
        );
        register(
            r,
            "inspection_latency_seconds",
            None,
            "Time to inspect the messages of one read",
            &metrics.inspection_latency,
        );
        register(
            r,
            "handshakes",
            None,
            "WebSocket upgrade attempts, by result",
            &metrics.handshakes,
        );
        register(
            r,
            "upstream_connect_errors",
            None,
            "Failed connections to upstream targets",
            &metrics.upstream_connect_errors,
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn handshake(&self, result: &str) {
        self.handshakes
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }
}
