//! Scraping the proxy's Prometheus endpoint over HTTP and reading sample values from it.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Sample, Value};

use super::http;

/// One scrape of `/metrics`.
pub struct Metrics {
    pub text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    /// The value of the sample `name` whose labels include all of `labels` (None when there is
    /// no such sample; counters appear only once touched).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                Value::Histogram(_) | Value::Summary(_) => None,
            })
    }

    /// [`Metrics::value`], 0 for a sample not exported yet.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

/// GET /metrics on `addr`: status 200 and text that parses.
pub async fn scrape(addr: SocketAddr) -> Metrics {
    let request = "GET /metrics HTTP/1.1\r\nHost: frameguard\r\nConnection: close\r\n\r\n";
    let response = http::request(addr, request.as_bytes())
        .await
        .expect("scrape /metrics");
    assert_eq!(response.status, 200, "{:?}", response.body_text());
    let text = response.body_text();
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let samples = prometheus_parse::Scrape::parse(lines)
        .expect("metrics parse")
        .samples;
    Metrics { text, samples }
}

/// Scrape until `done` holds (bounded by `IO_TIMEOUT`): counters are updated by the relay
/// tasks, a moment after the client has seen the traffic they count.
pub async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let deadline = tokio::time::Instant::now() + super::IO_TIMEOUT;
    loop {
        let metrics = scrape(addr).await;
        if done(&metrics) {
            return metrics;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("metrics never showed {what}:\n{}", metrics.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
