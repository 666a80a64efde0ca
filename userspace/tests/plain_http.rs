//! Plain HTTP through the proxy on the `/api/` route: keep-alive, chunked request bodies and
//! the forwarding headers the upstream sees.

mod support;

use support::client::tcp_connect;
use support::proxy::Proxy;
use support::upstream::Upstream;

#[tokio::test]
async fn two_requests_on_one_keep_alive_connection_are_both_answered() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut conn = tcp_connect(proxy.addr).await;
    for path in ["/api/one", "/api/two?x=1"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: frameguard.test\r\n\r\n");
        conn.write_all(request.as_bytes())
            .await
            .expect("send request");
        let resp = conn.read_response().await.expect("response");
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(
            resp.body_text(),
            format!("GET {path} body="),
            "{path}: the upstream's chunked body"
        );
    }
    let requests = upstream.requests();
    let paths: Vec<&str> = requests
        .iter()
        .map(|(head, _)| head.path.as_str())
        .collect();
    assert_eq!(paths, ["/api/one", "/api/two?x=1"]);
    for (head, _) in &requests {
        assert_eq!(
            head.header("x-forwarded-for"),
            Some("127.0.0.1"),
            "{head:?}"
        );
        assert_eq!(head.header("host"), Some("frameguard.test"), "{head:?}");
    }
}

#[tokio::test]
async fn post_with_a_chunked_body_reaches_the_upstream_whole() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut conn = tcp_connect(proxy.addr).await;
    let request = "POST /api/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
                   Content-Type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    conn.write_all(request.as_bytes())
        .await
        .expect("send request");
    let resp = conn.read_response().await.expect("response");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), "POST /api/echo body=hello world");
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0.method, "POST");
    assert_eq!(requests[0].1, b"hello world");
}

#[tokio::test]
async fn x_forwarded_for_from_the_client_is_extended_with_its_address() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut conn = tcp_connect(proxy.addr).await;
    let request = "GET /api/who HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
    conn.write_all(request.as_bytes())
        .await
        .expect("send request");
    assert_eq!(conn.read_response().await.expect("response").status, 200);
    let requests = upstream.requests();
    assert_eq!(
        requests[0].0.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
}
