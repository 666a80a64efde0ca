//! Upstream pools: the configured targets of one upstream, which of them are healthy (active
//! HTTP or TCP probes), and which one the next connection goes to (round-robin or
//! least-connections over the healthy ones).
//!
//! A pool is shared by every worker; picking is lock-free (atomics only). Targets start
//! healthy so traffic flows before the first probe has answered.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use frameguard_config::{HealthCheck, HealthCheckKind, LoadBalancing, Upstream};
use http::{header, HeaderValue, Method, Request, Version};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// Consecutive failed probes that take a healthy target out of rotation.
const FALL: u32 = 2;
/// Consecutive successful probes that put an unhealthy target back.
const RISE: u32 = 2;
/// Upper bound of one probe, whatever the configured connect timeout (which may be days).
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One configured upstream, shared by all workers.
#[derive(Debug)]
pub struct UpstreamPool {
    name: String,
    connect_timeout: Duration,
    load_balancing: LoadBalancing,
    health_check: Option<HealthCheck>,
    targets: Box<[Arc<Target>]>,
    /// Where the next pick starts scanning; spreads round-robin and least-connections ties.
    cursor: AtomicUsize,
}

#[derive(Debug)]
struct Target {
    address: String,
    healthy: AtomicBool,
    open: AtomicUsize,
    /// Consecutive probe results that disagree with `healthy`; only the prober touches it.
    streak: Mutex<u32>,
}

/// A picked target; counts as one open connection to it until dropped.
#[derive(Debug)]
pub struct Lease {
    target: Arc<Target>,
}

/// One target's state, for metrics and `frameguard status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetState {
    pub target: String,
    pub healthy: bool,
    pub open: usize,
}

