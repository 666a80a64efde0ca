//! Plain HTTP through the proxy on the `/api/` route: keep-alive, chunked request bodies and
//! the forwarding headers the upstream sees.

mod support;

use std::time::Duration;

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

#[tokio::test]
async fn a_request_without_exactly_one_host_gets_400_and_is_not_forwarded() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    for (request, why) in [
        (
            "GET /api/a HTTP/1.1\r\nHost: public.test\r\nHost: internal.test\r\n\r\n",
            "more than one Host header",
        ),
        (
            "GET /api/b HTTP/1.1\r\n\r\n",
            "HTTP/1.1 request without a Host",
        ),
        (
            "GET /api/d HTTP/1.1\r\nHost: public.test internal.test\r\n\r\n",
            "invalid Host header",
        ),
    ] {
        let resp = support::http::request(proxy.addr, request.as_bytes())
            .await
            .expect("response");
        assert_eq!(resp.status, 400, "{request:?}: {resp:?}");
        assert_eq!(resp.body_text().trim_end(), why);
    }
    // HTTP/1.0 has no Host requirement.
    let resp = support::http::request(proxy.addr, b"GET /api/c HTTP/1.0\r\n\r\n")
        .await
        .expect("response");
    assert_eq!(resp.status, 200, "{resp:?}");
    let paths: Vec<String> = upstream
        .requests()
        .into_iter()
        .map(|(head, _)| head.path)
        .collect();
    assert_eq!(paths, ["/api/c"]);
}

#[tokio::test]
async fn an_absolute_form_target_names_the_host_the_upstream_sees() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let request = "GET http://tenant.test/api/x?y=1 HTTP/1.1\r\nHost: other.test\r\n\r\n";
    let resp = support::http::request(proxy.addr, request.as_bytes())
        .await
        .expect("response");
    assert_eq!(resp.status, 200, "{resp:?}");
    let requests = upstream.requests();
    assert_eq!(requests[0].0.path, "/api/x?y=1");
    assert_eq!(requests[0].0.header("host"), Some("tenant.test"));
}

#[tokio::test]
async fn a_request_smuggled_behind_content_length_and_chunked_never_reaches_the_upstream() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start(upstream.addr).await;
    let mut conn = tcp_connect(proxy.addr).await;
    // A front end that honours Content-Length reads one request; one that honours chunked
    // reads an empty body and then a second request, the smuggled one.
    let request = "POST /api/front HTTP/1.1\r\nHost: t\r\nContent-Length: 39\r\n\
                   Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    conn.write_all(request.as_bytes())
        .await
        .expect("send request");
    let rest = conn
        .read_until_eof(Duration::from_secs(5))
        .await
        .expect("the proxy answers and closes");
    let rest = String::from_utf8_lossy(&rest);
    assert_eq!(
        rest.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then the connection closes: {rest}"
    );
    let requests = upstream.requests();
    let paths: Vec<&str> = requests.iter().map(|(h, _)| h.path.as_str()).collect();
    assert_eq!(paths, ["/api/front"]);
    assert_eq!(requests[0].1, b"", "the chunked body, which is empty");
    assert_eq!(
        requests[0].0.header("content-length"),
        None,
        "{:?}",
        requests[0].0
    );
}

#[tokio::test]
async fn an_upstream_that_switches_protocols_on_a_plain_request_gets_the_client_a_502() {
    // An upstream that answers every request with a switch the request never asked for.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let switcher = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn = support::http::Conn::new(stream);
        conn.read_request_head().await.expect("request head");
        conn.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        )
        .await
        .expect("answer");
        // Held open: the switched connection is the proxy's to refuse.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let proxy = Proxy::start(addr).await;
    let resp = support::http::request(
        proxy.addr,
        b"GET /api/x HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(resp.status, 502, "{resp:?}");
    switcher.abort();
}
