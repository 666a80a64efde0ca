//! Operating the proxy: metric values after traffic, the route-wide connection limit, SIGHUP
//! reloads (good and bad), wss:// through a TLS listener, upstream health checks steering new
//! connections, and an upstream that disappears mid-stream.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_rustls::rustls::{self, pki_types::CertificateDer, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use support::client::{HandshakeRequest, RawClient};
use support::frame::{self, FrameSpec};
use support::metrics::{scrape, scrape_until, Metrics};
use support::proxy::{free_addr, standard_config, standard_config_with_metrics, temp_file, Proxy};
use support::upstream::Upstream;
use support::IO_TIMEOUT;

fn frames(metrics: &Metrics, direction: &str, opcode: &str) -> f64 {
    metrics.count(
        "frameguard_websocket_frames_total",
        &[("direction", direction), ("opcode", opcode)],
    )
}

fn messages(metrics: &Metrics, direction: &str) -> f64 {
    metrics.count(
        "frameguard_websocket_messages_total",
        &[("route", "ws"), ("direction", direction)],
    )
}

fn active(metrics: &Metrics) -> f64 {
    metrics.count("frameguard_websocket_connections_active", &[])
}

#[tokio::test]
async fn metrics_count_connections_messages_frames_and_handshakes() {
    let upstream = Upstream::echo().await;
    let metrics_addr = free_addr();
    let proxy = Proxy::start_with(|listen| {
        standard_config_with_metrics(listen, upstream.addr, Some(metrics_addr))
    })
    .await;
    let idle = scrape(metrics_addr).await;
    assert_eq!(active(&idle), 0.0);
    assert_eq!(messages(&idle, "inbound"), 0.0);

    let mut client = RawClient::connect(proxy.addr, "/ws").await;
    for text in ["one", "two", "three"] {
        client.send(&FrameSpec::text(text)).await;
        client.read_message().await;
    }
    let fragments = [
        FrameSpec::text("frag").fin(false),
        FrameSpec::continuation(&b"men"[..]).fin(false),
        FrameSpec::continuation(&b"ted"[..]),
    ];
    for fragment in &fragments {
        client.send(fragment).await;
    }
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"fragmented".to_vec())
    );
    for data in [vec![1u8, 2, 3], vec![4u8; 300]] {
        client.send(&FrameSpec::binary(data)).await;
        client.read_message().await;
    }
    client.send(&FrameSpec::ping(&b"are you there"[..])).await;
    assert_eq!(client.read_frame().await.opcode, frame::PONG);

    // The pong is counted once the relay has written it, just before the client reads it.
    let open = scrape_until(metrics_addr, "the pong", |m| {
        frames(m, "outbound", "pong") == 1.0
    })
    .await;
    assert_eq!(active(&open), 1.0);
    assert_eq!(
        open.count("sentinel_websocket_connections_active", &[]),
        1.0
    );
    // Six messages each way; the upstream echoes the fragmented one as a single frame.
    assert_eq!(messages(&open, "inbound"), 6.0);
    assert_eq!(messages(&open, "outbound"), 6.0);
    assert_eq!(
        open.count(
            "sentinel_websocket_messages_total",
            &[("route", "ws"), ("direction", "inbound")]
        ),
        6.0
    );
    assert_eq!(frames(&open, "inbound", "text"), 6.0);
    assert_eq!(frames(&open, "outbound", "text"), 4.0);
    assert_eq!(frames(&open, "inbound", "binary"), 2.0);
    assert_eq!(frames(&open, "outbound", "binary"), 2.0);
    assert_eq!(frames(&open, "inbound", "ping"), 1.0);
    let inbound_bytes = open.count(
        "frameguard_websocket_bytes_total",
        &[("direction", "inbound")],
    );
    assert!(inbound_bytes > 300.0, "{inbound_bytes} bytes read");
    let handshakes =
        |m: &Metrics, result: &str| m.count("frameguard_handshakes_total", &[("result", result)]);
    assert_eq!(handshakes(&open, "accepted"), 1.0);

    let refused = RawClient::handshake(
        proxy.addr,
        &HandshakeRequest::new("/ws").header("Sec-WebSocket-Version", "8"),
    )
    .await;
    assert_eq!(refused.err().map(|r| r.status), Some(426));

    client.send(&FrameSpec::close(1000, "done")).await;
    client.expect_close(1000).await;
    client
        .read_until_eof(IO_TIMEOUT)
        .await
        .expect("closed after the handshake");
    let closed = scrape_until(metrics_addr, "no open connection", |m| active(m) == 0.0).await;
    assert_eq!(frames(&closed, "inbound", "close"), 1.0);
    assert_eq!(frames(&closed, "outbound", "close"), 1.0);
    assert_eq!(handshakes(&closed, "rejected"), 1.0);
    assert_eq!(handshakes(&closed, "accepted"), 1.0);
    assert_eq!(
        closed.count(
            "frameguard_websocket_connections_total",
            &[("data_path", "userspace")]
        ),
        1.0
    );
}