impl UpstreamPool {
    pub fn new(config: &Upstream) -> Arc<UpstreamPool> {
        let targets = config
            .targets
            .iter()
            .map(|address| {
                Arc::new(Target {
                    address: address.clone(),
                    healthy: AtomicBool::new(true),
                    open: AtomicUsize::new(0),
                    streak: Mutex::new(0),
                })
            })
            .collect();
        Arc::new(UpstreamPool {
            name: config.name.clone(),
            connect_timeout: config.connect_timeout,
            load_balancing: config.load_balancing,
            health_check: config.health_check.clone(),
            targets,
            cursor: AtomicUsize::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A healthy target by the pool's load-balancing (round-robin or least-connections, counting
    /// open leases). None when every target is unhealthy.
    pub fn pick(&self) -> Option<Lease> {
        let count = self.targets.len();
        if count == 0 {
            return None;
        }
        let chosen = match self.load_balancing {
            // Each skipped target uses up its turn, so the healthy ones share evenly.
            LoadBalancing::RoundRobin => (0..count)
                .map(|_| &self.targets[self.cursor.fetch_add(1, Ordering::Relaxed) % count])
                .find(|target| target.is_healthy()),
            LoadBalancing::LeastConnections => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed) % count;
                // min_by_key keeps the first of equals, so ties rotate with the cursor.
                (0..count)
                    .map(|offset| &self.targets[(start + offset) % count])
                    .filter(|target| target.is_healthy())
                    .min_by_key(|target| target.open.load(Ordering::Relaxed))
            }
        }?;
        chosen.open.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            target: Arc::clone(chosen),
        })
    }

    /// Probe every target every `interval` until `shutdown` flips to true (or its sender is
    /// gone): http = GET <path> (HTTP/1.1, Host header, Connection: close; 2xx/3xx healthy,
    /// anything else or timeout/refused = unhealthy), tcp = connect succeeds. A target is
    /// marked unhealthy after 2 consecutive failures and healthy again after 2 consecutive
    /// successes, with one log line at each transition. Pools without health-check never probe
    /// (all targets stay healthy) and the future ends at once. Run it on a tokio runtime.
    pub fn health_checks(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let pool = Arc::clone(self);
        async move {
            let Some(check) = pool.health_check.clone() else {
                return;
            };
            let probe = Probe {
                kind: check.kind,
                timeout: pool.connect_timeout.min(MAX_PROBE_TIMEOUT),
            };
            // One loop per target so a slow target never delays the probes of the others.
            // Dropping the set at shutdown aborts every loop, including probes in flight.
            let mut loops = JoinSet::new();
            for index in 0..pool.targets.len() {
                loops.spawn(probe_forever(
                    Arc::clone(&pool),
                    index,
                    probe.clone(),
                    check.interval,
                ));
            }
            // An error means the sender is gone: nobody can ask for shutdown any more, stop now.
            let _ = shutdown.wait_for(|&stop| stop).await;
        }
    }

    /// (target, healthy, open leases) for metrics and `frameguard status`.
    pub fn snapshot(&self) -> Vec<TargetState> {
        self.targets
            .iter()
            .map(|target| TargetState {
                target: target.address.clone(),
                healthy: target.is_healthy(),
                open: target.open.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Feeds one probe result of target `index` and logs a health transition if it causes one.
    fn record(&self, index: usize, result: Result<(), String>) {
        let target = &self.targets[index];
        let Some(healthy) = target.record(result.is_ok()) else {
            return;
        };
        if healthy {
            tracing::info!(
                upstream = %self.name,
                target = %target.address,
                "upstream target is healthy again after {RISE} successful health checks"
            );
        } else {
            let reason = result.err().unwrap_or_default();
            tracing::warn!(
                upstream = %self.name,
                target = %target.address,
                %reason,
                "upstream target is unhealthy after {FALL} failed health checks"
            );
        }
    }
}

impl Target {
    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Counts one probe result; returns the new health when this result flips it.
    fn record(&self, ok: bool) -> Option<bool> {
        let mut streak = self.streak.lock().unwrap_or_else(PoisonError::into_inner);
        let healthy = self.is_healthy();
        if ok == healthy {
            *streak = 0;
            return None;
        }
        *streak += 1;
        let threshold = if healthy { FALL } else { RISE };
        if *streak < threshold {
            return None;
        }
        *streak = 0;
        self.healthy.store(ok, Ordering::Release);
        Some(ok)
    }
}

impl Lease {
    pub fn target(&self) -> &str {
        &self.target.address
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.target.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug)]
struct Probe {
    kind: HealthCheckKind,
    timeout: Duration,
}

impl Probe {
    /// Ok when `address` is healthy; Err says why not, for the transition log line.
    async fn run(&self, address: &str) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.attempt(address)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn attempt(&self, address: &str) -> Result<(), String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("connect failed: {error}"))?;
        match &self.kind {
            HealthCheckKind::Tcp => Ok(()),
            HealthCheckKind::Http { path } => http_probe(stream, address, path).await,
        }
    }
}

async fn http_probe(stream: TcpStream, address: &str, path: &str) -> Result<(), String> {
    let host = HeaderValue::from_str(address).map_err(|_| format!("invalid Host {address:?}"))?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11)
        .header(header::HOST, host)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|error| format!("invalid health-check request: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake failed: {error}"))?;
    // The connection must be driven while the request waits; only the status line and headers
    // are read, the body is dropped with the connection. With `Connection: close` the
    // connection may end in the same poll that hands over the response, so a clean end still
    // asks the request for its answer.
    let response = sender.send_request(request);
    tokio::pin!(response);
    let response = tokio::select! {
        biased;
        response = &mut response => response,
        ended = connection => match ended {
            Ok(()) => response.await,
            Err(error) => return Err(format!("HTTP connection failed: {error}")),
        },
    }
    .map_err(|error| format!("HTTP request failed: {error}"))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

