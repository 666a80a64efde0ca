//! Request bodies on inspected routes are judged like WebSocket messages, so an attack cannot
//! skip the upgrade and ride socket.io's HTTP long-polling transport instead.

mod support;

use std::time::Duration;

use support::proxy::Proxy;
use support::upstream::Upstream;

fn polling_post(proxy: &Proxy, body: &str) -> Vec<u8> {
    format!(
        "POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        proxy.addr,
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn attacks_over_socketio_polling_get_403_and_never_reach_the_upstream() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start_inspected(upstream.addr, None).await;

    let benign = "42[\"chat\",\"see you at 5; bring snacks | drinks\"]\u{1e}2";
    let response = support::http::request(proxy.addr, &polling_post(&proxy, benign))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", proxy.log_tail());

    for attack in [
        "42[\"chat\",\"<img src=x onerror=alert(1)>\"]",
        "2\u{1e}42[\"chat\",\"1' UNION/**/SELECT password FROM users--\"]",
    ] {
        let response = support::http::request(proxy.addr, &polling_post(&proxy, attack))
            .await
            .unwrap();
        assert_eq!(response.status, 403, "{attack}");
        assert!(
            response.body_text().starts_with("Policy violation"),
            "{}",
            response.body_text()
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bodies: Vec<String> = upstream
        .requests()
        .iter()
        .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
        .collect();
    assert_eq!(
        bodies.len(),
        1,
        "only the benign request is forwarded: {bodies:?}"
    );
    assert!(bodies[0].contains("bring snacks"));
}

#[tokio::test]
async fn an_attack_in_a_requests_path_or_query_gets_403_and_is_not_forwarded() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start_inspected(upstream.addr, None).await;
    let get = |query: &str| {
        format!(
            "GET /socket.io/?EIO=4&transport=polling&{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            proxy.addr
        )
        .into_bytes()
    };
    let response = support::http::request(proxy.addr, &get("name=%3Csvg%20onload%3Dalert(1)%3E"))
        .await
        .unwrap();
    assert_eq!(response.status, 403, "{}", response.body_text());
    assert_eq!(response.body_text(), "Policy violation: XSS detected\n");
    // A path segment under a prefix route is read by applications as much as a parameter.
    let in_path = format!(
        "GET /socket.io/rooms/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        proxy.addr
    );
    let response = support::http::request(proxy.addr, in_path.as_bytes())
        .await
        .unwrap();
    assert_eq!(response.status, 403, "{}", response.body_text());
    let response = support::http::request(proxy.addr, &get("name=alice&t=Nz1aB"))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", proxy.log_tail());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|(head, _)| head.path.clone())
        .collect();
    assert_eq!(
        paths.len(),
        1,
        "only the benign request is forwarded: {paths:?}"
    );
    assert!(paths[0].contains("name=alice"), "{paths:?}");
}

#[tokio::test]
async fn a_malformed_chunked_body_on_an_inspected_route_gets_400_not_413() {
    let upstream = Upstream::echo().await;
    let proxy = Proxy::start_inspected(upstream.addr, None).await;
    let request = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        proxy.addr
    );
    let response = support::http::request(proxy.addr, request.as_bytes())
        .await
        .unwrap();
    assert_eq!(response.status, 400, "{}", response.body_text());
    assert_eq!(response.body_text(), "malformed request body\n");
    assert!(upstream.requests().is_empty());
}
