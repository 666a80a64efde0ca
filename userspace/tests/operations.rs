//! Connection lifetime features through the proxy: keep-alive pings, the idle timeout,
//! per-address connection limits and graceful shutdown.

mod support;

use std::time::{Duration, Instant};

use support::client::{HandshakeRequest, RawClient};
use support::frame::{self, FrameSpec};
use support::proxy::Proxy;
use support::upstream::{Event, Upstream};

async fn start() -> (Upstream, Proxy) {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    (upstream, proxy)
}

fn upstream_ended(events: &[(usize, Event)]) -> bool {
    events.iter().any(|(_, e)| *e == Event::Eof)
}

#[tokio::test]
async fn answered_keepalive_pings_keep_the_connection_open() {
    let (_upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-keepalive").await;
    let started = Instant::now();
    let mut pings = 0;
    // Three ping intervals with a one-second timeout each: unanswered, this would have closed.
    while started.elapsed() < Duration::from_millis(3500) {
        let ping = client.read_frame().await;
        assert_eq!(
            ping.opcode,
            frame::PING,
            "only keep-alive pings are expected: {ping:?}"
        );
        client
            .send(&FrameSpec::new(frame::PONG, ping.payload))
            .await;
        pings += 1;
    }
    assert!(pings >= 2, "{pings} pings in {:?}", started.elapsed());
    client.send(&FrameSpec::text("still here")).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"still here".to_vec())
    );
}

#[tokio::test]
async fn unanswered_keepalive_ping_drops_the_client_and_its_upstream() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-keepalive").await;
    let ping = client.read_frame().await;
    assert_eq!(ping.opcode, frame::PING, "{ping:?}");
    let silent_since = Instant::now();
    // Keep reading (a reader that never answers); pings or a Close may come before EOF.
    client
        .read_until_eof(Duration::from_secs(6))
        .await
        .expect("dropped within the ping timeout");
    assert!(
        silent_since.elapsed() < Duration::from_secs(4),
        "dropped after {:?}",
        silent_since.elapsed()
    );
    upstream
        .wait_for("the upstream connection end", upstream_ended)
        .await;
}

#[tokio::test]
async fn idle_connection_is_closed_with_1001_on_both_sides() {
    let (upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-idle").await;
    let started = Instant::now();
    client.expect_close(1001).await;
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed after only {after:?}"
    );
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
    client.send(&FrameSpec::close(1001, "")).await;
    client
        .read_until_eof(Duration::from_secs(5))
        .await
        .expect("closed after the handshake");
    upstream
        .wait_for("the upstream connection end", upstream_ended)
        .await;
    assert_eq!(upstream.close_codes(), [Some(1001)]);
}

#[tokio::test]
async fn traffic_postpones_the_idle_timeout() {
    let (_upstream, proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws-idle").await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        client.send(&FrameSpec::text("busy")).await;
        assert_eq!(client.read_message().await, (frame::TEXT, b"busy".to_vec()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_client_that_stops_mid_message_is_closed_1008_and_nothing_of_it_is_forwarded() {
    let (upstream, proxy) = start().await;
    let frame = FrameSpec::text("never finished").encode();
    let unfinished_message = FrameSpec::text("first of two").fin(false).encode();
    for stalled in [
        &frame[..frame.len() - 3],
        &frame[..1],
        &unfinished_message[..],
    ] {
        let mut client = RawClient::connect(proxy.addr, "/ws-hasty").await;
        let started = Instant::now();
        client.send_raw(stalled).await.expect("send");
        client
            .expect_close_reason(1008, "message not completed in time")
            .await;
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(900),
            "closed after {after:?}"
        );
        assert!(after < Duration::from_secs(4), "closed after {after:?}");
    }
    upstream
        .wait_for("three upstream connections ended", |events| {
            events
                .iter()
                .filter(|(_, event)| matches!(event, Event::Eof))
                .count()
                >= 3
        })
        .await;
    assert_eq!(upstream.messages(), []);
    // A message completed in time stops the clock: pauses between messages are no stall.
    let mut client = RawClient::connect(proxy.addr, "/ws-hasty").await;
    for _ in 0..3 {
        client.send_raw(&unfinished_message).await.expect("send");
        tokio::time::sleep(Duration::from_millis(600)).await;
        client.send(&FrameSpec::continuation("second of two")).await;
        assert_eq!(
            client.read_message().await,
            (frame::TEXT, b"first of twosecond of two".to_vec())
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

#[tokio::test]
async fn connections_over_the_per_address_limit_get_503_until_one_closes() {
    let (_upstream, proxy) = start().await;
    let mut first = RawClient::connect(proxy.addr, "/ws-limited").await;
    let _second = RawClient::connect(proxy.addr, "/ws-limited").await;
    let refused = RawClient::handshake(proxy.addr, &HandshakeRequest::new("/ws-limited")).await;
    assert_eq!(
        refused.err().map(|r| r.status),
        Some(503),
        "third connection from one address"
    );
    // Other routes are not limited by this one.
    let _elsewhere = RawClient::connect(proxy.addr, "/ws").await;

    first.send(&FrameSpec::close(1000, "")).await;
    first.expect_close(1000).await;
    first
        .read_until_eof(Duration::from_secs(5))
        .await
        .expect("closed");
    // The slot is freed when the relay ends, just after the client sees EOF.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match RawClient::handshake(proxy.addr, &HandshakeRequest::new("/ws-limited")).await {
            Ok(_) => break,
            Err(resp) if resp.status == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(resp) => panic!("the closed connection's slot was not freed: {resp:?}"),
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_closes_websockets_with_1001_and_exits() {
    let (upstream, mut proxy) = start().await;
    let mut client = RawClient::connect(proxy.addr, "/ws").await;
    client.send(&FrameSpec::text("before shutdown")).await;
    client.read_message().await;
    proxy.terminate();
    client.expect_close(1001).await;
    client.send(&FrameSpec::close(1001, "")).await;
    client
        .read_until_eof(Duration::from_secs(5))
        .await
        .expect("closed after the handshake");
    // graceful-shutdown-timeout-secs is 2 in the test config.
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("proxy exits after draining");
    assert!(status.success(), "exit status {status}");
    upstream
        .wait_for("the upstream connection end", upstream_ended)
        .await;
}
