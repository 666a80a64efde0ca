//! The opening handshake through the proxy: what it refuses (and with which status), how it
//! treats what the upstream answers, and that a slow client cannot hold a connection open.

mod support;

use std::time::{Duration, Instant};

use support::client::{tcp_connect, HandshakeRequest, RawClient};
use support::frame::{self, FrameSpec};
use support::http::{self, Response};
use support::proxy::{free_addr, standard_config, Proxy};
use support::upstream::{Behavior, Handshake, Upstream, REJECT_BODY};

async fn start(behavior: Behavior) -> (Upstream, Proxy) {
    let upstream = Upstream::start(behavior).await;
    let proxy = Proxy::start(upstream.addr).await;
    (upstream, proxy)
}

/// Send `request`, which must not be accepted; the proxy's answer.
#[track_caller]
fn refused(
    proxy: &Proxy,
    request: HandshakeRequest,
) -> impl std::future::Future<Output = Response> {
    let caller = std::panic::Location::caller();
    let addr = proxy.addr;
    async move {
        match RawClient::handshake(addr, &request).await {
            Ok(_) => panic!("{caller}: the proxy accepted an upgrade it must refuse"),
            Err(resp) => resp,
        }
    }
}

#[tokio::test]
async fn request_without_upgrade_header_is_proxied_as_plain_http() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let resp = refused(&proxy, HandshakeRequest::new("/ws").without("Upgrade")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.body_text(),
        "GET /ws body=",
        "the upstream's plain answer"
    );
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].0.header("upgrade"),
        None,
        "a plain request must not carry Upgrade"
    );
}

#[tokio::test]
async fn upgrade_without_connection_upgrade_is_refused_with_400() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let resp = refused(
        &proxy,
        HandshakeRequest::new("/ws").header("Connection", "keep-alive"),
    )
    .await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(
        upstream.requests().is_empty(),
        "nothing may reach the upstream"
    );
}

#[tokio::test]
async fn upgrade_on_a_route_without_websocket_is_refused_with_400() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let resp = refused(&proxy, HandshakeRequest::new("/api/socket")).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(
        upstream.requests().is_empty(),
        "nothing may reach the upstream"
    );
}