#[tokio::test]
async fn the_metrics_endpoint_serves_only_its_path() {
    let upstream = Upstream::echo().await;
    let metrics_addr = free_addr();
    let _proxy = Proxy::start_with(|listen| {
        standard_config_with_metrics(listen, upstream.addr, Some(metrics_addr))
    })
    .await;
    let request = "GET /other HTTP/1.1\r\nHost: frameguard\r\nConnection: close\r\n\r\n";
    let response = support::http::request(metrics_addr, request.as_bytes())
        .await
        .expect("metrics listener answers");
    assert_eq!(response.status, 404);
    let metrics = scrape(metrics_addr).await;
    assert!(
        metrics
            .text
            .contains("# TYPE frameguard_websocket_connections_active gauge"),
        "{}",
        metrics.text
    );
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test]
async fn route_wide_connection_limit_refuses_every_address_with_503() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let request = HandshakeRequest::new("/ws-capped");
    let mut first = RawClient::handshake_from(loopback(1), proxy.addr, &request)
        .await
        .expect("first connection");
    let _second = RawClient::handshake_from(loopback(2), proxy.addr, &request)
        .await
        .expect("second connection, another address");
    // A third address has no connection of its own, yet the route is full.
    let refused = RawClient::handshake_from(loopback(3), proxy.addr, &request).await;
    assert_eq!(refused.err().map(|r| r.status), Some(503));
    let _elsewhere = RawClient::connect(proxy.addr, "/ws").await;

    first.send(&FrameSpec::close(1000, "")).await;
    first.expect_close(1000).await;
    first.read_until_eof(IO_TIMEOUT).await.expect("closed");
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match RawClient::handshake_from(loopback(3), proxy.addr, &request).await {
            Ok(_) => break,
            Err(resp) if resp.status == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(resp) => panic!("the closed connection's slot was not freed: {resp:?}"),
        }
    }
}

#[tokio::test]
async fn a_reload_does_not_reset_the_connection_limit() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let _first = RawClient::connect(proxy.addr, "/ws-capped").await;
    let _second = RawClient::connect(proxy.addr, "/ws-capped").await;
    proxy.reload_with(&std::fs::read_to_string(proxy.config_path()).expect("read the config"));
    proxy.wait_for_log_lines("configuration reloaded", 1).await;
    assert_eq!(status_of(&proxy, "/ws-capped").await, 503);
}

async fn echo_once(client: &mut RawClient, text: &str) {
    client.send(&FrameSpec::text(text)).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, text.as_bytes().to_vec())
    );
}

async fn status_of(proxy: &Proxy, path: &str) -> u16 {
    match RawClient::handshake(proxy.addr, &HandshakeRequest::new(path)).await {
        Ok(_) => 101,
        Err(resp) => resp.status,
    }
}

#[tokio::test]
async fn sighup_applies_a_good_config_to_new_connections_and_keeps_old_ones() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut old = RawClient::connect(proxy.addr, "/ws").await;
    echo_once(&mut old, "before reload").await;
    assert_eq!(status_of(&proxy, "/ws-new").await, 404);

    let new_route = r#"routes {
    route "ws-new" { priority 100; matches { path "/ws-new" }; upstream "backend"; websocket { enabled #true } }
"#;
    let config = standard_config(proxy.addr, upstream.addr).replacen("routes {\n", new_route, 1);
    assert!(config.contains("ws-new"));
    proxy.reload_with(&config);
    proxy.wait_for_log_lines("configuration reloaded", 1).await;

    let mut new = RawClient::connect(proxy.addr, "/ws-new").await;
    echo_once(&mut new, "on the new route").await;
    echo_once(&mut old, "after reload").await;
    assert_eq!(status_of(&proxy, "/ws").await, 101);
}

#[tokio::test]
async fn sighup_with_a_bad_config_logs_the_error_and_keeps_serving() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut old = RawClient::connect(proxy.addr, "/ws").await;
    echo_once(&mut old, "before reload").await;

    // Not KDL at all, then valid KDL naming an upstream that does not exist.
    let unknown_upstream = standard_config(proxy.addr, upstream.addr).replacen(
        r#"path "/ws" }; upstream "backend""#,
        r#"path "/ws" }; upstream "nowhere""#,
        1,
    );
    assert!(unknown_upstream.contains("nowhere"));
    for (attempt, config) in ["routes { route \"x\" {", unknown_upstream.as_str()]
        .into_iter()
        .enumerate()
    {
        proxy.reload_with(config);
        let lines = proxy
            .wait_for_log_lines("reload rejected", attempt + 1)
            .await;
        let line = &lines[attempt];
        let file = proxy.config_path().display().to_string();
        assert!(line.contains(&file), "the error names the file: {line}");
        echo_once(&mut old, "still relayed").await;
        let mut fresh = RawClient::connect(proxy.addr, "/ws").await;
        echo_once(&mut fresh, "new connection, old config").await;
    }
    assert!(
        !proxy.log().contains("configuration reloaded"),
        "{}",
        proxy.log_tail()
    );
}

