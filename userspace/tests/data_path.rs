//! The uninspected upstream -> client direction carried by splice(2) and by the sockmap
//! program, end to end through the proxy: echo stays intact and in order, inbound attacks are
//! still closed with 1008 (the Close reaches the client at a frame boundary), and /status and
//! the metrics name the data path.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use support::proxy::{free_addr, Proxy};
use support::upstream::Upstream;
use support::IO_TIMEOUT;

type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// One inspected-inbound route whose outbound direction takes `data_path`.
fn config(
    listen: SocketAddr,
    upstream: SocketAddr,
    metrics: SocketAddr,
    data_path: &str,
) -> String {
    format!(
        r#"system {{ worker-threads 2; graceful-shutdown-timeout-secs 2 }}
listeners {{ listener "http" {{ address "{listen}"; protocol "http" }} }}
routes {{
    route "health" {{ priority 1000; matches {{ path "/health" }}; service-type "builtin"; builtin-handler "health" }}
    route "ws" {{ priority 100; matches {{ path "/ws" }}; upstream "backend"; agents "inspector"
        data-path "{data_path}"
        websocket {{ enabled #true; max-message-size "2MB" }} }}
}}
upstreams {{ upstream "backend" {{ target "{upstream}" }} }}
agents {{ agent "inspector" {{ type "websocket-inspector"; direction "inbound" }} }}
observability {{ metrics {{ enabled #true; address "{metrics}" }}; logging {{ level "debug"; format "text" }} }}
"#
    )
}

async fn connect(proxy: &Proxy) -> Client {
    let url = format!("ws://{}/ws", proxy.addr);
    let (client, _) = tokio::time::timeout(IO_TIMEOUT, connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect");
    client
}

async fn next_data(client: &mut Client) -> Message {
    for _ in 0..100 {
        let message = tokio::time::timeout(IO_TIMEOUT, client.next())
            .await
            .expect("no message in time")
            .expect("connection ended")
            .expect("read error");
        if message.is_text() || message.is_binary() || message.is_close() {
            return message;
        }
    }
    panic!("only control frames");
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = support::http::request(addr, raw.as_bytes())
        .await
        .expect("http request");
    response.body_text()
}

/// Echo of small and large messages in order, then an inbound attack closed with 1008 that
/// the upstream never sees; /status shows the connection on `expected_path` meanwhile.
async fn echo_and_block(data_path: &str, expected_path: &str) {
    let upstream = Upstream::echo().await;
    let metrics = free_addr();
    let proxy = Proxy::start_with(|listen| config(listen, upstream.addr, metrics, data_path)).await;
    let mut client = connect(&proxy).await;
    let sizes = [64usize, 4096, 16 * 1024, 200 * 1024, 1 << 20];
    for (i, size) in sizes.iter().cycle().take(40).enumerate() {
        let payload: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
        client
            .send(Message::binary(payload.clone()))
            .await
            .expect("send");
        match next_data(&mut client).await {
            Message::Binary(echoed) => {
                assert_eq!(echoed.as_ref(), &payload[..], "message {i} ({size} B)")
            }
            other => panic!("message {i}: unexpected {other:?}"),
        }
    }
    let status = http_get(metrics, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let paths: Vec<&str> = status["websockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["data_path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [expected_path], "status: {status}");

    client
        .send(Message::text("<script>alert(1)</script>"))
        .await
        .expect("send attack");
    match next_data(&mut client).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert_eq!(frame.reason.as_str(), "Policy violation: XSS detected");
        }
        other => panic!("expected close 1008, got {other:?}\n{}", proxy.log_tail()),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        upstream
            .messages()
            .iter()
            .all(|(_, m)| !m.windows(8).any(|w| w == b"<script>")),
        "the attack reached the upstream"
    );
    let scraped = http_get(metrics, "/metrics").await;
    let line = format!("frameguard_websocket_connections_total{{data_path=\"{expected_path}\"}} 1");
    assert!(scraped.contains(&line), "missing `{line}` in metrics");
}

#[tokio::test]
async fn splice_path_echoes_intact_and_still_blocks_inbound_attacks() {
    echo_and_block("splice", "splice").await;
}

#[tokio::test]
async fn kernel_path_echoes_intact_and_still_blocks_inbound_attacks() {
    if std::env::var("FRAMEGUARD_SKIP_EBPF_TESTS").as_deref() == Ok("1") {
        eprintln!("FRAMEGUARD_SKIP_EBPF_TESTS=1: kernel data path test skipped");
        return;
    }
    echo_and_block("kernel", "kernel").await;
}

#[tokio::test]
async fn auto_keeps_the_userspace_relay() {
    echo_and_block("auto", "userspace").await;
}
