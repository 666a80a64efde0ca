//! The JSON records the subcommands print, one per line, and `report` reads back.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::proc_stats::WatchReport;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Run(Box<RunReport>),
    Idle(IdleReport),
    /// A configuration the benchmark cannot measure in this build, with the reason.
    Unavailable(Unavailable),
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From a histogram of nanoseconds.
    pub fn from_nanos(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub tags: BTreeMap<String, String>,
    pub url: String,
    pub conns: usize,
    pub connected: usize,
    pub size: usize,
    /// Size of each reply when the server resized them; records of older runs have none.
    #[serde(default)]
    pub reply_size: Option<usize>,
    pub pipeline: u32,
    pub fanout: u32,
    /// Offered messages per second in total (open loop); None = closed loop.
    pub rate: Option<f64>,
    pub window_s: f64,
    /// Messages sent and answered (all fan-out copies received) inside the window.
    pub round_trips: u64,
    pub msgs_per_sec: f64,
    /// Data messages received inside the window (round trips x fan-out).
    pub recv_msgs: u64,
    pub recv_msgs_per_sec: f64,
    pub sent_msgs: u64,
    /// Payload bytes only, MB = 10^6 bytes.
    pub mb_per_sec_sent: f64,
    pub mb_per_sec_recv: f64,
    /// From each send to the arrival of each copy of its echo.
    pub latency_us: Latency,
    pub connect_failures: u64,
    /// Connections that ended early: I/O errors, protocol errors, closes by the server, wrong echoes.
    pub errors: u64,
    pub first_error: Option<String>,
    pub unanswered_at_end: u64,
    /// Open loop: messages sent more than 2 ms after their scheduled time (the generator fell
    /// behind, or the pipeline cap held them back).
    pub sent_late: u64,
    pub watch: Vec<WatchReport>,
    pub generator: WatchReport,
    /// Busy CPU seconds of the whole machine in the window (generator, echo server, proxy,
    /// softirq and kernel threads); records of older runs have none.
    #[serde(default)]
    pub machine_cpu_s: Option<f64>,
}

impl RunReport {
    pub fn watched(&self, name: &str) -> Option<&WatchReport> {
        self.watch.iter().find(|w| w.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleReport {
    pub tags: BTreeMap<String, String>,
    pub url: String,
    pub conns: usize,
    pub established: usize,
    pub connect_failures: u64,
    pub first_error: Option<String>,
    /// Connections the server had closed by the time memory was sampled.
    pub dropped: usize,
    pub connect_s: f64,
    pub watch: Vec<IdleWatch>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleWatch {
    pub name: String,
    pub pid: u32,
    pub rss_kib_before: u64,
    pub rss_kib_after: u64,
    /// (after - before) / established connections.
    pub kib_per_conn: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unavailable {
    pub config: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_microseconds() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for us in 1..=1000u64 {
            histogram.record(us * 1000).unwrap();
        }
        let latency = Latency::from_nanos(&histogram);
        assert!((latency.p50 - 500.0).abs() < 1.0, "{latency:?}");
        assert!((latency.p99 - 990.0).abs() < 1.0, "{latency:?}");
        assert!((latency.max - 1000.0).abs() < 1.0, "{latency:?}");
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        let histogram = Histogram::<u64>::new_with_bounds(1, 1000, 3).unwrap();
        assert_eq!(Latency::from_nanos(&histogram), Latency::default());
    }

    #[test]
    fn records_are_tagged_by_kind() {
        let record = Record::Unavailable(Unavailable {
            config: "kernel".into(),
            reason: "not in this build".into(),
        });
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.starts_with(r#"{"kind":"unavailable""#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
    }
}