#[tokio::test]
async fn websocket_version_8_is_refused_with_426_naming_version_13() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let resp = refused(
        &proxy,
        HandshakeRequest::new("/ws").header("Sec-WebSocket-Version", "8"),
    )
    .await;
    assert_eq!(resp.status, 426, "{resp:?}");
    assert_eq!(
        resp.header("sec-websocket-version").map(str::trim),
        Some("13")
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn keys_that_are_not_base64_of_16_bytes_are_refused_with_400() {
    let (upstream, proxy) = start(Behavior::default()).await;
    // Not base64; base64 of 8 bytes; base64 of 17 bytes.
    for key in [
        "not base64 at all!",
        "c2hvcnRrZXk=",
        "MDEyMzQ1Njc4OWFiY2RlZmc=",
    ] {
        let resp = refused(
            &proxy,
            HandshakeRequest::new("/ws").header("Sec-WebSocket-Key", key),
        )
        .await;
        assert_eq!(resp.status, 400, "key {key:?}: {resp:?}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn post_upgrade_is_refused_with_400() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let request = HandshakeRequest::new("/ws")
        .method("POST")
        .header("Content-Length", "0");
    let resp = refused(&proxy, request).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn head_larger_than_16_kib_is_refused_with_431() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let filler = "f".repeat(17 * 1024);
    let resp = refused(
        &proxy,
        HandshakeRequest::new("/ws").header("X-Filler", &filler),
    )
    .await;
    assert_eq!(resp.status, 431, "{:?}", resp.status);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn unknown_path_is_404() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let resp = refused(&proxy, HandshakeRequest::new("/nowhere")).await;
    assert_eq!(resp.status, 404, "{resp:?}");
    let plain = http::request(
        proxy.addr,
        b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("plain request");
    assert_eq!(plain.status, 404, "{plain:?}");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn upstream_that_is_down_gives_502() {
    let nobody = free_addr();
    let proxy = Proxy::start_with(|listen| standard_config(listen, nobody)).await;
    let resp = refused(&proxy, HandshakeRequest::new("/ws")).await;
    assert_eq!(resp.status, 502, "{resp:?}");
    let plain = http::request(
        proxy.addr,
        b"GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("plain request");
    assert_eq!(plain.status, 502, "{plain:?}");
}

#[tokio::test]
async fn health_answers_200_with_json() {
    let (_upstream, proxy) = start(Behavior::default()).await;
    let resp = http::request(
        proxy.addr,
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("health request");
    assert_eq!(resp.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON body");
    assert!(json.is_object(), "{json}");
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.contains("json")),
        "{:?}",
        resp.headers
    );
}

#[tokio::test]
async fn slowloris_half_head_is_dropped_within_the_handshake_timeout() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let mut conn = tcp_connect(proxy.addr).await;
    conn.write_all(b"GET /ws HTTP/1.1\r\nHost: slow\r\nUpgrade: websocket\r\nConn")
        .await
        .expect("half head");
    let started = Instant::now();
    let rest = conn.read_until_eof(Duration::from_secs(20)).await;
    let waited = started.elapsed();
    assert!(rest.is_ok(), "still open after {waited:?}: {rest:?}");
    assert!(
        waited <= Duration::from_secs(15),
        "closed only after {waited:?}"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn fake_101_from_upstream_gives_502_and_nothing_it_sent_after() {
    let after_101 = [
        FrameSpec::text("smuggled frame").unmasked().encode(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nsmuggled body".to_vec(),
    ]
    .concat();
    let (upstream, proxy) = start(Behavior {
        handshake: Handshake::WrongAccept,
        after_101,
        ..Behavior::default()
    })
    .await;
    let mut conn = tcp_connect(proxy.addr).await;
    let (request, _) = HandshakeRequest::new("/ws").encode(proxy.addr);
    conn.write_all(&request).await.expect("handshake");
    let resp = conn.read_response().await.expect("answer");
    assert_eq!(resp.status, 502, "{resp:?}");
    // Whatever else arrives (until the proxy closes or goes quiet) must not be the upstream's.
    while let Ok(n) = conn.fill_within(Duration::from_millis(500)).await {
        if n == 0 || conn.buf.len() > 64 * 1024 {
            break;
        }
    }
    let everything = [resp.body.as_slice(), conn.buf.as_slice()].concat();
    let text = String::from_utf8_lossy(&everything);
    assert!(
        !text.contains("smuggled"),
        "upstream bytes reached the client: {text:?}"
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn non_101_answer_from_upstream_reaches_the_client_as_is() {
    let (_upstream, proxy) = start(Behavior {
        handshake: Handshake::Reject403,
        ..Behavior::default()
    })
    .await;
    let resp = refused(&proxy, HandshakeRequest::new("/ws")).await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.body_text(), REJECT_BODY);
}

#[tokio::test]
async fn frame_the_upstream_sends_right_after_101_reaches_the_client() {
    let after_101 = FrameSpec::text("hello first").unmasked().encode();
    let (_upstream, proxy) = start(Behavior {
        after_101,
        ..Behavior::default()
    })
    .await;
    let mut client = RawClient::connect(proxy.addr, "/ws").await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"hello first".to_vec())
    );
    client.send(&FrameSpec::text("and then echo")).await;
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"and then echo".to_vec())
    );
}

#[tokio::test]
async fn frame_sent_in_the_same_write_as_the_handshake_is_delivered() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let early = FrameSpec::text("early bird").encode();
    let request = HandshakeRequest::new("/ws").early_data(early);
    let mut client = RawClient::handshake(proxy.addr, &request)
        .await
        .expect("101");
    assert_eq!(
        client.read_message().await,
        (frame::TEXT, b"early bird".to_vec())
    );
    assert_eq!(upstream.messages(), [(frame::TEXT, b"early bird".to_vec())]);
}

#[tokio::test]
async fn extension_the_upstream_declines_is_not_granted_and_rsv1_stays_forbidden() {
    let (upstream, proxy) = start(Behavior::default()).await;
    let offer = "permessage-deflate; client_max_window_bits";
    let request = HandshakeRequest::new("/ws").header("Sec-WebSocket-Extensions", offer);
    let mut client = RawClient::handshake(proxy.addr, &request)
        .await
        .expect("101");
    assert_eq!(
        http::header(&client.headers, "sec-websocket-extensions"),
        None,
        "{:?}",
        client.headers
    );
    let requests = upstream.requests();
    assert_eq!(
        requests[0].0.header("sec-websocket-extensions"),
        Some(offer),
        "offer forwarded"
    );
    client
        .send_offending(&FrameSpec::text("deflated?").rsv(frame::RSV1).encode())
        .await;
    client.expect_close(1002).await;
}
