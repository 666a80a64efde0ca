//! Active health checks against real HTTP servers on 127.0.0.1: a target that stops answering
//! leaves the rotation, and comes back once it answers again on the same port.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frameguard::upstream::UpstreamPool;
use frameguard_config::{HealthCheck, HealthCheckKind, LoadBalancing, Upstream};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Upper bound of each wait for a health transition (2 probes 1 s apart, plus slack).
const TRANSITION_LIMIT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 server that answers `/health` with `health_status` and anything else with 404.
/// Connections are served inline, so aborting the task closes the port and every connection.
async fn serve(address: SocketAddr, health_status: StatusCode) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(address).await.expect("bind");
    let bound = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service_fn(move |request: Request<Incoming>| async move {
                let status = if request.uri().path() == "/health" {
                    health_status
                } else {
                    StatusCode::NOT_FOUND
                };
                let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    });
    (bound, task)
}

fn pool_config(targets: &[SocketAddr], kind: HealthCheckKind) -> Upstream {
    Upstream {
        name: "backend".to_owned(),
        targets: targets.iter().map(SocketAddr::to_string).collect(),
        load_balancing: LoadBalancing::RoundRobin,
        health_check: Some(HealthCheck {
            kind,
            interval: Duration::from_secs(1),
        }),
        connect_timeout: Duration::from_secs(1),
    }
}

fn http_check() -> HealthCheckKind {
    HealthCheckKind::Http {
        path: "/health".to_owned(),
    }
}

fn is_healthy(pool: &UpstreamPool, target: SocketAddr) -> bool {
    let target = target.to_string();
    pool.snapshot()
        .iter()
        .find(|state| state.target == target)
        .expect("a configured target")
        .healthy
}

async fn wait_until_health(pool: &UpstreamPool, target: SocketAddr, healthy: bool) {
    let deadline = Instant::now() + TRANSITION_LIMIT;
    while is_healthy(pool, target) != healthy {
        assert!(
            Instant::now() < deadline,
            "{target} did not become {} within {TRANSITION_LIMIT:?}: {:?}",
            if healthy { "healthy" } else { "unhealthy" },
            pool.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn picked_targets(pool: &UpstreamPool, times: usize) -> HashSet<String> {
    (0..times)
        .map(|_| pool.pick().expect("a healthy target").target().to_owned())
        .collect()
}

fn names(targets: &[SocketAddr]) -> HashSet<String> {
    targets.iter().map(SocketAddr::to_string).collect()
}

/// Runs the pool's health checks; the returned sender stops them.
fn start_checks(pool: &Arc<UpstreamPool>) -> (watch::Sender<bool>, JoinHandle<()>) {
    // Shows the transition log lines next to a failure.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (stop, shutdown) = watch::channel(false);
    (stop, tokio::spawn(pool.health_checks(shutdown)))
}

async fn stop_checks(stop: watch::Sender<bool>, checks: JoinHandle<()>) {
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), checks)
        .await
        .expect("health checks stop at shutdown")
        .unwrap();
}

#[tokio::test]
async fn a_dead_target_leaves_the_rotation_and_returns_when_it_answers_again() {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (alive, _alive_server) = serve(any_port, StatusCode::OK).await;
    let (flaky, flaky_server) = serve(any_port, StatusCode::OK).await;
    let pool = UpstreamPool::new(&pool_config(&[alive, flaky], http_check()));
    let (stop, checks) = start_checks(&pool);

    assert_eq!(picked_targets(&pool, 4), names(&[alive, flaky]));

    flaky_server.abort();
    let _ = flaky_server.await;
    wait_until_health(&pool, flaky, false).await;
    assert_eq!(picked_targets(&pool, 50), names(&[alive]));
    assert!(is_healthy(&pool, alive));

    let (restarted, _restarted_server) = serve(flaky, StatusCode::OK).await;
    assert_eq!(restarted, flaky);
    wait_until_health(&pool, flaky, true).await;
    assert_eq!(picked_targets(&pool, 4), names(&[alive, flaky]));

    stop_checks(stop, checks).await;
}

#[tokio::test]
async fn an_error_status_marks_a_target_unhealthy_and_a_redirect_does_not() {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (failing, _failing_server) = serve(any_port, StatusCode::SERVICE_UNAVAILABLE).await;
    let (redirecting, _redirecting_server) = serve(any_port, StatusCode::FOUND).await;
    let pool = UpstreamPool::new(&pool_config(&[failing, redirecting], http_check()));
    let (stop, checks) = start_checks(&pool);

    wait_until_health(&pool, failing, false).await;
    assert!(is_healthy(&pool, redirecting));
    assert_eq!(picked_targets(&pool, 10), names(&[redirecting]));

    stop_checks(stop, checks).await;
}

#[tokio::test]
async fn a_tcp_check_follows_whether_the_port_accepts() {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // A 404 on /health does not matter to a TCP check: accepting is enough.
    let (accepting, accepting_server) = serve(any_port, StatusCode::NOT_FOUND).await;
    let pool = UpstreamPool::new(&pool_config(&[accepting], HealthCheckKind::Tcp));
    let (stop, checks) = start_checks(&pool);

    // Two probes have run once the first transition is possible; it must not have happened.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(is_healthy(&pool, accepting));

    accepting_server.abort();
    let _ = accepting_server.await;
    wait_until_health(&pool, accepting, false).await;
    assert!(pool.pick().is_none());

    stop_checks(stop, checks).await;
}