/// A self-signed certificate for `localhost`, its key, and a client config trusting only it.
fn tls_files() -> (
    tempfile::NamedTempFile,
    tempfile::NamedTempFile,
    ClientConfig,
) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .expect("trust the certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        temp_file(".pem", &cert.pem()),
        temp_file(".key", &key_pair.serialize_pem()),
        client,
    )
}

#[tokio::test]
async fn wss_echo_through_an_https_listener() {
    let upstream = Upstream::echo().await;
    let (cert, key, client_config) = tls_files();
    let tls_addr = free_addr();
    let (cert_path, key_path) = (cert.path().display(), key.path().display());
    // The plain listener is the one the readiness check polls.
    let listener = format!(
        r#"listeners {{
    listener "https" {{ address "{tls_addr}"; protocol "https"; tls {{ cert-file "{cert_path}"; key-file "{key_path}" }} }}
"#
    );
    let mut proxy = Proxy::start_with(|listen| {
        standard_config(listen, upstream.addr).replacen("listeners {", &listener, 1)
    })
    .await;
    proxy.keep(cert);
    proxy.keep(key);

    let url = format!("wss://localhost:{}/ws", tls_addr.port());
    let connector = Connector::Rustls(Arc::new(client_config));
    let (mut ws, response) = tokio::time::timeout(
        IO_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)),
    )
    .await
    .expect("wss handshake in time")
    .expect("wss handshake");
    assert_eq!(response.status(), 101);
    let sent = [
        Message::text("over TLS"),
        Message::binary(vec![0u8, 255, 7, 42]),
        Message::text("x".repeat(70_000)),
    ];
    for message in sent.clone() {
        ws.send(message).await.expect("send");
    }
    for expected in sent {
        let got = tokio::time::timeout(IO_TIMEOUT, ws.next())
            .await
            .expect("echo in time")
            .expect("an echo")
            .expect("a valid message");
        assert_eq!(got, expected);
    }
    ws.close(None).await.expect("close");
    let (head, _) = &upstream.requests()[0];
    assert_eq!(head.header("x-forwarded-proto"), Some("https"), "{head:?}");
}

fn upgrades(upstream: &Upstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|(head, _)| head.header("upgrade").is_some())
        .count()
}

/// Two targets probed every second; a handshake on `/ws` either succeeds or is answered.
fn pool_config(listen: SocketAddr, a: SocketAddr, b: SocketAddr) -> String {
    format!(
        r#"system {{ worker-threads 2; graceful-shutdown-timeout-secs 2 }}
listeners {{ listener "http" {{ address "{listen}"; protocol "http" }} }}
routes {{
    route "health" {{ priority 1000; matches {{ path "/health" }}; service-type "builtin"; builtin-handler "health" }}
    route "ws" {{ priority 100; matches {{ path "/ws" }}; upstream "pool"; websocket {{ enabled #true }} }}
}}
upstreams {{
    upstream "pool" {{
        target "{a}"; target "{b}"; load-balancing "round-robin"
        health-check {{ type "http" {{ path "/health" }}; interval-secs 1 }}
    }}
}}
observability {{ logging {{ level "debug"; format "text" }} }}
"#
    )
}

#[tokio::test]
async fn after_a_target_dies_health_checks_send_every_new_connection_to_the_live_one() {
    let live = Upstream::echo().await;
    let doomed = Upstream::echo().await;
    let proxy = Proxy::start_with(|listen| pool_config(listen, live.addr, doomed.addr)).await;
    for i in 0..4 {
        let mut client = RawClient::connect(proxy.addr, "/ws").await;
        echo_once(&mut client, &format!("spread {i}")).await;
    }
    assert!(
        upgrades(&live) >= 1 && upgrades(&doomed) >= 1,
        "round-robin uses both"
    );

    drop(doomed);
    let died = Instant::now();
    // Until the probes notice, round-robin still sends some handshakes to the dead port (502).
    let mut in_a_row = 0;
    while in_a_row < 6 {
        assert!(
            died.elapsed() < Duration::from_secs(10),
            "new connections still failed {:?} after the target died:\n{}",
            died.elapsed(),
            proxy.log_tail()
        );
        in_a_row = match status_of(&proxy, "/ws").await {
            101 => in_a_row + 1,
            _ => 0,
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = upgrades(&live);
    for i in 0..20 {
        let mut client = RawClient::connect(proxy.addr, "/ws").await;
        echo_once(&mut client, &format!("steady {i}")).await;
    }
    assert_eq!(upgrades(&live), before + 20);
    proxy.wait_for_log_lines("unhealthy", 1).await;
}

#[tokio::test]
async fn upstream_gone_mid_stream_closes_the_client_with_1011() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut client = RawClient::connect(proxy.addr, "/ws").await;
    echo_once(&mut client, "upstream still here").await;
    drop(upstream);
    client
        .expect_close_reason(1011, "upstream connection lost")
        .await;
    client.send(&FrameSpec::close(1011, "")).await;
    client
        .read_until_eof(IO_TIMEOUT)
        .await
        .expect("the proxy ends TCP after the closing handshake");
}