async fn probe_forever(pool: Arc<UpstreamPool>, index: usize, probe: Probe, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    // A probe slower than the interval delays the next one instead of firing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = probe.run(&pool.targets[index].address).await;
        pool.record(index, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(targets: &[&str], load_balancing: LoadBalancing) -> Arc<UpstreamPool> {
        UpstreamPool::new(&Upstream {
            name: "backend".to_owned(),
            targets: targets.iter().map(|target| (*target).to_owned()).collect(),
            load_balancing,
            health_check: None,
            connect_timeout: Duration::from_secs(5),
        })
    }

    fn picked(pool: &UpstreamPool, times: usize) -> Vec<String> {
        (0..times)
            .map(|_| pool.pick().expect("a healthy target").target().to_owned())
            .collect()
    }

    fn mark(pool: &UpstreamPool, index: usize, healthy: bool) {
        for _ in 0..FALL.max(RISE) {
            pool.targets[index].record(healthy);
        }
        assert_eq!(pool.snapshot()[index].healthy, healthy);
    }

    #[test]
    fn round_robin_cycles_through_targets_in_order() {
        let pool = pool(&["a:1", "b:2", "c:3"], LoadBalancing::RoundRobin);
        assert_eq!(
            picked(&pool, 7),
            ["a:1", "b:2", "c:3", "a:1", "b:2", "c:3", "a:1"]
        );
    }

    #[test]
    fn round_robin_skips_unhealthy_targets() {
        let pool = pool(&["a:1", "b:2", "c:3"], LoadBalancing::RoundRobin);
        mark(&pool, 1, false);
        assert_eq!(
            picked(&pool, 6),
            ["a:1", "c:3", "a:1", "c:3", "a:1", "c:3"],
            "the healthy targets share evenly"
        );
    }

    #[test]
    fn least_connections_prefers_the_target_with_fewer_open_leases() {
        let pool = pool(&["a:1", "b:2"], LoadBalancing::LeastConnections);
        mark(&pool, 1, false);
        let mut on_a: Vec<Lease> = (0..3).map(|_| pool.pick().unwrap()).collect();
        mark(&pool, 1, true);
        // a has 3 open, b climbs from 0 to 3 before a is chosen again.
        let on_b: Vec<Lease> = (0..3).map(|_| pool.pick().unwrap()).collect();
        assert!(on_b.iter().all(|lease| lease.target() == "b:2"));
        on_a.truncate(1);
        assert_eq!(picked(&pool, 1), ["a:1"]);
        drop(on_b);
        assert_eq!(picked(&pool, 1), ["b:2"]);
    }

    #[test]
    fn least_connections_ignores_unhealthy_targets_even_when_idle() {
        let pool = pool(&["a:1", "b:2"], LoadBalancing::LeastConnections);
        let _leases: Vec<Lease> = (0..3).map(|_| pool.pick().unwrap()).collect();
        mark(&pool, 0, false);
        assert_eq!(picked(&pool, 3), ["b:2", "b:2", "b:2"]);
    }

    #[test]
    fn dropping_a_lease_closes_its_connection() {
        let pool = pool(&["a:1"], LoadBalancing::RoundRobin);
        let first = pool.pick().unwrap();
        let second = pool.pick().unwrap();
        assert_eq!(pool.snapshot()[0].open, 2);
        drop(first);
        assert_eq!(pool.snapshot()[0].open, 1);
        drop(second);
        assert_eq!(
            pool.snapshot(),
            [TargetState {
                target: "a:1".to_owned(),
                healthy: true,
                open: 0
            }]
        );
    }

    #[test]
    fn no_target_is_picked_when_all_are_unhealthy() {
        for policy in [LoadBalancing::RoundRobin, LoadBalancing::LeastConnections] {
            let pool = pool(&["a:1", "b:2"], policy);
            mark(&pool, 0, false);
            mark(&pool, 1, false);
            assert!(pool.pick().is_none());
            mark(&pool, 1, true);
            assert_eq!(picked(&pool, 2), ["b:2", "b:2"]);
        }
    }

    #[test]
    fn a_pool_without_targets_picks_none() {
        assert!(pool(&[], LoadBalancing::RoundRobin).pick().is_none());
    }

    #[test]
    fn a_target_falls_after_two_consecutive_failures() {
        let pool = pool(&["a:1"], LoadBalancing::RoundRobin);
        let target = &pool.targets[0];
        assert_eq!(target.record(false), None);
        assert_eq!(target.record(true), None, "a success resets the streak");
        assert_eq!(target.record(false), None);
        assert!(pool.pick().is_some(), "one failure keeps it in rotation");
        assert_eq!(target.record(false), Some(false));
        assert!(pool.pick().is_none());
        assert_eq!(target.record(false), None, "already unhealthy");
    }

    #[test]
    fn a_target_rises_after_two_consecutive_successes() {
        let pool = pool(&["a:1"], LoadBalancing::RoundRobin);
        mark(&pool, 0, false);
        let target = &pool.targets[0];
        assert_eq!(target.record(true), None);
        assert_eq!(target.record(false), None, "a failure resets the streak");
        assert_eq!(target.record(true), None);
        assert!(pool.pick().is_none(), "one success keeps it out");
        assert_eq!(target.record(true), Some(true));
        assert!(pool.pick().is_some());
        assert_eq!(target.record(true), None, "already healthy");
    }

    #[test]
    fn record_logs_only_transitions_and_keeps_state() {
        let pool = pool(&["a:1"], LoadBalancing::RoundRobin);
        pool.record(0, Err("refused".to_owned()));
        assert!(pool.snapshot()[0].healthy);
        pool.record(0, Err("refused".to_owned()));
        assert!(!pool.snapshot()[0].healthy);
        pool.record(0, Ok(()));
        pool.record(0, Ok(()));
        assert!(pool.snapshot()[0].healthy);
    }

    #[tokio::test]
    async fn a_pool_without_health_check_never_probes() {
        let pool = pool(&["127.0.0.1:1"], LoadBalancing::RoundRobin);
        let (_keep_open, shutdown) = watch::channel(false);
        tokio::time::timeout(Duration::from_secs(1), pool.health_checks(shutdown))
            .await
            .expect("ends at once");
        assert!(pool.snapshot()[0].healthy);
    }

    #[tokio::test]
    async fn a_refused_tcp_probe_fails_and_an_accepted_one_succeeds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let probe = Probe {
            kind: HealthCheckKind::Tcp,
            timeout: Duration::from_secs(5),
        };
        assert_eq!(probe.run(&open).await, Ok(()));
        drop(listener);
        assert!(probe
            .run(&open)
            .await
            .unwrap_err()
            .contains("connect failed"));
    }

    /// Answers one connection with `response`; yields the request head it read.
    async fn answer_once(response: &'static str) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
                let read = stream.read(&mut buf).await.unwrap();
                assert_ne!(read, 0, "the probe closed before a full request head");
                head.extend_from_slice(&buf[..read]);
            }
            stream.write_all(response.as_bytes()).await.unwrap();
            head
        });
        (address, server)
    }

    fn http_probe_for(path: &str) -> Probe {
        Probe {
            kind: HealthCheckKind::Http {
                path: path.to_owned(),
            },
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn an_http_probe_sends_get_with_host_and_connection_close() {
        let (address, server) = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(http_probe_for("/health?deep=1").run(&address).await, Ok(()));
        let head = server.await.unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(&head).unwrap().is_complete());
        assert_eq!(request.method, Some("GET"));
        assert_eq!(request.path, Some("/health?deep=1"));
        assert_eq!(request.version, Some(1));
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        assert_eq!(header("host"), Some(address));
        assert_eq!(header("connection"), Some("close".to_owned()));
    }

    #[tokio::test]
    async fn an_http_probe_accepts_2xx_and_3xx_only() {
        let cases = [
            ("HTTP/1.1 204 No Content\r\n\r\n", true),
            (
                "HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
            ("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false),
            (
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                false,
            ),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            ("SSH-2.0-OpenSSH_9.6\r\n\r\n", false),
            ("", false),
        ];
        for (response, healthy) in cases {
            let (address, server) = answer_once(response).await;
            let result = http_probe_for("/health").run(&address).await;
            assert_eq!(result.is_ok(), healthy, "{response:?}: {result:?}");
            server.await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_http_probe_is_bounded_by_its_timeout() {
        // Accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let probe = Probe {
            kind: HealthCheckKind::Http {
                path: "/health".to_owned(),
            },
            timeout: Duration::from_millis(200),
        };
        let error = tokio::time::timeout(Duration::from_secs(5), probe.run(&address))
            .await
            .expect("the probe ends by itself")
            .unwrap_err();
        assert!(error.starts_with("no answer within"), "{error}");
        drop(listener);
    }
}
